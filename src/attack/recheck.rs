//! Re-evaluation of an attack's stored adversarials (`blindspot verify`): do the successes of an
//! `adversarial.safetensors` stay adversarial when the model is evaluated another way — in float64
//! (weights and inputs converted to double), at another batch size, with another number of threads, on
//! another device? This is how the default margin κ (`min_margin`) was chosen (docs/attack.md "The
//! margin").
//!
//! "Still adversarial" means inside the box, finite logits and margin > 0 (targeted: classified as the
//! target; untargeted: not as the label); the report also counts margins ≥ the attack's κ and compares
//! each fresh margin with the stored one (the attack's verifying pass).

use super::verify::{host_bools, margins};
use super::AttackError;
use crate::models::zoo::ZooModel;
use crate::models::{Classifier, Wrapper};
use crate::results::attack::{summary_beside, AdversarialSet};
use crate::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The arithmetic of the re-evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// The model as it is (float32).
    F32,
    /// Weights and inputs converted to float64 (zoo models).
    F64,
}

/// A zoo model evaluated in float64: its weights converted once, every input converted to double.
pub struct Double {
    inner: ZooModel,
    fingerprint: String,
}

impl Double {
    /// The float64 copy of `m` (its fingerprint stays that of the float32 weights).
    pub fn new(m: &ZooModel) -> Result<Self> {
        let fingerprint = m.fingerprint()?;
        let theta = m.theta.f_to_kind(Kind::Double)?;
        Ok(Double {
            inner: ZooModel::new(&m.name, m.arch.clone(), theta, m.record.clone())?,
            fingerprint,
        })
    }
}

impl Wrapper for Double {
    fn inner(&self) -> &dyn Classifier {
        &self.inner
    }
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.inner.logits(&x.f_to_kind(Kind::Double)?)
    }
    fn layer(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        self.inner.layer(&x.f_to_kind(Kind::Double)?, name)
    }
    fn fingerprint(&self) -> Result<String> {
        Ok(self.fingerprint.clone())
    }
}

/// Loads the model at `path` on `device` in `precision` (float64 needs a zoo model folder).
pub fn load(path: &Path, device: Device, precision: Precision) -> Result<Box<dyn Classifier>> {
    match precision {
        Precision::F32 => crate::models::torchscript::load_classifier(path, device),
        Precision::F64 => {
            if !path.join("model.json").is_file() {
                return Err(AttackError::DoubleNeedsZoo {
                    path: path.to_path_buf(),
                }
                .into());
            }
            Ok(Box::new(Double::new(&ZooModel::load(path, device)?)?))
        }
    }
}

/// The model an attack's `file` was made for: `given`, else the path its `summary.json` records; and
/// the weight fingerprint recorded there (None for files of earlier versions).
pub fn source_path(file: &Path, given: Option<&Path>) -> Result<(PathBuf, Option<String>)> {
    let record = summary_beside(file);
    let fp = record.as_ref().and_then(|s| s.model_fingerprint.clone());
    if let Some(p) = given {
        return Ok((p.to_path_buf(), fp));
    }
    match record.and_then(|s| s.model_path) {
        Some(p) if p.exists() => Ok((p, fp)),
        Some(p) => Err(AttackError::SourceUnknown {
            file: file.to_path_buf(),
            why: format!(
                "the recorded model {} is missing; give the model with --model",
                p.display()
            ),
        }
        .into()),
        None => Err(AttackError::SourceUnknown {
            file: file.to_path_buf(),
            why: "no model path is recorded beside it (summary.json missing or from an earlier version); give the model with --model".into(),
        }
        .into()),
    }
}

/// Refuses `model` when its weights are not the `recorded` ones.
pub fn check_weights(file: &Path, model: &dyn Classifier, recorded: Option<&str>) -> Result<()> {
    let got = model.fingerprint()?;
    match recorded {
        Some(fp) if fp != got => Err(AttackError::SourceWeights {
            file: file.to_path_buf(),
            model: format!("`{}`", model.name()),
            recorded: fp.chars().take(12).collect(),
            got: got.chars().take(12).collect(),
        }
        .into()),
        _ => Ok(()),
    }
}

/// A stored success that is not adversarial in the re-evaluation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Flipped {
    /// Row of the adversarial set (position in the attacked examples).
    pub row: i64,
    pub label: i64,
    /// −1 when untargeted.
    pub target: i64,
    /// The class the model gives it now.
    pub predicted: i64,
    /// The margin of the attack's verifying pass (NaN in files of earlier versions).
    pub stored_margin: f64,
    /// The margin now (NaN when not finite).
    pub margin: f64,
}

/// One example's fresh evaluation (the rows of `blindspot verify --csv`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fresh {
    pub row: i64,
    pub stored_margin: f64,
    pub margin: f64,
    /// max_j |z_j| of the fresh logits: the scale the rounding of the logits grows with.
    pub max_abs_logit: f64,
}

/// The result of a re-evaluation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Recheck {
    pub model: String,
    pub precision: Precision,
    pub batch: i64,
    /// libtorch intra-op threads during the re-evaluation.
    pub threads: i32,
    pub device: String,
    /// κ the attack recorded (0 for files of earlier versions).
    pub min_margin: f64,
    pub examples: usize,
    pub stored_successes: usize,
    /// Inside the box, finite, margin > 0.
    pub still_adversarial: usize,
    /// Margin ≥ κ as well.
    pub past_min_margin: usize,
    /// max |fresh margin − stored margin| over the stored successes with a stored margin.
    pub max_margin_change: f64,
    /// Quantiles (q, value) of the fresh margins of the stored successes.
    pub margin_quantiles: Vec<(f64, f64)>,
    pub flipped: Vec<Flipped>,
}

