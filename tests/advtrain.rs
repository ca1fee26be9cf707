//! Adversarial training with per-layer pools (§4.2): the attack on the sub-network above a hidden layer
//! against a direct computation, the pool's replacement statistics, a short training run on a small
//! subset, and bad settings refused with the field named.

use blindspot::attack::{attack_batch, AttackSettings};
use blindspot::config::Experiment;
use blindspot::data::mnist::{self, Split as MnistSplit};
use blindspot::models::zoo::{init_params, Architecture, Layer, ZooModel};
use blindspot::models::Classifier;
use blindspot::train::advtrain::pool::Pool;
use blindspot::train::advtrain::subnet::Split;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn linear(name: &str, i: i64, o: i64) -> Layer {
    Layer::Linear {
        name: name.into(),
        in_features: i,
        out_features: o,
    }
}

/// 6 → 5 (sigmoid) → 4 (sigmoid) → 3, weights scaled ×4 so that small hidden changes flip classes.
fn small_net() -> (Architecture, Tensor) {
    let arch = Architecture {
        input_shape: vec![6],
        layers: vec![
            linear("fc1", 6, 5),
            Layer::Sigmoid,
            linear("fc2", 5, 4),
            Layer::Sigmoid,
            linear("fc3", 4, 3),
        ],
    };
    tch::manual_seed(7);
    let theta = init_params(&arch, Device::Cpu) * 4.0; // [P]
    (arch, theta)
}

/// fc(x) = x Wᵀ + b with W, b read directly off θ at `offset`: x [B, i] → [B, o].
fn fc(theta: &Tensor, offset: i64, i: i64, o: i64, x: &Tensor) -> Tensor {
    let w = theta.narrow(0, offset, o * i).view([o, i]);
    let b = theta.narrow(0, offset + o * i, o);
    x.matmul(&w.tr()) + b
}

#[test]
fn hidden_layer_adversarials_are_in_the_box_and_fool_the_layers_above() {
    let (arch, theta) = small_net();
    let full = ZooModel::new("small", arch.clone(), theta.copy(), serde_json::json!({})).unwrap();
    let x = Tensor::rand([16, 6], (Kind::Float, Device::Cpu)); // [16, 6]
    let labels = full.logits(&x).unwrap().argmax(-1, false); // [16]: attack the model's own answer
    let (o1, o2) = (6 * 5 + 5, 6 * 5 + 5 + 5 * 4 + 4); // parameter offsets of fc2, fc3
    for (layer, offset, targeted) in [("fc1.sigmoid", o1, false), ("fc2.sigmoid", o2, true)] {
        let split = Split::of(&arch, layer).unwrap();
        assert_eq!((split.offset, split.bounds), (offset, (0.0, 1.0)));
        // The values at the split, directly.
        let h1 = fc(&theta, 0, 6, 5, &x).sigmoid(); // [16, 5]
        let h = if layer == "fc1.sigmoid" {
            h1
        } else {
            fc(&theta, o1, 5, 4, &h1).sigmoid() // [16, 4]
        };
        assert!(split
            .values(&arch, &theta, &x)
            .allclose(&h, 1e-6, 1e-6, false));
        let net = split.subnet("small", &theta).unwrap();
        assert_eq!(net.input_bounds(), (0.0, 1.0));
        // The sub-network on the clean values gives the full model's logits.
        assert!(net
            .logits(&h)
            .unwrap()
            .allclose(&full.logits(&x).unwrap(), 1e-5, 1e-5, false));
        let targets = (&labels + 1).remainder(3); // [16]
        let out = attack_batch(
            &net,
            &h,
            &labels,
            targeted.then_some(&targets),
            &AttackSettings::default(),
        )
        .unwrap();
        let adv = &out.adversarial; // [16, 5] or [16, 4]
                                    // The upper layers computed directly on the adversarial values.
        let direct = if layer == "fc1.sigmoid" {
            fc(&theta, o2, 4, 3, &fc(&theta, o1, 5, 4, adv).sigmoid())
        } else {
            fc(&theta, o2, 4, 3, adv)
        }; // [16, 3]
        let pred = Vec::<i64>::try_from(&direct.argmax(-1, false)).unwrap();
        let lab = Vec::<i64>::try_from(&labels).unwrap();
        let tgt = Vec::<i64>::try_from(&targets).unwrap();
        let lo = adv.min().double_value(&[]);
        let hi = adv.max().double_value(&[]);
        assert!(lo >= 0.0 && hi <= 1.0, "{layer}: values in [{lo}, {hi}]");
        let won = out.success.iter().filter(|s| **s).count();
        assert!(won >= 12, "{layer}: only {won} of 16 attacks succeeded");
        for i in 0..16 {
            if !out.success[i] {
                continue;
            }
            if targeted {
                assert_eq!(pred[i], tgt[i], "{layer} row {i}: not the target");
            } else {
                assert_ne!(pred[i], lab[i], "{layer} row {i}: still the label");
            }
            let d = (adv.get(i as i64) - h.get(i as i64))
                .norm()
                .double_value(&[]);
            assert!(d > 0.0, "{layer} row {i}: no perturbation");
        }
    }
}

