//! Spectral analysis of instability (§4.3, Table 5): exact per-layer frame bounds.

pub mod conv;
pub mod dense;
pub mod power;
