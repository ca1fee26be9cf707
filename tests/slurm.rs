//! `blindspot slurm` and the chunked runs it relies on.
//!
//! Without a cluster (plain `cargo test`): the dry run's scripts and dependency structure, the `slurm:`
//! section's errors, a submission through stand-in `sbatch`/`squeue` scripts (dependencies on real job
//! ids, queued stages not submitted twice, missing chunks only, a stage locked outside Slurm, no
//! sbatch), chunk tasks of one stage running at once, and a merge killed with SIGKILL that resumes to the
//! outputs of one process.
//!
//! With a cluster (`#[ignore]`d; `scripts/test.sh` runs it as root: `cargo test --test slurm --
//! --ignored`): a small experiment through a real one-node Slurm (scripts/slurm/local-cluster.sh),
//! compared file by file with a local `blindspot run` of the same YAML.

mod common;
use common::{root, text};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary with one libtorch thread everywhere, as in the Slurm jobs (-c 1): identical numbers.
fn bin() -> Command {
    let mut c = common::bin();
    c.env("OMP_NUM_THREADS", "1")
        .env_remove("BLINDSPOT_TEST_HOLD_BEFORE_DONE");
    c
}

fn run(args: &[&str], cwd: &Path) -> Output {
    common::run_cmd(bin(), args, cwd)
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

/// Two tiny softmax models, an attack in two chunks (an array), one in one chunk, a transfer table.
const EXP: &str = "name: t
seed: 5
models:
  - name: softmax1
    arch: {kind: softmax}
    weight_decay: [1.0e-4]
    optimizer: {kind: lbfgs, max_iter: 15}
  - name: softmax2
    arch: {kind: softmax}
    weight_decay: [1.0e-2]
    optimizer: {kind: lbfgs, max_iter: 15}
attacks:
  - {model: softmax1, spec: {split: test, first: 20, batch: 10}}
  - {model: softmax2, spec: {split: test, first: 10, batch: 10}}
transfer:
  - {name: t2, examples: [softmax1, softmax2], models: [softmax1, softmax2], spec: {noise: [0.1], amplify: [0.1]}}
";

// ---- comparing two run folders, timing fields left out ------------------------------------------

/// Keys whose values are timings or say where and when (not what) something was computed.
const TIMING_KEYS: [&str; 5] = [
    "seconds",
    "images_per_second",
    "finished_unix",
    "provenance",
    "model_path",
];

fn strip_json(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in TIMING_KEYS {
                m.remove(k);
            }
            m.values_mut().for_each(strip_json);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_json),
        _ => {}
    }
}

/// CSV rows without the `seconds` column.
fn csv_rows(s: &str) -> Vec<Vec<String>> {
    let mut lines = s.lines();
    let head: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let drop = head.iter().position(|h| *h == "seconds");
    std::iter::once(head.join(","))
        .chain(lines.map(String::from))
        .map(|l| {
            l.split(',')
                .enumerate()
                .filter(|(i, _)| Some(*i) != drop)
                .map(|(_, x)| x.to_string())
                .collect()
        })
        .collect()
}

