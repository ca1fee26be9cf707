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
//!    [`super::line_search`]) on φ(t) = f(x(t)). First step `min(1, 1/|d|₂)` when the problem has no
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

// Per-problem host vectors (f, evals, flags) are indexed in parallel by slot.
#![allow(clippy::needless_range_loop)]

use super::line_search::{StrongWolfe, WolfeSettings};
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

/// Settings of [`minimize`]. Defaults are scipy's `fmin_l_bfgs_b` defaults.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LbfgsbSettings {
    /// Memory m: number of (s, y) pairs kept. Default 10.
    pub history: usize,
    /// Most iterations per problem. Default 15000.
    pub max_iter: usize,
    /// Most objective evaluations per problem (the start point included). Default 15000.
    pub max_evals: usize,
    /// Stop when ‖P(x - g) - x‖_∞ <= pgtol. Default 1e-5.
    pub pgtol: f64,
    /// Stop when (f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= factr · 2.2e-16. Default 1e7.
    pub factr: f64,
    /// Strong-Wolfe line search constants.
    pub line_search: WolfeSettings,
    /// Problems per chunk in the two-loop recursion (cache blocking; 0 = all at once). Default 256.
    pub chunk: usize,
}

impl Default for LbfgsbSettings {
    fn default() -> Self {
        LbfgsbSettings {
            history: 10,
            max_iter: 15000,
            max_evals: 15000,
            pgtol: 1e-5,
            factr: 1e7,
            line_search: WolfeSettings {
                max_evals: 20,
                ..WolfeSettings::default()
            },
            chunk: 256,
        }
    }
}

impl LbfgsbSettings {
    /// Check every field; `Error::Invalid` names the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.history == 0 {
            return Err(Error::Invalid("L-BFGS-B history (m) must be >= 1".into()));
        }
        if self.max_evals == 0 {
            return Err(Error::Invalid("L-BFGS-B max_evals must be >= 1".into()));
        }
        if !(self.pgtol >= 0.0 && self.pgtol.is_finite()) {
            return Err(Error::Invalid(format!(
                "L-BFGS-B pgtol must be finite and >= 0, got {}",
                self.pgtol
            )));
        }
        if !(self.factr >= 0.0 && self.factr.is_finite()) {
            return Err(Error::Invalid(format!(
                "L-BFGS-B factr must be finite and >= 0, got {}",
                self.factr
            )));
        }
        self.line_search.validate()
    }
    /// Set the memory m (>= 1).
    pub fn with_history(mut self, m: usize) -> Result<Self> {
        self.history = m;
        self.validate().map(|_| self)
    }
    /// Set the iteration budget per problem.
    pub fn with_max_iter(mut self, n: usize) -> Result<Self> {
        self.max_iter = n;
        self.validate().map(|_| self)
    }
    /// Set the evaluation budget per problem (>= 1).
    pub fn with_max_evals(mut self, n: usize) -> Result<Self> {
        self.max_evals = n;
        self.validate().map(|_| self)
    }
    /// Set pgtol (>= 0).
    pub fn with_pgtol(mut self, pgtol: f64) -> Result<Self> {
        self.pgtol = pgtol;
        self.validate().map(|_| self)
    }
    /// Set factr (>= 0).
    pub fn with_factr(mut self, factr: f64) -> Result<Self> {
        self.factr = factr;
        self.validate().map(|_| self)
    }
    /// Set the line-search constants.
    pub fn with_line_search(mut self, ls: WolfeSettings) -> Result<Self> {
        self.line_search = ls;
        self.validate().map(|_| self)
    }
}

/// A batch of B objectives f_i: R^n → R.
pub trait BatchObjective {
    /// Evaluate the problems whose original batch indices are `idx` ([b] i64, on x's device) at `x` [b, n]:
    /// return (f [b], g [b, n]) in x's dtype/device. Only still-active problems are passed in.
    fn eval(&mut self, x: &Tensor, idx: &Tensor) -> Result<(Tensor, Tensor)>;
}

/// Box constraints l <= x <= u.
#[derive(Debug)]
pub enum Bounds {
    /// Unconstrained (plain L-BFGS).
    None,
    /// The same interval for every coordinate of every problem (±inf allowed).
    Scalar { lower: f64, upper: f64 },
    /// Per coordinate ([n]) or per problem and coordinate ([B, n]); ±inf allowed.
    Tensors { lower: Tensor, upper: Tensor },
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

/// Resolved bounds on the device, in x's dtype.
enum Boxes {
    Free,
    Scalar(f64, f64),
    /// [1, n] (shared) or [b, n] (per problem; compacted with the state).
    Rows {
        lo: Tensor,
        hi: Tensor,
        per_problem: bool,
    },
}

impl Boxes {
    fn is_free(&self) -> bool {
        matches!(self, Boxes::Free)
    }

