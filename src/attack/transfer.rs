//! Cross-model generalisation of adversarial examples: Tables 2 and 4 of the paper (§4.2).
//!
//! Rows are sets of examples, columns are models, a cell is the error of the column's model on the row's
//! examples (share of examples whose predicted class differs from the true label):
//! - `adversarial` rows: the verified adversarials of an attack (its `adversarial.safetensors`; failed
//!   examples, which carry the original image, and examples that were adversarial before any
//!   perturbation are left out). Table 2 uses training-set adversarials of the Table 1 models, Table 4
//!   test-set adversarials of M1, M1′, M2.
//! - `gaussian` rows: the attacked originals of the first row plus i.i.d. N(0, σ²) noise, clipped to the
//!   input box unless `clip_noise` is off (Table 2: σ = 0.1, 0.3; Table 4: 0.06, 0.1; the paper lists σ as
//!   their distortion, which only unclipped noise has).
//! - `amplified` rows (Table 4): x + a·r/d(r) with r = x′ − x and d(r) = sqrt(Σr²/n) the distortion, so
//!   each perturbation is scaled to distortion a ("magnified to have a stddev of 0.1"), clipped to the box.
//!
//! The distortion column is measured on the images actually evaluated (after clipping), averaged over the
//! row's examples.
//!
//! **Every row is re-verified on its source model** before it is used: the file's `success` flags are not
//! trusted. The source model is the one given ([`transfer_checked`]), else the column whose weight
//! fingerprint equals the one the attack recorded in its `summary.json`, else the model at the recorded
//! path; a model whose fingerprint differs from the recorded one is refused, and a file without a record
//! (earlier versions) needs the model given. Examples that are no longer adversarial on it (classified
//! as the target, untargeted: not as the label, in a fresh forward pass) are left out of every row of
//! that source and counted in the row's `unverified`.

use super::AttackError;
use crate::models::Classifier;
use crate::results::attack::{distortions, read_adversarials, summary_beside, Adversarials};
pub use crate::results::transfer::{Row, RowKind, TransferTable};
use crate::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// An attack's output: the model it was made for and its `adversarial.safetensors`.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub file: PathBuf,
}

fn mean(t: &Tensor) -> Result<f64> {
    Ok(t.f_mean(Kind::Double)?.f_double_value(&[])?)
}

/// Error of each model on `x` [N, ..] with labels `y` [N].
fn errors(models: &[&dyn Classifier], x: &Tensor, y: &Tensor, batch: i64) -> Result<Vec<f64>> {
    models
        .iter()
        .map(|m| crate::models::classifier::accuracy(*m, x, y, batch).map(|a| 1.0 - a))
        .collect()
}

/// Settings of a transfer table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferSpec {
    /// Gaussian-noise rows: their stddevs.
    #[serde(default)]
    pub noise: Vec<f64>,
    /// Amplified rows: the distortion every adversarial perturbation is scaled to (one row per source
    /// and value).
    #[serde(default)]
    pub amplify: Vec<f64>,
    /// Images per forward pass.
    #[serde(default = "super::default_batch")]
    pub batch: i64,
    /// Clip noisy images to the input box (valid images); `false` keeps x + noise as it is, so the
    /// row's distortion is σ (the paper's tables list σ as the distortion).
    #[serde(default = "super::default_true")]
    pub clip_noise: bool,
}

impl Default for TransferSpec {
    fn default() -> Self {
        Self {
            noise: Vec::new(),
            amplify: Vec::new(),
            batch: super::DEFAULT_BATCH,
            clip_noise: true,
        }
    }
}

impl TransferSpec {
    /// Checks the values; the error names the field.
    pub fn validate(&self) -> std::result::Result<(), AttackError> {
        let bad = |field, why| Err(AttackError::TransferSetting { field, why });
        if let Some(s) = self.noise.iter().find(|s| !(s.is_finite() && **s >= 0.0)) {
            return bad("noise", format!("stddev {s} must be finite and ≥ 0"));
        }
        if let Some(a) = self.amplify.iter().find(|a| !(a.is_finite() && **a > 0.0)) {
            return bad("amplify", format!("distortion {a} must be finite and > 0"));
        }
        if self.batch < 1 {
            return bad("batch", format!("{} must be ≥ 1", self.batch));
        }
        Ok(())
    }
}

/// The first 12 hex digits of a fingerprint, for messages.
fn short(fp: &str) -> String {
    fp.chars().take(12).collect()
}