/// A report without its stage times and without the timing columns of its tables.
fn report_rows(md: &str) -> Vec<String> {
    let md = md.split("\n## Stage times").next().unwrap_or(md);
    let timing = ["seconds", "images / s", "attack time"];
    let mut drop: Vec<usize> = Vec::new();
    let mut out = Vec::new();
    let mut in_table = false;
    for line in md.lines() {
        if !line.starts_with('|') {
            in_table = false;
            out.push(line.to_string());
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if !in_table {
            drop = (0..cells.len())
                .filter(|&i| timing.contains(&cells[i]))
                .collect();
            in_table = true;
        }
        let kept: Vec<&str> = (0..cells.len())
            .filter(|i| !drop.contains(i))
            .map(|i| cells[i])
            .collect();
        out.push(kept.join("|"));
    }
    out
}

fn files(dir: &Path) -> BTreeMap<PathBuf, PathBuf> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<PathBuf, PathBuf>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if rel.starts_with("slurm") || rel.starts_with(".locks") {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(rel, p);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Every file of run folder `a` equals `b`'s: tensors byte for byte, CSV without `seconds`, JSON without
/// timing keys, the report without timings; the same files in both.
fn assert_same_run(a: &Path, b: &Path) {
    let (fa, fb) = (files(a), files(b));
    assert_eq!(
        fa.keys().collect::<Vec<_>>(),
        fb.keys().collect::<Vec<_>>(),
        "the two runs hold different files"
    );
    for (rel, pa) in &fa {
        let pb = &fb[rel];
        let name = rel.display().to_string();
        let (ba, bb) = (std::fs::read(pa).unwrap(), std::fs::read(pb).unwrap());
        let (sa, sb) = (String::from_utf8_lossy(&ba), String::from_utf8_lossy(&bb));
        if name.ends_with(".json") {
            let mut ja: Value = serde_json::from_slice(&ba).unwrap();
            let mut jb: Value = serde_json::from_slice(&bb).unwrap();
            strip_json(&mut ja);
            strip_json(&mut jb);
            assert_eq!(ja, jb, "{name} differs");
        } else if name.ends_with(".csv") {
            assert_eq!(csv_rows(&sa), csv_rows(&sb), "{name} differs");
        } else if name == "report.md" {
            assert_eq!(report_rows(&sa), report_rows(&sb), "{name} differs");
        } else {
            assert!(ba == bb, "{name} differs");
        }
    }
}

// ---- without a cluster ----------------------------------------------------------------------------

/// The dry run's blocks: job (`label` or `label[chunks]`) → (script, dependencies as placeholders).
fn dry_run_jobs(out: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let mut jobs = BTreeMap::new();
    for block in out.split("### ").skip(1) {
        let (script, cmd) = block
            .split_once("\n$ ")
            .expect("a command after the script");
        let cmd = cmd.lines().next().unwrap();
        let deps: Vec<String> = cmd
            .split_whitespace()
            .find_map(|w| w.strip_prefix("--dependency=afterok:"))
            .map(|d| {
                d.split(':')
                    .map(|x| x.trim_matches(['<', '>']).to_string())
                    .collect()
            })
            .unwrap_or_default();
        let chunks = script.contains("--chunk \"$SLURM_ARRAY_TASK_ID\"");
        let label = script
            .lines()
            .find_map(|l| {
                l.split_once("--stage ")
                    .map(|(_, r)| r.split_whitespace().next().unwrap().to_string())
            })
            .unwrap_or_else(|| "report".into());
        let key = if chunks {
            format!("{label}[chunks]")
        } else {
            label
        };
        jobs.insert(key, (script.to_string(), deps));
    }
    jobs
}

#[test]
fn dry_run_prints_every_script_with_its_dependencies() {
    let d = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{EXP}units:\n  - {{model: softmax1, layer: fc}}\nspectral:\n  - {{model: softmax1}}\nfig7:\n  models: [softmax1]\nslurm:\n  time: \"10\"\n  partition: main\n  account: acct\n  extra: [\"--qos=low\"]\n  setup: [\"echo setup-line\"]\n  array_parallel: 3\n  stages:\n    \"attacks/*\": {{mem: 2G}}\n    attacks/softmax1: {{cpus: 2, extra: [\"--constraint=x\"]}}\n    report: {{time: \"5\"}}\n"
    );
    std::fs::write(d.path().join("t.yaml"), &yaml).unwrap();
    let out = ok(run(&["slurm", "t.yaml", "--dry-run"], d.path()));
    assert!(!d.path().join("runs").exists(), "a dry run writes nothing");
    let jobs = dry_run_jobs(&out);
    let deps = |k: &str| -> Vec<&str> {
        let mut v: Vec<&str> = jobs[k].1.iter().map(String::as_str).collect();
        v.sort_unstable();
        v
    };
    let m1 = "models/softmax1";
    assert_eq!(
        jobs.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "attacks/softmax1",
            "attacks/softmax1[chunks]",
            "attacks/softmax2",
            "fig7",
            m1,
            "models/softmax2",
            "report",
            "spectral/softmax1",
            "transfer/t2",
            "units/softmax1-fc"
        ],
        "{out}"
    );
    assert!(deps(m1).is_empty() && deps("models/softmax2").is_empty());
    for k in [
        "units/softmax1-fc",
        "attacks/softmax1[chunks]",
        "fig7",
        "spectral/softmax1",
    ] {
        assert_eq!(deps(k), [m1], "{k}");
    }
    assert_eq!(deps("attacks/softmax1"), ["attacks/softmax1[chunks]"]);
    assert_eq!(deps("attacks/softmax2"), ["models/softmax2"]);
    assert_eq!(
        deps("transfer/t2"),
        [
            "attacks/softmax1",
            "attacks/softmax2",
            m1,
            "models/softmax2"
        ]
    );
    assert_eq!(
        deps("report"),
        [
            "attacks/softmax1",
            "attacks/softmax2",
            "fig7",
            m1,
            "models/softmax2",
            "spectral/softmax1",
            "transfer/t2",
            "units/softmax1-fc"
        ]
    );
    // Every script: the failure policy, the cluster's lines, one core unless overridden, the setup
    // lines, one blindspot command.
    for (k, (script, _)) in &jobs {
        for line in [
            "#SBATCH --kill-on-invalid-dep=yes",
            "#SBATCH --partition=main",
            "#SBATCH --account=acct",
            "#SBATCH --qos=low",
            "\necho setup-line\n",
            "export OMP_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"",
        ] {
            assert!(script.contains(line), "{k} lacks {line}:\n{script}");
        }
        assert_eq!(script.matches("\nexec ").count(), 1, "{k}");
        let attack1 = k.starts_with("attacks/softmax1");
        let cpus = if attack1 { 2 } else { 1 };
        assert!(
            script.contains(&format!("#SBATCH --cpus-per-task={cpus}\n")),
            "{k}"
        );
        assert_eq!(script.contains("--constraint=x"), attack1, "{k}");
        assert_eq!(
            script.contains("#SBATCH --mem=2G"),
            k.starts_with("attacks/"),
            "{k}"
        );
        let time = if k == "report" { "5" } else { "10" };
        assert!(script.contains(&format!("#SBATCH --time={time}\n")), "{k}");
        assert_eq!(script.contains("--array="), k.ends_with("[chunks]"), "{k}");
    }
    let (arr, _) = &jobs["attacks/softmax1[chunks]"];
    assert!(
        arr.contains("#SBATCH --array=0-1%3\n") && arr.contains("%x-%A_%a.out"),
        "{arr}"
    );
    assert!(
        arr.contains("run ")
            && arr.contains("--stage attacks/softmax1 --chunk \"$SLURM_ARRAY_TASK_ID\"")
    );
    assert!(
        jobs["report"].0.contains(" report ") && jobs[m1].0.contains("--stage models/softmax1\n")
    );

    // array_min_chunks: 3 keeps a two-chunk attack in one job.
    std::fs::write(
        d.path().join("t.yaml"),
        format!("{EXP}slurm:\n  array_min_chunks: 3\n"),
    )
    .unwrap();
    let jobs = dry_run_jobs(&ok(run(&["slurm", "t.yaml", "--dry-run"], d.path())));
    assert!(!jobs.contains_key("attacks/softmax1[chunks]"));
    assert_eq!(jobs["attacks/softmax1"].1, [m1]);
}

