//! Line searches for the batched L-BFGS-B engine (paper §4.1 attack and the full-batch L-BFGS training of
//! §3/Table 1 both run through it).
//!
//! A strong-Wolfe line search with cubic interpolation, step for step the algorithm of PyTorch's
//! `torch.optim.lbfgs._strong_wolfe` (bracketing by extrapolation up to 10× the step, then zoom with the
//! "insufficient progress" safeguard), written as a *per-problem state machine* over scalars: the batched
//! engine evaluates one trial step for every problem still searching in a single batched objective call,
//! then feeds each problem its own `(φ(t), φ'(t))` through [`StrongWolfe::update`]. All O(n) work stays in
//! batched tensor ops; only O(1) scalars per problem pass through this file.
//!
//! Differences from PyTorch, on purpose:
//! - the returned point is the best point seen that satisfies the sufficient-decrease (Armijo) condition
//!   (PyTorch returns the bracket's low end, which in rare cases is a point failing Armijo); a search that
//!   finds no such point returns `t = 0` (failure), never a point with a higher objective;
//! - a non-finite `φ(t)` or `φ'(t)` is treated as `+∞` (the step is too long), so the search backtracks
//!   instead of propagating NaN;
//! - `max_evals` counts all evaluations of one search (PyTorch allows `max_ls + 1`).
//!
//! For bound-constrained problems the engine searches along the projected path `x(t) = P(x + t d)`, with
//! `φ'(t) = ∇f(x(t))ᵀ d_free(t)` where `d_free(t)` zeroes the coordinates clipped at `t`; φ is then
//! piecewise smooth and the same search applies.

use super::OptimError;

/// Settings of the strong-Wolfe line search.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WolfeSettings {
    /// Sufficient-decrease constant c1 (Armijo), 0 < c1 < c2.
    pub c1: f64,
    /// Curvature constant c2 (strong Wolfe: |φ'(t)| <= c2 |φ'(0)|), c1 < c2 < 1.
    pub c2: f64,
    /// Stop when the bracket is shorter than this, measured as |t_hi - t_lo| · max|d| (PyTorch's
    /// `tolerance_change`).
    pub tolerance_change: f64,
    /// Most objective evaluations in one line search (scipy's L-BFGS-B allows 20, PyTorch 25 + 1).
    pub max_evals: usize,
}

impl Default for WolfeSettings {
    fn default() -> Self {
        WolfeSettings {
            c1: 1e-4,
            c2: 0.9,
            tolerance_change: 1e-9,
            max_evals: 25,
        }
    }
}

impl WolfeSettings {
    /// Check the constants: 0 < c1 < c2 < 1, tolerance_change >= 0, max_evals >= 1.
    pub fn validate(&self) -> crate::Result<()> {
        let ok = self.c1 > 0.0 && self.c1 < self.c2 && self.c2 < 1.0;
        if !ok || !self.c1.is_finite() || !self.c2.is_finite() {
            return Err(OptimError::WolfeConstants {
                c1: self.c1,
                c2: self.c2,
            }
            .into());
        }
        if !(self.tolerance_change >= 0.0 && self.tolerance_change.is_finite()) {
            let v = self.tolerance_change;
            return Err(OptimError::line_search("tolerance_change", v, "finite and >= 0").into());
        }
        if self.max_evals == 0 {
            return Err(OptimError::line_search("max_evals", self.max_evals, ">= 1").into());
        }
        Ok(())
    }
}

/// Minimiser of the cubic interpolating (x1, f1, g1) and (x2, f2, g2), clamped to `bounds` (default: the
/// interval between x1 and x2). Falls back to the middle of the bounds when the cubic has no minimiser or
/// an input is not finite. Same formula as PyTorch's `_cubic_interpolate`.
pub(crate) fn cubic_interpolate(
    x1: f64,
    f1: f64,
    g1: f64,
    x2: f64,
    f2: f64,
    g2: f64,
    bounds: Option<(f64, f64)>,
) -> f64 {
    let (lo, hi) = bounds.unwrap_or(if x1 <= x2 { (x1, x2) } else { (x2, x1) });
    let mid = 0.5 * (lo + hi);
    let d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
    let d2_square = d1 * d1 - g1 * g2;
    if d2_square.is_nan() || d2_square < 0.0 || d2_square.is_infinite() {
        return mid;
    }
    let d2 = d2_square.sqrt();
    let min_pos = if x1 <= x2 {
        x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
    } else {
        x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
    };
    if !min_pos.is_finite() {
        return mid;
    }
    min_pos.max(lo).min(hi)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Bracket,
    Zoom,
    Done,
}

/// What the engine should do after [`StrongWolfe::update`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Update {
    /// The point just evaluated is the new best point (the engine keeps its gradient).
    pub(crate) new_best: bool,
    /// `Some(t)`: evaluate next at step t. `None`: the search is over; read [`StrongWolfe::best`].
    pub(crate) next: Option<f64>,
}

