//! The attack on flat logits (issue 13, item 6): a random-weight AlexNet's logits spread ~0.05 over 1000
//! classes, where the loss in f32 cancelled and the attack found nothing although one sign-gradient step
//! of 1/255 flips the label. Fixture: `scripts/make_flat_fixtures.py` (an AlexNet-layout net, widths /16,
//! 224×224, 1000 classes, logits as flat as the full random AlexNet's; 16 seeded images).

use blindspot::attack::{attack_batch, verify, AttackSettings};
use blindspot::data::images::{ImageFolder, ImageFolderOptions};
use blindspot::models::torchscript::TorchScriptClassifier;
use blindspot::models::Classifier;
use std::path::PathBuf;
use tch::{Device, Tensor};

fn fixture() -> (TorchScriptClassifier, Tensor) {
    let fx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flat");
    let m = TorchScriptClassifier::load(&fx.join("flat_alexnet.pt"), Device::Cpu).unwrap();
    let opts = ImageFolderOptions::for_input(&m.input_shape()).unwrap();
    let folder = ImageFolder::open(&fx.join("images"), opts).unwrap();
    let idx: Vec<usize> = (0..folder.len()).collect();
    assert_eq!(idx.len(), 16);
    (m, folder.load(&idx).unwrap().images) // [16, 3, 224, 224]
}

/// Does one sign-gradient step of 1/255 on the label's cross-entropy flip each prediction? `x` [B, ..].
fn one_step_flips(m: &TorchScriptClassifier, x: &Tensor, labels: &Tensor) -> Vec<bool> {
    let xr = x.detach().set_requires_grad(true);
    let loss = m.logits(&xr).unwrap().cross_entropy_for_logits(labels); // scalar (mean)
    let g = Tensor::run_backward(&[loss], &[&xr], false, false)
        .pop()
        .unwrap(); // [B, ..]
    let step = (x + g.sign() / 255.0).clamp(0.0, 1.0);
    let pred = tch::no_grad(|| m.logits(&step).unwrap().argmax(1, false)); // [B]
    Vec::<bool>::try_from(&pred.ne_tensor(labels)).unwrap()
}

/// Every image that one sign step flips is attacked successfully (untargeted), past the margin κ and
/// verified in a fresh forward pass; before the f64 loss without its constant (issue 13) 7 of 16 were.
#[test]
fn attack_succeeds_on_flat_logits_where_one_sign_step_flips() {
    tch::set_num_threads(1);
    let (m, x) = fixture();
    let logits = tch::no_grad(|| m.logits(&x).unwrap()); // [16, 1000]
    let spread: f64 = (logits.amax([1i64].as_slice(), false)
        - logits.amin([1i64].as_slice(), false))
    .max()
    .double_value(&[]);
    assert!(
        spread < 0.1,
        "fixture logits should be flat, spread {spread}"
    );
    let labels = logits.argmax(1, false); // [16]
    let flips = one_step_flips(&m, &x, &labels);
    let n_flip = flips.iter().filter(|&&f| f).count();
    assert!(n_flip >= 12, "only {n_flip} of 16 flipped by one sign step");
    let set = AttackSettings::default();
    let out = attack_batch(&m, &x, &labels, None, &set).unwrap();
    let v = verify(&m, &x, &out.adversarial, &labels, None, set.min_margin).unwrap();
    for i in 0..16 {
        if flips[i] {
            assert!(
                out.success[i] && v[i].ok,
                "image {i}: one step flips it but the attack failed: {:?} / {:?}",
                out.reason[i],
                v[i].reason
            );
            assert!(v[i].margin >= set.min_margin);
        } else if !out.success[i] {
            assert!(out.reason[i].is_some());
        }
    }
}