#[test]
fn slurm_section_errors_name_the_field() {
    let d = tempfile::tempdir().unwrap();
    for (slurm, want) in [
        ("{time: \"1h\"}", "slurm.time"),
        ("{cpu: 1}", "unknown field `cpu`"),
        ("{mem: 8GB}", "slurm.mem"),
        ("{cpus: 0}", "slurm.cpus"),
        ("{partition: \"a b\"}", "slurm.partition"),
        ("{extra: [\"qos=x\"]}", "slurm.extra[0]"),
        ("{array_min_chunks: 0}", "slurm.array_min_chunks"),
        ("{stages: {\"model/*\": {cpus: 1}}}", "slurm.stages.model/*"),
        (
            "{stages: {attacks/*: {gpus: \"a100:\"}}}",
            "slurm.stages.attacks/*.gpus",
        ),
        (
            "{stages: {attacks/*: {cpus: 1, nodes: 2}}}",
            "unknown field `nodes`",
        ),
        (
            "{stages: {attacks/nope: {cpus: 1}}}",
            "slurm.stages.attacks/nope",
        ),
    ] {
        std::fs::write(d.path().join("t.yaml"), format!("{EXP}slurm: {slurm}\n")).unwrap();
        let o = run(&["slurm", "t.yaml", "--dry-run"], d.path());
        let t = text(&o);
        assert!(!o.status.success() && t.contains(want), "{slurm}: {t}");
    }
}

