//! Minibatch Adam for the zoo (§4.2 models trained by minibatch rather than "L-BFGS until convergence":
//! the Conv net, the autoencoder, adversarial training), with an optional held-out error after each epoch.

use super::{LogRow, TrainError, TrainOutcome};
use crate::models::zoo::{forward_all, Architecture, ParamEntry};
use crate::Result;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// The error of θ [P] on a held-out set, evaluated after every Adam epoch.
pub type HeldoutEval<'a> = &'a dyn Fn(&Tensor) -> Result<f64>;

/// Error rate of the architecture at θ [P] on `x` [N, ..], `y` [N], in chunks of 10,000, no dropout.
pub fn error_at(
    arch: &Architecture,
    layout: &[ParamEntry],
    theta: &Tensor,
    x: &Tensor,
    y: &Tensor,
) -> Result<f64> {
    let n = x.size()[0];
    let mut wrong = 0i64;
    tch::no_grad(|| -> Result<()> {
        let mut i = 0;
        while i < n {
            let len = 10_000.min(n - i);
            let logits = forward_all(arch, layout, theta, &x.narrow(0, i, len), false, false)
                .pop()
                .expect("layers"); // [len, 10]
            let pred = logits.f_argmax(-1, false)?; // [len]
            wrong += pred
                .f_ne_tensor(&y.narrow(0, i, len))?
                .f_sum(Kind::Int64)?
                .f_int64_value(&[])?;
            i += len;
        }
        Ok(())
    })?;
    Ok(wrong as f64 / n.max(1) as f64)
}

/// Adam's moment estimates (β = 0.9, 0.999, ε = 1e-8).
struct AdamMoments {
    m: Tensor, // [P]
    v: Tensor, // [P]
}

impl AdamMoments {
    const B1: f64 = 0.9;
    const B2: f64 = 0.999;
    const EPS: f64 = 1e-8;

    /// θ after step number `step` (1-based) with gradient `g` [P] and learning rate `lr_t`.
    fn step(&mut self, theta: &Tensor, g: &Tensor, step: usize, lr_t: f64) -> Tensor {
        let (b1, b2, eps) = (Self::B1, Self::B2, Self::EPS);
        tch::no_grad(|| {
            self.m = &self.m * b1 + g * (1.0 - b1);
            self.v = &self.v * b2 + (g * g) * (1.0 - b2);
            let mhat = &self.m / (1.0 - b1.powi(step as i32));
            let vhat = &self.v / (1.0 - b2.powi(step as i32));
            theta - mhat / (vhat.sqrt() + eps) * lr_t
        })
    }
}

/// Minibatch Adam (β = 0.9, 0.999, ε = 1e-8) with cosine decay of the learning rate to zero, over a
/// seeded shuffle each epoch; `loss_fn(theta, batch_indices)` gives the minibatch loss.
///
/// On a GPU nothing waits for the device inside an epoch: the shuffle is drawn on the CPU (the same
/// permutation on every device) and copied once per epoch, the minibatch losses stay on the device and
/// are read back together at the end of the epoch (one copy), where a non-finite loss is reported with
/// the step it first appeared at. An error of `loss_fn` ends the run. `heldout`, if given, is evaluated
/// on θ after every epoch (its value goes into that epoch's log row: a held-out error curve).
#[allow(clippy::too_many_arguments)]
pub fn adam(
    theta0: &Tensor,
    lr: f64,
    epochs: usize,
    batch_size: i64,
    n: i64,
    label: &str,
    mut loss_fn: impl FnMut(&Tensor, &Tensor) -> Result<Tensor>,
    heldout: Option<HeldoutEval>,
) -> Result<(Tensor, TrainOutcome)> {
    let start = Instant::now();
    let device = theta0.device();
    let mut theta = theta0.detach().copy();
    let mut moments = AdamMoments {
        m: theta.zeros_like(),
        v: theta.zeros_like(),
    };
    let steps_per_epoch = (n + batch_size - 1) / batch_size;
    let total = steps_per_epoch as usize * epochs;
    let bar = crate::progress::bar(total as u64, label, "step");
    let mut log = Vec::new();
    let mut step = 0usize;
    let mut last = f64::NAN;
    for epoch in 0..epochs {
        // Drawn by the CPU generator whatever the device, so a seed shuffles alike everywhere.
        let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu)).to_device(device); // [N]
        let mut losses = Vec::with_capacity(steps_per_epoch as usize); // [] each, on the device
        for s in 0..steps_per_epoch {
            let idx = perm.narrow(0, s * batch_size, batch_size.min(n - s * batch_size));
            let t = theta.detach().set_requires_grad(true);
            let loss = loss_fn(&t, &idx)?;
            let g = Tensor::run_backward(&[&loss], &[&t], false, false)
                .pop()
                .expect("grad");
            step += 1;
            let lr_t =
                0.5 * lr * (1.0 + (std::f64::consts::PI * (step - 1) as f64 / total as f64).cos());
            theta = moments.step(&theta, &g, step, lr_t);
            losses.push(loss.detach());
            bar.inc(1);
        }
        let l = Vec::<f64>::try_from(
            &Tensor::stack(&losses, 0)
                .to_kind(Kind::Double)
                .to_device(Device::Cpu),
        )?; // [steps_per_epoch]: the epoch's one copy
        if let Some(s) = l.iter().position(|v| !v.is_finite()) {
            return Err(TrainError::AdamDiverged {
                label: label.to_string(),
                loss: l[s],
                epoch,
                step: s as i64,
            }
            .into());
        }
        last = l.iter().sum::<f64>() / steps_per_epoch as f64;
        bar.set_message(format!("ep{} {last:.4}", epoch + 1));
        log.push(LogRow {
            step,
            loss: last,
            grad_norm: f64::NAN,
            evaluations: step,
            seconds: start.elapsed().as_secs_f64(),
            heldout_error: heldout.map(|f| f(&theta)).transpose()?,
        });
    }
    bar.finish_and_clear();
    let outcome = TrainOutcome {
        optimizer: "adam".into(),
        iterations: step,
        evaluations: step,
        final_loss: last,
        termination: format!("{epochs} epochs"),
        seconds: start.elapsed().as_secs_f64(),
        log,
        pools: Vec::new(),
    };
    Ok((theta, outcome))
}
