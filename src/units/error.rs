//! Errors of the units analysis: each names the layer, count or data involved and says the fix.

/// What can go wrong in a units analysis.
#[derive(Debug, thiserror::Error)]
pub enum UnitsError {
    #[error("unknown layer `{layer}` for model `{model}`; available layers: {}", available.join(", "))]
    UnknownLayer {
        layer: String,
        model: String,
        available: Vec<String>,
    },
    #[error("`{value}`: expected a number or `all`")]
    BadCount { value: String },
    #[error("top (--top) must be at least 1, got {top}")]
    ZeroTop { top: usize },
    #[error("no directions to scan (--units 0 --random 0): ask for at least one unit or random direction")]
    NoDirections,
    #[error("layer has no units (shape {shape:?}): choose another layer")]
    EmptyLayer { shape: Vec<i64> },
    #[error(
        "cannot draw {count} orthonormal directions in a layer of dimension {dim}: use --random ≤ {dim} \
         with --orthogonal"
    )]
    TooManyOrthogonal { count: usize, dim: i64 },
    #[error(
        "data examples are {data_shape:?} but model `{model}` takes {input_shape:?}: use a data set that \
         fits the model"
    )]
    DataShape {
        model: String,
        data_shape: Vec<i64>,
        input_shape: Vec<i64>,
    },
    #[error("layer `{layer}` returned {shape:?} for a batch of {batch}; expected [B, ...]: fix the model's `layer` method")]
    LayerOutput {
        layer: String,
        shape: Vec<i64>,
        batch: i64,
    },
    #[error(
        "layer `{layer}` gave {got} values per example, the directions have {dim}: the layer's shape \
         must not depend on the input"
    )]
    LayerWidth { layer: String, got: i64, dim: i64 },
    #[error("no examples could be read from {data} ({skipped} skipped): check the data set")]
    NoExamples { data: String, skipped: usize },
}
