//! Verification of every returned adversarial in a fresh forward pass (§4.1): inside the model's box
//! exactly, finite outputs, and past the margin κ (`min_margin`): target logit − highest other logit ≥ κ
//! (untargeted: highest other logit − the label's logit ≥ κ), and > 0, so κ = 0 means "classified as the
//! target" with ties refused. The distortion is recomputed in f64. Nothing counts as a success without
//! passing here.
//!
//! The same margin decides success inside the c search ([`super::lbfgs`]), so the search looks for
//! examples past the margin instead of this check discarding them.

use super::AttackError;
use crate::models::Classifier;
use crate::results::attack::distortions;
use crate::Result;
use tch::{Device, Kind, Tensor};

/// A tensor of booleans (any integer or bool kind, any device) as host booleans.
pub(crate) fn host_bools(t: &Tensor) -> Result<Vec<bool>> {
    Ok(
        Vec::<i64>::try_from(&t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Int64)?)?
            .into_iter()
            .map(|v| v != 0)
            .collect(),
    )
}

/// The adversarial margin of each row, in the logits' kind and on their device: `logits` [b, K],
/// `class` [b] (target, or label when untargeted) → [b]: z_class − max_{j≠class} z_j (targeted) or
/// max_{j≠class} z_j − z_class (untargeted). Positive = adversarial; NaN/inf where the logits are not
/// finite.
pub fn margins(logits: &Tensor, class: &Tensor, targeted: bool) -> Result<Tensor> {
    let k = logits.size()[1];
    let class = class.f_to_device(logits.device())?.f_to_kind(Kind::Int64)?;
    let zc = logits
        .f_gather(1, &class.f_unsqueeze(1)?, false)?
        .f_squeeze_dim(1)?; // [b]
    let onehot = class.f_one_hot(k)?.f_to_kind(Kind::Bool)?; // [b, K]
    let others = logits
        .f_masked_fill(&onehot, f64::NEG_INFINITY)?
        .f_amax([-1i64].as_slice(), false)?; // [b]
    let m = zc.f_sub(&others)?;
    Ok(if targeted { m } else { m.f_neg()? })
}

/// Is `m` past the margin `min_margin` (and strictly positive)?
pub(crate) fn past_margin(m: f64, min_margin: f64) -> bool {
    m > 0.0 && m >= min_margin
}

/// The verdict of the logits of one batch: per row, adversarial past the margin, finite output, margin.
pub(crate) struct Rows {
    pub adv: Vec<bool>,
    pub finite: Vec<bool>,
    /// The margin (f64 of the logits' value; NaN where the output is not finite).
    pub margin: Vec<f64>,
}

/// Is each row adversarial with margin ≥ `min_margin`? `logits` [b, K] → host vectors [b].
pub(crate) fn adversarial_rows(
    logits: &Tensor,
    class: &Tensor,
    targeted: bool,
    min_margin: f64,
) -> Result<Rows> {
    let finite = host_bools(&logits.f_isfinite()?.f_all_dim(-1, false)?)?; // [b]
    let m = Vec::<f64>::try_from(
        &margins(logits, class, targeted)?
            .f_to_kind(Kind::Double)?
            .f_to_device(Device::Cpu)?,
    )?;
    let margin: Vec<f64> = m
        .iter()
        .zip(&finite)
        .map(|(&m, &f)| if f { m } else { f64::NAN })
        .collect();
    let adv = margin.iter().map(|&m| past_margin(m, min_margin)).collect();
    Ok(Rows {
        adv,
        finite,
        margin,
    })
}

/// The verdict on one returned example.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Inside the box, finite output, margin ≥ κ (and > 0).
    pub ok: bool,
    /// sqrt(Σ(x' − x)²/n) in f64.
    pub distortion: f64,
    /// Target logit − highest other (untargeted: highest other − label's logit) in this forward pass;
    /// NaN when the output is not finite.
    pub margin: f64,
    /// Why it is not a success.
    pub reason: Option<String>,
}

/// Verify `adversarial` against `original` in a fresh forward pass: inside the model's box exactly,
/// finite outputs, and margin ≥ `min_margin` (> 0) for `target` (targeted) or away from `label`.
/// Returns one [`Verdict`] per example; distortion = sqrt(Σ(x' − x)²/n) in f64.
pub fn verify(
    model: &dyn Classifier,
    original: &Tensor,
    adversarial: &Tensor,
    labels: &Tensor,
    targets: Option<&Tensor>,
    min_margin: f64,
) -> Result<Vec<Verdict>> {
    crate::models::classifier::check_input(model, adversarial)?;
    if original.size() != adversarial.size() {
        return Err(AttackError::PairShape {
            original: original.size(),
            adversarial: adversarial.size(),
        }
        .into());
    }
    let _g = tch::no_grad_guard();
    let b = adversarial.size()[0];
    let dev = model.device();
    let (lo, hi) = model.input_bounds();
    let adv = adversarial.f_to_device(dev)?.f_to_kind(Kind::Float)?;
    let flat = adv.f_reshape([b, -1])?; // [b, n]
    let inside = flat
        .f_ge(lo)?
        .f_logical_and(&flat.f_le(hi)?)?
        .f_all_dim(-1, false)?; // [b]
    let inside = host_bools(&inside)?;
    let dist = Vec::<f64>::try_from(
        &distortions(&adv, &original.f_to_device(dev)?)?.f_to_device(Device::Cpu)?,
    )?;
    let logits = model.logits(&adv)?; // [b, K]
    let class = targets.unwrap_or(labels).f_to_device(dev)?;
    let rows = adversarial_rows(&logits, &class, targets.is_some(), min_margin)?;
    Ok((0..b as usize)
        .map(|i| {
            let (distortion, margin) = (dist[i], rows.margin[i]);
            let reason = if !inside[i] {
                Some("outside the input box".to_string())
            } else if !rows.finite[i] {
                Some("model output not finite".to_string())
            } else if margin <= 0.0 {
                Some(format!(
                    "verification: {} (margin {margin:e})",
                    if targets.is_some() {
                        "not classified as the target"
                    } else {
                        "still classified as the label"
                    }
                ))
            } else if !rows.adv[i] {
                Some(format!(
                    "verification: margin {margin:e} below min_margin {min_margin:e}"
                ))
            } else {
                None
            };
            Verdict {
                ok: reason.is_none(),
                distortion,
                margin,
                reason,
            }
        })
        .collect())
}
