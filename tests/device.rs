//! The device suite (issue 15): the device-sensitive paths (attack batch, verification, transfer, units
//! scan, spectral bounds of a small net, training a tiny model, Fig 7, evaluation, libtorch's
//! deterministic mode) run on the device named by `BLINDSPOT_TEST_DEVICE` (`cpu` when unset; `cuda`,
//! `cuda:N`), with inputs deliberately left on the CPU so that a missing transfer fails here.
//!
//! CUDA-only checks (CPU vs CUDA agreement, repeatability on a GPU, refusing a GPU that is not there) are
//! `#[ignore = "needs a CUDA device"]`: a plain `cargo test` skips them and `scripts/test_device.sh`
//! prints one `NOT RUN` line for each unless `BLINDSPOT_TEST_DEVICE` names a GPU, in which case it runs
//! them (`--include-ignored`). Run without a GPU, each of them fails: none can pass vacuously.
//!
//! Paths: fixtures and MNIST are found from the working directory when it is a blindspot checkout (a
//! test binary carried to another machine is run from the repository root there), else from the source
//! tree this binary was built in.

mod common;

use blindspot::attack::{attack_batch, verify, AttackSettings};
use blindspot::models::zoo::{presets, Layer, ZooModel};
use blindspot::models::Classifier;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};
const K: f64 = blindspot::attack::DEFAULT_MIN_MARGIN; // the margin κ of every verification

// ------------------------------------------------------------------------------------------- helpers

