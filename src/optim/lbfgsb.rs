//! Batched L-BFGS-B (Byrd, Lu, Nocedal, Zhu 1995) over tensors [B, n]: the box-constrained solver of the
//! paper's adversarial search (§4.1, "box-constrained L-BFGS", x + r ∈ [0, 1]^m) and, with B = 1 and no
//! bounds, the full-batch L-BFGS that trains the paper's models ("trained with L-BFGS until convergence").
//!
//! # Algorithm (per problem; all problems advance in lockstep as rows of [B, n] tensors)
//! At an iterate x with gradient g:
//! 1. **Binding set.** A coordinate is *binding* when it sits on a bound and its gradient pushes outward
//!    (`x_i = l_i, g_i > 0` or `x_i = u_i, g_i < 0`); the others are *free* (mask `F`).
//! 2. **Direction** `d = -H_F (F ⊙ g)`, where `H_F` is the L-BFGS inverse-Hessian approximation of the
//!    problem reduced to the free coordinates: the two-loop recursion over the stored pairs restricted to
//!    the free set, `(s_j, F ⊙ y_j)`, skipping pairs with `s_jᵀ(F⊙y_j) <= ε·|F⊙y_j|²` (ε = dtype epsilon),
//!    initial scaling γ = sᵀy/yᵀy of the newest usable pair. Once the binding set stops changing, the
//!    restricted pairs are exact secant pairs of the reduced Hessian, as in L-BFGS-B's subspace
//!    minimisation. `d` is a descent direction (`gᵀd = -(F⊙g)ᵀ H_F (F⊙g) < 0`); when rounding makes it
//!    not one, the problem's memory is dropped and `d = -F ⊙ g`.
//! 3. **Projected search path** `x(t) = P(x + t d)` (P = clamp to the box, so iterates never leave it,
//!    and any number of bounds can become active in one step, which is the job of L-BFGS-B's generalised
//!    Cauchy point), searched with a strong-Wolfe line search (PyTorch's `_strong_wolfe`, see
//!    `line_search.rs`) on φ(t) = f(x(t)). First step `min(1, 1/|d|₂)` when the problem has no
//!    usable memory, else 1.
//! 4. **Memory**: (s, y) = (x⁺ - x, g⁺ - g) is stored when `sᵀy > ε·yᵀy` (scipy's test).
//! 5. **Stopping** (scipy's meanings): `‖P(x - g) - x‖_∞ <= pgtol` → [`Termination::Pgtol`];
//!    `(f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= factr · 2.2e-16` → [`Termination::Factr`]; iteration
//!    and evaluation budgets per problem. A failed line search drops the memory and retries with steepest
//!    descent; a second failure in a row ends the problem with [`Termination::LineSearchFailed`] (its best
//!    point is kept), as scipy does.
//!
//! **Fixed points** are exactly the KKT points of the box problem: `d = 0` iff `F ⊙ g = 0` iff the
//! projected gradient is 0. This is the "documented equivalent" of the generalised Cauchy point +
//! subspace minimisation allowed by the design: same stationary points and stopping tests as scipy's
//! L-BFGS-B (checked against `scipy.optimize.fmin_l_bfgs_b` in `tests/optim.rs`), not the same path.
//! Without bounds it is plain L-BFGS with a strong-Wolfe line search, step for step PyTorch's
//! `torch.optim.LBFGS(line_search_fn="strong_wolfe")` (apart from the first step length).
//!
//! # Batching
//! State lives in tensors on the device of `x0`: iterates [b, n], gradients [b, n], memory S, Y
//! [m, b, n] (a ring shared by all problems, with a per-problem validity flag per slot: a problem that
//! skips an update leaves an invalid slot, so it may briefly hold m - 1 pairs). One batched objective call
//! per line-search round evaluates every problem still searching; each has its own step length. The
//! per-problem line-search logic runs on O(1) scalars per problem on the host (one [b] transfer per
//! round). Finished problems stop being evaluated at once and are removed from the state tensors when
//! they are at least 1/8 of the rows (or at the end). The two-loop recursion runs over chunks of problems
//! so that its 4m passes over [chunk, n] stay in cache.