    /// Bounds for the rows `sub` (None = all rows).
    fn rows(&self, sub: Option<&Tensor>) -> Result<Option<(Tensor, Tensor)>> {
        Ok(match self {
            Boxes::Rows {
                lo,
                hi,
                per_problem: true,
            } => match sub {
                Some(s) => Some((lo.f_index_select(0, s)?, hi.f_index_select(0, s)?)),
                None => Some((lo.shallow_clone(), hi.shallow_clone())),
            },
            Boxes::Rows { lo, hi, .. } => Some((lo.shallow_clone(), hi.shallow_clone())),
            _ => None,
        })
    }

    /// P(x) for rows `sub` of the state (x has those rows).
    fn project(&self, x: &Tensor, sub: Option<&Tensor>) -> Result<Tensor> {
        Ok(match self {
            Boxes::Free => x.shallow_clone(),
            Boxes::Scalar(l, u) => x.f_clamp(*l, *u)?,
            Boxes::Rows { .. } => {
                let (lo, hi) = self.rows(sub)?.expect("rows");
                x.f_clamp_tensor(Some(&lo), Some(&hi))?
            }
        })
    }

    /// ‖P(x - g) - x‖_∞ per row [b], and the free mask F [b, n] in x's dtype (None when
    /// unconstrained). A coordinate is binding iff P(x - g)_i = x_i and g_i != 0 (on a bound with the
    /// gradient pushing outward); every other coordinate is free.
    fn pg_and_free(&self, x: &Tensor, g: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        if self.is_free() {
            return Ok((g.f_abs()?.f_amax([-1i64].as_slice(), false)?, None));
        }
        let p = self.project(&x.f_sub(g)?, None)?.f_sub(x)?; // [b, n]
        let free = p
            .f_ne(0.0)?
            .f_logical_or(&g.f_eq(0.0)?)?
            .f_to_kind(x.kind())?;
        Ok((p.f_abs()?.f_amax([-1i64].as_slice(), false)?, Some(free)))
    }

    fn compact(&mut self, keep: &Tensor) -> Result<()> {
        if let Boxes::Rows {
            lo,
            hi,
            per_problem: true,
        } = self
        {
            *lo = lo.f_index_select(0, keep)?;
            *hi = hi.f_index_select(0, keep)?;
        }
        Ok(())
    }
}

fn is_float(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
    )
}

fn dtype_eps(kind: Kind) -> f64 {
    match kind {
        Kind::Double => f64::EPSILON,
        Kind::Half => 9.765625e-4,
        Kind::BFloat16 => 7.8125e-3,
        _ => f32::EPSILON as f64,
    }
}

/// gᵀd < 0 (false for NaN).
fn is_descent(gtd: f64) -> bool {
    gtd < 0.0
}

/// Row-wise dot products of [b, n] tensors → [b].
fn bdot(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(a.f_mul(b)?
        .f_sum_dim_intlist([-1i64].as_slice(), false, None::<Kind>)?)
}

fn to_vec(t: &Tensor) -> Result<Vec<f64>> {
    Ok(Vec::<f64>::try_from(
        &t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?,
    )?)
}

fn idx_tensor(v: &[i64], device: Device) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(v)?.f_to_device(device)?)
}

fn resolve_bounds(bounds: &Bounds, x0: &Tensor, bsz: i64, n: i64) -> Result<Boxes> {
    let (kind, device) = (x0.kind(), x0.device());
    match bounds {
        Bounds::None => Ok(Boxes::Free),
        Bounds::Scalar { lower, upper } => {
            if lower.is_nan() || upper.is_nan() || lower > upper {
                return Err(Error::Invalid(format!(
                    "bounds need lower <= upper, got [{lower}, {upper}]"
                )));
            }
            if *lower == f64::NEG_INFINITY && *upper == f64::INFINITY {
                Ok(Boxes::Free)
            } else {
                Ok(Boxes::Scalar(*lower, *upper))
            }
        }
        Bounds::Tensors { lower, upper } => {
            let (ls, us) = (lower.size(), upper.size());
            if ls != us {
                return Err(Error::Shape(format!(
                    "lower bounds {ls:?} and upper bounds {us:?} differ in shape"
                )));
            }
            let per_problem = match ls.as_slice() {
                [k] if *k == n => false,
                [b, k] if *b == bsz && *k == n => true,
                _ => {
                    return Err(Error::Shape(format!(
                        "bounds must be [n] = [{n}] or [B, n] = [{bsz}, {n}], got {ls:?}"
                    )))
                }
            };
            if !is_float(lower.kind()) || !is_float(upper.kind()) {
                return Err(Error::Invalid(
                    "bounds must be floating-point tensors".into(),
                ));
            }
            let lo = lower.f_to_device(device)?.f_to_kind(kind)?;
            let hi = upper.f_to_device(device)?.f_to_kind(kind)?;
            let bad = i64::try_from(
                lo.f_isnan()?
                    .f_logical_or(&hi.f_isnan()?)?
                    .f_logical_or(&lo.f_gt_tensor(&hi)?)?
                    .f_any()?,
            )?;
            if bad != 0 {
                return Err(Error::Invalid(
                    "bounds need lower <= upper everywhere (and no NaN)".into(),
                ));
            }
            let (lo, hi) = if per_problem {
                (lo, hi)
            } else {
                (lo.f_view([1, n])?, hi.f_view([1, n])?)
            };
            Ok(Boxes::Rows {
                lo,
                hi,
                per_problem,
            })
        }
    }
}

