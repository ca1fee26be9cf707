//! The per-example search over c of the paper's attack (§4.1: "we perform line-search to find the
//! minimum c > 0 for which the minimizer r of the following problem satisfies f(x + r) = l"), for a
//! batch of examples searched in lockstep by [`super::lbfgs`].
//!
//! Every solve at c reports whether its solution is adversarial past the margin κ and its margin m(c)
//! (target logit − highest other; untargeted: highest other − the label's). Let g(c) = m(c) − κ: the
//! search looks for the smallest c with g(c) ≥ 0, and stops when a failing c_lo and a succeeding c_hi
//! satisfy c_hi / c_lo ≤ 1 + `c_rel_tol` (both strategies; the best adversarial over all solves is kept).
//!
//! - [`CSearch::Bisect`]: bracket from `c_init` by ×/÷ `bracket_factor`, then bisect geometrically
//!   (c = sqrt(c_lo·c_hi)). About seven solves per example on MNIST.
//! - [`CSearch::Secant`] (default): root finding on g over log c. Once two solves are known, the next
//!   c is the root of the line through the last two (c, g) points (g is close to linear in log c near
//!   its root: measured on N100-100-10, slope 1.2–1.9 per unit of ln c), placed just beside it (0.45 of
//!   the stopping width, on the side of the bracket end that is farther away), so an accurate prediction
//!   closes the bracket in two solves. Safeguards: before a bracket is known the step is at least
//!   ×/÷ (1 + 2·c_rel_tol) and at most ×/÷ `bracket_factor`², and the first step is ×/÷
//!   `bracket_factor`; once bracketed it stays strictly inside by a tenth of the bracket; when the same
//!   end moved three times running, or the prediction is not usable (non-finite, g not increasing in c:
//!   the solves are local and loose, so g is noisy), the step is a bisection (bracketed) or a ×/÷
//!   `bracket_factor` step. The stopping rule is the bisection's, so the guarantee on c is the same;
//!   docs/benchmarks.md has the measured evaluations and distortions of both.

use super::verify::Rows;
use super::{AttackSettings, WarmStart};
use crate::optim::{Solution, Termination};
use crate::Result;
use tch::Tensor;

/// How the c search picks its next c.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CSearch {
    /// Bracketing by `bracket_factor`, then geometric bisection.
    Bisect,
    /// Root finding on the margin (see the module docs).
    #[default]
    Secant,
}

/// The per-example state of the c search over a batch of B examples (host vectors [B]) and the three
/// images it keeps per example on the device ([B, n]): the best adversarial so far and the solutions at
/// the failing c_lo and the succeeding c_hi (warm starts).
pub(crate) struct Search {
    pub success: Vec<bool>,
    pub already: Vec<bool>,
    pub margin: Vec<f64>,
    pub best_c: Vec<f64>,
    pub best_d2: Vec<f64>,
    pub iterations: Vec<usize>,
    pub evaluations: Vec<usize>,
    pub solves: Vec<usize>,
    pub reason: Vec<Option<String>>,
    /// The margin of the latest failing solve (NaN before one): the failure reason quotes it.
    pub fail_margin: Vec<f64>,
    pub active: Vec<bool>,
    /// 0 = no failing c known.
    pub c_lo: Vec<f64>,
    /// inf = no succeeding c known.
    pub c_hi: Vec<f64>,
    /// g = margin − κ at c_lo (at c = 0: the original's) and at c_hi.
    g_lo: Vec<f64>,
    g_hi: Vec<f64>,
    /// (c, g) of the example's last two solves, the latest last (c = NaN: none).
    last: Vec<[(f64, f64); 2]>,
    /// Which end the latest solves moved (+1 hi, −1 lo) and how many times running.
    last_side: Vec<i8>,
    same_side: Vec<u8>,
    /// The c of the next solve.
    pub c: Vec<f64>,
    pub best: Tensor, // [B, n]
    pub x_lo: Tensor, // [B, n]: solution at c_lo (start: the original)
    pub x_hi: Tensor, // [B, n]: solution at c_hi
}

/// Where solve k of a round (example i) goes: the best adversarial, the c_hi or c_lo solution.
#[derive(Default)]
pub(crate) struct Moves {
    pub to_best: Vec<(i64, i64)>,
    pub to_hi: Vec<(i64, i64)>,
    pub to_lo: Vec<(i64, i64)>,
}

