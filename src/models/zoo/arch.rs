//! Sequential architectures of the paper's MNIST zoo (§4.2, Tables 1 and 3): layers, the layout of their
//! parameters in one flat vector (PyTorch names and shapes), the names of their outputs and the shape
//! check that chains them.

use crate::models::ModelError;
use crate::Result;
use serde::{Deserialize, Serialize};

/// One layer of a sequential network. Parameterised layers carry a `name`, used as the prefix of their
/// parameters (`<name>.weight`, `<name>.bias`), exactly as in a PyTorch module with the same attribute names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Layer {
    /// y = x Wᵀ + b, W [out_features, in_features]. Flattens its input first.
    Linear {
        name: String,
        in_features: i64,
        out_features: i64,
    },
    /// 2-D convolution, weight [out_channels, in_channels, kernel_size, kernel_size], zero padding.
    Conv2d {
        name: String,
        in_channels: i64,
        out_channels: i64,
        kernel_size: i64,
        #[serde(default = "one")]
        stride: i64,
        #[serde(default)]
        padding: i64,
    },
    Sigmoid,
    Relu,
    MaxPool2d {
        kernel_size: i64,
        stride: i64,
    },
    Flatten,
    /// Dropout with drop probability `p` (only while training).
    Dropout {
        p: f64,
    },
}

fn one() -> i64 {
    1
}

/// The largest number a zoo architecture may hold anywhere: a size, kernel, stride or padding, the values
/// of one example at any layer, one weight's values and the parameter count (2³¹ − 1, libtorch's 32-bit
/// index limit; the paper's largest model has about 0.8 million parameters). Larger is a typo, refused
/// before it reaches an allocation.
pub const MAX_SIZE: i64 = i32::MAX as i64;

/// The number of values of a tensor of `shape`, or `None` if it overflows `i64`.
fn numel(shape: &[i64]) -> Option<i64> {
    shape.iter().try_fold(1i64, |acc, &d| acc.checked_mul(d))
}

/// A sequential architecture and the shape of one input example (e.g. `[1, 28, 28]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    pub input_shape: Vec<i64>,
    pub layers: Vec<Layer>,
}

/// One parameter tensor inside the flat vector.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamEntry {
    pub name: String,
    pub shape: Vec<i64>,
    pub offset: i64,
    pub numel: i64,
    /// Index of the parameterised layer it belongs to (0-based, input side first).
    pub layer: usize,
    pub is_weight: bool,
}