#[test]
fn the_input_and_relu_layers_split_with_their_boxes_and_bad_layers_are_named() {
    let arch = blindspot::models::zoo::presets::mlp(&[100, 100], Layer::Relu);
    let s = Split::of(&arch, "input").unwrap();
    assert_eq!((s.index, s.offset, s.bounds), (0, 0, (0.0, 1.0)));
    let s = Split::of(&arch, "fc2.relu").unwrap();
    assert_eq!(s.bounds, (0.0, f64::INFINITY));
    assert_eq!(s.shape, [100]);
    assert_eq!(s.offset, 784 * 100 + 100 + 100 * 100 + 100);
    for bad in ["fc1", "fc3", "fc9.relu", "input.flatten"] {
        let e = Split::of(&arch, bad).unwrap_err();
        assert!(
            e.contains(bad) && e.contains("input, fc1.relu, fc2.relu"),
            "{e}"
        );
    }
}

#[test]
fn a_refresh_fills_empty_slots_then_replaces_a_uniform_fraction() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let cap = 200;
    let mut pool = Pool::new("fc1.sigmoid", cap, &[3], Device::Cpu);
    assert!(pool.sample(5, &mut rng).is_none());
    // First refresh: every slot, and a failed attack leaves its slot empty.
    let slots = pool.slots_to_refresh(0.1, &mut rng);
    assert_eq!(slots, (0..cap).collect::<Vec<_>>());
    let label_of =
        |s: &[usize]| Tensor::from_slice(&s.iter().map(|&i| i as i64).collect::<Vec<_>>());
    let ok: Vec<bool> = (0..cap).map(|i| i % 2 == 0).collect();
    pool.put(
        &slots,
        &Tensor::ones([cap as i64, 3], (Kind::Float, Device::Cpu)),
        &label_of(&slots),
        &ok,
    );
    assert_eq!(pool.len(), cap / 2);
    // Sampling only sees filled (even) slots; labels record the slot.
    let (xs, ys) = pool.sample(1000, &mut rng).unwrap();
    assert_eq!(xs.size(), [1000, 3]);
    assert_eq!(ys.remainder(2).sum(Kind::Int64).int64_value(&[]), 0);
    // The next refresh writes exactly the empty slots.
    let slots = pool.slots_to_refresh(0.1, &mut rng);
    assert_eq!(slots, (1..cap).step_by(2).collect::<Vec<_>>());
    pool.put(
        &slots,
        &Tensor::ones([100, 3], (Kind::Float, Device::Cpu)),
        &label_of(&slots),
        &[true; 100],
    );
    assert_eq!(pool.len(), cap);
    // Full: each refresh replaces round(0.1·200) = 20 distinct slots, uniformly over many refreshes.
    let rounds = 500;
    for _ in 0..rounds {
        let slots = pool.slots_to_refresh(0.1, &mut rng);
        let mut u = slots.clone();
        u.sort_unstable();
        u.dedup();
        assert_eq!(u.len(), 20);
        pool.put(
            &slots,
            &Tensor::zeros([20, 3], (Kind::Float, Device::Cpu)),
            &label_of(&slots),
            &[true; 20],
        );
    }
    let w: Vec<f64> = pool.writes.iter().map(|&c| c as f64 - 1.0).collect(); // replacements per slot
    let mean = w.iter().sum::<f64>() / cap as f64;
    let var = w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (cap - 1) as f64;
    assert!((mean - 50.0).abs() < 1e-9, "mean replacements {mean}");
    // Binomial(500, 0.1): variance 45 (sampling without replacement within a round barely changes it).
    assert!(
        (30.0..65.0).contains(&var),
        "variance of replacements {var}"
    );
    let most = w.iter().cloned().fold(0.0, f64::max);
    let least = w.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!(
        least > 20.0 && most < 80.0,
        "replacements in [{least}, {most}]"
    );
}