impl Search {
    pub fn new(b: usize, x0: &Tensor, c_init: f64) -> Result<Self> {
        Ok(Search {
            success: vec![false; b],
            already: vec![false; b],
            margin: vec![f64::NAN; b],
            best_c: vec![f64::NAN; b],
            best_d2: vec![f64::INFINITY; b],
            iterations: vec![0; b],
            evaluations: vec![0; b],
            solves: vec![0; b],
            reason: vec![None; b],
            fail_margin: vec![f64::NAN; b],
            active: vec![true; b],
            c_lo: vec![0.0; b],
            c_hi: vec![f64::INFINITY; b],
            g_lo: vec![f64::NAN; b],
            g_hi: vec![f64::NAN; b],
            last: vec![[(f64::NAN, f64::NAN); 2]; b],
            last_side: vec![0; b],
            same_side: vec![0; b],
            c: vec![c_init; b],
            best: x0.f_detach_copy()?,
            x_lo: x0.f_detach_copy()?,
            x_hi: x0.f_detach_copy()?,
        })
    }

    /// Examples already adversarial past the margin (distortion 0, c = 0) or whose model output is not
    /// finite on the clean input are decided before any solve. `rows`: the verdict of the originals'
    /// logits with margin κ.
    pub fn decide_clean(&mut self, rows: &Rows) {
        for i in 0..self.active.len() {
            if !rows.finite[i] {
                self.active[i] = false;
                self.reason[i] = Some("model output is not finite on the original image".into());
            } else if rows.adv[i] {
                self.active[i] = false;
                self.success[i] = true;
                self.already[i] = true;
                self.margin[i] = rows.margin[i];
                self.best_c[i] = 0.0;
                self.best_d2[i] = 0.0;
            }
        }
    }

    /// The start of each active example's solve: the original image, or the solution of the nearest (in
    /// log c) solved c. Until a succeeding c is known every solve starts from the original: a failing
    /// solution can sit where the loss barely moves the logits (measured: examples that need c ≫ 1 then
    /// climb to c_max without success, and succeed from the original), so the failing side is used only
    /// inside a bracket. `rows` [a] (device), result [a, n].
    pub fn start_points(
        &self,
        act: &[usize],
        rows: &Tensor,
        x0: &Tensor,
        warm: WarmStart,
    ) -> Result<Tensor> {
        let orig = x0.f_index_select(0, rows)?; // [a, n]
        if warm == WarmStart::Original {
            return Ok(orig);
        }
        let (mut use_hi, mut use_orig) =
            (Vec::with_capacity(act.len()), Vec::with_capacity(act.len()));
        for &i in act {
            let bracketed = self.c_hi[i].is_finite() && self.c_lo[i] > 0.0;
            let hi = self.c_hi[i].is_finite()
                && warm == WarmStart::Nearest
                && (!bracketed
                    || (self.c[i].ln() - self.c_lo[i].ln()).abs()
                        >= (self.c_hi[i].ln() - self.c[i].ln()).abs());
            use_hi.push(hi);
            use_orig.push(!hi && !bracketed);
        }
        let col = |v: &[bool]| -> Result<Tensor> {
            Ok(Tensor::f_from_slice(v)?
                .f_to_device(rows.device())?
                .f_unsqueeze(1)?) // [a, 1]
        };
        let lo_or_orig =
            orig.f_where_self(&col(&use_orig)?, &self.x_lo.f_index_select(0, rows)?)?;
        Ok(self
            .x_hi
            .f_index_select(0, rows)?
            .f_where_self(&col(&use_hi)?, &lo_or_orig)?)
    }

    /// Records solve k (example i) of a round and picks the example's next c.
    pub fn record(
        &mut self,
        (k, i): (usize, usize),
        sol: &Solution,
        (rows, d2): (&Rows, f64),
        set: &AttackSettings,
        moves: &mut Moves,
    ) {
        let (adv, finite) = (rows.adv[k], rows.finite[k]);
        self.iterations[i] += sol.iterations[k];
        self.evaluations[i] += sol.evaluations[k];
        self.solves[i] += 1;
        if !finite || sol.termination[k] == Termination::NonFinite {
            if !self.success[i] {
                self.reason[i] = Some(format!(
                    "model output not finite during the search (c = {:e})",
                    self.c[i]
                ));
            }
            self.active[i] = false;
            return;
        }
        let pair = (k as i64, i as i64);
        let g = rows.margin[k] - set.min_margin;
        if adv {
            if d2 < self.best_d2[i] {
                self.best_d2[i] = d2;
                self.best_c[i] = self.c[i];
                self.margin[i] = rows.margin[k];
                self.success[i] = true;
                moves.to_best.push(pair);
            }
            moves.to_hi.push(pair);
        } else {
            self.fail_margin[i] = rows.margin[k];
            moves.to_lo.push(pair);
        }
        self.note(i, g, adv);
        log::trace!(
            "example {i}: c {:.5e} margin − κ {g:.4e} adversarial {adv} evaluations {}",
            self.c[i],
            sol.evaluations[k]
        );
        self.next_c(i, set);
    }

