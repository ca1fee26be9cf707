//! The attack on examples held in memory (the Python package's `blindspot.attack`): the examples are
//! checked as [`super::attack_dataset`] checks a data set (labels and targets in range, targets ≠ labels,
//! inside the model's box), then attacked in chunks of `batch` exactly as its chunks are —
//! [`super::attack_batch`], then [`super::verify`] in a fresh forward pass, failures carrying the original
//! — and nothing is written. The same examples, targets, settings, batch and thread count give the same
//! adversarials bit for bit as `blindspot attack` (python/tests/test_attack.py compares them).

use super::{attack_batch, verify, AttackError, AttackSettings};
use crate::models::Classifier;
use crate::results::attack::ExampleResult;
use crate::Result;
use std::time::Instant;
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
        let len = (batch as usize).min(n - start);
        let range = start..start + len;
        let t0 = Instant::now();
        // A fresh copy of the chunk, as the data-set runner's index_select makes.
        let idx: Vec<i64> = range.clone().map(|i| i as i64).collect();
        let sel = Tensor::f_from_slice(&idx)?.f_to_device(x.device())?;
        let xc = x.f_index_select(0, &sel)?; // [len, ..]
        let l = Tensor::f_from_slice(&lab[range.clone()])?;
        let t = tg
            .as_ref()
            .map(|t| Tensor::f_from_slice(&t[range.clone()]))
            .transpose()?;
        let out = attack_batch(model, &xc, &l, t.as_ref(), settings)?;
        let ver = verify(model, &xc, &out.adversarial, &l, t.as_ref())?;
        let secs = t0.elapsed().as_secs_f64();
        let mut keep = Vec::with_capacity(len);
        for (j, (ok, dist, why)) in ver.into_iter().enumerate() {
            let success = out.success[j] && ok;
            keep.push(success);
            rows.push(ExampleResult {
                index: (start + j) as i64,
                label: lab[start + j],
                target: tg.as_ref().map_or(-1, |t| t[start + j]),
                success,
                c: if success { out.c[j] } else { f64::NAN },
                distortion: if success { dist } else { f64::NAN },
                iterations: out.iterations[j],
                evaluations: out.evaluations[j],
                seconds: secs / len as f64,
                reason: if success {
                    String::new()
                } else {
                    out.reason[j]
                        .clone()
                        .or(why)
                        .unwrap_or_else(|| "failed".into())
                },
            });
        }
        // Failures carry the original image.
        let dev = out.adversarial.device();
        let keep = Tensor::f_from_slice(&keep)?
            .f_view([len as i64, 1])?
            .f_to_device(dev)?;
        let orig = xc.f_to_device(dev)?.f_to_kind(Kind::Float)?;
        parts.push(
            out.adversarial
                .f_reshape([len as i64, -1])?
                .f_where_self(&keep, &orig.f_reshape([len as i64, -1])?)?
                .f_view(xc.size().as_slice())?,
        );
    }
    Ok(TensorsOutcome {
        adversarial: Tensor::f_cat(&parts, 0)?,
        rows,
    })
}