fn spec_yaml(advtrain: &str, extra: &str) -> String {
    format!(
        "name: t\nmodels:\n  - name: adv\n    arch: {{kind: mlp, hidden: [20, 20], activation: sigmoid}}\n    weight_decay: [1.0e-5, 1.0e-5, 1.0e-6]\n    optimizer: {{kind: adam, lr: 3.0e-3, epochs: 3, batch_size: 100}}\n{extra}    advtrain: {advtrain}\n"
    )
}

#[test]
fn bad_advtrain_settings_are_refused_with_the_field_named() {
    let ok = "{layers: [input, fc1.sigmoid, fc2.sigmoid]}";
    let exp = Experiment::parse(&spec_yaml(ok, ""), "a.yaml").unwrap();
    let a = exp.models[0].advtrain.as_ref().unwrap();
    assert_eq!((a.pool_size, a.mix, a.targeted), (1000, 0.5, false));
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "{layers: [fc3]}",
            "",
            &[
                "models[0].advtrain.layers[0]",
                "use one of input, fc1.sigmoid, fc2.sigmoid",
            ],
        ),
        (
            "{layers: [fc7.sigmoid]}",
            "",
            &["advtrain.layers[0]", "fc7.sigmoid"],
        ),
        (
            "{layers: [input, input]}",
            "",
            &["advtrain.layers[1]", "twice"],
        ),
        ("{layers: []}", "", &["advtrain.layers", "at least one"]),
        (
            "{layers: [input], pool_size: 60001}",
            "",
            &["advtrain.pool_size", "1..=60000"],
        ),
        (
            "{layers: [input], pool_size: 30001}",
            "    train_on: p1\n",
            &["advtrain.pool_size", "1..=30000"],
        ),
        (
            "{layers: [input], mix: 1.5}",
            "",
            &["advtrain.mix", "outside [0, 1]"],
        ),
        (
            "{layers: [input], mix: -0.1}",
            "",
            &["advtrain.mix", "outside [0, 1]"],
        ),
        (
            "{layers: [input], replace_fraction: 0.0}",
            "",
            &["advtrain.replace_fraction"],
        ),
        (
            "{layers: [input], refresh_every: 0}",
            "",
            &["advtrain.refresh_every"],
        ),
        (
            "{layers: [input], warmup_epochs: 3}",
            "",
            &["advtrain.warmup_epochs"],
        ),
        (
            "{layers: [input], attack: {c_init: -1.0}}",
            "",
            &["advtrain.attack", "c_init"],
        ),
        ("{layers: [input], pools: 3}", "", &["pools"]),
    ];
    for (adv, extra, want) in cases {
        let e = Experiment::parse(&spec_yaml(adv, extra), "a.yaml")
            .unwrap_err()
            .to_string();
        for w in *want {
            assert!(e.contains(w), "{adv}: `{e}` lacks `{w}`");
        }
    }
    let lbfgs = spec_yaml(ok, "").replace(
        "{kind: adam, lr: 3.0e-3, epochs: 3, batch_size: 100}",
        "{kind: lbfgs, max_iter: 10}",
    );
    let e = Experiment::parse(&lbfgs, "a.yaml").unwrap_err().to_string();
    assert!(
        e.contains("models[0].optimizer") && e.contains("Adam"),
        "{e}"
    );
}