    /// What the search itself keeps of example i's solve at its current c with margin − κ = `g`: the
    /// bracket end it moves, its g, the last two (c, g) points, and which end moved how many times running.
    fn note(&mut self, i: usize, g: f64, adv: bool) {
        let side = if adv {
            self.c_hi[i] = self.c[i];
            self.g_hi[i] = g;
            1
        } else {
            if self.c[i] > self.c_lo[i] {
                self.c_lo[i] = self.c[i];
                self.g_lo[i] = g;
            }
            -1
        };
        if side == self.last_side[i] {
            self.same_side[i] = self.same_side[i].saturating_add(1);
        } else {
            self.same_side[i] = 1;
        }
        self.last_side[i] = side;
        self.last[i] = [self.last[i][1], (self.c[i], g)];
    }

    /// The next c of example i (or its end).
    fn next_c(&mut self, i: usize, set: &AttackSettings) {
        let (lo, hi) = (self.c_lo[i], self.c_hi[i]);
        if hi.is_infinite() {
            let next = match set.c_search {
                CSearch::Secant => self.extrapolate_up(i, set),
                CSearch::Bisect => None,
            };
            self.c[i] = next.unwrap_or(self.c[i] * set.bracket_factor);
            if self.c[i] > set.c_max {
                self.active[i] = false;
                self.reason[i] = Some(self.no_adversarial_reason(i, set));
            }
        } else if lo == 0.0 {
            let next = match set.c_search {
                CSearch::Secant => self.interpolate_down(i, set),
                CSearch::Bisect => None,
            };
            self.c[i] = next.unwrap_or(self.c[i] / set.bracket_factor);
            if self.c[i] < set.c_min {
                self.active[i] = false;
            }
        } else if hi / lo <= 1.0 + set.c_rel_tol {
            self.active[i] = false;
        } else {
            let next = match set.c_search {
                CSearch::Secant if self.same_side[i] < MAX_SAME_SIDE => self.secant_inside(i, set),
                _ => None,
            };
            self.c[i] = next.unwrap_or((lo * hi).sqrt());
        }
    }

    /// Half the stopping width in log c: where the next c goes beside a predicted root.
    fn aside(set: &AttackSettings) -> f64 {
        0.45 * (1.0 + set.c_rel_tol).ln()
    }

    /// Only failures so far: the secant root of g over log c through the last two failing solves, just
    /// above it, within [c_lo·(1 + 2·tol), c_lo·factor²].
    fn extrapolate_up(&self, i: usize, set: &AttackSettings) -> Option<f64> {
        let root = secant_root(self.last[i][0], self.last[i][1])?;
        let c = self.c_lo[i];
        let (lo, hi) = (
            c * (1.0 + 2.0 * set.c_rel_tol),
            c * set.bracket_factor.powi(2),
        );
        Some((root + Self::aside(set)).exp().clamp(lo, hi))
    }

    /// Only successes so far: the secant root of g over log c through the last two succeeding solves,
    /// just below it, within [c_hi / factor², c_hi / (1 + 2·tol)].
    fn interpolate_down(&self, i: usize, set: &AttackSettings) -> Option<f64> {
        let root = secant_root(self.last[i][0], self.last[i][1])?;
        let c = self.c_hi[i];
        let (lo, hi) = (
            c / set.bracket_factor.powi(2),
            c / (1.0 + 2.0 * set.c_rel_tol),
        );
        Some((root - Self::aside(set)).exp().clamp(lo, hi))
    }

    /// Bracketed: the secant root of g over log c, placed beside it on the side of the farther end,
    /// strictly inside (log c_lo, log c_hi) by a tenth of the bracket.
    fn secant_inside(&self, i: usize, set: &AttackSettings) -> Option<f64> {
        let (xl, xh) = (self.c_lo[i].ln(), self.c_hi[i].ln());
        let root = secant_root(self.last[i][0], self.last[i][1])
            .or_else(|| secant_root((self.c_lo[i], self.g_lo[i]), (self.c_hi[i], self.g_hi[i])))?;
        let x = if root - xl > xh - root {
            root - Self::aside(set)
        } else {
            root + Self::aside(set)
        };
        let pad = 0.1 * (xh - xl);
        Some(x.clamp(xl + pad, xh - pad).exp())
    }

    fn no_adversarial_reason(&self, i: usize, set: &AttackSettings) -> String {
        format!(
            "no adversarial found for c <= c_max = {:e}: at c = {:e} the margin reached {:e} \
             (needs >= {:e}){}",
            set.c_max,
            self.c_lo[i],
            self.fail_margin[i],
            set.min_margin.max(f64::MIN_POSITIVE),
            if self.fail_margin[i] > 0.0 {
                " (misclassified, short of the margin κ)"
            } else {
                " (the loss does not move the logits far enough: raise c_max or check the gradient)"
            }
        )
    }

