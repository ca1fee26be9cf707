//! Result files of the paper's attack (§4.1): the adversarial set `adversarial.safetensors`, one CSV row
//! per example (`attack.csv`) and the run's `summary.json`, with their readers. The distortion of the
//! paper, sqrt(Σ(x′ − x)²/n), is defined here once, for the attack's verification, the transfer tables
//! and the figures alike.
//!
//! Files of earlier versions (without margins, the `already_adversarial` flags or the source model's
//! record) stay readable: the new fields default to NaN, `false` and none.

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
    /// Target logit − highest other logit (untargeted: highest other − the label's logit) of the
    /// returned example in the verifying forward pass (NaN on failure; `null` in JSON).
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub margin: f64,
    /// Adversarial before any perturbation (distortion 0, c = 0): counted in the success rate, left out
    /// of the mean distortion.
    #[serde(default)]
    pub already_adversarial: bool,
}

fn nan() -> f64 {
    f64::NAN
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
    /// Verified successes, the already adversarial examples included.
    pub successes: usize,
    /// successes / examples: the share of examples the model classifies as the target (untargeted: not
    /// as the label) by the margin after the attack, the already adversarial ones included (Table 1's
    /// "0% accuracy" view).
    pub success_rate: f64,
    /// Examples adversarial before any perturbation (classified as the target, or untargeted not as the
    /// label, by the margin): part of `successes`, not of `mean_distortion`.
    #[serde(default)]
    pub already_adversarial: usize,
    /// Mean distortion over the successful examples that needed a perturbation (the already
    /// adversarial ones left out; NaN, `null` in JSON, when there are none).
    #[serde(deserialize_with = "nan_if_null")]
    pub mean_distortion: f64,
    /// κ: the margin every success has (target logit − highest other logit ≥ κ); 0 in files of earlier
    /// versions (they required the target to be the argmax).
    #[serde(default)]
    pub min_margin: f64,
    /// The smallest verified margin over the successes (NaN when none).
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub smallest_margin: f64,
    /// Mean forward+backward evaluations per example.
    pub evaluations_per_image: f64,
    /// Examples per second of attack time (chunks done in this invocation and earlier ones).
    pub images_per_second: f64,
    pub seconds: f64,
    pub device: String,
    pub batch: i64,
    /// The attack's settings (the c search and each L-BFGS-B solve), as recorded by the attack.
    pub settings: serde_json::Value,
    /// The model file or folder the adversarials were made for (absolute when known), so that
    /// `blindspot transfer` and `blindspot verify` can re-verify them on it.
    #[serde(default)]
    pub model_path: Option<std::path::PathBuf>,
    /// SHA-256 of that model's weights (`Classifier::fingerprint`): a model with other weights is
    /// refused.
    #[serde(default)]
    pub model_fingerprint: Option<String>,
    /// Chunks loaded on resume whose stored successes failed re-verification on the model, and were
    /// therefore attacked again.
    #[serde(default)]
    pub redone_chunks: usize,
}

/// The header of `attack.csv` (the last two columns are new; earlier columns keep their positions).
pub const CSV_HEADER: [&str; 12] = [
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
    "margin",
    "already_adversarial",
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
            format!("{:e}", r.margin),
            (r.already_adversarial as u8).to_string(),
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
/// untargeted), `success` [N] u8, `already_adversarial` [N] u8 (successes that needed no perturbation),
/// `margin` [N] f64 (each success's verified margin, NaN on failure).
pub struct AdversarialSet {
    pub adversarial: Tensor,
    pub original: Tensor,
    pub label: Tensor,
    pub target: Tensor,
    pub success: Tensor,
    pub already_adversarial: Tensor,
    pub margin: Tensor,
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
                ("already_adversarial", &self.already_adversarial),
                ("margin", &self.margin),
            ],
        )
    }

    /// Reads a whole `adversarial.safetensors` (CPU) and checks that its tensors fit together. Files of
    /// earlier versions: without `target` every row reads as untargeted (−1); without
    /// `already_adversarial` a success whose adversarial equals its original is one; without `margin`
    /// the margins are NaN.
    pub fn read(file: &Path) -> Result<Self> {
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
        let target = take("target").ok();
        let already = take("already_adversarial").ok();
        let margin = take("margin").ok();
        let bad = |t: &Option<Tensor>| t.as_ref().is_some_and(|t| t.size() != [n]);
        if orig.size() != adv.size()
            || orig.size().first() != Some(&n)
            || ok.size() != [n]
            || bad(&target)
            || bad(&already)
            || bad(&margin)
        {
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
        let success = ok.f_to_kind(Kind::Uint8)?;
        let already = match already {
            Some(a) => a.f_to_kind(Kind::Uint8)?,
            None => adv
                .f_eq_tensor(&orig)?
                .f_reshape([n, -1])?
                .f_all_dim(-1, false)?
                .f_logical_and(&success)?
                .f_to_kind(Kind::Uint8)?,
        };
        Ok(AdversarialSet {
            original: orig.f_to_kind(Kind::Float)?,
            adversarial: adv.f_to_kind(Kind::Float)?,
            label: lab.f_to_kind(Kind::Int64)?,
            target: match target {
                Some(t) => t.f_to_kind(Kind::Int64)?,
                None => Tensor::f_full([n], -1, (Kind::Int64, tch::Device::Cpu))?,
            },
            success,
            already_adversarial: already,
            margin: match margin {
                Some(m) => m.f_to_kind(Kind::Double)?,
                None => Tensor::f_full([n], f64::NAN, (Kind::Double, tch::Device::Cpu))?,
            },
        })
    }

    /// Whether the set is targeted (every target ≥ 0); an empty or untargeted set is not.
    pub fn targeted(&self) -> Result<bool> {
        Ok(self.target.numel() > 0 && self.target.f_min()?.f_int64_value(&[])? >= 0)
    }
}

/// The successful examples of an attack's `adversarial.safetensors` that needed a perturbation (CPU):
/// originals x [M, ..], adversarials x′ [M, ..] (f32), labels, targets (−1 untargeted) and data
/// positions [M] (i64).
pub struct Adversarials {
    pub original: Tensor,
    pub adversarial: Tensor,
    pub labels: Tensor,
    pub targets: Tensor,
    pub positions: Tensor,
}

/// Reads an attack's `adversarial.safetensors`, keeping its successful examples that needed a
/// perturbation (failures carry the original image; the already adversarial ones are not adversarial
/// examples of the attack); checks that the tensors fit together.
pub fn read_adversarials(file: &Path) -> Result<Adversarials> {
    let set = AdversarialSet::read(file)?;
    let keep = set
        .success
        .f_to_kind(Kind::Bool)?
        .f_logical_and(
            &set.already_adversarial
                .f_to_kind(Kind::Bool)?
                .f_logical_not()?,
        )?
        .f_nonzero()?
        .f_view([-1])?; // [M]
    if keep.size()[0] == 0 {
        return Err(Error::format(
            file,
            "no successful adversarial in this file",
        ));
    }
    Ok(Adversarials {
        original: set.original.f_index_select(0, &keep)?,
        adversarial: set.adversarial.f_index_select(0, &keep)?,
        labels: set.label.f_index_select(0, &keep)?,
        targets: set.target.f_index_select(0, &keep)?,
        positions: keep,
    })
}

/// The `summary.json` beside an attack's `adversarial.safetensors` (`file`), if there is one that reads.
pub fn summary_beside(file: &Path) -> Option<AttackSummary> {
    let dir = file.parent()?;
    crate::io::read_json::<AttackSummary>(&dir.join("summary.json")).ok()
}