/// The model `src`'s adversarials were made for: `given`, else the column with the recorded weight
/// fingerprint, else the model at the recorded path (loaded on the columns' device, kept in `loaded`);
/// its fingerprint must equal the recorded one.
fn source_model<'a>(
    src: &Source,
    given: Option<&'a dyn Classifier>,
    models: &[(String, &'a dyn Classifier)],
    col_fps: &[String],
    loaded: &'a mut Option<Box<dyn Classifier>>,
) -> Result<&'a dyn Classifier> {
    let record = summary_beside(&src.file);
    let recorded = record.as_ref().and_then(|s| s.model_fingerprint.clone());
    if let Some(m) = given {
        super::recheck::check_weights(&src.file, m, recorded.as_deref())?;
        return Ok(m);
    }
    let unknown = |why: String| AttackError::SourceUnknown {
        file: src.file.clone(),
        why,
    };
    let Some(fp) = recorded else {
        return Err(unknown(
            "no record of the model it was made for (summary.json without `model_fingerprint`: made by an earlier version?); give that model (`--source-models`) or re-run the attack".into(),
        )
        .into());
    };
    if let Some(k) = col_fps.iter().position(|c| *c == fp) {
        return Ok(models[k].1);
    }
    let Some(path) = record.and_then(|s| s.model_path) else {
        return Err(unknown(format!(
            "no column has the weights it was made for ({}) and no model path is recorded; give that model (`--source-models`)",
            short(&fp)
        ))
        .into());
    };
    let m = crate::models::torchscript::load_classifier(&path, models[0].1.device()).map_err(
        |e| {
            unknown(format!(
                "the recorded model {} does not load ({e}); give the model it was made for (`--source-models`)",
                path.display()
            ))
        },
    )?;
    let m: &'a dyn Classifier = &**loaded.insert(m);
    if fp != m.fingerprint()? {
        return Err(AttackError::SourceWeights {
            file: src.file.clone(),
            model: format!("the recorded model {}", path.display()),
            recorded: short(&fp),
            got: short(&m.fingerprint()?),
        }
        .into());
    }
    Ok(m)
}

/// The examples of `ex` still adversarial on `model` (fresh forward passes of `batch`), and how many
/// were not.
fn reverified(model: &dyn Classifier, ex: Adversarials, batch: i64) -> Result<(Adversarials, i64)> {
    let n = ex.labels.size()[0];
    let targeted = ex.targets.numel() > 0 && ex.targets.f_min()?.f_int64_value(&[])? >= 0;
    let mut ok = Vec::with_capacity(n as usize);
    for start in (0..n).step_by(batch.max(1) as usize) {
        let len = batch.min(n - start);
        let part = |t: &Tensor| t.f_narrow(0, start, len);
        let tg = if targeted {
            Some(part(&ex.targets)?)
        } else {
            None
        };
        let v = super::verify(
            model,
            &part(&ex.original)?,
            &part(&ex.adversarial)?,
            &part(&ex.labels)?,
            tg.as_ref(),
            0.0,
        )?;
        ok.extend(v.iter().map(|v| v.ok));
    }
    let dropped = ok.iter().filter(|k| !**k).count() as i64;
    if dropped == 0 {
        return Ok((ex, 0));
    }
    let keep = Tensor::f_from_slice(&ok)?.f_nonzero()?.f_view([-1])?;
    let pick = |t: &Tensor| t.f_index_select(0, &keep);
    Ok((
        Adversarials {
            original: pick(&ex.original)?,
            adversarial: pick(&ex.adversarial)?,
            labels: pick(&ex.labels)?,
            targets: pick(&ex.targets)?,
            positions: pick(&ex.positions)?,
        },
        dropped,
    ))
}

/// Computes the table: `sources` give the adversarial (and amplified) rows, the first source's originals
/// the Gaussian rows; `models` are the columns. Each source's adversarials are re-verified on the model
/// they were made for, found from the attack's record ([`transfer_checked`] with no model given).
/// Deterministic for a given `seed`.
pub fn transfer(
    sources: &[Source],
    models: &[(String, &dyn Classifier)],
    spec: &TransferSpec,
    seed: u64,
) -> Result<TransferTable> {
    transfer_checked(sources, &[], models, spec, seed)
}