/// One problem's strong-Wolfe line search along φ(t) = f(x(t)), φ(0) = f0, φ'(0) = gtd0 < 0.
#[derive(Clone, Debug)]
pub(crate) struct StrongWolfe {
    set: WolfeSettings,
    f0: f64,
    gtd0: f64,
    d_norm: f64,
    phase: Phase,
    evals: usize,
    /// Step being evaluated.
    t: f64,
    // Bracketing phase: previous point.
    t_prev: f64,
    f_prev: f64,
    gtd_prev: f64,
    // Zoom phase: bracket ends and the index of its low end.
    br: [f64; 2],
    br_f: [f64; 2],
    br_gtd: [f64; 2],
    low: usize,
    insuf_progress: bool,
    // Best Armijo point so far (t = 0 is the start point).
    best_t: f64,
    best_f: f64,
}

impl StrongWolfe {
    /// Start a search at step `t_init` > 0 for a descent direction (`gtd0 < 0`); `d_norm` = max|d|.
    pub(crate) fn new(f0: f64, gtd0: f64, t_init: f64, d_norm: f64, set: WolfeSettings) -> Self {
        StrongWolfe {
            set,
            f0,
            gtd0,
            d_norm,
            phase: Phase::Bracket,
            evals: 0,
            t: t_init,
            t_prev: 0.0,
            f_prev: f0,
            gtd_prev: gtd0,
            br: [0.0; 2],
            br_f: [f0; 2],
            br_gtd: [gtd0; 2],
            low: 0,
            insuf_progress: false,
            best_t: 0.0,
            best_f: f0,
        }
    }

    /// The step to evaluate now.
    pub(crate) fn trial(&self) -> f64 {
        self.t
    }

    /// Evaluations made so far by this search.
    pub(crate) fn evals(&self) -> usize {
        self.evals
    }

    /// Best point found: (t, φ(t)); t = 0 means no point satisfying sufficient decrease was found.
    pub(crate) fn best(&self) -> (f64, f64) {
        (self.best_t, self.best_f)
    }

    /// True when the best point has a strictly lower objective than the start.
    pub(crate) fn succeeded(&self) -> bool {
        self.best_t > 0.0 && self.best_f < self.f0
    }

    fn armijo(&self, t: f64, f: f64) -> bool {
        f <= self.f0 + self.set.c1 * t * self.gtd0
    }

    fn bracket_small(&self) -> bool {
        (self.br[1] - self.br[0]).abs() * self.d_norm < self.set.tolerance_change
    }

    fn finish(&mut self) -> Option<f64> {
        self.phase = Phase::Done;
        None
    }

    /// Feed φ(t), φ'(t) at the current trial step; returns what to do next.
    pub(crate) fn update(&mut self, f_new: f64, gtd_new: f64) -> Update {
        let (f_new, gtd_new) = if f_new.is_finite() && gtd_new.is_finite() {
            (f_new, gtd_new)
        } else {
            (f64::INFINITY, f64::NAN)
        };
        self.evals += 1;
        let t = self.t;
        let mut new_best = false;
        if self.armijo(t, f_new) && f_new < self.best_f {
            self.best_t = t;
            self.best_f = f_new;
            new_best = true;
        }
        let next = match self.phase {
            Phase::Done => None,
            Phase::Bracket => self.bracket_step(t, f_new, gtd_new),
            Phase::Zoom => self.zoom_step(t, f_new, gtd_new),
        };
        Update { new_best, next }
    }

    fn bracket_step(&mut self, t: f64, f_new: f64, gtd_new: f64) -> Option<f64> {
        let c2 = self.set.c2;
        // `ls_iter > 1` in PyTorch: from the third evaluation on.
        if !self.armijo(t, f_new) || (self.evals > 2 && f_new >= self.f_prev) || !f_new.is_finite()
        {
            self.br = [self.t_prev, t];
            self.br_f = [self.f_prev, f_new];
            self.br_gtd = [self.gtd_prev, gtd_new];
            return self.enter_zoom();
        }
        if gtd_new.abs() <= -c2 * self.gtd0 {
            return self.finish();
        }
        if gtd_new >= 0.0 {
            self.br = [self.t_prev, t];
            self.br_f = [self.f_prev, f_new];
            self.br_gtd = [self.gtd_prev, gtd_new];
            return self.enter_zoom();
        }
        if self.evals >= self.set.max_evals {
            return self.finish();
        }
        // Extrapolate.
        let min_step = t + 0.01 * (t - self.t_prev);
        let max_step = t * 10.0;
        let t_next = cubic_interpolate(
            self.t_prev,
            self.f_prev,
            self.gtd_prev,
            t,
            f_new,
            gtd_new,
            Some((min_step, max_step)),
        );
        self.t_prev = t;
        self.f_prev = f_new;
        self.gtd_prev = gtd_new;
        self.t = t_next;
        Some(t_next)
    }

    fn enter_zoom(&mut self) -> Option<f64> {
        self.phase = Phase::Zoom;
        self.low = if self.br_f[0] <= self.br_f[1] { 0 } else { 1 };
        self.insuf_progress = false;
        self.next_zoom_trial()
    }

