//! End-to-end tests of the `blindspot` command line on small data: run (resumable), train, eval, errors,
//! determinism, and the model format read back by PyTorch.

mod common;
use common::{root, run, text};
use std::process::Command;

const TINY: &str = "name: tiny\nseed: 5\nmodels:\n  - name: softmax1\n    arch: {kind: softmax}\n    weight_decay: [1.0e-4]\n    optimizer: {kind: lbfgs, max_iter: 15}\n";

#[test]
fn version_and_help_are_complete() {
    let d = tempfile::tempdir().unwrap();
    let o = run(&["--version"], d.path());
    assert!(o.status.success());
    assert!(text(&o).contains(env!("CARGO_PKG_VERSION")));
    for sub in ["run", "train", "eval", "bench", "transfer"] {
        let o = run(&[sub, "--help"], d.path());
        assert!(o.status.success(), "{sub} --help failed");
        let t = text(&o);
        assert!(
            t.contains("Usage:") && t.len() > 200,
            "{sub} help too thin: {t}"
        );
    }
}

#[test]
fn run_is_resumable_and_rerun_skips() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("tiny.yaml"), TINY).unwrap();
    let o = run(&["run", "tiny.yaml"], d.path());
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("trained: 1 | up to date: 0"), "{t}");
    let rd = d.path().join("runs/tiny");
    for f in [
        "report.md",
        "models.csv",
        "config.resolved.yaml",
        "data/split.json",
        "models/softmax1/model.json",
        "models/softmax1/weights.safetensors",
        "models/softmax1/train_log.csv",
    ] {
        assert!(rd.join(f).exists(), "missing {f}");
    }
    let report = std::fs::read_to_string(rd.join("report.md")).unwrap();
    assert!(
        report.contains("| softmax1 |") && report.contains("7.40%"),
        "paper value beside ours: {report}"
    );
    let o = run(&["run", "tiny.yaml"], d.path());
    assert!(
        text(&o).contains("trained: 0 | up to date: 1"),
        "{}",
        text(&o)
    );
    // a changed configuration retrains
    std::fs::write(
        d.path().join("tiny.yaml"),
        TINY.replace("max_iter: 15", "max_iter: 16"),
    )
    .unwrap();
    let o = run(&["run", "tiny.yaml"], d.path());
    assert!(
        text(&o).contains("trained: 1 | up to date: 0"),
        "{}",
        text(&o)
    );
    // an interrupted stage (no .done.json) is redone
    std::fs::remove_file(rd.join("models/softmax1/.done.json")).unwrap();
    let o = run(&["run", "tiny.yaml"], d.path());
    assert!(
        text(&o).contains("trained: 1 | up to date: 0"),
        "{}",
        text(&o)
    );
    // one stage (as a scheduler job runs it), an unknown stage, and the status of every stage
    let o = run(
        &["run", "tiny.yaml", "--stage", "models/softmax1"],
        d.path(),
    );
    assert!(
        o.status.success() && text(&o).contains("models/softmax1: up to date"),
        "{}",
        text(&o)
    );
    let o = run(&["run", "tiny.yaml", "--stage", "models/nope"], d.path());
    assert!(
        !o.status.success() && text(&o).contains("its stages are: models/softmax1"),
        "{}",
        text(&o)
    );
    let o = run(&["status", "tiny.yaml"], d.path());
    assert!(
        o.status.success() && text(&o).contains("models/softmax1") && text(&o).contains("done"),
        "{}",
        text(&o)
    );
}