/// [`transfer`] with the model each source was made for given where known: `source_models[i]` for
/// `sources[i]` (missing or None: the column with the recorded weights, else the recorded path). A
/// model whose weights differ from the recorded ones is refused.
pub fn transfer_checked(
    sources: &[Source],
    source_models: &[Option<&dyn Classifier>],
    models: &[(String, &dyn Classifier)],
    spec: &TransferSpec,
    seed: u64,
) -> Result<TransferTable> {
    spec.validate()?;
    if sources.is_empty() || models.is_empty() {
        return Err(AttackError::TransferEmpty.into());
    }
    let bounds = models[0].1.input_bounds();
    if let Some((n, m)) = models.iter().find(|(_, m)| m.input_bounds() != bounds) {
        return Err(AttackError::TransferBoxes {
            model: n.clone(),
            got: m.input_bounds(),
            first: models[0].0.clone(),
            want: bounds,
        }
        .into());
    }
    let cols: Vec<&dyn Classifier> = models.iter().map(|(_, m)| *m).collect();
    let col_fps = cols
        .iter()
        .map(|m| m.fingerprint())
        .collect::<Result<Vec<_>>>()?;
    let mut rows = Vec::new();
    let bar = crate::progress::bar(sources.len() as u64, "transfer", "sources");
    for (si, src) in sources.iter().enumerate() {
        let ex = read_adversarials(&src.file)?;
        let given = source_models.get(si).copied().flatten();
        let mut loaded = None;
        let own = source_model(src, given, models, &col_fps, &mut loaded)?;
        for (name, m) in models
            .iter()
            .chain([(format!("{} (source)", own.name()), own)].iter())
        {
            crate::models::classifier::check_input(*m, &ex.adversarial.narrow(0, 0, 1)).map_err(
                |e| AttackError::TransferShape {
                    file: src.file.clone(),
                    model: name.clone(),
                    why: e.to_string(),
                },
            )?;
        }
        let (ex, unverified) = reverified(own, ex, spec.batch)?;
        if unverified > 0 {
            log::warn!(
                "{}: {unverified} stored success(es) are not adversarial on their source model `{}`; left out",
                src.file.display(),
                own.name()
            );
        }
        let n = ex.labels.size()[0];
        // A row of images `x` [M, ..] whose per-example distortions are `d` [M].
        let row = |kind, param, x: &Tensor, d: &Tensor| -> Result<Row> {
            Ok(Row {
                kind,
                source: src.name.clone(),
                param,
                examples: n,
                unverified,
                distortion: mean(d)?,
                errors: errors(&cols, x, &ex.labels, spec.batch)?,
            })
        };
        let d = distortions(&ex.adversarial, &ex.original)?; // [M]
        rows.push(row(RowKind::Adversarial, None, &ex.adversarial, &d)?);
        for &a in &spec.amplify {
            // x + a·r/d(r); examples with d = 0 (already of the target class) keep x.
            let shape: Vec<i64> = std::iter::once(n)
                .chain(std::iter::repeat_n(1, ex.original.dim() - 1))
                .collect();
            let scale = d
                .f_clamp_min(1e-12)?
                .f_reciprocal()?
                .f_mul_scalar(a)?
                .f_where_self(&d.f_gt(0.0)?, &d.f_zeros_like()?)?
                .f_to_kind(Kind::Float)?
                .f_view(shape.as_slice())?; // [M, 1, ..]
            let x = ex
                .adversarial
                .f_sub(&ex.original)?
                .f_mul(&scale)?
                .f_add(&ex.original)?
                .f_clamp(bounds.0, bounds.1)?;
            let dx = distortions(&x, &ex.original)?;
            rows.push(row(RowKind::Amplified, Some(a), &x, &dx)?);
        }
        if si == 0 {
            let box_ = if spec.clip_noise {
                bounds
            } else {
                (f64::NEG_INFINITY, f64::INFINITY)
            };
            for (k, &s) in spec.noise.iter().enumerate() {
                let x = super::noise::gaussian_noise(
                    &ex.original,
                    s,
                    seed.wrapping_add(k as u64),
                    box_,
                )?;
                let dx = distortions(&x, &ex.original)?;
                rows.push(row(RowKind::Gaussian, Some(s), &x, &dx)?);
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    // Paper order: adversarial rows, amplified rows, Gaussian rows.
    rows.sort_by_key(|r| match r.kind {
        RowKind::Adversarial => 0,
        RowKind::Amplified => 1,
        RowKind::Gaussian => 2,
    });
    Ok(TransferTable {
        models: models.iter().map(|(n, _)| n.clone()).collect(),
        rows,
        seed,
        clip_noise: spec.clip_noise,
    })
}

/// The source behind a path given to `--adversarials`.
pub fn source_of(p: &Path) -> Result<Source> {
    let (dir, file) = if p.is_dir() {
        (p.to_path_buf(), p.join("adversarial.safetensors"))
    } else {
        (
            p.parent().map(Path::to_path_buf).unwrap_or_default(),
            p.to_path_buf(),
        )
    };
    if !file.is_file() {
        return Err(AttackError::NoAdversarials {
            path: p.to_path_buf(),
        }
        .into());
    }
    let name = crate::io::read_json::<serde_json::Value>(&dir.join("summary.json"))
        .ok()
        .and_then(|v| v["model"].as_str().map(String::from))
        .unwrap_or_else(|| {
            let stem = dir.file_stem().unwrap_or(dir.as_os_str());
            crate::results::folder_name(&stem.to_string_lossy())
        });
    Ok(Source { name, file })
}