impl Layer {
    /// Name of a parameterised layer.
    pub fn param_name(&self) -> Option<&str> {
        match self {
            Layer::Linear { name, .. } | Layer::Conv2d { name, .. } => Some(name),
            _ => None,
        }
    }
    /// Number of units of a parameterised layer (k in the paper's λ·Σw²/k): its outputs / output channels.
    pub fn units(&self) -> Option<i64> {
        match self {
            Layer::Linear { out_features, .. } => Some(*out_features),
            Layer::Conv2d { out_channels, .. } => Some(*out_channels),
            _ => None,
        }
    }
    fn kind_name(&self) -> &'static str {
        match self {
            Layer::Linear { .. } => "linear",
            Layer::Conv2d { .. } => "conv2d",
            Layer::Sigmoid => "sigmoid",
            Layer::Relu => "relu",
            Layer::MaxPool2d { .. } => "pool",
            Layer::Flatten => "flatten",
            Layer::Dropout { .. } => "dropout",
        }
    }
    /// (name, weight shape, bias shape) of a parameterised layer.
    fn param_shapes(&self) -> Option<(&str, Vec<i64>, Vec<i64>)> {
        match self {
            Layer::Linear {
                name,
                in_features,
                out_features,
            } => Some((name, vec![*out_features, *in_features], vec![*out_features])),
            Layer::Conv2d {
                name,
                in_channels,
                out_channels,
                kernel_size,
                ..
            } => Some((
                name,
                vec![*out_channels, *in_channels, *kernel_size, *kernel_size],
                vec![*out_channels],
            )),
            _ => None,
        }
    }
    /// Checks every number of this layer (called `name`, at `index` in `layers`) before any shape
    /// arithmetic, division or allocation uses it: sizes, kernels and strides from 1 to [`MAX_SIZE`],
    /// paddings from 0, dropout probabilities in [0, 1], and a weight of at most [`MAX_SIZE`] values.
    fn check_fields(&self, name: &str, index: usize) -> Result<(), ModelError> {
        let bad = |field: &'static str, value: String, want: String| {
            Err(ModelError::LayerField {
                layer: name.to_string(),
                index,
                field,
                value,
                want,
            })
        };
        let ints: Vec<(&'static str, i64, i64)> = match self {
            Layer::Linear {
                in_features,
                out_features,
                ..
            } => vec![
                ("in_features", *in_features, 1),
                ("out_features", *out_features, 1),
            ],
            Layer::Conv2d {
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                ..
            } => vec![
                ("in_channels", *in_channels, 1),
                ("out_channels", *out_channels, 1),
                ("kernel_size", *kernel_size, 1),
                ("stride", *stride, 1),
                ("padding", *padding, 0),
            ],
            Layer::MaxPool2d {
                kernel_size,
                stride,
            } => vec![("kernel_size", *kernel_size, 1), ("stride", *stride, 1)],
            Layer::Dropout { p } if !(p.is_finite() && (0.0..=1.0).contains(p)) => {
                return bad("p", p.to_string(), "a probability from 0 to 1".into());
            }
            _ => Vec::new(),
        };
        for (field, v, min) in ints {
            if v < min || v > MAX_SIZE {
                return bad(
                    field,
                    v.to_string(),
                    format!("an integer from {min} to {MAX_SIZE}"),
                );
            }
        }
        if let Some((_, w, _)) = self.param_shapes() {
            if numel(&w).is_none_or(|n| n > MAX_SIZE) {
                return Err(ModelError::TooLarge {
                    layer: name.to_string(),
                    index,
                    what: "weight",
                    shape: w,
                });
            }
        }
        Ok(())
    }

    /// Output shape of this layer (called `name`) for one example of shape `s`, or the error naming it.
    fn output_shape(&self, name: &str, s: Vec<i64>) -> Result<Vec<i64>, ModelError> {
        let layer = || name.to_string();
        Ok(match self {
            Layer::Linear {
                in_features,
                out_features,
                ..
            } => {
                let n = numel(&s).unwrap_or(i64::MAX);
                if n != *in_features {
                    return Err(ModelError::LinearInputs {
                        layer: layer(),
                        in_features: *in_features,
                        input: s,
                        values: n,
                    });
                }
                vec![*out_features]
            }
            Layer::Conv2d {
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                ..
            } => {
                if s.len() != 3 || s[0] != *in_channels {
                    return Err(ModelError::ConvInput {
                        layer: layer(),
                        in_channels: *in_channels,
                        input: s,
                    });
                }
                // Spans before the division by the stride (checked ≥ 1 by `check_fields`).
                let (span_h, span_w) = (
                    s[1] + 2 * padding - kernel_size,
                    s[2] + 2 * padding - kernel_size,
                );
                if span_h < 0 || span_w < 0 || *stride < 1 {
                    return Err(ModelError::ConvTooSmall {
                        layer: layer(),
                        input: s,
                        kernel: *kernel_size,
                        stride: *stride,
                    });
                }
                vec![*out_channels, span_h / stride + 1, span_w / stride + 1]
            }
            Layer::MaxPool2d {
                kernel_size,
                stride,
            } => {
                if s.len() != 3
                    || *kernel_size < 1
                    || s[1] < *kernel_size
                    || s[2] < *kernel_size
                    || *stride < 1
                {
                    return Err(ModelError::PoolTooSmall {
                        layer: layer(),
                        input: s,
                        kernel: *kernel_size,
                        stride: *stride,
                    });
                }
                vec![
                    s[0],
                    (s[1] - kernel_size) / stride + 1,
                    (s[2] - kernel_size) / stride + 1,
                ]
            }
            Layer::Flatten => vec![s.iter().product()],
            Layer::Sigmoid | Layer::Relu | Layer::Dropout { .. } => s,
        })
    }
}

impl Architecture {
    /// Parameter layout in order: for each parameterised layer, `<name>.weight` then `<name>.bias`.
    pub fn param_layout(&self) -> Vec<ParamEntry> {
        let mut out = Vec::new();
        let mut offset = 0;
        let params = self.layers.iter().filter_map(|l| l.param_shapes());
        for (li, (name, wshape, bshape)) in params.enumerate() {
            for (suffix, shape, is_weight) in [("weight", wshape, true), ("bias", bshape, false)] {
                let numel = shape.iter().product();
                out.push(ParamEntry {
                    name: format!("{name}.{suffix}"),
                    shape,
                    offset,
                    numel,
                    layer: li,
                    is_weight,
                });
                offset += numel;
            }
        }
        out
    }

