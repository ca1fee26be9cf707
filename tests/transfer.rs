//! Tables 2 and 4 (§4.2): the transfer table's cells against direct computation, amplification to an
//! exact distortion, Gaussian rows, and bad input.

use blindspot::attack::transfer::{transfer, transfer_checked, RowKind, Source, TransferSpec};
use blindspot::models::zoo::{presets, Layer, ZooModel};
use blindspot::models::Classifier;
use tch::{Device, Kind, Tensor};

fn model(name: &str, seed: i64, hidden: &[i64]) -> ZooModel {
    let arch = presets::mlp(hidden, Layer::Sigmoid);
    let p: i64 = arch.param_layout().iter().map(|p| p.numel).sum();
    tch::manual_seed(seed);
    let theta = Tensor::randn([p], (Kind::Float, Device::Cpu)) * 0.1;
    ZooModel::new(name, arch, theta, serde_json::json!({})).unwrap()
}

/// The `summary.json` an attack on `model` (saved at `path`, if any) writes beside its adversarials.
fn write_record(dir: &std::path::Path, model: &dyn Classifier, path: Option<&std::path::Path>) {
    let s = serde_json::json!({
        "model": model.name(), "split": "test", "targeted": false, "examples": 0, "successes": 0,
        "success_rate": 1.0, "mean_distortion": 0.0, "evaluations_per_image": 0.0,
        "images_per_second": 0.0, "seconds": 0.0, "device": "Cpu", "batch": 1, "settings": {},
        "model_path": path, "model_fingerprint": model.fingerprint().unwrap(),
    });
    std::fs::write(dir.join("summary.json"), s.to_string()).unwrap();
}

/// An attack-like file made for `own` (untargeted, recorded beside it): originals in [0.3, 0.7],
/// "adversarials" = original + r with ‖r‖ varying per example, labelled one class after `own`'s
/// prediction on them (so each is adversarial on `own`), the last example marked failed.
fn source(dir: &std::path::Path, n: i64, own: &dyn Classifier) -> (Source, Tensor, Tensor, Tensor) {
    tch::manual_seed(7);
    let x = Tensor::rand([n, 1, 28, 28], (Kind::Float, Device::Cpu)) * 0.4 + 0.3;
    let r = Tensor::randn([n, 1, 28, 28], (Kind::Float, Device::Cpu))
        * Tensor::linspace(0.005, 0.03, n, (Kind::Float, Device::Cpu)).view([n, 1, 1, 1]);
    let adv = &x + &r;
    let label = (own.logits(&adv).unwrap().argmax(1, false) + 1).remainder(10);
    let target = Tensor::full([n], -1, (Kind::Int64, Device::Cpu));
    let mut ok = vec![1u8; n as usize];
    ok[n as usize - 1] = 0;
    let success = Tensor::from_slice(&ok);
    let file = dir.join("adversarial.safetensors");
    blindspot::io::write_safetensors(
        &file,
        &[
            ("original", &x),
            ("adversarial", &adv),
            ("label", &label),
            ("target", &target),
            ("success", &success),
        ],
    )
    .unwrap();
    write_record(dir, own, None);
    (
        Source {
            name: "src".into(),
            file,
        },
        x,
        adv,
        label,
    )
}