/// Per-problem engine state; rows ("slots") are the problems not yet compacted away.
struct State {
    /// slot → original problem index.
    orig: Vec<i64>,
    orig_t: Tensor,
    x: Tensor,      // [b, n]
    g: Tensor,      // [b, n]
    f: Vec<f64>,    // [b]
    s_hist: Tensor, // [m, b, n]
    y_hist: Tensor, // [m, b, n]
    /// Free mask F [b, n] at x (None without bounds).
    free: Option<Tensor>,
    sy_hist: Tensor, // [m, b]: s_jᵀy_j
    yy_hist: Tensor, // [m, b]: |y_j|²
    /// valid[slot * m + j]: pair in ring slot j is usable by this problem.
    valid: Vec<bool>,
    running: Vec<bool>,
    iters: Vec<usize>,
    evals: Vec<usize>,
    /// The previous line search of this problem failed (memory dropped, next failure ends it).
    failed_once: Vec<bool>,
}

struct Out {
    x: Tensor,
    f: Vec<f64>,
    pg: Vec<f64>,
    iters: Vec<usize>,
    evals: Vec<usize>,
    term: Vec<Option<Termination>>,
}

struct Engine<'a> {
    obj: &'a mut dyn BatchObjective,
    set: LbfgsbSettings,
    boxes: Boxes,
    m: usize,
    kind: Kind,
    device: Device,
    eps: f64,
    /// Next ring slot to write, and number of slots ever written (<= m).
    head: usize,
    filled: usize,
    st: State,
    out: Out,
    evals_total: usize,
}

/// Minimise B independent box-constrained problems in lockstep; see the module docs.
///
/// `x0` [B, n] (float dtype, finite; projected onto the box first, as scipy does). The objective receives
/// only still-running problems. Errors: `Invalid` for bad settings/bounds/x0, `Shape` for mismatched
/// shapes (also from the objective), `Torch` for libtorch failures.
pub fn minimize(
    obj: &mut dyn BatchObjective,
    x0: &Tensor,
    bounds: &Bounds,
    settings: &LbfgsbSettings,
    observer: Option<&mut dyn Observer>,
) -> Result<Solution> {
    settings.validate()?;
    let size = x0.size();
    let (bsz, n) = match size.as_slice() {
        [b, n] if *b >= 1 && *n >= 1 => (*b, *n),
        _ => {
            return Err(Error::Shape(format!(
                "x0 must be [B, n] with B, n >= 1, got {size:?}"
            )))
        }
    };
    if !is_float(x0.kind()) {
        return Err(Error::Invalid(format!(
            "x0 must be a floating-point tensor, got {:?}",
            x0.kind()
        )));
    }
    if i64::try_from(x0.f_isfinite()?.f_logical_not()?.f_any()?)? != 0 {
        return Err(Error::Invalid("x0 has non-finite entries".into()));
    }
    let boxes = resolve_bounds(bounds, x0, bsz, n)?;
    let mut eng = Engine::start(obj, x0, boxes, *settings)?;
    eng.run(observer)?;
    eng.finish()
}

