//! Errors of the spectral analysis: each names the layer, shape, spec field or value involved and says
//! the fix in one line. They reach callers as `crate::Error::Spectral`.

use super::conv::ConvGeom;
use std::path::PathBuf;

/// What went wrong in `blindspot spectral`, with its context.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpectralError {
    /// `--input-shape` / `input_shape:` text that is not a list of positive integers.
    #[error(
        "--input-shape `{text}`: expected positive integers separated by commas, e.g. 3,224,224"
    )]
    InputShapeText { text: String },
    /// An input shape with no or non-positive dimensions.
    #[error("input shape {shape:?} must be positive, e.g. 3,224,224; fix --input-shape")]
    InputShape { shape: Vec<i64> },
    /// A TorchScript model given without its input shape.
    #[error("{}: a TorchScript model needs --input-shape C,H,W (e.g. 3,224,224)", model.display())]
    MissingInputShape { model: PathBuf },
    /// A TorchScript model that is not in torchvision's AlexNet layout, given without a layer spec.
    #[error("{}: no --spec given and the parameters are not torchvision's AlexNet layout (found {found:?}); describe the layers in a YAML spec (docs/spectral.md)", model.display())]
    NoLayerSpec { model: PathBuf, found: Vec<String> },
    /// A field of the analysis settings out of range.
    #[error("--{flag} {value} must be in {range}; pass a value in that range")]
    Setting {
        flag: &'static str,
        value: f64,
        range: &'static str,
    },
    /// The analysis seed does not fit the libtorch seed type.
    #[error(
        "seed {seed} is too large for the spectral analysis (at most {}); use a smaller seed",
        i64::MAX
    )]
    Seed { seed: u64 },
    /// A `mode` that is not circular, zero or both.
    #[error(transparent)]
    Mode(#[from] crate::results::spectral::UnknownMode),
    /// A layer spec names a parameter the model does not have.
    #[error("layer `{layer}`: {model} has no parameter `{param}` (weights found: {found}); fix `param` in the layer spec")]
    MissingParam {
        layer: String,
        param: String,
        model: String,
        found: String,
    },
    /// A weight whose rank does not fit the kind the spec gives its layer.
    #[error("layer `{layer}`: spec says {kind} but `{layer}.weight` has shape {shape:?} (want {want}); fix `kind` in the layer spec")]
    WeightRank {
        layer: String,
        kind: &'static str,
        shape: Vec<i64>,
        want: &'static str,
    },
    /// An optional check of the layer spec (`in_channels`, `kernel_size`, …) contradicted by the weight.
    #[error("layer `{layer}`: spec says {field} = {spec_value} but `{layer}.weight` {shape:?} means {actual}; fix `{field}` in the layer spec")]
    SpecContradicts {
        layer: String,
        field: &'static str,
        spec_value: String,
        shape: Vec<i64>,
        actual: String,
    },
    /// A layer that needs a `[C, H, W]` input gets another shape.
    #[error("layer `{layer}`: expects a [C, H, W] input, gets {input:?}; put it before the flatten or linear layers in the spec")]
    NotSpatial { layer: String, input: Vec<i64> },
    /// A conv weight whose input channels differ from those arriving at the layer.
    #[error("layer `{layer}`: weight {shape:?} with groups = {groups} takes {takes} input channels, but the input is {input:?}; fix --input-shape or the spec's order of layers")]
    InputChannels {
        layer: String,
        shape: Vec<i64>,
        groups: i64,
        takes: i64,
        input: Vec<i64>,
    },
    /// A linear weight whose input features differ from the flattened input of the layer.
    #[error("layer `{layer}`: weight {shape:?} takes {takes} features but the input {input:?} has {has}; fix --input-shape or the spec's layers before it")]
    LinearFeatures {
        layer: String,
        shape: Vec<i64>,
        takes: i64,
        input: Vec<i64>,
        has: i64,
    },
    /// A conv layer's input (plus padding) smaller than its dilated kernel.
    #[error("layer `{layer}`: input {}x{} (+ padding {padding:?}) is smaller than the dilated kernel {}x{}; use a larger --input-shape", input[0], input[1], kernel[0], kernel[1])]
    ConvInputTooSmall {
        layer: String,
        input: [i64; 2],
        padding: [i64; 2],
        kernel: [i64; 2],
    },
    /// A pooling layer's input smaller than its window.
    #[error("layer `{layer}`: input {}x{} is smaller than the {}x{} window; use a larger --input-shape", input[0], input[1], window[0], window[1])]
    PoolInputTooSmall {
        layer: String,
        input: [i64; 2],
        window: [i64; 2],
    },
    /// A pooling window torch refuses.
    #[error("layer `{layer}`: kernel must be ≥ 1 and padding ≤ kernel/2, got kernel {kernel:?} padding {padding:?}; fix the layer spec")]
    PoolWindow {
        layer: String,
        kernel: [i64; 2],
        padding: [i64; 2],
    },
    /// Stride, padding, dilation or groups out of range.
    #[error("layer `{layer}`: stride and dilation must be ≥ 1, padding ≥ 0 and groups ≥ 1, got {geom:?}; fix the layer spec")]
    ConvGeometry { layer: String, geom: ConvGeom },
    /// `output_size` of adaptive average pooling below 1.
    #[error("layer `{layer}`: output_size must be ≥ 1, got {output:?}; fix the layer spec")]
    AdaptiveOutput { layer: String, output: [i64; 2] },
    /// Local response normalisation parameters out of range.
    #[error("layer `{layer}`: local_response_norm needs size ≥ 1, alpha ≥ 0, beta ≥ 0 and k > 0 (got size {size}, alpha {alpha}, beta {beta}, k {k}); fix the layer spec")]
    LrnParams {
        layer: String,
        size: i64,
        alpha: f64,
        beta: f64,
        k: f64,
    },
    /// A weight tensor of the wrong rank handed to a layer operator.
    #[error("{what} weight must be {want}, got {shape:?}")]
    WeightShape {
        what: &'static str,
        want: &'static str,
        shape: Vec<i64>,
    },
    /// Output channels of a grouped convolution not divisible by the groups.
    #[error("conv weight {shape:?}: {} output channels are not divisible by groups = {groups}; fix `groups`", shape[0])]
    Groups { shape: Vec<i64>, groups: i64 },
    /// A conv operator built on an input with other channels than its weight takes.
    #[error("conv weight {shape:?} with groups = {groups} does not take {channels} input channels; pass a [C, H, W] input with C = weight[1]·groups")]
    OperatorChannels {
        shape: Vec<i64>,
        groups: i64,
        channels: i64,
    },
    /// A conv operator built on an input smaller than its dilated kernel plus padding.
    #[error("input {input:?} is smaller than the dilated kernel {kernel:?} plus padding; use a larger input")]
    OperatorInputTooSmall { input: [i64; 3], kernel: [i64; 2] },
    /// A circular grid that is not a positive multiple of the stride.
    #[error("torus {torus:?} must be positive multiples of the stride {stride:?}; round it up")]
    Torus { torus: [i64; 2], stride: [i64; 2] },
    /// A dense reference matrix too large to build.
    #[error("dense operator of {rows} × {cols} entries is too large (limit {limit}); use a smaller layer or input")]
    DenseTooLarge { rows: i64, cols: i64, limit: i64 },
    /// An operator with no singular values (dimension 0).
    #[error("{what} has no singular values (dimension 0); check the layer's shapes")]
    Empty { what: &'static str },
}
