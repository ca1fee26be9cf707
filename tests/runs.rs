//! Runs you can trust (issue 11): folders that stay inside the run folder, fingerprints from content, old
//! run folders refused, locks, and a run killed in the middle of a stage resuming to identical outputs.

mod common;
use common::{bin, run, text};
use std::path::Path;

/// A small experiment: one model, one attack in several chunks, a transfer table.
fn small(name: &str) -> String {
    format!(
        "name: {name}\nseed: 5\nmodels:\n  - name: softmax1\n    arch: {{kind: softmax}}\n    weight_decay: [1.0e-4]\n    optimizer: {{kind: lbfgs, max_iter: 15}}\nattacks:\n  - {{model: softmax1, spec: {{split: test, first: 40, batch: 10}}}}\ntransfer:\n  - {{name: t, examples: [softmax1], models: [softmax1]}}\n"
    )
}

/// Every file below `dir` (relative path → bytes), without the files whose content holds timings or
/// run-time state: done-markers, stage locks, logs of times.
fn contents(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, d: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if p.is_dir() {
                if !rel.ends_with(".locks") {
                    walk(root, &p, out);
                }
            } else if ![
                ".done.json",
                "summary.json",
                "attack.csv",
                "report.md",
                "model.json",
                "train_log.csv",
                "models.csv",
            ]
            .iter()
            .any(|f| rel.ends_with(f))
                && !rel.contains("/chunks/")
            {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn a_stage_folder_outside_the_run_folder_is_refused_and_nothing_is_lost() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("e.yaml"), small("e")).unwrap();
    assert!(run(&["run", "e.yaml"], d.path()).status.success());
    let before = contents(&d.path().join("runs/e"));
    assert!(before.contains_key("models/softmax1/weights.safetensors"));
    for (field, value) in [
        ("spectral: [{model: \"..\"}]", "spectral"),
        (
            "transfer:\n  - {name: \"..\", examples: [softmax1], models: [softmax1]}",
            "transfer",
        ),
        ("attacks:\n  - {model: softmax1, name: \"..\"}", "attacks"),
        ("units: [{model: \"/\", layer: x}]", "units"),
    ] {
        let yaml = format!(
            "{}{field}\n",
            small("e").split(&format!("{value}:")).next().unwrap()
        );
        std::fs::write(d.path().join("bad.yaml"), &yaml).unwrap();
        let o = run(&["run", "bad.yaml"], d.path());
        assert!(
            !o.status.success(),
            "{field}: must be refused\n{}",
            text(&o)
        );
        assert!(
            text(&o).contains("not a valid name")
                || text(&o).contains("not strictly inside")
                || text(&o).contains("neither a model"),
            "{field}: {}",
            text(&o)
        );
        assert_eq!(
            contents(&d.path().join("runs/e")),
            before,
            "{field}: the run folder changed"
        );
    }
}

#[test]
fn two_stages_in_one_folder_are_refused_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}  - {{model: softmax1, spec: {{split: train, first: 10}}}}\n",
        small("two").split("transfer:").next().unwrap()
    );
    std::fs::write(d.path().join("two.yaml"), yaml).unwrap();
    let o = run(&["run", "two.yaml"], d.path());
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("attacks/softmax1") && t.contains("name"), "{t}");
    assert!(
        !d.path().join("runs/two").exists(),
        "no work before the check"
    );
    // With a name each, both run.
    let yaml = format!(
        "{}  - {{model: softmax1, name: softmax1-train, spec: {{split: train, first: 10}}}}\n",
        small("two").split("transfer:").next().unwrap()
    );
    std::fs::write(d.path().join("two.yaml"), yaml).unwrap();
    let o = run(&["run", "two.yaml"], d.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(d
        .path()
        .join("runs/two/attacks/softmax1-train/adversarial.safetensors")
        .exists());
}