#[test]
fn train_eval_and_same_seed_gives_identical_weights() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("tiny.yaml"), TINY).unwrap();
    for out in ["a", "b"] {
        let o = run(
            &["train", "tiny.yaml", "--model", "softmax1", "--out", out],
            d.path(),
        );
        assert!(o.status.success(), "{}", text(&o));
    }
    let a = std::fs::read(d.path().join("a/weights.safetensors")).unwrap();
    let b = std::fs::read(d.path().join("b/weights.safetensors")).unwrap();
    assert!(a == b, "same seed on CPU must give bit-identical weights");
    let o = run(
        &[
            "train",
            "tiny.yaml",
            "--model",
            "softmax1",
            "--out",
            "c",
            "--seed",
            "6",
        ],
        d.path(),
    );
    assert!(o.status.success());
    assert!(
        std::fs::read(d.path().join("c/weights.safetensors")).unwrap() != a,
        "another seed, other weights"
    );

    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("a/model.json")).unwrap())
            .unwrap();
    let recorded = rec["errors"]["test"].as_f64().unwrap();
    let o = run(&["eval", "--model", "a", "--split", "test"], d.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("error {:.4}%", 100.0 * recorded)),
        "{} vs {recorded}",
        text(&o)
    );
    for split in ["train", "p1", "p2"] {
        let o = run(&["eval", "--model", "a", "--split", split], d.path());
        assert!(o.status.success(), "{split}: {}", text(&o));
    }
    let o = run(&["train", "tiny.yaml", "--model", "nope"], d.path());
    assert!(
        !o.status.success() && text(&o).contains("softmax1"),
        "{}",
        text(&o)
    );

    // the documented PyTorch loader reads the same model and finds the same error
    let py = root().join(".venv/bin/python");
    if py.exists() {
        let o = Command::new(&py)
            .args([
                root().join("scripts/load_in_pytorch.py").to_str().unwrap(),
                "a",
                "--json",
                "--mnist",
            ])
            .arg(root().join("assets/mnist"))
            .current_dir(d.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(
            (v["test_error"].as_f64().unwrap() - recorded).abs() < 1.5e-4,
            "PyTorch {v} vs ours {recorded}"
        );
    }
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    let check = |args: &[&str], needle: &str| {
        let o = run(args, d.path());
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {t}");
        assert!(t.contains(needle), "{args:?}: expected `{needle}` in: {t}");
        assert!(!t.contains("panicked"), "{args:?} panicked: {t}");
    };
    check(
        &["eval", "--model", "missing-dir"],
        "model folder not found",
    );
    std::fs::write(
        d.path().join("bad.yaml"),
        TINY.replace("seed: 5", "seed: 5\ncolour: red"),
    )
    .unwrap();
    check(&["run", "bad.yaml"], "unknown field `colour`");
    check(&["run", "nonexistent.yaml"], "nonexistent.yaml");
    std::fs::write(d.path().join("tiny.yaml"), TINY).unwrap();
    if !tch::Cuda::is_available() {
        check(&["run", "tiny.yaml", "--device", "cuda"], "no CUDA device");
        check(
            &["eval", "--model", "x", "--device", "cuda:0"],
            "no CUDA device",
        );
    }
    check(
        &["eval", "--model", "x", "--device", "tpu"],
        "unknown device",
    );
}

/// A retrained model must not inherit the adversarials made for its old weights: the attack stage that
/// follows it starts over (its resumable chunks belong to the old weights), and gives what a fresh run
/// gives; the attack command refuses an output folder made with other weights.
#[test]
fn retrained_model_gets_a_fresh_attack() {
    let d = tempfile::tempdir().unwrap();
    let with_attack = |name: &str, iters: u32| {
        format!(
            "{}attacks:\n  - {{model: softmax1, spec: {{split: test, first: 20, batch: 10}}}}\n",
            TINY.replace("name: tiny", &format!("name: {name}"))
                .replace("max_iter: 15", &format!("max_iter: {iters}"))
        )
    };
    std::fs::write(d.path().join("a.yaml"), with_attack("a", 3)).unwrap();
    let o = run(&["run", "a.yaml"], d.path());
    assert!(o.status.success(), "{}", text(&o));
    let old = std::fs::read_to_string(d.path().join("runs/a/attacks/softmax1/attack.csv")).unwrap();
    // same run name, model trained further: model and attack both rerun
    std::fs::write(d.path().join("a.yaml"), with_attack("a", 15)).unwrap();
    let o = run(&["run", "a.yaml"], d.path());
    assert!(o.status.success(), "{}", text(&o));
    let rerun =
        std::fs::read_to_string(d.path().join("runs/a/attacks/softmax1/attack.csv")).unwrap();
    std::fs::write(d.path().join("b.yaml"), with_attack("b", 15)).unwrap();
    let o = run(&["run", "b.yaml"], d.path());
    assert!(o.status.success(), "{}", text(&o));
    let fresh =
        std::fs::read_to_string(d.path().join("runs/b/attacks/softmax1/attack.csv")).unwrap();
    assert_ne!(old, fresh, "the two models should give different attacks");
    // per-image seconds differ between runs; compare everything else
    let cols = |s: &str| -> Vec<Vec<String>> {
        let mut lines = s.lines();
        let head: Vec<&str> = lines.next().unwrap().split(',').collect();
        let drop = head.iter().position(|h| *h == "seconds");
        lines
            .map(|l| {
                l.split(',')
                    .enumerate()
                    .filter(|(i, _)| Some(*i) != drop)
                    .map(|(_, x)| x.to_string())
                    .collect()
            })
            .collect()
    };
    assert_eq!(
        cols(&rerun),
        cols(&fresh),
        "the rerun attack must be computed for the retrained weights"
    );
    // the attack command: an output folder made for other weights is refused
    let attack_into_b = |model: &str| {
        run(
            &[
                "attack",
                "--model",
                model,
                "--split",
                "test",
                "--first",
                "20",
                "--batch",
                "10",
                "--out",
                "runs/b/attacks/softmax1",
            ],
            d.path(),
        )
    };
    let o = attack_into_b("runs/a/models/softmax1");
    let t = text(&o);
    assert!(o.status.success(), "same weights resume: {t}");
    std::fs::write(d.path().join("c.yaml"), with_attack("c", 4)).unwrap();
    let o = run(&["run", "c.yaml"], d.path());
    assert!(o.status.success(), "{}", text(&o));
    let o = attack_into_b("runs/c/models/softmax1");
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("weights"),
        "other weights must be refused: {t}"
    );
}