impl<'a> Engine<'a> {
    fn start(
        obj: &'a mut dyn BatchObjective,
        x0: &Tensor,
        boxes: Boxes,
        set: LbfgsbSettings,
    ) -> Result<Self> {
        let (kind, device) = (x0.kind(), x0.device());
        let (bsz, n) = (x0.size()[0], x0.size()[1]);
        let b = bsz as usize;
        let m = set.history;
        let x = boxes
            .project(&x0.f_detach()?.f_contiguous()?, None)?
            .f_detach_copy()?;
        let orig: Vec<i64> = (0..bsz).collect();
        let orig_t = idx_tensor(&orig, device)?;
        let zeros = Tensor::f_zeros([m as i64, bsz, n], (kind, device))?;
        let st = State {
            orig,
            orig_t,
            g: x.f_zeros_like()?,
            x,
            f: vec![0.0; b],
            s_hist: zeros.f_detach_copy()?,
            y_hist: zeros,
            free: None,
            sy_hist: Tensor::f_zeros([m as i64, bsz], (kind, device))?,
            yy_hist: Tensor::f_ones([m as i64, bsz], (kind, device))?,
            valid: vec![false; b * m],
            running: vec![true; b],
            iters: vec![0; b],
            evals: vec![0; b],
            failed_once: vec![false; b],
        };
        let out = Out {
            x: st.x.f_detach_copy()?,
            f: vec![f64::NAN; b],
            pg: vec![f64::NAN; b],
            iters: vec![0; b],
            evals: vec![0; b],
            term: vec![None; b],
        };
        Ok(Engine {
            obj,
            set,
            boxes,
            m,
            kind,
            device,
            eps: dtype_eps(kind),
            head: 0,
            filled: 0,
            st,
            out,
            evals_total: 0,
        })
    }

    fn b(&self) -> usize {
        self.st.orig.len()
    }

    /// Evaluate rows `sub` (None = all) at `x` [s, n]; checks shapes, returns (f [s] host, g [s, n]).
    fn eval(&mut self, x: &Tensor, sub: Option<&Tensor>) -> Result<(Vec<f64>, Tensor)> {
        let idx = match sub {
            Some(s) => self.st.orig_t.f_index_select(0, s)?,
            None => self.st.orig_t.shallow_clone(),
        };
        let rows = x.size()[0];
        let (f, g) = self.obj.eval(x, &idx)?;
        if f.size() != [rows] || g.size() != x.size() {
            return Err(Error::Shape(format!(
                "objective returned f {:?} and g {:?} for x {:?} (expected [{rows}] and {:?})",
                f.size(),
                g.size(),
                x.size(),
                x.size()
            )));
        }
        self.evals_total += rows as usize;
        let g = g
            .f_detach()?
            .f_to_device(self.device)?
            .f_to_kind(self.kind)?;
        Ok((to_vec(&f.f_detach()?)?, g))
    }

    fn end(&mut self, slot: usize, why: Termination) {
        let st = &mut self.st;
        st.running[slot] = false;
        let o = st.orig[slot] as usize;
        self.out.term[o] = Some(why);
        self.out.f[o] = st.f[slot];
        self.out.iters[o] = st.iters[slot];
        self.out.evals[o] = st.evals[slot];
    }

    fn update_pg(&mut self, pg: &[f64]) {
        for (slot, p) in pg.iter().enumerate() {
            let o = self.st.orig[slot] as usize;
            self.out.pg[o] = *p;
            self.out.f[o] = self.st.f[slot];
        }
    }

    fn run(&mut self, mut observer: Option<&mut dyn Observer>) -> Result<()> {
        // Start point.
        let (f, g) = self.eval(&self.st.x.shallow_clone(), None)?;
        self.st.f = f;
        self.st.g = g;
        let (pg, free) = self.boxes.pg_and_free(&self.st.x, &self.st.g)?;
        let pg = to_vec(&pg)?;
        self.st.free = free;
        self.update_pg(&pg);
        for slot in 0..self.b() {
            self.st.evals[slot] = 1;
            let why = if !self.st.f[slot].is_finite() || !pg[slot].is_finite() {
                Some(Termination::NonFinite)
            } else if pg[slot] <= self.set.pgtol {
                Some(Termination::Pgtol)
            } else if self.set.max_iter == 0 {
                Some(Termination::MaxIter)
            } else if self.set.max_evals <= 1 {
                Some(Termination::MaxEvals)
            } else {
                None
            };
            if let Some(why) = why {
                self.end(slot, why);
            }
        }
        let mut iter = 0;
        while self.st.running.iter().any(|r| *r) {
            iter += 1;
            self.iterate()?;
            if let Some(obs) = observer.as_deref_mut() {
                let f = Tensor::f_from_slice(&self.out.f)?;
                let pg = Tensor::f_from_slice(&self.out.pg)?;
                let active = self.st.running.iter().filter(|r| **r).count();
                let info = IterInfo {
                    iter,
                    active,
                    f: &f,
                    pg_norm: &pg,
                    evals_total: self.evals_total,
                };
                if !obs.observe(&info) {
                    for slot in 0..self.b() {
                        if self.st.running[slot] {
                            self.end(slot, Termination::Stopped);
                        }
                    }
                }
            }
            let b = self.b();
            let frozen = self.st.running.iter().filter(|r| !**r).count();
            if frozen > 0 && (frozen == b || frozen * 8 >= b) {
                self.compact()?;
            }
        }
        Ok(())
    }