#[test]
fn changed_weights_rerun_every_stage_that_reads_them_and_nothing_else() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("e.yaml"), small("e")).unwrap();
    let o = run(&["run", "e.yaml"], d.path());
    assert!(o.status.success(), "{}", text(&o));
    // The attack's done-marker records its margin κ (the default) beside the rest of the provenance.
    let marker: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.path().join("runs/e/attacks/softmax1/.done.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        marker["provenance"]["min_margin"].as_f64(),
        Some(blindspot::attack::DEFAULT_MIN_MARGIN),
        "{marker}"
    );
    // Nothing changed: everything skipped, report rewritten.
    let o = run(&["run", "e.yaml"], d.path());
    assert!(
        text(&o).contains("trained: 0 | up to date: 3"),
        "{}",
        text(&o)
    );
    // One weight changed (the model stage itself stays finished for its config): the attack and the
    // transfer table read the weights, so both rerun; status says why before.
    let w = d.path().join("runs/e/models/softmax1/weights.safetensors");
    let mut t: std::collections::HashMap<String, tch::Tensor> = blindspot::io::read_safetensors(&w)
        .unwrap()
        .into_iter()
        .collect();
    let key = t.keys().find(|k| k.ends_with(".weight")).unwrap().clone();
    let fc = t.get_mut(&key).unwrap();
    let _ = fc.get(0).get(0).fill_(0.5);
    let named: Vec<(&str, &tch::Tensor)> = t.iter().map(|(k, v)| (k.as_str(), v)).collect();
    blindspot::io::write_safetensors(&w, &named).unwrap();
    let st = text(&run(&["status", "e.yaml"], d.path()));
    assert!(
        st.contains("attacks/softmax1") && st.contains("stale") && st.contains("model.weights"),
        "{st}"
    );
    let o = run(&["run", "e.yaml"], d.path());
    let t = text(&o);
    assert!(t.contains("trained: 2 | up to date: 1"), "{t}");
    assert!(
        t.contains("attacks/softmax1: running") && t.contains("transfer/t: running"),
        "{t}"
    );
}

#[test]
fn a_run_folder_of_an_earlier_version_is_refused_with_the_way_forward() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("e.yaml"), small("e")).unwrap();
    assert!(run(&["run", "e.yaml"], d.path()).status.success());
    std::fs::remove_file(d.path().join("runs/e/blindspot-run.json")).unwrap();
    let o = run(&["run", "e.yaml"], d.path());
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("earlier version") && t.contains("Move or delete"),
        "{t}"
    );
}

#[test]
fn a_locked_stage_is_skipped_and_a_dead_owner_is_taken_over() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("e.yaml"), small("e")).unwrap();
    let lock = d.path().join("runs/e/.locks/models__softmax1.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let owner = |host: &str, pid: u32| {
        serde_json::json!({"stage": "models/softmax1", "host": host, "pid": pid, "slurm_job": null,
            "started_unix": 0, "heartbeat_unix": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()})
    };
    // A live owner elsewhere (fresh heartbeat): the stage and everything after it waits.
    std::fs::write(&lock, owner("another-host", 1).to_string()).unwrap();
    let o = run(&["run", "e.yaml"], d.path());
    let t = text(&o);
    assert!(
        o.status.success() && t.contains("being run by another-host"),
        "{t}"
    );
    assert!(t.contains("report: not yet"), "{t}");
    // An owner on this host whose process is gone: taken over.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    std::fs::write(&lock, owner(host.trim(), 999_999_999).to_string()).unwrap();
    let o = run(&["run", "e.yaml"], d.path());
    assert!(
        text(&o).contains("report: runs/e/report.md"),
        "{}",
        text(&o)
    );
    assert!(!lock.exists(), "the lock is released");
}

