//! Result files of the paper's attack (§4.1): the adversarial set `adversarial.safetensors`, one CSV row
//! per example (`attack.csv`) and the run's `summary.json`, with their readers. The distortion of the
//! paper, sqrt(Σ(x′ − x)²/n), is defined here once, for the attack's verification, the transfer tables
//! and the figures alike.

use crate::results::Table;
use crate::{Error, Result};
use std::path::Path;
use tch::{Kind, Tensor};

/// One example's verified result (a row of `attack.csv`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ExampleResult {
    /// Index in the attacked set.
    pub index: i64,
    pub label: i64,
    /// −1 when untargeted.
    pub target: i64,
    /// Verified in a fresh forward pass.
    pub success: bool,
    /// c of the returned adversarial (NaN on failure; `null` in JSON).
    #[serde(deserialize_with = "nan_if_null")]
    pub c: f64,
    /// sqrt(Σ(x' − x)²/n), recomputed (NaN on failure; `null` in JSON).
    #[serde(deserialize_with = "nan_if_null")]
    pub distortion: f64,
    pub iterations: usize,
    pub evaluations: usize,
    /// Wall time of the example's chunk divided by the chunk's size.
    pub seconds: f64,
    /// Why it failed (empty on success).
    pub reason: String,
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    use serde::Deserialize;
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Summary of an attack run (`summary.json`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct AttackSummary {
    pub model: String,
    pub split: String,
    pub targeted: bool,
    pub examples: usize,
    pub successes: usize,
    pub success_rate: f64,
    /// Mean distortion over the successful examples.
    pub mean_distortion: f64,
    /// Mean forward+backward evaluations per example.
    pub evaluations_per_image: f64,
    /// Examples per second of attack time (chunks done in this invocation and earlier ones).
    pub images_per_second: f64,
    pub seconds: f64,
    pub device: String,
    pub batch: i64,
    /// The attack's settings (the c search and each L-BFGS-B solve), as recorded by the attack.
    pub settings: serde_json::Value,
}

/// The header of `attack.csv`.
pub const CSV_HEADER: [&str; 10] = [
    "index",
    "label",
    "target",
    "success",
    "c",
    "distortion",
    "iterations",
    "evaluations",
    "seconds",
    "reason",
];

/// Writes the per-example CSV atomically.
pub fn write_csv(path: &Path, rows: &[ExampleResult]) -> Result<()> {
    let mut t = Table::new(&CSV_HEADER);
    for r in rows {
        t.push(vec![
            r.index.to_string(),
            r.label.to_string(),
            r.target.to_string(),
            (r.success as u8).to_string(),
            format!("{:e}", r.c),
            format!("{:.6}", r.distortion),
            r.iterations.to_string(),
            r.evaluations.to_string(),
            format!("{:.6}", r.seconds),
            r.reason.clone(),
        ]);
    }
    t.write_csv(path)
}

/// The paper's distortion of each example, sqrt(Σ(x′ − x)²/n): `adversarial`, `original` [b, ..] → [b]
/// (f64, on their device).
pub fn distortions(adversarial: &Tensor, original: &Tensor) -> Result<Tensor> {
    let b = adversarial.size()[0];
    Ok(adversarial
        .f_to_kind(Kind::Double)?
        .f_sub(&original.f_to_kind(Kind::Double)?)?
        .f_reshape([b, -1])?
        .f_square()?
        .f_mean_dim([-1i64].as_slice(), false, Kind::Double)?
        .f_sqrt()?)
}

/// An attack's whole adversarial set, as `adversarial.safetensors` holds it: `adversarial`, `original`
/// [N, ..] f32 (failures carry the original image), `label`, `target` [N] i64 (target −1 when
/// untargeted), `success` [N] u8.
pub struct AdversarialSet {
    pub adversarial: Tensor,
    pub original: Tensor,
    pub label: Tensor,
    pub target: Tensor,
    pub success: Tensor,
}

impl AdversarialSet {
    /// Writes `adversarial.safetensors` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::io::write_safetensors(
            path,
            &[
                ("adversarial", &self.adversarial),
                ("original", &self.original),
                ("label", &self.label),
                ("target", &self.target),
                ("success", &self.success),
            ],
        )
    }
}

/// The successful examples of an attack's `adversarial.safetensors` (CPU): originals x [M, ..],
/// adversarials x′ [M, ..] (f32), labels and data positions [M] (i64).
pub struct Adversarials {
    pub original: Tensor,
    pub adversarial: Tensor,
    pub labels: Tensor,
    pub positions: Tensor,
}

/// Reads an attack's `adversarial.safetensors`, keeping its successful examples (failures carry the
/// original image); checks that the tensors fit together.
pub fn read_adversarials(file: &Path) -> Result<Adversarials> {
    let mut map: std::collections::HashMap<String, Tensor> =
        crate::io::read_safetensors(file)?.into_iter().collect();
    let mut take = |k: &str| {
        map.remove(k).ok_or_else(|| {
            Error::format(
                file,
                format!("no `{k}` tensor (is this an attack's adversarial.safetensors?)"),
            )
        })
    };
    let (orig, adv, lab, ok) = (
        take("original")?,
        take("adversarial")?,
        take("label")?,
        take("success")?,
    );
    let n = lab.size().first().copied().unwrap_or(-1);
    if orig.size() != adv.size() || orig.size().first() != Some(&n) || ok.size() != [n] {
        return Err(Error::format(
            file,
            format!(
                "inconsistent shapes: original {:?}, adversarial {:?}, label {:?}, success {:?}",
                orig.size(),
                adv.size(),
                lab.size(),
                ok.size()
            ),
        ));
    }
    let keep = ok.f_to_kind(Kind::Bool)?.f_nonzero()?.f_view([-1])?; // [M]
    if keep.size()[0] == 0 {
        return Err(Error::format(
            file,
            "no successful adversarial in this file",
        ));
    }
    Ok(Adversarials {
        original: orig.f_index_select(0, &keep)?.f_to_kind(Kind::Float)?,
        adversarial: adv.f_index_select(0, &keep)?.f_to_kind(Kind::Float)?,
        labels: lab.f_index_select(0, &keep)?.f_to_kind(Kind::Int64)?,
        positions: keep,
    })
}