/// The quantiles reported by [`recheck`].
const QUANTILES: [f64; 7] = [0.0, 0.001, 0.01, 0.1, 0.5, 0.9, 1.0];

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Re-evaluates the stored successes of `set` on `model` in batches of `batch`. `min_margin`: the κ the
/// attack used. Returns the summary and every success's fresh margin.
pub fn recheck(
    model: &dyn Classifier,
    set: &AdversarialSet,
    batch: i64,
    min_margin: f64,
    precision: Precision,
) -> Result<(Recheck, Vec<Fresh>)> {
    let _g = tch::no_grad_guard();
    let n = set.label.size()[0];
    let rows = set
        .success
        .f_to_kind(Kind::Bool)?
        .f_nonzero()?
        .f_view([-1])?; // [M]
    let m = rows.size()[0];
    let targeted = set.targeted()?;
    let (lo, hi) = model.input_bounds();
    let dev = model.device();
    let mut fresh = Vec::with_capacity(m as usize);
    let mut flipped = Vec::new();
    let mut still = 0;
    for start in (0..m).step_by(batch.max(1) as usize) {
        let r = rows.f_narrow(0, start, batch.min(m - start))?;
        let x = set.adversarial.f_index_select(0, &r)?.f_to_device(dev)?; // [b, ..] f32
        let lab = set.label.f_index_select(0, &r)?;
        let tgt = set.target.f_index_select(0, &r)?;
        let class = if targeted { &tgt } else { &lab };
        let flat = x.f_flatten(1, -1)?;
        let inside = host_bools(
            &flat
                .f_ge(lo)?
                .f_logical_and(&flat.f_le(hi)?)?
                .f_all_dim(-1, false)?,
        )?;
        let logits = model.logits(&x)?; // [b, K]
        let host = |t: Tensor| -> Result<Vec<f64>> {
            Ok(Vec::<f64>::try_from(
                &t.f_to_kind(Kind::Double)?.f_to_device(Device::Cpu)?,
            )?)
        };
        let mg = host(margins(&logits, class, targeted)?)?;
        let scale = host(logits.f_abs()?.f_amax([-1i64].as_slice(), false)?)?;
        let pred: Vec<i64> = Vec::try_from(&logits.f_argmax(-1, false)?.f_to_device(Device::Cpu)?)?;
        let ri: Vec<i64> = Vec::try_from(&r)?;
        for (j, &row) in ri.iter().enumerate() {
            let stored = set.margin.f_double_value(&[row])?;
            let margin = if mg[j].is_finite() { mg[j] } else { f64::NAN };
            fresh.push(Fresh {
                row,
                stored_margin: stored,
                margin,
                max_abs_logit: scale[j],
            });
            if inside[j] && margin > 0.0 {
                still += 1;
            } else {
                flipped.push(Flipped {
                    row,
                    label: set.label.f_int64_value(&[row])?,
                    target: set.target.f_int64_value(&[row])?,
                    predicted: pred[j],
                    stored_margin: stored,
                    margin,
                });
            }
        }
    }
    let mut sorted: Vec<f64> = fresh
        .iter()
        .map(|f| f.margin)
        .filter(|m| !m.is_nan())
        .collect();
    sorted.sort_by(f64::total_cmp);
    let change = fresh
        .iter()
        .filter(|f| f.stored_margin.is_finite() && f.margin.is_finite())
        .map(|f| (f.margin - f.stored_margin).abs())
        .fold(0.0, f64::max);
    let summary = Recheck {
        model: model.name().to_string(),
        precision,
        batch,
        threads: tch::get_num_threads(),
        device: format!("{dev:?}"),
        min_margin,
        examples: n as usize,
        stored_successes: m as usize,
        still_adversarial: still,
        past_min_margin: fresh
            .iter()
            .filter(|f| super::verify::past_margin(f.margin, min_margin))
            .count(),
        max_margin_change: change,
        margin_quantiles: QUANTILES
            .iter()
            .map(|&q| (q, quantile(&sorted, q)))
            .collect(),
        flipped,
    };
    Ok((summary, fresh))
}

/// `blindspot verify`'s library side: reads `file` (an attack's `adversarial.safetensors`), loads its
/// model (`given`, else the recorded path) in `precision` on `device`, refuses other weights, re-evaluates.
pub fn recheck_file(
    file: &Path,
    given: Option<&Path>,
    device: Device,
    precision: Precision,
    batch: i64,
) -> Result<(Recheck, Vec<Fresh>)> {
    if batch < 1 {
        return Err(AttackError::Batch(batch).into());
    }
    let set = AdversarialSet::read(file)?;
    let (path, recorded) = source_path(file, given)?;
    let model = load(&path, device, precision)?;
    check_weights(file, model.as_ref(), recorded.as_deref())?;
    let kappa = summary_beside(file).map_or(0.0, |s| s.min_margin);
    recheck(model.as_ref(), &set, batch, kappa, precision)
}
