//! Fig 7 of the paper (§4.2), the numbers and images: MNIST originals beside their adversarial examples
//! (panels (a) softmax, (b) N200-200-10; any zoo models can be given) and beside the same images with
//! Gaussian noise of the same stddev as the adversarial perturbation; panel (c): Gaussian noise of stddev
//! 1 with the measured accuracy (paper: 51%). Saved with [`crate::results::fig7`]; the report draws the
//! grids (`crate::report::fig7`).

use super::{noise, random_targets, AttackError, AttackSettings};
use crate::models::Classifier;
pub use crate::results::fig7::{Fig7, Fig7Images, Fig7Panel};
use crate::{Error, Result};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Computes Fig 7 and saves it into `out_dir` (`fig7.json`, `fig7.safetensors`; the report draws
/// `fig7_<model>.png` per model and `fig7c.png` from them). `shown` [k, 1, 28, 28] / `shown_labels` [k]:
/// the images in the grids (k ≈ 10); `eval`/`eval_labels`: where noise accuracies are measured (e.g. the
/// test set); all on the CPU. Targets are random ≠ label from `seed`.
#[allow(clippy::too_many_arguments)]
pub fn fig7(
    models: &[&dyn Classifier],
    shown: &Tensor,
    shown_labels: &Tensor,
    eval: &Tensor,
    eval_labels: &Tensor,
    out_dir: &Path,
    seed: u64,
    settings: &AttackSettings,
) -> Result<Fig7> {
    if models.is_empty() {
        return Err(AttackError::Fig7NoModels.into());
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let shown = shown.f_to_device(Device::Cpu)?;
    let shown_labels = shown_labels.f_to_device(Device::Cpu)?;
    let k = shown.size()[0];
    let labels: Vec<i64> = Vec::try_from(&shown_labels.f_to_kind(Kind::Int64)?)?;
    let mut panels = Vec::new();
    let mut panel_images = Vec::new();
    for m in models {
        let targets = Tensor::f_from_slice(&random_targets(&labels, m.num_classes(), seed))?;
        let out = super::attack_batch(*m, &shown, &shown_labels, Some(&targets), settings)?;
        let ver = super::verify(
            *m,
            &shown,
            &out.adversarial,
            &shown_labels,
            Some(&targets),
            settings.min_margin,
        )?;
        let ok: Vec<(&super::Verdict, bool)> = ver
            .iter()
            .zip(out.success.iter().zip(&out.already_adversarial))
            .filter(|(v, (s, _))| v.ok && **s)
            .map(|(v, (_, &already))| (v, already))
            .collect();
        // The mean distortion of the adversarials that needed a perturbation.
        let moved: Vec<f64> = ok
            .iter()
            .filter(|(_, already)| !already)
            .map(|(v, _)| v.distortion)
            .collect();
        let stddev = moved.iter().sum::<f64>() / moved.len().max(1) as f64;
        let adv = out.adversarial.f_to_device(Device::Cpu)?;
        let pred = crate::models::classifier::predict(*m, &adv, 1024)?; // [k] on the CPU
        let adv_acc = pred
            .f_eq_tensor(&shown_labels)?
            .f_to_kind(Kind::Double)?
            .f_mean(Kind::Double)?
            .f_double_value(&[])?;
        let noisy = noise::gaussian_noise(&shown, stddev, seed + 1, m.input_bounds())?;
        let noise_acc = noise::noise_accuracy(*m, eval, eval_labels, stddev, seed + 2, 10_000)?;
        let diff = (&adv - shown.f_to_kind(Kind::Float)?)
            .f_mul_scalar(0.5 / (3.0 * stddev).max(1e-6))?
            + 0.5;
        panel_images.push((adv, diff.f_clamp(0.0, 1.0)?, noisy));
        panels.push(Fig7Panel {
            model: m.name().to_string(),
            png: out_dir.join(format!("fig7_{}.png", m.name())),
            images: k as usize,
            successes: ok.len(),
            stddev,
            adversarial_accuracy: adv_acc,
            noise_accuracy: noise_acc,
        });
    }
    let m0 = models[0];
    let acc_c = noise::noise_accuracy(m0, eval, eval_labels, 1.0, seed + 3, 10_000)?;
    let acc_c_raw = noise::noise_accuracy_unclipped(m0, eval, eval_labels, 1.0, seed + 3, 10_000)?;
    let noisy_c = noise::gaussian_noise(&shown, 1.0, seed + 4, m0.input_bounds())?;
    let fig = Fig7 {
        panels,
        panel_c_png: out_dir.join("fig7c.png"),
        panel_c_accuracy: acc_c,
        panel_c_accuracy_unclipped: acc_c_raw,
        panel_c_model: m0.name().to_string(),
        eval_images: Some(eval.size()[0] as usize),
    };
    let images = Fig7Images {
        shown: shown.f_to_kind(Kind::Float)?,
        panels: panel_images,
        panel_c_noisy: noisy_c,
    };
    crate::results::fig7::write(out_dir, &fig, &images)?;
    Ok(fig)
}
