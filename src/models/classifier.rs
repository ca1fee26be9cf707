//! The `Classifier` interface that attacks, units and transfer use: the MNIST zoo and TorchScript models
//! (AlexNet etc.) both implement it, so every analysis of the paper runs on either.

use crate::Result;
use tch::{Device, Tensor};

/// A differentiable image classifier with named intermediate layers.
pub trait Classifier {
    /// A short name for reports (e.g. `N100-100-10`).
    fn name(&self) -> &str;
    /// Shape of one input example, without the batch dimension (e.g. `[1, 28, 28]`, `[3, 224, 224]`).
    fn input_shape(&self) -> Vec<i64>;
    /// Number of output classes.
    fn num_classes(&self) -> i64;
    /// The box the inputs live in, `(lower, upper)`, e.g. `(0.0, 1.0)`; normalisation happens inside.
    fn input_bounds(&self) -> (f64, f64);
    /// Device the model's parameters live on; inputs must be on it.
    fn device(&self) -> Device;
    /// Logits, differentiable w.r.t. `x`: `x` [B, ..input_shape] → [B, num_classes]. Eval mode (no dropout).
    fn logits(&self, x: &Tensor) -> Result<Tensor>;
    /// Names of the layers whose activations [`Classifier::layer`] returns, input side first.
    fn layer_names(&self) -> Vec<String>;
    /// Activations of layer `name`: `x` [B, ..input_shape] → [B, ...] (eval mode).
    fn layer(&self, x: &Tensor, name: &str) -> Result<Tensor>;
    /// SHA-256 identifying the model's weights (resumable outputs made with other weights are refused).
    fn fingerprint(&self) -> Result<String>;
}

/// A classifier made from another one by changing a few of its methods (float64 re-evaluation, a
/// sub-network's box, a stop check before every forward pass): implement [`Wrapper::inner`] and override
/// only what differs; [`Classifier`] follows from the blanket implementation, every other method
/// delegating to the inner classifier.
pub trait Wrapper {
    /// The classifier wrapped.
    fn inner(&self) -> &dyn Classifier;
    fn name(&self) -> &str {
        self.inner().name()
    }
    fn input_shape(&self) -> Vec<i64> {
        self.inner().input_shape()
    }
    fn num_classes(&self) -> i64 {
        self.inner().num_classes()
    }
    fn input_bounds(&self) -> (f64, f64) {
        self.inner().input_bounds()
    }
    fn device(&self) -> Device {
        self.inner().device()
    }
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.inner().logits(x)
    }
    fn layer_names(&self) -> Vec<String> {
        self.inner().layer_names()
    }
    fn layer(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        self.inner().layer(x, name)
    }
    fn fingerprint(&self) -> Result<String> {
        self.inner().fingerprint()
    }
}

impl<T: Wrapper> Classifier for T {
    fn name(&self) -> &str {
        Wrapper::name(self)
    }
    fn input_shape(&self) -> Vec<i64> {
        Wrapper::input_shape(self)
    }
    fn num_classes(&self) -> i64 {
        Wrapper::num_classes(self)
    }
    fn input_bounds(&self) -> (f64, f64) {
        Wrapper::input_bounds(self)
    }
    fn device(&self) -> Device {
        Wrapper::device(self)
    }
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        Wrapper::logits(self, x)
    }
    fn layer_names(&self) -> Vec<String> {
        Wrapper::layer_names(self)
    }
    fn layer(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        Wrapper::layer(self, x, name)
    }
    fn fingerprint(&self) -> Result<String> {
        Wrapper::fingerprint(self)
    }
}

/// Checks that `x` is a batch of this classifier's inputs: [B, ..input_shape].
pub fn check_input(c: &dyn Classifier, x: &Tensor) -> Result<()> {
    let want = c.input_shape();
    let got = x.size();
    if got.len() != want.len() + 1 || got[1..] != want[..] {
        return Err(crate::Error::Shape {
            what: format!("model `{}` expects inputs", c.name()),
            expected: format!(
                "[B, {}]",
                want.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            got,
        });
    }
    Ok(())
}

/// Predicted classes for a batch, computed in chunks of `batch` without gradients: `x` [N, ..] → [N] i64.
pub fn predict(c: &dyn Classifier, x: &Tensor, batch: i64) -> Result<Tensor> {
    let _g = tch::no_grad_guard();
    let n = x.size()[0];
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let len = batch.min(n - i);
        let xb = x.narrow(0, i, len).to_device(c.device());
        out.push(c.logits(&xb)?.argmax(-1, false).to_device(Device::Cpu));
        i += len;
    }
    if out.is_empty() {
        return Ok(Tensor::zeros([0], (tch::Kind::Int64, Device::Cpu)));
    }
    Ok(Tensor::cat(&out, 0))
}

/// Fraction of the examples `x` [N, ..] that `c` classifies as `y` [N], in chunks of `batch`, no gradients.
pub fn accuracy(c: &dyn Classifier, x: &Tensor, y: &Tensor, batch: i64) -> Result<f64> {
    let pred = predict(c, x, batch.max(1))?; // [N] on the CPU
    let right = pred
        .f_eq_tensor(&y.f_to_device(Device::Cpu)?)?
        .f_sum(tch::Kind::Int64)?
        .f_int64_value(&[])?;
    Ok(right as f64 / y.size()[0].max(1) as f64)
}