/// The device under test: `BLINDSPOT_TEST_DEVICE`, default `cpu`. A named GPU that is not there is a
/// failure, not a quiet fallback to the CPU.
fn dev() -> Device {
    let name = std::env::var("BLINDSPOT_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    blindspot::device::parse_device(&name)
        .unwrap_or_else(|e| panic!("BLINDSPOT_TEST_DEVICE={name}: {e}"))
}

/// The GPU of a CUDA-only check: the device under test if it is one, else `cuda:0`; panics when libtorch
/// sees no GPU, so that such a check never passes without one.
fn cuda() -> Device {
    let d = match dev() {
        d @ Device::Cuda(_) => d,
        _ => Device::Cuda(0),
    };
    assert!(
        tch::Cuda::is_available(),
        "needs a CUDA device: libtorch sees {} GPUs (this check must not pass without one)",
        tch::Cuda::device_count()
    );
    d
}

fn root() -> PathBuf {
    let here = PathBuf::from(".");
    if here.join("tests/fixtures").is_dir() && here.join("assets/mnist").is_dir() {
        here
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }
}

fn mnist_test() -> blindspot::data::mnist::Mnist {
    blindspot::data::mnist::load(
        &root().join("assets/mnist"),
        blindspot::data::mnist::Split::Test,
    )
    .unwrap()
}

/// The linear fixture (tests/common/linear.rs) with the model on `device`: (model, x [m, 1, 4, 4],
/// labels, targets, minima), inputs on the CPU.
fn linear_fixture(device: Device) -> (ZooModel, Tensor, Tensor, Tensor, Vec<f64>) {
    let fx = common::linear::linear_fixture(&root(), device);
    (fx.model, fx.x, fx.labels, fx.targets, fx.min_distortion)
}

/// A random 784-`hidden`-10 sigmoid MLP (weights drawn on the CPU from `seed`) on `device`.
fn mlp(name: &str, seed: i64, hidden: &[i64], device: Device) -> ZooModel {
    let arch = presets::mlp(hidden, Layer::Sigmoid);
    let p: i64 = arch.param_layout().iter().map(|p| p.numel).sum();
    tch::manual_seed(seed);
    let theta = (Tensor::randn([p], (Kind::Float, Device::Cpu)) * 0.1).to_device(device);
    ZooModel::new(name, arch, theta, serde_json::json!({})).unwrap()
}

/// Random targets ≠ label for `labels` [n] (seed 0), on the CPU.
fn targets_for(labels: &Tensor) -> Tensor {
    let l = Vec::<i64>::try_from(labels).unwrap();
    Tensor::from_slice(&blindspot::attack::random_targets(&l, 10, 0))
}

// ----------------------------------------------------------------- device-sensitive paths (any device)

#[test]
fn attack_batch_on_the_device_finds_verified_near_minimal_adversarials() {
    let d = dev();
    let (m, x, labels, targets, minima) = linear_fixture(d);
    let out = attack_batch(&m, &x, &labels, Some(&targets), &AttackSettings::default()).unwrap();
    assert_eq!(
        out.adversarial.device(),
        d,
        "the attack works on the model's device"
    );
    let ver = verify(&m, &x, &out.adversarial, &labels, Some(&targets), K).unwrap();
    for (j, (v, min)) in ver.iter().zip(&minima).enumerate() {
        let (ok, dist, why) = (v.ok, &v.distortion, &v.reason);
        assert!(out.success[j] && ok, "example {j}: {why:?}");
        assert!(
            *dist >= min * (1.0 - 1e-3) - 1e-6 && *dist <= min * 1.05 + 2e-4,
            "example {j}: {dist} vs exact minimum {min}"
        );
    }
}

#[test]
fn verification_on_the_device_rejects_out_of_box_and_wrong_class() {
    let d = dev();
    let (m, x, labels, targets, _) = linear_fixture(d);
    // Originals on the CPU, "adversarials" on the device: verification moves what it needs.
    let ver = verify(&m, &x, &x.to_device(d), &labels, Some(&targets), K).unwrap();
    assert!(ver.iter().all(|v| !v.ok && v.distortion == 0.0));
    let out = attack_batch(&m, &x, &labels, Some(&targets), &AttackSettings::default()).unwrap();
    let bad = out.adversarial.copy();
    let _ = bad.get(0).get(0).get(0).get(0).fill_(1.0 + 1e-6);
    let ver = verify(&m, &x, &bad, &labels.to_device(d), Some(&targets), K).unwrap();
    assert!(!ver[0].ok && ver[0].reason.as_deref().unwrap().contains("outside"));
    assert!(ver[1..].iter().all(|v| v.ok));
}

#[test]
fn untargeted_attack_and_evaluation_on_the_device() {
    let d = dev();
    let m = mlp("mlp", 1, &[32], d);
    let t = mnist_test();
    let (x, y) = (t.images.narrow(0, 0, 64), t.labels.narrow(0, 0, 64));
    let out = attack_batch(&m, &x, &y, None, &AttackSettings::default()).unwrap();
    let ver = verify(&m, &x, &out.adversarial, &y, None, K).unwrap();
    assert!(ver.iter().zip(&out.success).all(|(v, s)| v.ok == *s));
    assert!(out.success.iter().filter(|s| **s).count() >= 60);
    // Evaluation: predictions come back to the CPU and compare with CPU labels.
    let err = blindspot::train::error_rate(&m, &t.images, &t.labels).unwrap();
    let cpu = mlp("mlp", 1, &[32], Device::Cpu);
    let err_cpu = blindspot::train::error_rate(&cpu, &t.images, &t.labels).unwrap();
    assert!(
        (err - err_cpu).abs() <= 2e-4,
        "{err} vs {err_cpu} on the CPU"
    );
}

#[test]
fn transfer_table_on_the_device_agrees_with_the_cpu() {
    use blindspot::attack::transfer::{transfer_checked, Source, TransferSpec};
    let d = dev();
    let dir = tempfile::tempdir().unwrap();
    let t = mnist_test();
    let n = 200;
    let x = t.images.narrow(0, 0, n);
    tch::manual_seed(7);
    let adv =
        (&x + Tensor::randn([n, 1, 28, 28], (Kind::Float, Device::Cpu)) * 0.05).clamp(0.0, 1.0);
    let label = t.labels.narrow(0, 0, n);
    let file = dir.path().join("adversarial.safetensors");
    blindspot::io::write_safetensors(
        &file,
        &[
            ("original", &x),
            ("adversarial", &adv),
            ("label", &label),
            ("target", &(label.ones_like() * -1)), // untargeted: re-verified as "not the label"
            ("success", &Tensor::ones([n], (Kind::Uint8, Device::Cpu))),
        ],
    )
    .unwrap();
    let src = Source {
        name: "src".into(),
        file,
    };
    let spec = TransferSpec {
        noise: vec![0.1],
        amplify: vec![0.1],
        batch: 64,
        clip_noise: true,
    };
    let table = |device: Device| {
        let (a, b) = (mlp("a", 1, &[], device), mlp("b", 2, &[20], device));
        let cols: Vec<(String, &dyn Classifier)> = vec![("a".into(), &a), ("b".into(), &b)];
        // Rows are re-verified on their source model (here `a`, given: the file has no record).
        let source: Option<&dyn Classifier> = Some(&a);
        transfer_checked(std::slice::from_ref(&src), &[source], &cols, &spec, 5).unwrap()
    };
    let (on_dev, on_cpu) = (table(d), table(Device::Cpu));
    assert_eq!(on_dev.rows.len(), 3);
    for (r, c) in on_dev.rows.iter().zip(&on_cpu.rows) {
        assert!((r.distortion - c.distortion).abs() < 1e-6);
        for (e, ec) in r.errors.iter().zip(&c.errors) {
            // A GPU may round a logit differently: at most one example of 200 changes class.
            assert!((e - ec).abs() <= 1.0 / n as f64 + 1e-12, "{e} vs {ec}");
        }
    }
}

#[test]
fn units_scan_on_the_device_matches_brute_force_on_the_cpu() {
    use blindspot::data::mnist::Mnist;
    use blindspot::data::sources::TensorData;
    use blindspot::models::torchscript::TorchScriptClassifier;
    use blindspot::units::{self, Count};
    let d = dev();
    let fx = root().join("tests/fixtures/units/tiny_conv.pt");
    let (m, m_cpu) = (
        TorchScriptClassifier::load(&fx, d).unwrap(),
        TorchScriptClassifier::load(&fx, Device::Cpu).unwrap(),
    );
    let t = mnist_test();
    let data = TensorData {
        name: "mnist-test".into(),
        data: Mnist {
            images: t.images.narrow(0, 0, 300),
            labels: t.labels.narrow(0, 0, 300),
        },
    };
    let shape = units::layer_shape(&m, "fc1").unwrap();
    let dirs = units::make_directions(&shape, Count::N(8), 8, 0, 1).unwrap();
    let scan = units::scan(&m, &data, "fc1", &dirs, 5, 97, false).unwrap();
    let _g = tch::no_grad_guard();
    let phi = m_cpu
        .layer(&data.data.images, "fc1")
        .unwrap()
        .flatten(1, -1); // [N, D]
    let s = Tensor::cat(
        &[
            phi.index_select(1, &Tensor::from_slice(&dirs.units)),
            phi.matmul(&dirs.random),
        ],
        1,
    ); // [N, K]
    for (j, l) in scan.lists.iter().enumerate() {
        let col = s.select(1, j as i64);
        let (best, _) = col.topk(5, 0, true, true);
        let best = Vec::<f32>::try_from(&best).unwrap();
        for (a, b) in l.scores.iter().zip(&best) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{j}: {a} vs {b}");
        }
        // The images named score what the list says (indices are data positions).
        for (&i, &sc) in l.data.iter().zip(&l.scores) {
            let want = col.double_value(&[i as i64]) as f32;
            assert!(
                (want - sc).abs() <= 1e-4 * (1.0 + sc.abs()),
                "{j}: image {i}"
            );
        }
    }
}

