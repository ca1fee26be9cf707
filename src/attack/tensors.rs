//! The attack on examples held in memory (the Python package's `blindspot.attack`): the examples are
//! checked as [`super::attack_dataset`] checks a data set (labels and targets in range, targets ≠ labels,
//! inside the model's box), then attacked in chunks of `batch` by the function its chunks go through
//! ([`super::attack_batch`], then [`super::verify`] in a fresh forward pass with the settings' margin,
//! failures carrying the original) — and nothing is written. The same examples, targets, settings, batch and thread count give the same
//! adversarials bit for bit as `blindspot attack` (python/tests/test_attack.py compares them).

use super::runner::attack_examples;
use super::{AttackError, AttackSettings};
use crate::models::Classifier;
use crate::results::attack::ExampleResult;
use crate::Result;
use tch::{Kind, Tensor};

/// What [`attack_tensors`] returns.
#[derive(Debug)]
pub struct TensorsOutcome {
    /// The verified adversarials, or the original where the attack failed: [N, ..input_shape] f32 on the
    /// model's device.
    pub adversarial: Tensor,
    /// One row per example, as in `attack.csv` (`index` = position in the batch; c and distortion NaN
    /// and a reason on failure).
    pub rows: Vec<ExampleResult>,
}

/// The checks of a data-set attack on examples in memory: `labels` [N] and `targets` [N] within the
/// model's classes, targets ≠ labels, `x` inside the box and not NaN. Returns the labels and targets on
/// the host.
fn check(
    model: &dyn Classifier,
    x: &Tensor,
    labels: &Tensor,
    targets: Option<&Tensor>,
) -> Result<(Vec<i64>, Option<Vec<i64>>)> {
    crate::models::classifier::check_input(model, x)?;
    let n = x.size()[0];
    if n == 0 {
        return Err(AttackError::Empty.into());
    }
    if labels.size() != [n] || targets.is_some_and(|t| t.size() != [n]) {
        return Err(AttackError::LabelShape {
            batch: n,
            labels: labels.size(),
            targets: targets.map(|t| t.size()),
        }
        .into());
    }
    let host = |t: &Tensor| -> Result<Vec<i64>> {
        Ok(Vec::try_from(
            &t.f_to_device(tch::Device::Cpu)?.f_to_kind(Kind::Int64)?,
        )?)
    };
    let k = model.num_classes();
    let lab = host(labels)?;
    if let Some(&bad) = lab.iter().find(|&&l| l < 0 || l >= k) {
        return Err(AttackError::LabelOutOfRange {
            label: bad,
            classes: k,
        }
        .into());
    }
    let tg = targets.map(host).transpose()?;
    for (i, (&t, &l)) in tg.iter().flatten().zip(&lab).enumerate() {
        if t < 0 || t >= k {
            let (target, entry, classes) = (t, i + 1, k);
            return Err(AttackError::TargetOutOfRange {
                target,
                entry,
                classes,
            }
            .into());
        }
        if t == l {
            let (target, entry, example) = (t, i + 1, i as i64);
            return Err(AttackError::TargetIsLabel {
                target,
                entry,
                example,
            }
            .into());
        }
    }
    let (lo, hi) = model.input_bounds();
    let bad = x
        .f_lt(lo)?
        .f_logical_or(&x.f_gt(hi)?)?
        .f_logical_or(&x.f_isnan()?)?;
    if i64::try_from(bad.f_any()?)? != 0 {
        return Err(AttackError::OutsideBox { lo, hi }.into());
    }
    Ok((lab, tg))
}

/// Attacks `x` [N, ..input_shape] (any device; inside the model's box) with `labels` [N] and `targets`
/// [N] (None = untargeted) in chunks of `batch`, every returned example verified in a fresh forward pass.
pub fn attack_tensors(
    model: &dyn Classifier,
    x: &Tensor,
    labels: &Tensor,
    targets: Option<&Tensor>,
    settings: &AttackSettings,
    batch: i64,
) -> Result<TensorsOutcome> {
    if batch <= 0 {
        return Err(AttackError::Batch(batch).into());
    }
    settings.validate()?;
    let (lab, tg) = check(model, x, labels, targets)?;
    let n = lab.len();
    let mut rows = Vec::with_capacity(n);
    let mut parts = Vec::new();
    for start in (0..n).step_by(batch as usize) {
        let range = start..(start + batch as usize).min(n);
        // A fresh copy of the chunk, as the data-set runner's index_select makes.
        let idx: Vec<i64> = range.clone().map(|i| i as i64).collect();
        let sel = Tensor::f_from_slice(&idx)?.f_to_device(x.device())?;
        let xc = x.f_index_select(0, &sel)?; // [len, ..]
        let targets = tg.as_ref().map(|t| &t[range.clone()]);
        let (adv, res) = attack_examples(model, &xc, (&idx, &lab[range], targets), settings)?;
        parts.push(adv);
        rows.extend(res);
    }
    Ok(TensorsOutcome {
        adversarial: Tensor::f_cat(&parts, 0)?,
        rows,
    })
}