/// Tables 2 and 4 as a stage of `blindspot run` and as `blindspot transfer`: every verified adversarial
/// fools its own model (diagonal 100%), the command gives the stage's numbers, bad references are errors.
#[test]
fn transfer_stage_and_command() {
    let d = tempfile::tempdir().unwrap();
    let yaml = "name: t\nseed: 5\nmodels:\n  - name: softmax1\n    arch: {kind: softmax}\n    weight_decay: [1.0e-4]\n    optimizer: {kind: lbfgs, max_iter: 15}\n  - name: softmax2\n    arch: {kind: softmax}\n    weight_decay: [1.0e-2]\n    optimizer: {kind: lbfgs, max_iter: 15}\nattacks:\n  - {model: softmax1, spec: {split: test, first: 30, batch: 30}}\n  - {model: softmax2, spec: {split: test, first: 30, batch: 30}}\ntransfer:\n  - {name: table2, examples: [softmax1, softmax2], models: [softmax1, softmax2], spec: {noise: [0.1], amplify: [0.1]}}\n";
    std::fs::write(d.path().join("t.yaml"), yaml).unwrap();
    let o = run(&["run", "t.yaml"], d.path());
    assert!(o.status.success(), "{}", text(&o));
    let rd = d.path().join("runs/t");
    let csv = std::fs::read_to_string(rd.join("transfer/table2/transfer.csv")).unwrap();
    let rows: Vec<Vec<String>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    // kind, source, param, examples, distortion, softmax1, softmax2
    assert_eq!(rows.len(), 2 + 2 + 1, "{csv}");
    assert_eq!(rows[0][..2], ["adversarial", "softmax1"]);
    assert_eq!(
        rows[0][5], "1",
        "own model: every verified adversarial is misclassified"
    );
    assert_eq!(rows[1][..2], ["adversarial", "softmax2"]);
    assert_eq!(rows[1][6], "1");
    assert_eq!(rows[4][0], "gaussian");
    let report = std::fs::read_to_string(rd.join("report.md")).unwrap();
    assert!(
        report.contains("Cross-model generalisation: table2") && report.contains("(11.7%)"),
        "paper value beside ours: {report}"
    );
    // the command: same adversarial rows as the stage
    let o = run(
        &[
            "transfer",
            "--adversarials",
            "runs/t/attacks/softmax1",
            "runs/t/attacks/softmax2",
            "--models",
            "runs/t/models/softmax1",
            "runs/t/models/softmax2",
            "--out",
            "x",
        ],
        d.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let csv2 = std::fs::read_to_string(d.path().join("x/transfer.csv")).unwrap();
    let first2: Vec<&str> = csv2.lines().take(3).collect();
    let first: Vec<&str> = csv.lines().take(3).collect();
    assert_eq!(first, first2);
    // bad input: a folder without adversarials; an unknown row in YAML
    let o = run(
        &[
            "transfer",
            "--adversarials",
            "runs/t/models",
            "--models",
            "runs/t/models/softmax1",
            "--out",
            "y",
        ],
        d.path(),
    );
    assert!(!o.status.success() && text(&o).contains("adversarial.safetensors"));
    std::fs::write(
        d.path().join("bad.yaml"),
        yaml.replace(
            "examples: [softmax1, softmax2]",
            "examples: [softmax1, softmax3]",
        ),
    )
    .unwrap();
    let o = run(&["run", "bad.yaml"], d.path());
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("transfer[0].examples[1]") && t.contains("softmax3"),
        "{t}"
    );
}