    fn next_zoom_trial(&mut self) -> Option<f64> {
        if self.evals >= self.set.max_evals || self.bracket_small() {
            return self.finish();
        }
        let (b0, b1) = (self.br[0], self.br[1]);
        let mut t = cubic_interpolate(
            b0,
            self.br_f[0],
            self.br_gtd[0],
            b1,
            self.br_f[1],
            self.br_gtd[1],
            None,
        );
        let (bmin, bmax) = (b0.min(b1), b0.max(b1));
        let eps = 0.1 * (bmax - bmin);
        if (bmax - t).min(t - bmin) < eps {
            if self.insuf_progress || t >= bmax || t <= bmin {
                t = if (t - bmax).abs() < (t - bmin).abs() {
                    bmax - eps
                } else {
                    bmin + eps
                };
                self.insuf_progress = false;
            } else {
                self.insuf_progress = true;
            }
        } else {
            self.insuf_progress = false;
        }
        self.t = t;
        Some(t)
    }

    fn zoom_step(&mut self, t: f64, f_new: f64, gtd_new: f64) -> Option<f64> {
        let (lo, hi) = (self.low, 1 - self.low);
        if !self.armijo(t, f_new) || f_new >= self.br_f[lo] {
            self.br[hi] = t;
            self.br_f[hi] = f_new;
            self.br_gtd[hi] = gtd_new;
            self.low = if self.br_f[0] <= self.br_f[1] { 0 } else { 1 };
        } else {
            if gtd_new.abs() <= -self.set.c2 * self.gtd0 {
                return self.finish();
            } else if gtd_new * (self.br[hi] - self.br[lo]) >= 0.0 {
                self.br[hi] = self.br[lo];
                self.br_f[hi] = self.br_f[lo];
                self.br_gtd[hi] = self.br_gtd[lo];
            }
            self.br[lo] = t;
            self.br_f[lo] = f_new;
            self.br_gtd[lo] = gtd_new;
        }
        self.next_zoom_trial()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drive a search on a scalar function and return (t, φ(t), evals, succeeded).
    fn run(phi: impl Fn(f64) -> (f64, f64), t0: f64) -> (f64, f64, usize, bool) {
        let (f0, g0) = phi(0.0);
        let mut ls = StrongWolfe::new(f0, g0, t0, 1.0, WolfeSettings::default());
        let mut t = ls.trial();
        loop {
            let (f, g) = phi(t);
            match ls.update(f, g).next {
                Some(tn) => t = tn,
                None => break,
            }
        }
        let (bt, bf) = ls.best();
        (bt, bf, ls.evals(), ls.succeeded())
    }

    #[test]
    fn cubic_is_exact_on_a_cubic() {
        // φ(t) = (t - 2)^2 (t + 1) has a local minimum at t = 2.
        let f = |t: f64| (t - 2.0).powi(2) * (t + 1.0);
        let g = |t: f64| 2.0 * (t - 2.0) * (t + 1.0) + (t - 2.0).powi(2);
        let m = cubic_interpolate(0.0, f(0.0), g(0.0), 3.0, f(3.0), g(3.0), None);
        assert!((m - 2.0).abs() < 1e-12, "{m}");
    }

    #[test]
    fn quadratic_step_one_is_accepted() {
        // φ(t) = (t - 1)^2: the unit step is exact and satisfies strong Wolfe at once.
        let (t, f, evals, ok) = run(|t| ((t - 1.0).powi(2), 2.0 * (t - 1.0)), 1.0);
        assert_eq!((t, f, evals), (1.0, 0.0, 1));
        assert!(ok);
    }

    #[test]
    fn short_step_extrapolates_and_long_step_zooms() {
        let phi = |t: f64| ((t - 5.0).powi(2), 2.0 * (t - 5.0));
        let (t, _, _, ok) = run(phi, 0.1);
        assert!(ok && (t - 5.0).abs() <= 0.9 * 5.0 && t > 0.1, "{t}");
        // strong Wolfe: |φ'(t)| <= 0.9 |φ'(0)|
        assert!(phi(t).1.abs() <= 0.9 * 10.0);
        let (t, _, _, ok) = run(phi, 1000.0);
        assert!(ok && phi(t).1.abs() <= 0.9 * 10.0, "{t}");
    }

    #[test]
    fn nan_is_treated_as_too_long() {
        let phi = |t: f64| {
            if t > 2.0 {
                (f64::NAN, f64::NAN)
            } else {
                ((t - 1.5).powi(2), 2.0 * (t - 1.5))
            }
        };
        let (t, f, _, ok) = run(phi, 10.0);
        assert!(ok && t <= 2.0 && f < 2.25, "{t} {f}");
    }

    #[test]
    fn no_decrease_is_a_failure() {
        // Claims descent but the function rises: the search must fail with t = 0.
        let (t, f, evals, ok) = run(|t| (t, -1.0), 1.0);
        assert!(!ok && t == 0.0 && f == 0.0);
        assert!(evals <= WolfeSettings::default().max_evals);
    }
}