/// A directory with stand-in `sbatch` (records its arguments, prints ids from 100) and `squeue` (prints
/// the ids in `alive`).
fn stand_in_slurm(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let sbatch = "#!/bin/bash\nd=$(dirname \"$0\")\nn=$(cat \"$d/next\" 2>/dev/null || echo 100)\necho $((n + 1)) > \"$d/next\"\necho \"$*\" >> \"$d/calls\"\necho \"$n\"\n";
    let squeue = "#!/bin/bash\ncat \"$(dirname \"$0\")/alive\" 2>/dev/null\ntrue\n";
    for (name, body) in [("sbatch", sbatch), ("squeue", squeue)] {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn submission_records_jobs_and_submits_only_what_is_missing() {
    let d = tempfile::tempdir().unwrap();
    let fake = d.path().join("fakebin");
    stand_in_slurm(&fake);
    std::fs::write(d.path().join("t.yaml"), EXP).unwrap();
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap());
    let slurm = || {
        let o = bin()
            .args(["slurm", "t.yaml"])
            .env("PATH", &path)
            .current_dir(d.path())
            .output()
            .unwrap();
        ok(o)
    };
    let calls = || std::fs::read_to_string(fake.join("calls")).unwrap_or_default();
    let out = slurm();
    let c = calls();
    let lines: Vec<&str> = c.lines().collect();
    // models 100, 101; array 102 after 100; merge 103 after 102; attack 104 after 101; transfer 105;
    // report 106.
    assert_eq!(lines.len(), 7, "{out}\n{c}");
    let dep = |i: usize| {
        lines[i]
            .split_whitespace()
            .find_map(|w| w.strip_prefix("--dependency=afterok:"))
            .unwrap_or("")
            .to_string()
    };
    assert_eq!((dep(0).as_str(), dep(1).as_str()), ("", ""));
    assert!(lines[2].ends_with("02-t.attacks.softmax1.chunks.sbatch") && dep(2) == "100");
    assert_eq!((dep(3).as_str(), dep(4).as_str()), ("102", "101"));
    assert_eq!(dep(5), "103:104:100:101");
    assert_eq!(dep(6), "100:101:103:104:105");
    let sdir = d.path().join("runs/t/slurm");
    assert_eq!(
        std::fs::read_dir(&sdir)
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sbatch"))
            .count(),
        7
    );
    let rec: Value =
        serde_json::from_str(&std::fs::read_to_string(sdir.join("jobs.json")).unwrap()).unwrap();
    assert_eq!(
        rec["attacks/softmax1"]["jobs"],
        serde_json::json!(["102", "103"])
    );

    // Every job still queued: nothing is submitted again.
    std::fs::write(fake.join("alive"), "100\n101\n102\n103\n104\n105\n106\n").unwrap();
    let out = slurm();
    assert_eq!(calls().lines().count(), 7, "{out}");
    assert!(
        out.contains("queued or running as Slurm job 103")
            && out.contains("queued as Slurm job 106"),
        "{out}"
    );

    // Models and chunk 0 done here; nothing queued: chunk 1 alone, its merge, the rest.
    std::fs::write(fake.join("alive"), "").unwrap();
    ok(run(
        &["run", "t.yaml", "--stage", "models/softmax1"],
        d.path(),
    ));
    ok(run(
        &["run", "t.yaml", "--stage", "models/softmax2"],
        d.path(),
    ));
    let o = ok(run(
        &[
            "run",
            "t.yaml",
            "--stage",
            "attacks/softmax1",
            "--chunk",
            "0",
        ],
        d.path(),
    ));
    assert!(o.contains("attacks/softmax1 chunk 0: computed"), "{o}");
    let out = slurm();
    let c = calls();
    let new: Vec<&str> = c.lines().skip(7).collect();
    assert_eq!(new.len(), 5, "{out}\n{c}");
    let arr = std::fs::read_to_string(sdir.join("00-t.attacks.softmax1.chunks.sbatch")).unwrap();
    assert!(arr.contains("#SBATCH --array=1\n"), "{arr}");
    assert!(
        !new[0].contains("--dependency"),
        "models are done: {}",
        new[0]
    );
    assert!(
        out.contains("models/softmax1") && out.contains("done"),
        "{out}"
    );

    // A stage locked by a live process outside Slurm: neither it nor what reads it is submitted.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let lock = serde_json::json!({"stage": "attacks/softmax2", "host": host.trim(), "pid": std::process::id(),
        "slurm_job": null, "started_unix": now, "heartbeat_unix": now});
    let lp = d.path().join("runs/t/.locks/attacks__softmax2.lock");
    std::fs::write(&lp, lock.to_string()).unwrap();
    let out = slurm();
    std::fs::remove_file(&lp).unwrap();
    assert!(
        out.contains("outside Slurm") && out.contains("waits for attacks/softmax2"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("report ") && l.contains("not submitted")),
        "{out}"
    );
    let c = calls();
    let new: Vec<&str> = c.lines().skip(12).collect();
    assert_eq!(
        new.len(),
        2,
        "only attacks/softmax1's array and merge: {out}\n{c}"
    );

    // No sbatch at all.
    let empty = d.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = bin()
        .args(["slurm", "t.yaml"])
        .env("PATH", &empty)
        .current_dir(d.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains("sbatch not found: install Slurm's client or use blindspot run"),
        "{}",
        text(&o)
    );
}