#[test]
fn spectral_command_and_stage() {
    let d = tempfile::tempdir().unwrap();
    let fx = root().join("tests/fixtures/spectral");
    let (model, spec) = (fx.join("custom.pt"), fx.join("custom.yaml"));
    let (model, spec) = (model.to_str().unwrap(), spec.to_str().unwrap());
    let o = run(
        &[
            "spectral",
            "--model",
            model,
            "--spec",
            spec,
            "--input-shape",
            "4,23,19",
            "--out",
            "sp",
            "--mode",
            "circular",
            "--ascent-steps",
            "2",
        ],
        d.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("layer rows, product bound (FFT, guaranteed)") && t.contains("-> sp/bounds.csv"),
        "{t}"
    );
    for f in ["bounds.csv", "bounds.json", "table5.md", "spectrum.png"] {
        assert!(d.path().join("sp").join(f).exists(), "missing {f}");
    }
    // An unknown mode is a usage error that lists the modes.
    let o = run(
        &[
            "spectral", "--model", model, "--out", "x", "--mode", "diagonal",
        ],
        d.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("[possible values: circular, zero, both]"));
    // A bad --input-shape is an error naming the option.
    let o = run(
        &[
            "spectral",
            "--model",
            model,
            "--out",
            "x",
            "--input-shape",
            "4,x",
        ],
        d.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("--input-shape `4,x`"), "{}", text(&o));
    // The same analysis as an experiment stage: outputs in the stage folder, its table in the report.
    let yaml = format!(
        "name: sp\nmodels: []\nspectral:\n  - {{model: {model}, spec: {spec}, input_shape: \"4,23,19\", mode: zero}}\n"
    );
    std::fs::write(d.path().join("sp.yaml"), yaml).unwrap();
    let o = run(&["run", "sp.yaml"], d.path());
    assert!(o.status.success(), "{}", text(&o));
    let stage = d.path().join("runs/sp/spectral/custom");
    for f in ["bounds.csv", "bounds.json", "table5.md", "spectrum.png"] {
        assert!(stage.join(f).exists(), "missing {f}");
    }
    let report = std::fs::read_to_string(d.path().join("runs/sp/report.md")).unwrap();
    assert!(report.contains("## Spectral bounds of"), "{report}");
    assert!(
        report.contains("iterative") || report.contains("zero pad"),
        "{report}"
    );
}

#[test]
fn units_command_and_stage() {
    let d = tempfile::tempdir().unwrap();
    let model = root().join("tests/fixtures/units/tiny_conv.pt");
    let model = model.to_str().unwrap();
    let o = run(&["units", "--model", model, "--list-layers"], d.path());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "conv1\npool1\nfc1\nlogits\n"
    );
    let args = [
        "units",
        "--model",
        model,
        "--layer",
        "fc1",
        "--units",
        "4",
        "--random",
        "4",
        "--top",
        "3",
        "--fig-rows",
        "2",
        "--fig-cols",
        "3",
        "--seed",
        "2",
        "--out",
        "u",
    ];
    let o = run(&args, d.path());
    assert!(o.status.success(), "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        t.starts_with("[fc1] ") && t.contains("tiny_conv: layer fc1 over 10000 images"),
        "{t}"
    );
    for f in [
        "topk.csv",
        "metrics.csv",
        "summary.json",
        "directions.safetensors",
        "figures.safetensors",
        "figures.json",
        "unit.png",
        "random.png",
    ] {
        assert!(d.path().join("u").join(f).is_file(), "missing {f}");
    }
    // The stage: the same analysis (same seed), the same files.
    let yaml = format!(
        "name: u\nseed: 2\nmodels: []\nunits:\n  - {{model: {model}, layer: fc1, units: \"4\", random: 4, top: 3}}\n"
    );
    std::fs::write(d.path().join("u.yaml"), yaml).unwrap();
    let o = run(&["run", "u.yaml"], d.path());
    assert!(o.status.success(), "{}", text(&o));
    let stage = d.path().join("runs/u/units/tiny_conv-fc1");
    for f in ["topk.csv", "metrics.csv", "directions.safetensors"] {
        assert_eq!(
            std::fs::read(stage.join(f)).unwrap(),
            std::fs::read(d.path().join("u").join(f)).unwrap(),
            "{f}"
        );
    }
    assert!(stage.join("unit.png").is_file() && stage.join("random.png").is_file());
    // Errors: one line, exit 1 (2 for usage errors).
    let o = run(&["units", "--model", model, "--out", "x"], d.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("available layers: conv1, pool1, fc1, logits"));
    let o = run(&args.map(|a| if a == "3" { "0" } else { a }), d.path());
    assert!(text(&o).contains("must be at least 1"), "{}", text(&o));
    let mut bad = args.to_vec();
    bad.extend(["--on-bad-image", "maybe"]);
    let o = run(&bad, d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("[possible values: skip, fail]"),
        "{}",
        text(&o)
    );
    std::fs::write(
        d.path().join("bad.yaml"),
        format!("name: b\nmodels: []\nunits:\n  - {{model: {model}, layer: fc1, units: many}}\n"),
    )
    .unwrap();
    let o = run(&["run", "bad.yaml"], d.path());
    assert!(
        text(&o).contains("field `units`: `many`: expected a number or `all`"),
        "{}",
        text(&o)
    );
}