    /// Copies the round's solutions `xs` [a, n] into the kept images.
    pub fn apply(&self, moves: &Moves, xs: &Tensor) -> Result<()> {
        for (dst, pairs) in [
            (&self.best, &moves.to_best),
            (&self.x_hi, &moves.to_hi),
            (&self.x_lo, &moves.to_lo),
        ] {
            if pairs.is_empty() {
                continue;
            }
            let src: Vec<i64> = pairs.iter().map(|p| p.0).collect();
            let to: Vec<i64> = pairs.iter().map(|p| p.1).collect();
            let src = Tensor::f_from_slice(&src)?.f_to_device(xs.device())?;
            let to = Tensor::f_from_slice(&to)?.f_to_device(xs.device())?;
            let mut d = dst.shallow_clone();
            let _ = d.f_index_copy_(0, &to, &xs.f_index_select(0, &src)?)?;
        }
        Ok(())
    }
}

/// A bracketed secant step that moved the same end this many times running is followed by a bisection.
const MAX_SAME_SIDE: u8 = 3;

/// The root in log c of the line through two (c, g) points: None unless both are finite with c > 0 and
/// g increases with c.
fn secant_root((c1, g1): (f64, f64), (c2, g2): (f64, f64)) -> Option<f64> {
    let ok = |c: f64, g: f64| c > 0.0 && c.is_finite() && g.is_finite();
    if !(ok(c1, g1) && ok(c2, g2) && c1 != c2) {
        return None;
    }
    let (x1, x2) = (c1.ln(), c2.ln());
    let slope = (g2 - g1) / (x2 - x1);
    (slope > 0.0 && slope.is_finite()).then(|| x2 - g2 / slope)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic margin g(c) = a·ln(c / c*) searched without solves: the secant strategy finds c*
    /// to the stopping width in fewer steps than bisection, and both end with a valid bracket.
    fn steps(strategy: CSearch, root: f64, slope: f64) -> (usize, f64, f64) {
        let set = AttackSettings {
            c_search: strategy,
            ..AttackSettings::default()
        };
        let x0 = Tensor::zeros([1, 1], (tch::Kind::Float, tch::Device::Cpu));
        let mut s = Search::new(1, &x0, set.c_init).unwrap();
        let mut n = 0;
        while s.active[0] && n < 50 {
            let c = s.c[0];
            let g = slope * (c / root).ln().max(-3.0);
            s.note(0, g, g >= 0.0);
            s.next_c(0, &set);
            n += 1;
        }
        (n, s.c_lo[0], s.c_hi[0])
    }

    #[test]
    fn warm_starts_use_the_failing_side_only_inside_a_bracket() {
        let x0 = Tensor::zeros([3, 2], (tch::Kind::Float, tch::Device::Cpu));
        let mut s = Search::new(3, &x0, 1.0).unwrap();
        s.x_lo = Tensor::full([3, 2], 1.0, (tch::Kind::Float, tch::Device::Cpu));
        s.x_hi = Tensor::full([3, 2], 2.0, (tch::Kind::Float, tch::Device::Cpu));
        // 0: only failures so far (c_lo = 1, next c 3): the original, not the failing solution.
        (s.c_lo[0], s.c[0]) = (1.0, 3.0);
        // 1: only successes (c_hi = 1, next c 1/3): the succeeding solution.
        (s.c_hi[1], s.c[1]) = (1.0, 1.0 / 3.0);
        // 2: bracketed [1, 3], next c 1.2: the nearer end, c_lo.
        (s.c_lo[2], s.c_hi[2], s.c[2]) = (1.0, 3.0, 1.2);
        let rows = Tensor::from_slice(&[0i64, 1, 2]);
        let first = |w: WarmStart| -> Vec<f32> {
            let t = s.start_points(&[0, 1, 2], &rows, &x0, w).unwrap();
            Vec::<f32>::try_from(&t.select(1, 0)).unwrap()
        };
        assert_eq!(first(WarmStart::Nearest), [0.0, 2.0, 1.0]);
        assert_eq!(first(WarmStart::Failing), [0.0, 0.0, 1.0]);
        assert_eq!(first(WarmStart::Original), [0.0, 0.0, 0.0]);
    }

    #[test]
    fn secant_brackets_the_root_in_fewer_steps_than_bisection() {
        for &root in &[0.013, 0.26, 0.9, 7.0, 300.0] {
            let (nb, lb, hb) = steps(CSearch::Bisect, root, 1.0);
            let (ns, ls, hs) = steps(CSearch::Secant, root, 1.0);
            for (lo, hi) in [(lb, hb), (ls, hs)] {
                assert!(lo < root && root <= hi, "root {root} not in [{lo}, {hi}]");
                assert!(hi / lo <= 1.05 + 1e-12, "bracket [{lo}, {hi}] too wide");
            }
            assert!(ns < nb, "root {root}: secant {ns} steps, bisection {nb}");
        }
    }
}