/// Waits until `cond` holds (panics with `what` after `secs`).
fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spawn(args: &[&str], cwd: &Path, hold: Option<&str>) -> Child {
    let mut c = bin();
    if let Some(h) = hold {
        c.env("BLINDSPOT_TEST_HOLD_BEFORE_DONE", h);
    }
    c.args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Three chunk tasks of `b`'s attack at once, in a folder holding work of other inputs; their chunks
/// equal those of `a`'s one-process run.
fn chunk_tasks_at_once(a: &Path, b: &Path) {
    let stage = b.join("runs/t/attacks/softmax1");
    // Work of other inputs in the folder; three chunk tasks at once.
    std::fs::create_dir_all(stage.join("chunks")).unwrap();
    std::fs::write(
        stage.join(".started.json"),
        r#"{"stage":"attacks/softmax1","fingerprint":"old"}"#,
    )
    .unwrap();
    std::fs::write(stage.join("chunks/chunk-00001.json"), "old").unwrap();
    std::fs::write(stage.join("stale-output"), "old").unwrap();
    let tasks: Vec<Child> = (0..3)
        .map(|i| {
            let i = i.to_string();
            spawn(
                &[
                    "run",
                    "t.yaml",
                    "--stage",
                    "attacks/softmax1",
                    "--chunk",
                    &i,
                ],
                b,
                None,
            )
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let o = t.wait_with_output().unwrap();
        let t = ok(o);
        assert!(t.contains(&format!("chunk {i}: computed")), "{t}");
    }
    assert!(
        !stage.join("stale-output").exists(),
        "work of other inputs is cleared"
    );
    assert!(!stage.join(".done.json").exists() && !stage.join("summary.json").exists());
    for i in 0..3 {
        let f = format!("chunks/chunk-{i:05}.json");
        let read = |dir: &Path| {
            let mut v: Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join(&f)).unwrap()).unwrap();
            strip_json(&mut v);
            v
        };
        assert_eq!(
            read(&stage),
            read(&a.join("runs/t/attacks/softmax1")),
            "{f}"
        );
    }
    let o = ok(run(
        &[
            "run",
            "t.yaml",
            "--stage",
            "attacks/softmax1",
            "--chunk",
            "1",
        ],
        b,
    ));
    assert!(o.contains("chunk 1: already there"), "{o}");
}

