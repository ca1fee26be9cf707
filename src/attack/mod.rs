//! The paper's attack (§4.1): box-constrained L-BFGS with a search over c.