#[test]
fn spectral_bounds_of_a_small_net_on_the_device_match_a_dense_svd() {
    use blindspot::spectral::SpectralSpec;
    let d = dev();
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("zoo");
    std::fs::create_dir_all(&model).unwrap();
    tch::manual_seed(3);
    let w1 = Tensor::randn([4, 1, 3, 3], (Kind::Float, Device::Cpu)) * 0.3;
    let w2 = Tensor::randn([10, 144], (Kind::Float, Device::Cpu)) * 0.1;
    let zeros = |k| Tensor::zeros([k], (Kind::Float, Device::Cpu));
    blindspot::io::write_safetensors(
        &model.join("weights.safetensors"),
        &[
            ("conv1.weight", &w1),
            ("conv1.bias", &zeros(4)),
            ("fc1.weight", &w2),
            ("fc1.bias", &zeros(10)),
        ],
    )
    .unwrap();
    let arch = serde_json::json!({
        "format": "blindspot-model/1", "name": "conv-test",
        "architecture": {"input_shape": [1, 12, 12], "layers": [
            {"kind": "conv2d", "name": "conv1", "in_channels": 1, "out_channels": 4, "kernel_size": 3,
             "stride": 1, "padding": 1},
            {"kind": "relu"}, {"kind": "max_pool2d", "kernel_size": 2, "stride": 2}, {"kind": "flatten"},
            {"kind": "linear", "name": "fc1", "in_features": 144, "out_features": 10}]}
    });
    blindspot::io::write_json(&model.join("model.json"), &arch).unwrap();
    let spec = SpectralSpec {
        tol: 1e-8,
        max_iter: 1000,
        ascent_steps: 5,
        ascent_starts: 2,
        ..SpectralSpec::new(&model)
    };
    let rep = blindspot::spectral::run(&spec, &tmp.path().join("out"), d).unwrap();
    let row = |layer: &str, method: &str| {
        rep.analysis
            .rows
            .iter()
            .find(|r| r.layer == layer && r.method == method)
            .unwrap_or_else(|| panic!("no row {layer} {method}"))
            .upper
    };
    let sv = |w: &Tensor| {
        blindspot::spectral::dense::singular_values(w)
            .unwrap()
            .double_value(&[0])
    };
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs();
    assert!(rel(row("fc1", "svd"), sv(&w2)) < 1e-6);
    // The zero-padded conv operator as a dense [4·144, 144] matrix: its columns are the conv of each
    // basis image.
    let eye = Tensor::eye(144, (Kind::Double, Device::Cpu)).view([144, 1, 12, 12]);
    let cols = eye
        .conv2d(
            &w1.to_kind(Kind::Double),
            None::<Tensor>,
            [1, 1],
            [1, 1],
            [1, 1],
            1,
        )
        .view([144, -1]);
    assert!(rel(row("conv1", "iterative-zero"), sv(&cols)) < 1e-4);
    let e = rep.empirical.unwrap().ratio;
    assert!(e > 0.0 && e <= rep.analysis.product_exact.unwrap() * (1.0 + 1e-6));
}