/// Chunk tasks of one stage run at once (one of them clearing work of other inputs), a merge killed
/// with SIGKILL after writing its outputs resumes, and the result equals one `blindspot run`.
#[test]
fn chunk_tasks_at_once_and_a_killed_merge_give_one_process_outputs() {
    let d = tempfile::tempdir().unwrap();
    let yaml = EXP
        .replace("first: 20, batch: 10", "first: 30, batch: 10")
        .split("transfer:")
        .next()
        .unwrap()
        .to_string();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    for dir in [&a, &b] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("t.yaml"), &yaml).unwrap();
    }
    ok(run(&["run", "t.yaml"], &a));

    // Before its model: refused, nothing computed.
    let o = run(
        &[
            "run",
            "t.yaml",
            "--stage",
            "attacks/softmax1",
            "--chunk",
            "0",
        ],
        &b,
    );
    assert!(
        !o.status.success() && text(&o).contains("cannot run yet: models/softmax1"),
        "{}",
        text(&o)
    );
    assert!(!b.join("runs/t/attacks").exists());
    ok(run(&["run", "t.yaml", "--stage", "models/softmax1"], &b));
    let o = run(
        &[
            "run",
            "t.yaml",
            "--stage",
            "attacks/softmax1",
            "--chunk",
            "3",
        ],
        &b,
    );
    assert!(
        !o.status.success() && text(&o).contains("has 3 chunk(s)"),
        "{}",
        text(&o)
    );
    let o = run(
        &[
            "run",
            "t.yaml",
            "--stage",
            "models/softmax1",
            "--chunk",
            "0",
        ],
        &b,
    );
    assert!(
        !o.status.success() && text(&o).contains("not computed in chunks"),
        "{}",
        text(&o)
    );

    chunk_tasks_at_once(&a, &b);
    let stage = b.join("runs/t/attacks/softmax1");

    // The merge, killed after writing its outputs and before its done-marker.
    let mut merge = spawn(
        &["run", "t.yaml", "--stage", "attacks/softmax1"],
        &b,
        Some("attacks/softmax1"),
    );
    wait_for(120, "the merge's outputs", || {
        stage.join("summary.json").exists()
    });
    std::thread::sleep(Duration::from_millis(300));
    merge.kill().unwrap(); // SIGKILL
    merge.wait().unwrap();
    assert!(!stage.join(".done.json").exists());
    assert!(
        b.join("runs/t/.locks/attacks__softmax1.lock").exists(),
        "the killed merge's lock is left"
    );
    let st = ok(run(&["status", "t.yaml"], &b));
    assert!(
        st.lines()
            .any(|l| l.starts_with("attacks/softmax1") && l.contains("partial")),
        "{st}"
    );
    let o = ok(run(&["run", "t.yaml", "--stage", "attacks/softmax1"], &b));
    assert!(o.contains("attacks/softmax1: ran"), "{o}");
    let o = ok(run(&["run", "t.yaml"], &b));
    assert!(
        o.contains("trained: 2 | up to date: 2"),
        "only the second model's stages remained: {o}"
    );
    assert_same_run(&a.join("runs/t"), &b.join("runs/t"));
}

