//! Optimisation: one batched, box-constrained L-BFGS-B engine that trains the zoo (B = 1, unbounded,
//! paper §3: "trained with L-BFGS until convergence") and runs the paper's attack (§4.1: B problems,
//! box-constrained L-BFGS with bounds [0, 1]).
//!
//! - [`lbfgsb`]: the engine ([`minimize`]), its settings, bounds, termination reasons and observers.
//! - [`line_search`]: the per-problem strong-Wolfe line search it drives in batched rounds.

pub mod lbfgsb;
pub mod line_search;

pub use lbfgsb::{
    minimize, BatchObjective, Bounds, IterInfo, LbfgsbSettings, Observer, Solution, Termination,
};
pub use line_search::WolfeSettings;
