//! The layer walk of §4.3: a sequential network (conv, linear, pooling, activations) read from a zoo model
//! folder, a TorchScript file with a YAML layer spec, or torchvision's AlexNet layout (no spec needed);
//! shapes are propagated and checked layer by layer, and errors name the layer.
//!
//! - [`spec`]: the YAML layer spec (and the built-in AlexNet and zoo specs).
//! - [`build`](Network::build): the spec resolved against named parameters, one builder per layer kind.
//! - [`load`]: zoo folders (through `ZooModel::load`) and TorchScript files; the forward cross-check;
//!   [`from_zoo`] and [`from_module`] build the network of a model already loaded (the Python package).
//! - here: the resolved [`Network`], its [`Op`]s and the forward pass.

mod build;
mod load;
pub mod spec;

pub use load::{forward_mismatch, from_module, from_zoo, load, read_spec, Source};
pub use spec::{Pair, Spec, SpecLayer};

use crate::results::spectral::LayerInfo;
use crate::spectral::conv::ConvGeom;
use crate::Result;
use tch::Tensor;

/// A resolved layer with its parameters.
#[derive(Debug)]
pub enum Op {
    Conv {
        weight: Tensor,
        bias: Option<Tensor>,
        geom: ConvGeom,
    },
    Linear {
        weight: Tensor,
        bias: Option<Tensor>,
    },
    MaxPool {
        kernel: [i64; 2],
        stride: [i64; 2],
        padding: [i64; 2],
        dilation: [i64; 2],
    },
    AvgPool {
        kernel: [i64; 2],
        stride: [i64; 2],
        padding: [i64; 2],
    },
    AdaptiveAvgPool {
        output: [i64; 2],
    },
    Relu,
    Sigmoid,
    Tanh,
    /// Local response normalisation across `size` channels: `b_c = a_c (k + α/size Σ a²)^(−β)`.
    Lrn {
        size: i64,
        alpha: f64,
        beta: f64,
        k: f64,
    },
    Dropout,
    Flatten,
}

impl Op {
    /// Short kind name, as in the spec and in `bounds.csv`.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv { .. } => "conv2d",
            Op::Linear { .. } => "linear",
            Op::MaxPool { .. } => "max_pool2d",
            Op::AvgPool { .. } => "avg_pool2d",
            Op::AdaptiveAvgPool { .. } => "adaptive_avg_pool2d",
            Op::Relu => "relu",
            Op::Sigmoid => "sigmoid",
            Op::Tanh => "tanh",
            Op::Lrn { .. } => "local_response_norm",
            Op::Dropout => "dropout",
            Op::Flatten => "flatten",
        }
    }
}

/// One layer of a [`Network`]: its name (parameter prefix or given/derived name), op and shapes.
#[derive(Debug)]
pub struct NetLayer {
    pub name: String,
    pub op: Op,
    /// Per-example input and output shapes (e.g. `[3, 224, 224]` → `[64, 55, 55]`).
    pub input_shape: Vec<i64>,
    pub output_shape: Vec<i64>,
}

/// A sequential network with checked shapes.
#[derive(Debug)]
pub struct Network {
    pub source: String,
    pub input_shape: Vec<i64>,
    pub layers: Vec<NetLayer>,
}

/// Shape as `CxHxW`.
pub(crate) fn fmt_shape(s: &[i64]) -> String {
    s.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

impl Network {
    /// The layers as written to `bounds.json` (name, kind, shapes), in forward order.
    pub fn layer_infos(&self) -> Vec<LayerInfo> {
        self.layers
            .iter()
            .map(|l| LayerInfo {
                name: l.name.clone(),
                kind: l.op.kind().to_string(),
                input_shape: l.input_shape.clone(),
                output_shape: l.output_shape.clone(),
            })
            .collect()
    }

    /// Forward pass in evaluation mode (dropout = identity): `x` [B, ..input_shape] → [B, ..output].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.shallow_clone();
        for l in &self.layers {
            h = match &l.op {
                Op::Conv { weight, bias, geom } => h.f_conv2d(
                    &weight.to_kind(h.kind()),
                    bias.as_ref().map(|b| b.to_kind(h.kind())),
                    geom.stride,
                    geom.padding,
                    geom.dilation,
                    geom.groups,
                )?,
                Op::Linear { weight, bias } => {
                    let f = h.f_flatten(1, -1)?;
                    let y = f.f_matmul(&weight.to_kind(h.kind()).transpose(0, 1))?;
                    match bias {
                        Some(b) => y + b.to_kind(h.kind()),
                        None => y,
                    }
                }
                Op::MaxPool {
                    kernel,
                    stride,
                    padding,
                    dilation,
                } => h.f_max_pool2d(kernel, stride, padding, dilation, false)?,
                Op::AvgPool {
                    kernel,
                    stride,
                    padding,
                } => h.f_avg_pool2d(kernel, stride, padding, false, true, None::<i64>)?,
                Op::AdaptiveAvgPool { output } => h.f_adaptive_avg_pool2d(output)?,
                Op::Relu => h.relu(),
                Op::Sigmoid => h.sigmoid(),
                Op::Tanh => h.tanh(),
                Op::Lrn {
                    size,
                    alpha,
                    beta,
                    k,
                } => {
                    // As torch.nn.functional.local_response_norm: the mean of a² over a window of `size`
                    // channels, zero-padded by size/2 before and (size−1)/2 after.
                    let sq = (&h * &h).f_unsqueeze(1)?; // [B, 1, C, H, W]
                    let sq = sq.f_constant_pad_nd([0, 0, 0, 0, size / 2, (size - 1) / 2])?;
                    let mean = sq
                        .f_avg_pool3d(
                            [*size, 1, 1],
                            [1, 1, 1],
                            [0, 0, 0],
                            false,
                            true,
                            None::<i64>,
                        )?
                        .f_squeeze_dim(1)?; // [B, C, H, W]
                    let div = (mean * *alpha + *k).f_pow_tensor_scalar(*beta)?;
                    h.f_div(&div)?
                }
                Op::Dropout => h,
                Op::Flatten => h.f_flatten(1, -1)?,
            };
        }
        Ok(h)
    }
}