/// A tiny zoo model spec: `arch` JSON and `optimizer` JSON.
fn tiny_spec(
    arch: serde_json::Value,
    decay: &[f64],
    opt: serde_json::Value,
) -> blindspot::config::ModelSpec {
    serde_json::from_value(serde_json::json!({
        "name": "tiny", "arch": arch, "weight_decay": decay, "optimizer": opt
    }))
    .unwrap()
}

#[test]
fn training_tiny_models_on_the_device() {
    let d = dev();
    let t = mnist_test();
    let (x, y) = (t.images.narrow(0, 0, 1000), t.labels.narrow(0, 0, 1000));
    let (xd, yd) = (x.to_device(d), y.to_device(d));
    // Full-batch L-BFGS (the engine with B = 1), a few iterations.
    let spec = tiny_spec(
        serde_json::json!({"kind": "mlp", "hidden": [20], "activation": "sigmoid"}),
        &[1e-5, 1e-6],
        serde_json::json!({"kind": "lbfgs", "max_iter": 15}),
    );
    let (m, out) = blindspot::train::train_model(&spec, &xd, &yd, 1).unwrap();
    assert_eq!(m.device(), d);
    assert!(out[0].final_loss.is_finite() && out[0].final_loss < 2.0);
    assert!(!out[0].log.is_empty());
    let err = blindspot::train::error_rate(&m, &x, &y).unwrap();
    assert!(err < 0.5, "train error {err}");
    // Minibatch Adam on a conv net with dropout: one epoch.
    let spec = tiny_spec(
        serde_json::json!({"kind": "conv", "channels": [4], "kernel": 5, "hidden": 16, "dropout": 0.5}),
        &[0.0, 0.0, 0.0],
        serde_json::json!({"kind": "adam", "lr": 3e-3, "epochs": 1, "batch_size": 100}),
    );
    let (m, out) = blindspot::train::train_model(&spec, &xd, &yd, 1).unwrap();
    assert_eq!((m.device(), out[0].iterations), (d, 10));
    assert!(out[0].final_loss.is_finite());
}