#[test]
fn cells_match_direct_computation_and_amplification_is_exact() {
    let d = tempfile::tempdir().unwrap();
    let n = 50;
    let (a, b) = (model("a", 1, &[]), model("b", 2, &[20]));
    let (src, x, adv, label) = source(d.path(), n, &a);
    let cols: Vec<(String, &dyn Classifier)> = vec![("a".into(), &a), ("b".into(), &b)];
    let spec = TransferSpec {
        noise: vec![0.0, 0.2],
        amplify: vec![0.05],
        batch: 7,
        clip_noise: true,
    };
    let t = transfer(std::slice::from_ref(&src), &cols, &spec, 3).unwrap();
    assert_eq!(t.models, vec!["a", "b"]);
    let kinds: Vec<RowKind> = t.rows.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        vec![
            RowKind::Adversarial,
            RowKind::Amplified,
            RowKind::Gaussian,
            RowKind::Gaussian
        ]
    );
    // the failed example is left out; every other one is adversarial on its source `a`
    let m = n - 1;
    assert!(t.rows.iter().all(|r| r.examples == m && r.unverified == 0));
    assert_eq!(t.rows[0].errors[0], 1.0);
    let keep = Tensor::arange(m, (Kind::Int64, Device::Cpu));
    let (xs, advs, ls) = (
        x.index_select(0, &keep),
        adv.index_select(0, &keep),
        label.index_select(0, &keep),
    );
    // adversarial row: error = share of wrong predictions, computed directly
    for (j, mdl) in [&a as &dyn Classifier, &b].iter().enumerate() {
        let pred = mdl.logits(&advs).unwrap().argmax(1, false);
        let wrong = pred.ne_tensor(&ls).to_kind(Kind::Double).mean(Kind::Double);
        assert!((t.rows[0].errors[j] - wrong.double_value(&[])).abs() < 1e-12);
    }
    let dist = (&advs - &xs)
        .reshape([m, -1])
        .to_kind(Kind::Double)
        .square()
        .mean_dim(Some([1i64].as_slice()), false, Kind::Double)
        .sqrt()
        .mean(Kind::Double)
        .double_value(&[]);
    assert!((t.rows[0].distortion - dist).abs() < 1e-9);
    // amplified: every perturbation scaled to distortion 0.05 (no pixel leaves [0, 1] here)
    assert!(
        (t.rows[1].distortion - 0.05).abs() < 1e-6,
        "{}",
        t.rows[1].distortion
    );
    assert_eq!(t.rows[1].param, Some(0.05));
    // σ = 0: the clean originals, distortion 0
    assert_eq!(t.rows[2].distortion, 0.0);
    for (j, mdl) in [&a as &dyn Classifier, &b].iter().enumerate() {
        let acc = blindspot::models::classifier::accuracy(*mdl, &xs, &ls, 100).unwrap();
        assert!((t.rows[2].errors[j] - (1.0 - acc)).abs() < 1e-12);
    }
    // σ = 0.2, clipped: distortion below σ but near it; deterministic in the seed
    assert!(t.rows[3].distortion > 0.15 && t.rows[3].distortion < 0.2);
    let again = transfer(std::slice::from_ref(&src), &cols, &spec, 3).unwrap();
    assert_eq!(again.rows[3].errors, t.rows[3].errors);
    assert_eq!(again.rows[3].distortion, t.rows[3].distortion);
    let other = transfer(std::slice::from_ref(&src), &cols, &spec, 4).unwrap();
    assert_ne!(other.rows[3].distortion, t.rows[3].distortion);
    // unclipped noise: distortion σ (up to sampling), as the paper's tables list it
    let raw = TransferSpec {
        clip_noise: false,
        ..spec.clone()
    };
    let u = transfer(std::slice::from_ref(&src), &cols, &raw, 3).unwrap();
    assert!(
        (u.rows[3].distortion - 0.2).abs() < 0.005,
        "{}",
        u.rows[3].distortion
    );
    assert!(!u.clip_noise && t.clip_noise);
}

