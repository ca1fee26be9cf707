//! Verification of every returned adversarial in a fresh forward pass (§4.1): inside the model's box
//! exactly, classified as the target (or, untargeted, not as the label), finite outputs; the distortion
//! recomputed in f64. Nothing counts as a success without passing here.

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

/// Is each row adversarial? `logits` [b, K] → (adversarial [b], finite [b]) on the host.
pub(crate) fn adversarial_rows(
    logits: &Tensor,
    class: &Tensor,
    targeted: bool,
) -> Result<(Vec<bool>, Vec<bool>)> {
    let finite = logits
        .f_isfinite()?
        .f_all_dim(-1, false)?
        .f_to_device(Device::Cpu)?; // [b]
    let pred = logits.f_argmax(-1, false)?; // [b]
    let hit = pred.f_eq_tensor(class)?;
    let adv = if targeted { hit } else { hit.f_logical_not()? };
    let adv = adv.f_logical_and(&finite.f_to_device(adv.device())?)?;
    Ok((host_bools(&adv)?, host_bools(&finite)?))
}

/// Verify `adversarial` against `original` in a fresh forward pass: inside the model's box exactly,
/// classified as `target` (targeted, target >= 0) or not as `label`, finite outputs. Returns per example
/// `(ok, distortion, reason)`; distortion = sqrt(Σ(x' − x)²/n) in f64.
pub fn verify(
    model: &dyn Classifier,
    original: &Tensor,
    adversarial: &Tensor,
    labels: &Tensor,
    targets: Option<&Tensor>,
) -> Result<Vec<(bool, f64, Option<String>)>> {
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
    let (advs, finite) = adversarial_rows(&logits, &class, targets.is_some())?;
    Ok((0..b as usize)
        .map(|i| {
            if !inside[i] {
                (false, dist[i], Some("outside the input box".to_string()))
            } else if !finite[i] {
                (false, dist[i], Some("model output not finite".to_string()))
            } else if !advs[i] {
                let what = if targets.is_some() {
                    "not classified as the target"
                } else {
                    "still classified as the label"
                };
                (false, dist[i], Some(format!("verification: {what}")))
            } else {
                (true, dist[i], None)
            }
        })
        .collect())
}