// ---- with a real cluster ----------------------------------------------------------------------------

/// The local one-node cluster, stopped (with any job the test submitted cancelled) when dropped, also
/// when the test fails.
struct Cluster {
    conf: String,
    jobs: std::cell::RefCell<Vec<String>>,
}

impl Cluster {
    fn start() -> Cluster {
        let script = root().join("scripts/slurm/local-cluster.sh");
        let o = Command::new(&script).arg("start").output().unwrap();
        match o.status.code() {
            Some(0) => {}
            Some(3) => panic!(
                "cannot run the Slurm end-to-end test (scripts/test.sh reports it as NOT RUN): {}",
                text(&o)
            ),
            _ => panic!("the local Slurm cluster did not start: {}", text(&o)),
        }
        let env =
            String::from_utf8(Command::new(&script).arg("env").output().unwrap().stdout).unwrap();
        let conf = env
            .trim()
            .trim_start_matches("export SLURM_CONF=")
            .trim_matches('\'')
            .to_string();
        Cluster {
            conf,
            jobs: Default::default(),
        }
    }

    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// The jobs recorded in a run's jobs.json, remembered for cancelling.
    fn recorded(&self, run: &Path) -> Vec<String> {
        let rec: Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("slurm/jobs.json")).unwrap())
                .unwrap();
        let ids: Vec<String> = rec
            .as_object()
            .unwrap()
            .values()
            .flat_map(|r| {
                r["jobs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|j| j.as_str().unwrap().to_string())
            })
            .collect();
        self.jobs.borrow_mut().extend(ids.iter().cloned());
        ids
    }

    /// Waits until none of `ids` is pending or running; returns each job's (or array task's) final state.
    fn wait(&self, ids: &[String], secs: u64) -> BTreeMap<String, String> {
        let list = ids.join(",");
        let squeue = |all: bool| {
            let mut c = self.cmd("squeue");
            c.args(["-h", "-o", "%i|%T", "-j", &list]);
            if all {
                c.args(["-t", "all"]);
            }
            String::from_utf8_lossy(&c.output().unwrap().stdout).into_owned()
        };
        let t = Instant::now();
        while !squeue(false).trim().is_empty() {
            assert!(
                t.elapsed() < Duration::from_secs(secs),
                "jobs still queued after {secs} s:\n{}",
                squeue(true)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        squeue(true)
            .lines()
            .filter_map(|l| l.split_once('|'))
            .map(|(i, s)| (i.to_string(), s.to_string()))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids = self.jobs.borrow().join(",");
        if !ids.is_empty() {
            let _ = self.cmd("scancel").arg(&ids).output();
        }
        let _ = Command::new(root().join("scripts/slurm/local-cluster.sh"))
            .arg("stop")
            .output();
    }
}

/// A small experiment through a real Slurm cluster equals a local `blindspot run` of the same YAML; a
/// job whose dependency Slurm does not know runs and refuses to compute; a merge job killed with SIGKILL
/// cancels what depends on it, and `blindspot slurm` again finishes the run with the same outputs.
#[test]
#[ignore = "needs root and a local Slurm cluster; scripts/test.sh runs it (cargo test --test slurm -- --ignored)"]
fn slurm_end_to_end_equals_a_local_run() {
    let t0 = Instant::now();
    let cluster = Cluster::start();
    let d = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = ["local", "slurm", "purged"]
        .iter()
        .map(|n| d.path().join(n))
        .collect();
    for dir in &dirs {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("t.yaml"), EXP).unwrap();
    }
    let (local, slurm, purged) = (&dirs[0], &dirs[1], &dirs[2]);
    ok(run(&["run", "t.yaml"], local));

    // A dependency Slurm does not know counts as satisfied: the job runs, and blindspot refuses it.
    let wrap = format!(
        "{} run t.yaml --stage attacks/softmax1",
        env!("CARGO_BIN_EXE_blindspot")
    );
    let o = cluster
        .cmd("sbatch")
        .args([
            "--parsable",
            "-c",
            "1",
            "--kill-on-invalid-dep=yes",
            "--dependency=afterok:99999999",
            "-o",
            "job.out",
            "--wrap",
            &wrap,
        ])
        .env("BLINDSPOT_MNIST", root().join("assets/mnist"))
        .current_dir(purged)
        .output()
        .unwrap();
    let id = ok(o).trim().to_string();
    cluster.jobs.borrow_mut().push(id.clone());
    let st = cluster.wait(std::slice::from_ref(&id), 120);
    assert_eq!(st[&id], "FAILED", "{st:?}");
    let log = std::fs::read_to_string(purged.join("job.out")).unwrap();
    assert!(log.contains("cannot run yet: models/softmax1"), "{log}");
    assert!(
        !purged.join("runs/t/attacks").exists(),
        "nothing computed from missing inputs"
    );

    // Submitted with the merge of attacks/softmax1 made to hold before its done-marker.
    let o = bin()
        .args(["slurm", "t.yaml"])
        .env("SLURM_CONF", &cluster.conf)
        .env("BLINDSPOT_TEST_HOLD_BEFORE_DONE", "attacks/softmax1")
        .current_dir(slurm)
        .output()
        .unwrap();
    let out = ok(o);
    let run_dir = slurm.join("runs/t");
    let ids = cluster.recorded(&run_dir);
    assert_eq!(ids.len(), 7, "{out}");
    let stage = run_dir.join("attacks/softmax1");
    let lock = run_dir.join(".locks/attacks__softmax1.lock");
    wait_for(240, "the merge job to hold", || {
        stage.join("summary.json").exists() && lock.exists()
    });
    std::thread::sleep(Duration::from_millis(300));
    let owner: Value = serde_json::from_str(&std::fs::read_to_string(&lock).unwrap()).unwrap();
    let pid = owner["pid"].as_u64().unwrap().to_string();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "blindspot", "the lock's owner is the merge");
    assert!(owner["slurm_job"].is_string(), "{owner}");
    assert!(Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap()
        .success());
    let st = cluster.wait(&ids, 240);
    let state = |job: &str| -> String {
        let rec: Value = serde_json::from_str(
            &std::fs::read_to_string(run_dir.join("slurm/jobs.json")).unwrap(),
        )
        .unwrap();
        let id = rec[job]["jobs"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        st.get(&id).cloned().unwrap_or_default()
    };
    assert_eq!(state("attacks/softmax1"), "FAILED", "{st:?}");
    assert_eq!(state("transfer/t2"), "CANCELLED", "{st:?}");
    assert_eq!(state("report"), "CANCELLED", "{st:?}");
    for job in ["models/softmax1", "models/softmax2", "attacks/softmax2"] {
        assert_eq!(state(job), "COMPLETED", "{job}: {st:?}");
    }
    assert!(!stage.join(".done.json").exists());

    // Again: only the merge (its chunks are there), the table and the report.
    let o = bin()
        .args(["slurm", "t.yaml"])
        .env("SLURM_CONF", &cluster.conf)
        .current_dir(slurm)
        .output()
        .unwrap();
    let out = ok(o);
    assert!(
        !out.contains("array of") && out.contains("attacks/softmax1  merge: submitted"),
        "{out}"
    );
    let ids: Vec<String> = cluster
        .recorded(&run_dir)
        .into_iter()
        .filter(|i| !ids.contains(i))
        .collect();
    assert_eq!(ids.len(), 3, "{out}");
    let st = cluster.wait(&ids, 240);
    assert!(st.values().all(|s| s == "COMPLETED"), "{st:?}");
    assert_same_run(&local.join("runs/t"), &run_dir);
    eprintln!("slurm e2e: {:.0} s", t0.elapsed().as_secs_f64());
    drop(cluster);
}