#[test]
fn bad_input_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let a = model("a", 1, &[]);
    let (src, ..) = source(d.path(), 5, &a);
    let cols: Vec<(String, &dyn Classifier)> = vec![("a".into(), &a)];
    for (spec, want) in [
        (
            TransferSpec {
                noise: vec![-1.0],
                ..Default::default()
            },
            "noise",
        ),
        (
            TransferSpec {
                amplify: vec![0.0],
                ..Default::default()
            },
            "amplify",
        ),
    ] {
        let e = transfer(std::slice::from_ref(&src), &cols, &spec, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e}");
    }
    // the error of a table whose one row is the file `name` holding `tensors`
    let error_for = |name: &str, tensors: &[(&str, &Tensor)]| {
        let sub = d.path().join(name.replace('.', "_"));
        std::fs::create_dir_all(&sub).unwrap();
        write_record(&sub, &a, None);
        let file = sub.join(name);
        blindspot::io::write_safetensors(&file, tensors).unwrap();
        transfer(
            &[Source {
                name: name.into(),
                file,
            }],
            &cols,
            &TransferSpec::default(),
            0,
        )
        .unwrap_err()
        .to_string()
    };
    // a file that is not an attack's output
    let e = error_for(
        "bad.safetensors",
        &[("x", &Tensor::zeros([2], (Kind::Float, Device::Cpu)))],
    );
    assert!(
        e.contains("bad.safetensors") && e.contains("original"),
        "{e}"
    );
    // examples of another shape than the model's input
    let x = Tensor::zeros([3, 1, 8, 8], (Kind::Float, Device::Cpu));
    let l = Tensor::zeros([3], (Kind::Int64, Device::Cpu));
    let s = Tensor::ones([3], (Kind::Uint8, Device::Cpu));
    let e = error_for(
        "odd.safetensors",
        &[
            ("original", &x),
            ("adversarial", &(&x + 0.1)),
            ("label", &l),
            ("success", &s),
        ],
    );
    assert!(e.contains("do not fit model `a`"), "{e}");
}

/// Every row is re-verified on the model its adversarials were made for: a stored success that is not
/// adversarial there is left out (and counted); a model with other weights than the recorded ones is
/// refused, whether given or found at the recorded path; a file with no record needs its model given.
#[test]
fn rows_are_reverified_on_their_source_and_other_weights_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (model("a", 1, &[]), model("b", 2, &[20]));
    let (src, _, adv, _) = source(d.path(), 10, &a);
    // example 0's label becomes a's prediction on its adversarial: not adversarial any more
    let map: std::collections::HashMap<String, Tensor> = blindspot::io::read_safetensors(&src.file)
        .unwrap()
        .into_iter()
        .collect();
    let p0 = a.logits(&adv.narrow(0, 0, 1)).unwrap().argmax(1, false);
    map["label"].narrow(0, 0, 1).copy_(&p0);
    let named: Vec<(&str, &Tensor)> = map.iter().map(|(k, v)| (k.as_str(), v)).collect();
    blindspot::io::write_safetensors(&src.file, &named).unwrap();
    let spec = TransferSpec::default();
    let cols: Vec<(String, &dyn Classifier)> = vec![("a".into(), &a), ("b".into(), &b)];
    let t = transfer(std::slice::from_ref(&src), &cols, &spec, 0).unwrap();
    assert_eq!((t.rows[0].examples, t.rows[0].unverified), (8, 1));
    assert_eq!(t.rows[0].errors[0], 1.0, "every kept row fools its source");
    // the source given explicitly, with other weights: refused
    let e = transfer_checked(
        std::slice::from_ref(&src),
        &[Some(&b as &dyn Classifier)],
        &cols,
        &spec,
        0,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("made for model weights") && e.contains("`b`"),
        "{e}"
    );
    // the source not among the columns: loaded from the recorded path
    let only_b: Vec<(String, &dyn Classifier)> = vec![("b".into(), &b)];
    let apath = d.path().join("model-a");
    a.save(&apath).unwrap();
    write_record(d.path(), &a, Some(&apath));
    let t = transfer(std::slice::from_ref(&src), &only_b, &spec, 0).unwrap();
    assert_eq!((t.rows[0].examples, t.rows[0].unverified), (8, 1));
    // ... and refused when that path now holds other weights
    let a2 = model("a", 9, &[]);
    a2.save(&apath).unwrap();
    let e = transfer(std::slice::from_ref(&src), &only_b, &spec, 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("made for model weights") && e.contains("recorded model"),
        "{e}"
    );
    // no record: the model must be given; given, the row is re-verified on it
    std::fs::remove_file(d.path().join("summary.json")).unwrap();
    let e = transfer(std::slice::from_ref(&src), &cols, &spec, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no record of the model"), "{e}");
    let t = transfer_checked(
        std::slice::from_ref(&src),
        &[Some(&a as &dyn Classifier)],
        &cols,
        &spec,
        0,
    )
    .unwrap();
    assert_eq!((t.rows[0].examples, t.rows[0].unverified), (8, 1));
}