use super::bounds::Boxes;
use super::engine::Engine;
use super::ops::is_float;
use super::OptimError;
use crate::Result;
use tch::Tensor;

pub use super::bounds::Bounds;
pub use super::settings::LbfgsbSettings;

/// A batch of B objectives f_i: R^n → R.
pub trait BatchObjective {
    /// Evaluate the problems whose original batch indices are `idx` ([b] i64, on x's device) at `x` [b, n]:
    /// return (f [b], g [b, n]) in x's dtype/device. Only still-active problems are passed in.
    fn eval(&mut self, x: &Tensor, idx: &Tensor) -> Result<(Tensor, Tensor)>;
}

/// Why a problem stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Termination {
    /// Projected gradient ‖P(x - g) - x‖_∞ <= pgtol.
    Pgtol,
    /// Relative reduction of f <= factr · eps.
    Factr,
    /// Iteration budget spent.
    MaxIter,
    /// Evaluation budget spent.
    MaxEvals,
    /// Two line searches in a row found no decrease (x is the best point found).
    LineSearchFailed,
    /// f or g was not finite (x is the last finite iterate).
    NonFinite,
    /// The observer asked to stop.
    Stopped,
}

/// Result of [`minimize`]; vectors are indexed by problem (row of x0).
#[derive(Debug)]
pub struct Solution {
    /// Solutions [B, n].
    pub x: Tensor,
    /// Objective at x [B] (x0's dtype, on the CPU).
    pub f: Tensor,
    pub iterations: Vec<usize>,
    pub evaluations: Vec<usize>,
    pub termination: Vec<Termination>,
}

/// Progress after one (global) iteration.
pub struct IterInfo<'a> {
    /// Global iteration number (1-based).
    pub iter: usize,
    /// Problems still running.
    pub active: usize,
    /// Current objective of every problem [B] (f64, CPU).
    pub f: &'a Tensor,
    /// Current projected-gradient ∞-norm of every problem [B] (f64, CPU).
    pub pg_norm: &'a Tensor,
    /// Objective evaluations so far, all problems together.
    pub evals_total: usize,
}

/// Watches the iterations; returning false stops every problem ([`Termination::Stopped`]).
pub trait Observer {
    fn observe(&mut self, info: &IterInfo) -> bool;
}

/// Minimise B independent box-constrained problems in lockstep; see the module docs.
///
/// `x0` [B, n] (float dtype, finite; projected onto the box first, as scipy does). The objective receives
/// only still-running problems. Errors: [`OptimError`] (inside `crate::Error::Optim`) for bad settings,
/// bounds or x0 and for an objective returning the wrong shapes; the objective's own errors; `Torch` for
/// libtorch failures.
pub fn minimize(
    obj: &mut dyn BatchObjective,
    x0: &Tensor,
    bounds: &Bounds,
    settings: &LbfgsbSettings,
    observer: Option<&mut dyn Observer>,
) -> Result<Solution> {
    settings.validate()?;
    let (bsz, n) = check_start(x0)?;
    let boxes = Boxes::resolve(bounds, x0, bsz, n)?;
    let _p = super::profile::span("engine (all)");
    let mut eng = Engine::start(obj, x0, boxes, *settings)?;
    eng.run(observer)?;
    eng.finish()
}

/// x0 is a finite floating-point [B, n] with B, n >= 1: returns (B, n).
fn check_start(x0: &Tensor) -> Result<(i64, i64)> {
    let size = x0.size();
    let (bsz, n) = match size.as_slice() {
        [b, n] if *b >= 1 && *n >= 1 => (*b, *n),
        _ => return Err(OptimError::StartShape { shape: size }.into()),
    };
    if !is_float(x0.kind()) {
        return Err(OptimError::StartKind { kind: x0.kind() }.into());
    }
    let bad = x0.f_isfinite()?.f_logical_not()?; // [B, n]
    if i64::try_from(bad.f_any()?)? != 0 {
        let count = i64::try_from(bad.f_sum(tch::Kind::Int64)?)?;
        return Err(OptimError::StartNonFinite { count }.into());
    }
    Ok((bsz, n))
}