    /// Copy finished rows to the output and drop them from the state.
    fn compact(&mut self) -> Result<()> {
        let st = &mut self.st;
        let (done, keep): (Vec<usize>, Vec<usize>) =
            (0..st.orig.len()).partition(|&s| !st.running[s]);
        if done.is_empty() {
            return Ok(());
        }
        let done_slots: Vec<i64> = done.iter().map(|&s| s as i64).collect();
        let done_orig: Vec<i64> = done.iter().map(|&s| st.orig[s]).collect();
        let ds = idx_tensor(&done_slots, self.device)?;
        let dor = idx_tensor(&done_orig, self.device)?;
        let _ = self
            .out
            .x
            .f_index_copy_(0, &dor, &st.x.f_index_select(0, &ds)?)?;
        let m = self.m;
        let keep_i: Vec<i64> = keep.iter().map(|&s| s as i64).collect();
        let kt = idx_tensor(&keep_i, self.device)?;
        st.x = st.x.f_index_select(0, &kt)?;
        st.g = st.g.f_index_select(0, &kt)?;
        if st.s_hist.size()[1] > 0 {
            st.s_hist = st.s_hist.f_index_select(1, &kt)?;
            st.y_hist = st.y_hist.f_index_select(1, &kt)?;
        }
        if let Some(f) = &st.free {
            st.free = Some(f.f_index_select(0, &kt)?);
        }
        st.sy_hist = st.sy_hist.f_index_select(1, &kt)?;
        st.yy_hist = st.yy_hist.f_index_select(1, &kt)?;
        st.orig = keep.iter().map(|&s| st.orig[s]).collect();
        st.orig_t = idx_tensor(&st.orig, self.device)?;
        st.f = keep.iter().map(|&s| st.f[s]).collect();
        st.valid = keep
            .iter()
            .flat_map(|&s| st.valid[s * m..(s + 1) * m].to_vec())
            .collect();
        st.running = keep.iter().map(|&s| st.running[s]).collect();
        st.iters = keep.iter().map(|&s| st.iters[s]).collect();
        st.evals = keep.iter().map(|&s| st.evals[s]).collect();
        st.failed_once = keep.iter().map(|&s| st.failed_once[s]).collect();
        self.boxes.compact(&kt)?;
        Ok(())
    }

    fn finish(mut self) -> Result<Solution> {
        for slot in 0..self.b() {
            self.st.running[slot] = false;
        }
        // Only x is needed now: drop the memory before compacting.
        let empty = Tensor::f_zeros([self.m as i64, 0, 0], (self.kind, self.device))?;
        self.st.s_hist = empty.shallow_clone();
        self.st.y_hist = empty;
        self.compact()?;
        let term = self
            .out
            .term
            .iter()
            .map(|t| t.unwrap_or(Termination::Stopped))
            .collect();
        Ok(Solution {
            x: self.out.x,
            f: Tensor::f_from_slice(&self.out.f)?.f_to_kind(self.kind)?,
            iterations: self.out.iters,
            evaluations: self.out.evals,
            termination: term,
        })
    }

    /// Ring slots from newest to oldest.
    fn slots_newest_first(&self) -> Vec<usize> {
        (0..self.filled)
            .map(|k| (self.head + self.m - 1 - k) % self.m)
            .collect()
    }

