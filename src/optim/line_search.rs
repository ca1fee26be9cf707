//! Line searches for the batched L-BFGS-B engine.