fn mnist_subset(n: i64) -> (Tensor, Tensor) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/mnist");
    let t = mnist::load(&dir, MnistSplit::Train).unwrap();
    (t.images.narrow(0, 0, n), t.labels.narrow(0, 0, n))
}

#[test]
fn a_short_adversarial_training_run_on_a_subset() {
    let adv = "{layers: [input, fc1.sigmoid, fc2.sigmoid], pool_size: 50, replace_fraction: 0.2, refresh_every: 5, warmup_epochs: 5, attack: {max_solves: 8, max_iter: 30}}";
    // Five clean epochs first (lr 2e-2), so that most training examples are classified right.
    let yaml = spec_yaml(adv, "").replace("lr: 3.0e-3, epochs: 3", "lr: 2.0e-2, epochs: 7");
    let exp = Experiment::parse(&yaml, "a.yaml").unwrap();
    let spec = &exp.models[0];
    let (xa, ya) = mnist_subset(1500);
    let (x, y) = (xa.narrow(0, 0, 1000), ya.narrow(0, 0, 1000));
    let (hx, hy) = (xa.narrow(0, 1000, 500), ya.narrow(0, 1000, 500));
    let (model, out) =
        blindspot::train::train_model_heldout(spec, &x, &y, 1, Some((&hx, &hy))).unwrap();
    let o = &out[0];
    // The held-out error after every epoch; the last one is the final model's.
    let curve: Vec<f64> = o.log.iter().filter_map(|r| r.heldout_error).collect();
    assert_eq!(curve.len(), 7, "{curve:?}");
    assert!(curve.iter().all(|e| (0.0..=1.0).contains(e)), "{curve:?}");
    let last = blindspot::train::error_rate(&model, &hx, &hy).unwrap();
    assert!((curve[6] - last).abs() < 1e-9, "{curve:?} vs {last}");
    assert_eq!((o.optimizer.as_str(), o.iterations), ("adam+advtrain", 70));
    assert!(o.final_loss.is_finite());
    // 10 steps per epoch: refreshes at steps 50, 55, 60, 65, one row per layer each.
    let steps: Vec<usize> = o.pools.iter().map(|r| r.step).collect();
    assert_eq!(steps.len(), 12, "{steps:?}");
    assert_eq!(&steps[..3], [50, 50, 50]);
    let mut filled = std::collections::HashMap::new();
    for r in &o.pools {
        // A refresh attacks every empty slot while there are any, else round(0.2·50) = 10 slots.
        let before = *filled.get(&r.layer).unwrap_or(&0);
        let want = if before < 50 { 50 - before } else { 10 };
        assert_eq!(r.attacked, want, "{r:?}");
        assert!(r.succeeded + r.already <= r.attacked, "{r:?}");
        assert!(r.filled <= 50 && r.filled >= before, "{r:?}");
        assert!((r.succeeded > 0) == (r.mean_distortion > 0.0), "{r:?}");
        filled.insert(r.layer.clone(), r.filled);
    }
    // Most attacks on correctly classified examples succeed, and every pool ends nearly full.
    let tried: usize = o.pools.iter().map(|r| r.attacked - r.already).sum();
    let won: usize = o.pools.iter().map(|r| r.succeeded).sum();
    assert!(2 * won >= tried, "{won} of {tried} attacks succeeded");
    assert!(filled.values().all(|&f| f >= 40), "{filled:?}");
    let err = blindspot::train::error_rate(&model, &x, &y).unwrap();
    assert!(err < 0.5, "training error {err}");
    // More settings than data: refused by the library too (the subset has 1000 examples).
    let big = yaml.replace("pool_size: 50", "pool_size: 5000");
    let spec = &Experiment::parse(&big, "a.yaml").unwrap().models[0];
    let e = blindspot::train::train_model(spec, &x, &y, 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("advtrain.pool_size") && e.contains("1..=1000"),
        "{e}"
    );
}