#[test]
fn a_run_killed_in_the_middle_of_a_stage_resumes_to_identical_outputs() {
    let d = tempfile::tempdir().unwrap();
    // Many small chunks, so the attack stage is interrupted between chunks.
    let yaml = small("k").replace("first: 40, batch: 10", "first: 120, batch: 10");
    std::fs::write(d.path().join("k.yaml"), &yaml).unwrap();
    std::fs::write(
        d.path().join("ref.yaml"),
        yaml.replace("name: k", "name: ref"),
    )
    .unwrap();
    assert!(run(&["run", "ref.yaml"], d.path()).status.success());
    let mut child = bin()
        .args(["run", "k.yaml"])
        .current_dir(d.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let chunks = d.path().join("runs/k/attacks/softmax1/chunks");
    let t0 = std::time::Instant::now();
    loop {
        let n = std::fs::read_dir(&chunks).map(|r| r.count()).unwrap_or(0);
        if n >= 4 || t0.elapsed().as_secs() > 120 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    assert!(
        !d.path().join("runs/k/attacks/softmax1/.done.json").exists(),
        "the kill must land inside the attack stage"
    );
    let o = run(&["run", "k.yaml"], d.path());
    assert!(o.status.success(), "{}", text(&o));
    let (a, b) = (
        contents(&d.path().join("runs/ref")),
        contents(&d.path().join("runs/k")),
    );
    let strip = |m: &std::collections::BTreeMap<String, Vec<u8>>| {
        m.iter()
            .filter(|(k, _)| {
                !k.ends_with("config.resolved.yaml") && !k.ends_with("blindspot-run.json")
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    let (sa, sb) = (strip(&a), strip(&b));
    let differ: Vec<&String> = sa
        .iter()
        .zip(&sb)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| &x.0)
        .collect();
    assert_eq!(
        sa.iter().map(|x| &x.0).collect::<Vec<_>>(),
        sb.iter().map(|x| &x.0).collect::<Vec<_>>(),
        "the same files"
    );
    assert!(differ.is_empty(), "resumed outputs differ: {differ:?}");
    let csv = |p: &str| -> Vec<String> {
        std::fs::read_to_string(d.path().join(p))
            .unwrap()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                format!("{}{}", f[..8].join(","), f[9..].join(","))
            })
            .collect()
    };
    assert_eq!(
        csv("runs/ref/attacks/softmax1/attack.csv"),
        csv("runs/k/attacks/softmax1/attack.csv")
    );
}

#[test]
fn absurd_sizes_in_yaml_are_refused_with_the_field() {
    let d = tempfile::tempdir().unwrap();
    let base = small("s").split("attacks:").next().unwrap().to_string();
    for (stage, field) in [
        ("fig7: {models: [softmax1], images: 20000}", "fig7.images"),
        (
            "attacks:\n  - {model: softmax1, spec: {batch: 100000000}}",
            "attacks[0].spec.batch",
        ),
        (
            "units:\n  - {model: softmax1, layer: logits, random: 10000000}",
            "units[0].random",
        ),
        (
            "units:\n  - {model: softmax1, layer: logits, top: 0}",
            "units[0].top",
        ),
    ] {
        std::fs::write(d.path().join("s.yaml"), format!("{base}{stage}\n")).unwrap();
        let o = run(&["run", "s.yaml"], d.path());
        assert!(!o.status.success(), "{stage}");
        assert!(
            text(&o).contains(field) && text(&o).contains("out of range"),
            "{stage}: {}",
            text(&o)
        );
    }
    let big = base.replace("max_iter: 15}", "max_iter: 15}\n  - name: c\n    arch: {kind: conv, channels: 4, kernel: 5, hidden: 8, dropout: 0.5}\n    weight_decay: [0, 0, 0]\n    optimizer: {kind: adam, lr: 0.001, epochs: 1, batch_size: 5000000}");
    std::fs::write(d.path().join("s.yaml"), big).unwrap();
    let o = run(&["run", "s.yaml"], d.path());
    assert!(
        text(&o).contains("batch_size") && text(&o).contains("1..=1000000"),
        "{}",
        text(&o)
    );
}