    /// Two-loop recursion restricted to the free set: d = -H_F (F ⊙ g) for rows [lo, lo + c).
    ///
    /// Per stored pair j: restricted `y_F = F ⊙ y_j`, `ρ_j = 1 / s_jᵀy_F` (pair skipped unless
    /// `s_jᵀy_F > ε·|y_j|²`, a test at least as strict as `ε·|y_F|²`); γ = s_jᵀy_F / |y_F|² of the newest
    /// pair when usable, else the full γ of the newest valid pair. Without bounds the stored full
    /// `s_jᵀy_j`, `|y_j|²` are used and no masking happens (plain L-BFGS).
    fn direction_rows(
        &self,
        g: &Tensor,            // [c, n]
        free: Option<&Tensor>, // [c, n]
        lo: i64,
        c: i64,
        valid: &Tensor, // [m, b] bool
    ) -> Result<Tensor> {
        let mut q = match free {
            Some(fm) => g.f_mul(fm)?,
            None => g.f_detach_copy()?,
        }; // [c, n]
        let order = self.slots_newest_first();
        let sy_all = self.st.sy_hist.f_narrow(1, lo, c)?; // [m, c]
        let yy_all = self.st.yy_hist.f_narrow(1, lo, c)?; // [m, c]
                                                          // Full γ of the newest valid pair (fallback), 1 when there is none.
        let mut gamma = Tensor::f_ones([c], (self.kind, self.device))?;
        for &j in order.iter().rev() {
            let v = valid.f_get(j as i64)?.f_narrow(0, lo, c)?;
            let gj = sy_all.f_get(j as i64)?.f_div(&yy_all.f_get(j as i64)?)?;
            gamma = gj.f_where_self(&v, &gamma)?;
        }
        let mut saved = Vec::with_capacity(order.len());
        for (k, &j) in order.iter().enumerate() {
            let s = self.st.s_hist.f_get(j as i64)?.f_narrow(0, lo, c)?; // [c, n]
            let y = self.st.y_hist.f_get(j as i64)?.f_narrow(0, lo, c)?; // [c, n]
            let v = valid.f_get(j as i64)?.f_narrow(0, lo, c)?; // [c]
            let yy_full = yy_all.f_get(j as i64)?; // [c]
            let (ym, sy) = match free {
                Some(fm) => {
                    let ym = y.f_mul(fm)?; // [c, n]
                    let sy = bdot(&s, &ym)?; // [c]
                    (ym, sy)
                }
                None => (y.shallow_clone(), sy_all.f_get(j as i64)?),
            };
            let ok = v.f_logical_and(&sy.f_gt_tensor(&yy_full.f_mul_scalar(self.eps)?)?)?;
            if k == 0 && free.is_some() {
                let g_r = sy.f_div(&bdot(&ym, &ym)?)?;
                gamma = g_r.f_where_self(&ok, &gamma)?;
            }
            let rho = sy.f_reciprocal()?.f_where_self(&ok, &sy.f_zeros_like()?)?; // [c]
            let alpha = rho.f_mul(&bdot(&s, &q)?)?; // [c]
            let _ = q.f_addcmul_(&ym, &alpha.f_neg()?.f_unsqueeze(1)?)?;
            saved.push((s, ym, rho, alpha));
        }
        let mut r = q.f_mul(&gamma.f_unsqueeze(1)?)?; // [c, n]
        for (s, ym, rho, alpha) in saved.iter().rev() {
            // ym is zero off the free set, so ymᵀr only sees r's free part.
            let beta = rho.f_mul(&bdot(ym, &r)?)?; // [c]
            let _ = r.f_addcmul_(s, &alpha.f_sub(&beta)?.f_unsqueeze(1)?)?;
        }
        if let Some(fm) = free {
            let _ = r.f_mul_(fm)?;
        }
        Ok(r.f_neg()?)
    }

    /// d [b, n] for all rows, in chunks of `settings.chunk` problems.
    fn direction(&self, free: Option<&Tensor>) -> Result<Tensor> {
        let b = self.b() as i64;
        let m = self.m;
        let valid: Vec<bool> = (0..m)
            .flat_map(|j| (0..self.b()).map(move |s| (j, s)))
            .map(|(j, s)| self.st.valid[s * m + j])
            .collect();
        let valid = Tensor::f_from_slice(&valid)?
            .f_view([m as i64, b])?
            .f_to_device(self.device)?;
        let chunk = if self.set.chunk == 0 {
            b
        } else {
            self.set.chunk as i64
        };
        if chunk >= b {
            return self.direction_rows(&self.st.g, free, 0, b, &valid);
        }
        let mut parts = Vec::new();
        let mut lo = 0;
        while lo < b {
            let c = chunk.min(b - lo);
            let g = self.st.g.f_narrow(0, lo, c)?;
            let fm = match free {
                Some(fm) => Some(fm.f_narrow(0, lo, c)?),
                None => None,
            };
            parts.push(self.direction_rows(&g, fm.as_ref(), lo, c, &valid)?);
            lo += c;
        }
        Ok(Tensor::f_cat(&parts, 0)?)
    }

    fn drop_memory(&mut self, slot: usize) {
        let m = self.m;
        self.st.valid[slot * m..(slot + 1) * m].fill(false);
    }

    fn has_memory(&self, slot: usize) -> bool {
        let m = self.m;
        self.st.valid[slot * m..(slot + 1) * m].iter().any(|v| *v)
    }

