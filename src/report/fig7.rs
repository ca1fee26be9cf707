//! Fig 7 of the paper (§4.2): MNIST originals beside their adversarial examples (panels (a) softmax,
//! (b) N200-200-10; any two zoo models can be given) and beside the same images with Gaussian noise of
//! the same stddev as the adversarial perturbation; panel (c): Gaussian noise of stddev 1 with the
//! measured accuracy (paper: 51%).

use crate::attack::{self, noise, AttackSettings};
use crate::models::Classifier;
use crate::report::grid::{image_grid, GridOptions, GridRow};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Draws rows of grey-level images (each `[k, 1, H, W]`, values in [0, 1]) into a PNG with the report's
/// one grid drawer: one labelled row per entry, a title on top.
pub fn draw_grid(path: &Path, title: &str, rows: &[(String, Tensor)]) -> Result<()> {
    let rows: Vec<GridRow> = rows
        .iter()
        .map(|(label, t)| GridRow::new(label.clone(), (0..t.size()[0]).map(|i| t.get(i)).collect()))
        .collect();
    image_grid(
        path,
        &rows,
        &GridOptions {
            title: Some(title.to_string()),
            scale: 3,
            ..GridOptions::default()
        },
    )
}

/// Numbers behind one model's Fig 7 panel.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Fig7Panel {
    pub model: String,
    pub png: PathBuf,
    pub images: usize,
    pub successes: usize,
    /// Mean distortion (stddev of the perturbation) of the shown adversarials.
    pub stddev: f64,
    /// Accuracy on the shown adversarials (paper: 0%).
    pub adversarial_accuracy: f64,
    /// Accuracy of the model on `eval` images with Gaussian noise of the same stddev.
    pub noise_accuracy: f64,
}

/// Fig 7 as a whole.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Fig7 {
    pub panels: Vec<Fig7Panel>,
    pub panel_c_png: PathBuf,
    /// Accuracy of the first model on the `eval` images with Gaussian noise of stddev 1 (paper: 51%).
    pub panel_c_accuracy: f64,
    /// The same without clipping to [0, 1] (the paper does not say whether it clipped).
    pub panel_c_accuracy_unclipped: f64,
    pub panel_c_model: String,
}

/// Draws Fig 7 into `out_dir` (`fig7_<model>.png` per model, `fig7c.png`, `fig7.json`).
/// `shown` [k, 1, 28, 28] / `shown_labels` [k]: the images in the grids (k ≈ 10); `eval`/`eval_labels`:
/// where noise accuracies are measured (e.g. the test set). Targets are random ≠ label from `seed`.
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
        return Err(Error::Invalid("Fig 7 needs at least one model".into()));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let k = shown.size()[0];
    let labels: Vec<i64> = Vec::try_from(&shown_labels.f_to_kind(Kind::Int64)?)?;
    let mut panels = Vec::new();
    for (pi, m) in models.iter().enumerate() {
        let targets =
            Tensor::f_from_slice(&attack::random_targets(&labels, m.num_classes(), seed))?;
        let out = attack::attack_batch(*m, shown, shown_labels, Some(&targets), settings)?;
        let ver = attack::verify(*m, shown, &out.adversarial, shown_labels, Some(&targets))?;
        let ok: Vec<&(bool, f64, Option<String>)> = ver
            .iter()
            .zip(out.success.iter())
            .filter(|(v, s)| v.0 && **s)
            .map(|(v, _)| v)
            .collect();
        let stddev = ok.iter().map(|v| v.1).sum::<f64>() / ok.len().max(1) as f64;
        let adv = out.adversarial.f_to_device(Device::Cpu)?;
        let pred = crate::models::classifier::predict(*m, &adv, 1024)?;
        let adv_acc = pred
            .f_eq_tensor(shown_labels)?
            .f_to_kind(Kind::Double)?
            .f_mean(Kind::Double)?
            .f_double_value(&[])?;
        let noisy = noise::gaussian_noise(shown, stddev, seed + 1, m.input_bounds())?;
        let noise_acc = noise::noise_accuracy(*m, eval, eval_labels, stddev, seed + 2, 10_000)?;
        let diff = (&adv - shown.f_to_kind(Kind::Float)?)
            .f_mul_scalar(0.5 / (3.0 * stddev).max(1e-6))?
            + 0.5;
        let png = out_dir.join(format!("fig7_{}.png", m.name()));
        let letter = (b'a' + pi as u8) as char;
        draw_grid(
            &png,
            &format!(
                "Fig 7({letter}) {}: adversarial distortion {stddev:.3}, accuracy {:.0}%; Gaussian noise stddev {stddev:.3}: accuracy {:.1}%",
                m.name(),
                100.0 * adv_acc,
                100.0 * noise_acc
            ),
            &[
                ("original".into(), shown.shallow_clone()),
                ("adversarial".into(), adv),
                ("difference (x3)".into(), diff.f_clamp(0.0, 1.0)?),
                (format!("noise σ={stddev:.3}"), noisy),
            ],
        )?;
        panels.push(Fig7Panel {
            model: m.name().to_string(),
            png,
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
    let noisy_c = noise::gaussian_noise(shown, 1.0, seed + 4, m0.input_bounds())?;
    let panel_c_png = out_dir.join("fig7c.png");
    draw_grid(
        &panel_c_png,
        &format!(
            "Fig 7(c) Gaussian noise stddev 1: {} accuracy {:.1}% clipped to [0,1], {:.1}% unclipped (paper: 51%)",
            m0.name(),
            100.0 * acc_c,
            100.0 * acc_c_raw
        ),
        &[
            ("original".into(), shown.shallow_clone()),
            ("noise σ=1".into(), noisy_c),
        ],
    )?;
    let fig = Fig7 {
        panels,
        panel_c_png,
        panel_c_accuracy: acc_c,
        panel_c_accuracy_unclipped: acc_c_raw,
        panel_c_model: m0.name().to_string(),
    };
    crate::io::write_json(&out_dir.join("fig7.json"), &fig)?;
    Ok(fig)
}
