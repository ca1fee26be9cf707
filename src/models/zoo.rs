//! The paper's MNIST model zoo (§4.2, Tables 1 and 3) as sequential architectures over one flat parameter
//! vector, so that full-batch L-BFGS optimises the model directly; saved as `weights.safetensors` with
//! PyTorch names and layouts (`fc1.weight` [out, in], `fc1.bias` [out], `conv1.weight` [out, in, kh, kw])
//! plus `model.json` (architecture, training record, errors, data checksums).

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

/// A sequential architecture and the shape of one input example (e.g. `[1, 28, 28]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    pub input_shape: Vec<i64>,
    pub layers: Vec<Layer>,
}