    /// One iteration of every running problem.
    fn iterate(&mut self) -> Result<()> {
        let b = self.b();
        let free = self.st.free.as_ref().map(|f| f.shallow_clone()); // [b, n] or None
        let mut d = self.direction(free.as_ref())?; // [b, n]
        let mut gtd = to_vec(&bdot(&self.st.g, &d)?)?;
        // Not a descent direction (rounding, NaN): drop memory, steepest descent on the free set.
        let bad: Vec<bool> = (0..b)
            .map(|s| self.st.running[s] && !is_descent(gtd[s]))
            .collect();
        if bad.iter().any(|x| *x) {
            for s in 0..b {
                if bad[s] {
                    self.drop_memory(s);
                }
            }
            let sd = match &free {
                Some(fm) => self.st.g.f_mul(fm)?.f_neg()?,
                None => self.st.g.f_neg()?,
            };
            let mask = Tensor::f_from_slice(&bad)?
                .f_to_device(self.device)?
                .f_unsqueeze(1)?;
            d = sd.f_where_self(&mask, &d)?;
            gtd = to_vec(&bdot(&self.st.g, &d)?)?;
            for s in 0..b {
                if bad[s] && !is_descent(gtd[s]) {
                    // F ⊙ g = 0 means a zero projected gradient; otherwise NaN.
                    let why = if gtd[s].is_nan() {
                        Termination::NonFinite
                    } else {
                        Termination::Pgtol
                    };
                    self.end(s, why);
                }
            }
        }
        let d_l2 = to_vec(&d.f_norm_scalaropt_dim(2.0, [-1i64].as_slice(), false)?)?;
        let d_inf = to_vec(&d.f_norm_scalaropt_dim(f64::INFINITY, [-1i64].as_slice(), false)?)?;

        // Line searches, one batched evaluation per round.
        let mut ls: Vec<Option<StrongWolfe>> = (0..b)
            .map(|s| {
                if !self.st.running[s] {
                    return None;
                }
                let t0 = if self.has_memory(s) {
                    1.0
                } else {
                    (1.0 / d_l2[s]).min(1.0)
                };
                Some(StrongWolfe::new(
                    self.st.f[s],
                    gtd[s],
                    t0,
                    d_inf[s],
                    self.set.line_search,
                ))
            })
            .collect();
        let mut searching: Vec<usize> = (0..b).filter(|&s| ls[s].is_some()).collect();
        // Gradient at each problem's best point [b, n] (None: still g), and the evaluated point when one
        // full-batch round holds every problem's best point (the common case: it is x⁺, no recompute).
        let mut g_new: Option<Tensor> = None;
        let mut x_full: Option<Tensor> = None;
        while !searching.is_empty() {
            let all = searching.len() == b;
            let sub_i: Vec<i64> = searching.iter().map(|&s| s as i64).collect();
            let sub = if all {
                None
            } else {
                Some(idx_tensor(&sub_i, self.device)?)
            };
            let (xs, ds) = match &sub {
                None => (self.st.x.shallow_clone(), d.shallow_clone()),
                Some(t) => (self.st.x.f_index_select(0, t)?, d.f_index_select(0, t)?),
            };
            let tv: Vec<f64> = searching
                .iter()
                .map(|&s| ls[s].as_ref().map_or(0.0, |l| l.trial()))
                .collect();
            let tt = Tensor::f_from_slice(&tv)?
                .f_to_kind(self.kind)?
                .f_to_device(self.device)?
                .f_unsqueeze(1)?; // [s, 1]
            let raw = xs.f_addcmul(&ds, &tt)?; // [s, n]
            let xt = self.boxes.project(&raw, sub.as_ref())?;
            let (ft, gt) = self.eval(&xt, sub.as_ref())?;
            let d_eff = if self.boxes.is_free() {
                ds
            } else {
                // φ'(t) along the projected path: clipped coordinates do not move.
                ds.f_where_scalarother(&raw.f_eq_tensor(&xt)?, 0.0)?
            };
            let gtd_t = to_vec(&bdot(&gt, &d_eff)?)?;
            let mut next = Vec::with_capacity(searching.len());
            let mut best_rows = Vec::new(); // (local row, slot)
            for (k, &s) in searching.iter().enumerate() {
                let l = ls[s].as_mut().expect("searching");
                let u = l.update(ft[k], gtd_t[k]);
                if u.new_best {
                    best_rows.push((k as i64, s as i64));
                }
                let budget_left = self.st.evals[s] + l.evals() < self.set.max_evals;
                if u.next.is_some() && budget_left {
                    next.push(s);
                }
            }
            if !best_rows.is_empty() {
                if best_rows.len() == b {
                    g_new = Some(gt);
                    x_full = Some(xt);
                } else {
                    x_full = None;
                    let loc: Vec<i64> = best_rows.iter().map(|r| r.0).collect();
                    let slots: Vec<i64> = best_rows.iter().map(|r| r.1).collect();
                    let gn = match g_new.take() {
                        Some(t) => t,
                        None => self.st.g.f_detach_copy()?,
                    };
                    let mut gn = gn;
                    let _ = gn.f_index_copy_(
                        0,
                        &idx_tensor(&slots, self.device)?,
                        &gt.f_index_select(0, &idx_tensor(&loc, self.device)?)?,
                    )?;
                    g_new = Some(gn);
                }
            }
            searching = next;
        }
        // Take the steps.
        let mut steps = vec![0.0; b];
        let mut stepped = vec![false; b];
        let mut f_old = vec![0.0; b];
        for s in 0..b {
            if let Some(l) = &ls[s] {
                self.st.evals[s] += l.evals();
                if l.succeeded() {
                    let (t, f) = l.best();
                    steps[s] = t;
                    stepped[s] = true;
                    f_old[s] = self.st.f[s];
                    self.st.f[s] = f;
                }
            }
        }
        let tt = Tensor::f_from_slice(&steps)?
            .f_to_kind(self.kind)?
            .f_to_device(self.device)?
            .f_unsqueeze(1)?; // [b, 1]
        let x_new = match x_full {
            Some(x) => x,
            None => {
                let mut x_new = self.boxes.project(&self.st.x.f_addcmul(&d, &tt)?, None)?; // [b, n]
                if stepped.iter().any(|s| !*s) {
                    let mask = Tensor::f_from_slice(&stepped)?
                        .f_to_device(self.device)?
                        .f_unsqueeze(1)?;
                    x_new = x_new.f_where_self(&mask, &self.st.x)?;
                }
                x_new
            }
        };
        let g_new = match g_new {
            Some(g) => g,
            None => self.st.g.shallow_clone(),
        };
        let s_vec = x_new.f_sub(&self.st.x)?; // [b, n]
        let y_vec = g_new.f_sub(&self.st.g)?; // [b, n]
        let sy_t = bdot(&s_vec, &y_vec)?; // [b]
        let yy_t = bdot(&y_vec, &y_vec)?; // [b]
        let sy = to_vec(&sy_t)?;
        let yy = to_vec(&yy_t)?;
        let accepted: Vec<bool> = (0..b)
            .map(|s| stepped[s] && sy[s] > self.eps * yy[s])
            .collect();
        if accepted.iter().any(|a| *a) {
            let j = self.head as i64;
            self.st.s_hist.f_get(j)?.f_copy_(&s_vec)?;
            self.st.y_hist.f_get(j)?.f_copy_(&y_vec)?;
            self.st.sy_hist.f_get(j)?.f_copy_(&sy_t)?;
            self.st.yy_hist.f_get(j)?.f_copy_(&yy_t)?;
            for s in 0..b {
                self.st.valid[s * self.m + self.head] = accepted[s];
            }
            self.head = (self.head + 1) % self.m;
            self.filled = (self.filled + 1).min(self.m);
        }
        self.st.x = x_new;
        self.st.g = g_new;
        // Stopping tests.
        let (pg, free) = self.boxes.pg_and_free(&self.st.x, &self.st.g)?;
        let pg = to_vec(&pg)?;
        self.st.free = free;
        self.update_pg(&pg);
        let tol = self.set.factr * f64::EPSILON;
        for s in 0..b {
            if ls[s].is_none() {
                continue;
            }
            let out_of_evals = self.st.evals[s] >= self.set.max_evals;
            if !stepped[s] {
                if self.st.failed_once[s] || !self.has_memory(s) {
                    self.end(s, Termination::LineSearchFailed);
                } else {
                    self.st.failed_once[s] = true;
                    self.drop_memory(s);
                    if out_of_evals {
                        self.end(s, Termination::MaxEvals);
                    }
                }
                continue;
            }
            self.st.failed_once[s] = false;
            self.st.iters[s] += 1;
            let (fo, fn_) = (f_old[s], self.st.f[s]);
            let why = if pg[s] <= self.set.pgtol {
                Some(Termination::Pgtol)
            } else if (fo - fn_) <= tol * fo.abs().max(fn_.abs()).max(1.0) {
                Some(Termination::Factr)
            } else if self.st.iters[s] >= self.set.max_iter {
                Some(Termination::MaxIter)
            } else if out_of_evals {
                Some(Termination::MaxEvals)
            } else {
                None
            };
            if let Some(why) = why {
                self.end(s, why);
            }
        }
        Ok(())
    }
}
