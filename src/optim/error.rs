//! Errors of the optimiser: bad settings, a bad start point or bounds, an objective returning the wrong
//! shapes. Each carries the values involved and says the fix; `crate::Error::Optim` wraps them.

use tch::Kind;

/// What [`super::minimize`] and the settings' validation refuse.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// An L-BFGS-B or line-search setting outside its range.
    #[error("{solver} setting `{name}` = {value} is out of range: set it {allowed}")]
    Setting {
        /// `L-BFGS-B` or `line search`.
        solver: &'static str,
        name: &'static str,
        value: String,
        /// The allowed range, e.g. `>= 1`, `finite and >= 0`.
        allowed: &'static str,
    },
    /// The strong-Wolfe constants do not satisfy 0 < c1 < c2 < 1.
    #[error(
        "line search needs 0 < c1 < c2 < 1, got c1 = {c1}, c2 = {c2}: use e.g. c1 = 1e-4, c2 = 0.9"
    )]
    WolfeConstants { c1: f64, c2: f64 },
    /// x0 is not a non-empty [B, n] matrix.
    #[error("x0 must be [B, n] with B, n >= 1, got {shape:?}: put one problem per row")]
    StartShape { shape: Vec<i64> },
    /// x0 is not floating point.
    #[error(
        "x0 must be a floating-point tensor, got {kind:?}: convert it with to_kind(Kind::Float)"
    )]
    StartKind { kind: Kind },
    /// x0 holds NaN or ±inf.
    #[error("x0 has non-finite entries ({count} of them): start from finite values")]
    StartNonFinite { count: i64 },
    /// Scalar bounds with lower > upper or a NaN.
    #[error("bounds need lower <= upper, got [{lower}, {upper}]: swap or fix them")]
    ScalarBounds { lower: f64, upper: f64 },
    /// Tensor bounds whose lower and upper shapes differ.
    #[error(
        "lower bounds {lower:?} and upper bounds {upper:?} differ in shape: give both [n] or both [B, n]"
    )]
    BoundsShapesDiffer { lower: Vec<i64>, upper: Vec<i64> },
    /// Tensor bounds that fit neither [n] nor [B, n] of x0.
    #[error("bounds must be [n] = [{n}] or [B, n] = [{b}, {n}] to match x0, got {got:?}")]
    BoundsShape { got: Vec<i64>, b: i64, n: i64 },
    /// Tensor bounds that are not floating point.
    #[error(
        "bounds must be floating-point tensors, got lower {lower:?} and upper {upper:?}: convert them with to_kind"
    )]
    BoundsKind { lower: Kind, upper: Kind },
    /// Tensor bounds with lower > upper or NaN somewhere.
    #[error(
        "bounds need lower <= upper everywhere (and no NaN): {count} coordinates violate it; fix those entries"
    )]
    BoundsCrossed { count: i64 },
    /// The objective's f or g does not match the rows it was asked for.
    #[error(
        "objective returned f {f:?} and g {g:?} for x {x:?} (expected [{rows}] and {x:?}): return one value and one gradient row per problem"
    )]
    ObjectiveShape {
        f: Vec<i64>,
        g: Vec<i64>,
        x: Vec<i64>,
        rows: i64,
    },
}

impl OptimError {
    /// An out-of-range L-BFGS-B setting.
    pub(crate) fn lbfgsb(name: &'static str, value: impl ToString, allowed: &'static str) -> Self {
        OptimError::Setting {
            solver: "L-BFGS-B",
            name,
            value: value.to_string(),
            allowed,
        }
    }

    /// An out-of-range line-search setting.
    pub(crate) fn line_search(
        name: &'static str,
        value: impl ToString,
        allowed: &'static str,
    ) -> Self {
        OptimError::Setting {
            solver: "line search",
            name,
            value: value.to_string(),
            allowed,
        }
    }
}
