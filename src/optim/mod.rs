//! Optimisation: one batched, box-constrained L-BFGS-B engine that trains the zoo (B = 1, unbounded) and
//! runs the paper's attack (B problems, bounds [0,1]).

pub mod lbfgsb;
pub mod line_search;