#[test]
fn fig7_on_the_device() {
    let d = dev();
    let (m, x, labels, _, _) = linear_fixture(d);
    let dir = tempfile::tempdir().unwrap();
    let fig = blindspot::attack::fig7::fig7(
        &[&m as &dyn Classifier],
        &x.narrow(0, 0, 4).to_device(d),
        &labels.narrow(0, 0, 4).to_device(d),
        &x,
        &labels,
        dir.path(),
        1,
        &AttackSettings::default(),
    )
    .unwrap();
    assert_eq!(fig.panels[0].successes, 4);
    assert_eq!(fig.panels[0].adversarial_accuracy, 0.0);
    blindspot::report::fig7::draw(dir.path()).unwrap();
    assert!(fig.panels[0].png.exists() && fig.panel_c_png.exists());
}

#[test]
fn deterministic_mode_reaches_libtorch() {
    let before = blindspot::device::determinism();
    let on = blindspot::device::set_deterministic(true).unwrap();
    assert!(on.algorithms && on.warn_only && on.cudnn_deterministic && !on.cudnn_benchmark);
    // libtorch now fills uninitialised float memory with NaN (its deterministic mode does).
    let e = Tensor::empty([64], (Kind::Float, Device::Cpu));
    assert!(bool::try_from(e.isnan().all()).unwrap());
    let off = blindspot::device::set_deterministic(false).unwrap();
    assert!(!off.algorithms && !off.cudnn_deterministic);
    if before.algorithms {
        blindspot::device::set_deterministic(true).unwrap();
    }
}

#[test]
fn a_gpu_that_is_not_there_is_refused_by_number() {
    let n = tch::Cuda::device_count();
    let e = blindspot::device::parse_device(&format!("cuda:{n}"))
        .unwrap_err()
        .to_string();
    if n == 0 {
        assert!(e.contains("no CUDA device"), "{e}");
    } else {
        assert!(e.contains(&format!("only {n} CUDA device")), "{e}");
    }
}

// -------------------------------------------------------------------------------- CUDA-only checks

/// The first `n` test images, their labels and random targets, and a random MLP on `device` (seed 1).
fn attack_on(
    device: Device,
    n: i64,
) -> (
    blindspot::attack::BatchOutcome,
    Vec<blindspot::attack::Verdict>,
) {
    let m = mlp("mlp", 1, &[100, 100], device);
    let t = mnist_test();
    let (x, y) = (t.images.narrow(0, 0, n), t.labels.narrow(0, 0, n));
    let tg = targets_for(&y);
    let out = attack_batch(&m, &x, &y, Some(&tg), &AttackSettings::default()).unwrap();
    let ver = verify(&m, &x, &out.adversarial, &y, Some(&tg), K).unwrap();
    (out, ver)
}

#[test]
#[ignore = "needs a CUDA device"]
fn cpu_and_cuda_give_the_same_adversarials_within_tolerance() {
    let g = cuda();
    let n = 128;
    let (oc, vc) = attack_on(Device::Cpu, n);
    let (og, vg) = attack_on(g, n);
    let ok = |o: &blindspot::attack::BatchOutcome, v: &[blindspot::attack::Verdict]| -> Vec<bool> {
        o.success.iter().zip(v).map(|(s, v)| *s && v.ok).collect()
    };
    let (sc, sg) = (ok(&oc, &vc), ok(&og, &vg));
    let both: Vec<usize> = (0..n as usize).filter(|&i| sc[i] && sg[i]).collect();
    assert!(
        both.len() as f64 >= 0.99 * n as f64,
        "successes: CPU {}, CUDA {}, both {}",
        sc.iter().filter(|s| **s).count(),
        sg.iter().filter(|s| **s).count(),
        both.len()
    );
    let mean = |v: &[blindspot::attack::Verdict]| {
        both.iter().map(|&i| v[i].distortion).sum::<f64>() / both.len() as f64
    };
    let (dc, dg) = (mean(&vc), mean(&vg));
    assert!(
        (dc - dg).abs() <= 0.01 * dc,
        "mean distortion CPU {dc} vs CUDA {dg}"
    );
    let close = both
        .iter()
        .filter(|&&i| (vc[i].distortion - vg[i].distortion).abs() <= 0.05 * vc[i].distortion + 1e-4)
        .count();
    assert!(
        close as f64 >= 0.95 * both.len() as f64,
        "{close} of {} within 5%",
        both.len()
    );
}

