//! Errors of the models (zoo architectures, TorchScript classifiers) that are not about a file's content
//! (those are `crate::Error::Format` with the file's path): each carries the layer, shapes or model
//! involved and says the fix; `crate::Error::Model` wraps them.

use std::path::PathBuf;

/// Joins layer names for a message.
fn list(names: &[String]) -> String {
    names.join(", ")
}

/// What the models refuse.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A layer name the model does not have.
    #[error(
        "unknown layer `{layer}` in model `{model}`; available layers: {}",
        list(available)
    )]
    UnknownLayer {
        /// The model's name (zoo) or file (TorchScript).
        model: String,
        layer: String,
        available: Vec<String>,
    },
    /// A linear layer whose `in_features` differs from what the previous layer gives it.
    #[error(
        "layer `{layer}` expects {in_features} inputs but receives {input:?} ({values} values): set its in_features to {values}"
    )]
    LinearInputs {
        layer: String,
        in_features: i64,
        input: Vec<i64>,
        values: i64,
    },
    /// A convolution that does not receive [in_channels, H, W].
    #[error(
        "layer `{layer}` expects [{in_channels}, H, W] inputs, receives {input:?}: match in_channels to the previous layer"
    )]
    ConvInput {
        layer: String,
        in_channels: i64,
        input: Vec<i64>,
    },
    /// A convolution whose kernel does not fit its input (or a stride < 1).
    #[error(
        "layer `{layer}`: input {input:?} too small for kernel {kernel} (stride {stride}): use fewer or smaller layers"
    )]
    ConvTooSmall {
        layer: String,
        input: Vec<i64>,
        kernel: i64,
        stride: i64,
    },
    /// A max-pool that does not fit its input (or a stride < 1).
    #[error(
        "layer `{layer}`: cannot pool {input:?} with kernel {kernel} (stride {stride}): use fewer or smaller layers"
    )]
    PoolTooSmall {
        layer: String,
        input: Vec<i64>,
        kernel: i64,
        stride: i64,
    },
    /// A layer's number out of range (a zero stride, a negative size, a probability above 1, …).
    #[error("layer `{layer}` (layers[{index}]): `{field}` is {value}; it must be {want}")]
    LayerField {
        layer: String,
        /// Position in the architecture's `layers`.
        index: usize,
        field: &'static str,
        value: String,
        /// The allowed range, e.g. `an integer from 1 to 2147483647`.
        want: String,
    },
    /// An input shape with a dimension below 1 (or too large).
    #[error(
        "input_shape {shape:?}: every dimension must be at least 1 and their product at most 2147483647; give the shape of one example, e.g. [1, 28, 28]"
    )]
    InputShape { shape: Vec<i64> },
    /// A weight or one example's output beyond `zoo::MAX_SIZE` values.
    #[error(
        "layer `{layer}` (layers[{index}]): its {what} {shape:?} has more than 2147483647 values; use smaller sizes"
    )]
    TooLarge {
        layer: String,
        index: usize,
        what: &'static str,
        shape: Vec<i64>,
    },
    /// More parameters in all than `zoo::MAX_SIZE`.
    #[error("the architecture has {params} parameters, more than 2147483647; use smaller layers")]
    TooManyParams { params: i64 },
    /// A flat parameter vector of the wrong length for its architecture.
    #[error(
        "model `{model}`: parameter vector has shape {got:?}, architecture needs [{expected}]: build it with init_params or load the model's own weights"
    )]
    ParamCount {
        model: String,
        got: Vec<i64>,
        expected: i64,
    },
    /// The architecture could not be written as JSON.
    #[error("model `{model}`: cannot serialise the architecture for model.json: {source}")]
    Serialize {
        model: String,
        #[source]
        source: serde_json::Error,
    },
    /// A TorchScript model's `forward` failed.
    #[error("{}: forward failed for an input of shape {input:?}: {msg}", path.display())]
    Forward {
        path: PathBuf,
        input: Vec<i64>,
        msg: String,
    },
    /// A TorchScript model whose output for one example is not logits [1, classes].
    #[error(
        "{}: the model's output for one input {input:?} has shape {got:?}; a classifier must return logits [B, classes]",
        path.display()
    )]
    NotLogits {
        path: PathBuf,
        input: Vec<i64>,
        got: Vec<i64>,
    },
    /// A TorchScript model's logits for a batch have the wrong shape.
    #[error(
        "{}: output {got:?} for input {input:?}; expected {expected:?} (logits [B, classes])",
        path.display()
    )]
    LogitsShape {
        path: PathBuf,
        input: Vec<i64>,
        got: Vec<i64>,
        expected: Vec<i64>,
    },
    /// A TorchScript model's `layer(x, name)` failed.
    #[error("{}: layer(x, \"{layer}\") failed: {msg}", path.display())]
    LayerCall {
        path: PathBuf,
        layer: String,
        msg: String,
    },
    /// A TorchScript model's `layer(x, name)` returned something other than a [B, ...] tensor.
    #[error(
        "{}: layer `{layer}` returned {got} for a batch of {batch}; layer(x, name) must return a Tensor [B, ...]",
        path.display()
    )]
    LayerOutput {
        path: PathBuf,
        layer: String,
        /// What came back: a shape, or the kind of value.
        got: String,
        batch: i64,
    },
}
