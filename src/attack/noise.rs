//! Gaussian-noise baselines of Fig 7 (§4.2): the same images with i.i.d. Gaussian noise of a given
//! stddev (panels (a), (b): the stddev of the adversarial perturbation; panel (c): stddev 1, where the
//! paper measures 51% accuracy). Noisy images are clipped to the model's input box, as any image must be.

use crate::models::Classifier;
use crate::Result;
use tch::{Device, Kind, Tensor};

/// `images` [N, ..] plus N(0, stddev²) noise drawn from `seed`, clipped to `bounds`: [N, ..] (CPU, f32).
pub fn gaussian_noise(
    images: &Tensor,
    stddev: f64,
    seed: u64,
    bounds: (f64, f64),
) -> Result<Tensor> {
    if !(stddev >= 0.0 && stddev.is_finite()) {
        return Err(super::AttackError::NoiseStddev(stddev).into());
    }
    tch::manual_seed(seed as i64);
    let x = images.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?;
    let noise = x.f_randn_like()?.f_mul_scalar(stddev)?; // [N, ..]
    Ok(x.f_add(&noise)?.f_clamp(bounds.0, bounds.1)?)
}

/// `images` [N, ..] plus N(0, stddev²) noise drawn from `seed`, *not* clipped (may leave the box).
pub fn gaussian_noise_unclipped(images: &Tensor, stddev: f64, seed: u64) -> Result<Tensor> {
    gaussian_noise(images, stddev, seed, UNBOUNDED)
}

/// Accuracy of `model` on `images` [N, ..] with unclipped Gaussian noise of `stddev`.
pub fn noise_accuracy_unclipped(
    model: &dyn Classifier,
    images: &Tensor,
    labels: &Tensor,
    stddev: f64,
    seed: u64,
    batch: i64,
) -> Result<f64> {
    accuracy_in_box(model, images, labels, stddev, seed, batch, UNBOUNDED)
}

/// Accuracy of `model` on `images` [N, ..] with Gaussian noise of `stddev` (clipped to the box).
pub fn noise_accuracy(
    model: &dyn Classifier,
    images: &Tensor,
    labels: &Tensor,
    stddev: f64,
    seed: u64,
    batch: i64,
) -> Result<f64> {
    accuracy_in_box(
        model,
        images,
        labels,
        stddev,
        seed,
        batch,
        model.input_bounds(),
    )
}

/// No box: noisy images keep whatever values the noise gives them.
const UNBOUNDED: (f64, f64) = (f64::NEG_INFINITY, f64::INFINITY);

/// Accuracy of `model` on `images` plus Gaussian noise of `stddev`, clipped to `bounds`.
fn accuracy_in_box(
    model: &dyn Classifier,
    images: &Tensor,
    labels: &Tensor,
    stddev: f64,
    seed: u64,
    batch: i64,
    bounds: (f64, f64),
) -> Result<f64> {
    let noisy = gaussian_noise(images, stddev, seed, bounds)?;
    crate::models::classifier::accuracy(model, &noisy, labels, batch)
}
