//! Optimisation: one batched, box-constrained L-BFGS-B engine that trains the zoo (B = 1, unbounded,
//! paper §3: "trained with L-BFGS until convergence") and runs the paper's attack (§4.1: B problems,
//! box-constrained L-BFGS with bounds [0, 1]).
//!
//! - [`lbfgsb`]: the public face, [`minimize`] and its types (objective, solution, termination reasons,
//!   observers), and the algorithm in its module docs.
//! - `settings.rs`: [`LbfgsbSettings`], validated by its builder methods.
//! - `bounds.rs`: [`Bounds`], the projection P onto the box and the binding set (algorithm step 1).
//! - `memory.rs`: the (s, y) ring of B problems and the two-loop recursion restricted to the free set
//!   (step 2).
//! - `engine/`: the per-problem state and its driver (`mod.rs`: start point, loop, observer, compaction,
//!   result) and one iteration as named steps (`iteration.rs`: direction, batched line-search rounds,
//!   step, memory update, stopping tests; steps 2-5).
//! - `line_search.rs`: the per-problem strong-Wolfe state machine the engine drives in batched rounds
//!   ([`WolfeSettings`]).
//! - `error.rs`: [`OptimError`], what the engine refuses.
//!
//! Rule: `optim` imports neither `models` nor `attack`; it knows objectives only as [`BatchObjective`].

mod bounds;
mod engine;
mod error;
pub mod lbfgsb;
mod line_search;
mod memory;
mod ops;
pub mod profile;
mod settings;

pub use error::OptimError;
pub use lbfgsb::{
    minimize, BatchObjective, Bounds, IterInfo, LbfgsbSettings, Observer, Solution, Termination,
};
pub use line_search::WolfeSettings;
pub(crate) use ops::bdot;