#[test]
fn the_mlp_dropout_option_adds_dropout_layers_and_checks_its_range() {
    let yaml = spec_yaml("{layers: [fc1.sigmoid]}", "").replace(
        "activation: sigmoid}",
        "activation: sigmoid, dropout: 0.5, input_dropout: 0.2}",
    );
    let exp = Experiment::parse(&yaml, "a.yaml").unwrap();
    let arch = exp.models[0].arch.architecture();
    assert_eq!(
        arch.output_names(),
        [
            "input.flatten",
            "input.dropout",
            "fc1",
            "fc1.sigmoid",
            "fc1.dropout",
            "fc2",
            "fc2.sigmoid",
            "fc2.dropout",
            "fc3"
        ]
    );
    // The pool at fc1.sigmoid trains everything above it, dropout included.
    let s = Split::of(&arch, "fc1.sigmoid").unwrap();
    assert_eq!(s.upper.layers[0], Layer::Dropout { p: 0.5 });
    let e = Experiment::parse(&yaml.replace("dropout: 0.5", "dropout: 1.0"), "a.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("models[0].arch.dropout") && e.contains("[0, 1)"),
        "{e}"
    );
    // Without the option the architecture (and the spec's serialisation) is the plain MLP's.
    let plain = Experiment::parse(&spec_yaml("{layers: [input]}", ""), "a.yaml").unwrap();
    assert_eq!(
        plain.models[0].arch.architecture(),
        blindspot::models::zoo::presets::mlp(&[20, 20], Layer::Sigmoid)
    );
    let json = serde_json::to_string(&plain.models[0].arch).unwrap();
    assert!(!json.contains("dropout"), "{json}");
}

#[test]
fn the_advtrain_experiment_files_parse() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let quick = Experiment::load(&root.join("advtrain-quick.yaml")).unwrap();
    assert!(quick.models.iter().any(|m| m.advtrain.is_some()));
    let full = Experiment::load(&root.join("advtrain.yaml")).unwrap();
    let names: Vec<&str> = full.models.iter().map(|m| m.name.as_str()).collect();
    for row in ["wd", "dropout", "adv-input", "adv-layers"] {
        for seed in 1..=3 {
            let n = format!("N100-{row}-s{seed}");
            assert!(names.contains(&n.as_str()), "{n} missing");
        }
    }
    assert!(names.contains(&"N100-adv-fc1-s1") && names.contains(&"N100-adv-fc2-s1"));
    // Models without the new blocks serialise as before (their stage fingerprints are unchanged).
    for m in &Experiment::load(&root.join("quick.yaml")).unwrap().models {
        let json = serde_json::to_string(m).unwrap();
        assert!(
            !json.contains("advtrain") && !json.contains("input_dropout"),
            "{json}"
        );
    }
}

#[test]
fn a_relu_layer_is_attacked_in_its_half_open_box() {
    // 6 → 8 (ReLU) → 3: the adversarial hidden values stay ≥ 0 (no upper bound) and flip the top layer.
    let arch = Architecture {
        input_shape: vec![6],
        layers: vec![linear("fc1", 6, 8), Layer::Relu, linear("fc2", 8, 3)],
    };
    tch::manual_seed(11);
    let theta = init_params(&arch, Device::Cpu) * 3.0; // [P]
    let x = Tensor::rand([12, 6], (Kind::Float, Device::Cpu)); // [12, 6]
    let split = Split::of(&arch, "fc1.relu").unwrap();
    let h = split.values(&arch, &theta, &x); // [12, 8]
    let net = split.subnet("relu", &theta).unwrap();
    assert_eq!(net.input_bounds(), (0.0, f64::INFINITY));
    let labels = net.logits(&h).unwrap().argmax(-1, false); // [12]
    let out = attack_batch(&net, &h, &labels, None, &AttackSettings::default()).unwrap();
    let adv = &out.adversarial; // [12, 8]
    assert!(adv.min().double_value(&[]) >= 0.0);
    let direct = fc(&theta, 6 * 8 + 8, 8, 3, adv).argmax(-1, false); // [12]
    let (pred, lab) = (
        Vec::<i64>::try_from(&direct).unwrap(),
        Vec::<i64>::try_from(&labels).unwrap(),
    );
    let won: Vec<usize> = (0..12).filter(|&i| out.success[i]).collect();
    assert!(won.len() >= 9, "only {} of 12 succeeded", won.len());
    for i in won {
        assert_ne!(pred[i], lab[i], "row {i}");
    }
}