#[test]
#[ignore = "needs a CUDA device"]
fn the_same_seed_twice_on_a_gpu_gives_identical_adversarials() {
    let g = cuda();
    let (a, _) = attack_on(g, 64);
    let (b, _) = attack_on(g, 64);
    let same = bool::try_from(a.adversarial.eq_tensor(&b.adversarial).all()).unwrap();
    assert!(
        same,
        "two runs on {g:?} differ (without BLINDSPOT_DETERMINISTIC=1)"
    );
    assert_eq!(a.iterations, b.iterations);
}

#[test]
#[ignore = "needs a CUDA device"]
fn cuda_past_the_last_gpu_is_refused_and_the_last_one_is_accepted() {
    let _ = cuda();
    let n = tch::Cuda::device_count();
    let e = blindspot::device::parse_device(&format!("cuda:{n}"))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("only {n} CUDA device")), "{e}");
    assert_eq!(
        blindspot::device::parse_device(&format!("cuda:{}", n - 1)).unwrap(),
        Device::Cuda(n as usize - 1)
    );
}

#[test]
#[ignore = "needs a CUDA device"]
fn training_on_a_gpu_matches_the_cpu_within_tolerance() {
    let g = cuda();
    let t = mnist_test();
    let (x, y) = (t.images.narrow(0, 0, 2000), t.labels.narrow(0, 0, 2000));
    let spec = tiny_spec(
        serde_json::json!({"kind": "mlp", "hidden": [50], "activation": "sigmoid"}),
        &[1e-5, 1e-6],
        serde_json::json!({"kind": "lbfgs", "max_iter": 30}),
    );
    let run = |d: Device| {
        let (m, o) =
            blindspot::train::train_model(&spec, &x.to_device(d), &y.to_device(d), 1).unwrap();
        (
            blindspot::train::error_rate(&m, &t.images, &t.labels).unwrap(),
            o[0].log.clone(),
        )
    };
    let ((ec, lc), (eg, lg)) = (run(Device::Cpu), run(g));
    // Identical start (weights drawn on the CPU): the first iterations agree to rounding.
    for (a, b) in lc.iter().zip(&lg).take(5) {
        assert!(
            (a.loss - b.loss).abs() <= 1e-4 * a.loss.abs(),
            "step {}: {} vs {}",
            a.step,
            a.loss,
            b.loss
        );
    }
    assert!((ec - eg).abs() <= 0.01, "test error CPU {ec} vs CUDA {eg}");
}

#[test]
#[ignore = "needs a CUDA device"]
fn units_scan_on_a_gpu_matches_the_cpu() {
    use blindspot::data::sources::TensorData;
    use blindspot::units::{self, Count};
    let g = cuda();
    let t = mnist_test();
    let data = TensorData {
        name: "mnist-test".into(),
        data: blindspot::data::mnist::Mnist {
            images: t.images.narrow(0, 0, 2000),
            labels: t.labels.narrow(0, 0, 2000),
        },
    };
    let (mc, mg) = (mlp("m", 3, &[64], Device::Cpu), mlp("m", 3, &[64], g));
    // The hidden layer's activations (after the sigmoid): the layer before the logits.
    let names = mc.layer_names();
    let layer = names[names.len() - 2].clone();
    let shape = units::layer_shape(&mc, &layer).unwrap();
    let dirs = units::make_directions(&shape, Count::All, 16, 0, 2).unwrap();
    let a = units::scan(&mc, &data, &layer, &dirs, 9, 256, false).unwrap();
    let b = units::scan(&mg, &data, &layer, &dirs, 9, 256, false).unwrap();
    for (x, y) in a.lists.iter().zip(&b.lists) {
        for (p, q) in x.scores.iter().zip(&y.scores) {
            assert!((p - q).abs() <= 1e-4 * (1.0 + p.abs()));
        }
        assert!((x.mean - y.mean).abs() <= 1e-4 * (1.0 + x.mean.abs()));
    }
}