    pub fn num_params(&self) -> i64 {
        self.param_layout().iter().map(|p| p.numel).sum()
    }

    /// Number of parameterised layers.
    pub fn num_param_layers(&self) -> usize {
        self.layers
            .iter()
            .filter(|l| l.param_name().is_some())
            .count()
    }

    /// Units per parameterised layer.
    pub fn layer_units(&self) -> Vec<i64> {
        self.layers.iter().filter_map(|l| l.units()).collect()
    }

    /// Names of every layer's output, as [`crate::models::Classifier::layer`] accepts them: parameterised
    /// layers by name (pre-activation), others as `<previous parameterised layer>.<kind>` (e.g.
    /// `fc1.sigmoid`).
    pub fn output_names(&self) -> Vec<String> {
        let mut last = "input".to_string();
        let mut names: Vec<String> = Vec::new();
        for l in &self.layers {
            let n = match l.param_name() {
                Some(p) => {
                    last = p.to_string();
                    p.to_string()
                }
                None => format!("{last}.{}", l.kind_name()),
            };
            names.push(n);
        }
        names
    }

    /// Checks that shapes chain: returns the output shape of every layer for one example, or a
    /// [`ModelError`] naming the layer.
    /// Every number is checked before it is used (see [`MAX_SIZE`]), so no architecture read from a file
    /// divides by zero or allocates without bound.
    pub fn shapes(&self) -> Result<Vec<Vec<i64>>> {
        let s = &self.input_shape;
        if s.is_empty() || s.iter().any(|&v| v < 1) || numel(s).is_none_or(|n| n > MAX_SIZE) {
            return Err(ModelError::InputShape { shape: s.clone() }.into());
        }
        let mut s = s.clone();
        let mut out = Vec::new();
        for (index, (l, name)) in self.layers.iter().zip(self.output_names()).enumerate() {
            l.check_fields(&name, index)?;
            s = l.output_shape(&name, s)?;
            if numel(&s).is_none_or(|n| n > MAX_SIZE) {
                return Err(ModelError::TooLarge {
                    layer: name,
                    index,
                    what: "output for one example",
                    shape: s,
                }
                .into());
            }
            out.push(s.clone());
        }
        // Each weight is at most MAX_SIZE values (checked above), so the sum cannot overflow.
        let total = self.num_params();
        if total > MAX_SIZE {
            return Err(ModelError::TooManyParams { params: total }.into());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::presets;
    use super::*;

    #[test]
    fn layout_names_and_shapes_of_the_conv_net() {
        let arch = presets::conv(&[4], 5, 16, 0.5);
        let names: Vec<String> = arch.param_layout().into_iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "conv1.weight",
                "conv1.bias",
                "fc1.weight",
                "fc1.bias",
                "fc2.weight",
                "fc2.bias"
            ]
        );
        let layout = arch.param_layout();
        assert_eq!((layout[2].offset, layout[2].layer), (4 * 25 + 4, 1));
        assert_eq!(arch.num_param_layers(), 3);
        assert_eq!(arch.layer_units(), [4, 16, 10]);
        assert_eq!(arch.shapes().unwrap().last().unwrap(), &[10]);
        assert_eq!(
            arch.output_names()[..4],
            ["conv1", "conv1.relu", "conv1.pool", "conv1.flatten"]
        );
    }

    #[test]
    fn shape_errors_name_the_layer() {
        let too_deep = presets::conv(&[4, 8, 8], 5, 16, 0.5);
        let e = too_deep.shapes().unwrap_err();
        assert!(
            matches!(&e, crate::Error::Model(ModelError::ConvTooSmall { layer, .. }) if layer == "conv3"),
            "{e}"
        );
        let mut bad = presets::mlp(&[3], Layer::Sigmoid);
        bad.input_shape = vec![1, 27, 28];
        let e = bad.shapes().unwrap_err().to_string();
        assert!(e.contains("fc1") && e.contains("756 values"), "{e}");
    }
}
