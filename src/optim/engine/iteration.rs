//! One iteration of every running problem (steps 2-5 of the algorithm in [`crate::optim::lbfgsb`]):
//! search direction, batched strong-Wolfe line searches along the projected path, the step, the memory
//! update and the stopping tests.

// Per-problem host vectors (f, evals, flags) are indexed in parallel by slot.
#![allow(clippy::needless_range_loop)]

use super::Engine;
use crate::optim::lbfgsb::Termination;
use crate::optim::line_search::StrongWolfe;
use crate::optim::ops::{bdot, column, idx_tensor, is_descent, mask_column, to_vecs};
use crate::optim::profile;
use crate::Result;
use tch::Tensor;

/// The line searches of one iteration and the best points their batched rounds found.
struct Searches {
    /// Per slot; None for problems not running.
    ls: Vec<Option<StrongWolfe>>,
    /// Gradient at each problem's best point [b, n] (None: still g).
    g_best: Option<Tensor>,
    /// The evaluated point when one full-batch round holds every problem's best point (the common
    /// case: it is x⁺, no recompute).
    x_full: Option<Tensor>,
}

/// What the step did to each slot.
struct Steps {
    /// The problem ran a line search this iteration.
    searched: Vec<bool>,
    /// Its line search found a point with a lower objective, and x moved there.
    stepped: Vec<bool>,
    /// f before the step (valid where `stepped`).
    f_old: Vec<f64>,
}

impl Engine<'_> {
    /// One iteration of every running problem.
    pub(super) fn next_iter(&mut self) -> Result<()> {
        let free = self.st.free.as_ref().map(|f| f.shallow_clone()); // [b, n] or None
        let p = profile::span("direction");
        let (d, [gtd, d_l2, d_inf]) = self.search_direction(free.as_ref())?; // [b, n], 3 × [b]
        drop(p);
        let mut search = self.start_line_searches(&gtd, &d_l2, &d_inf);
        let mut searching: Vec<usize> = (0..self.b()).filter(|&s| search.ls[s].is_some()).collect();
        while !searching.is_empty() {
            searching = self.line_search_round(&d, &searching, &mut search)?;
        }
        let p = profile::span("step");
        let (steps, x_new, g_new) = self.take_steps(&d, search)?; // x⁺, g⁺ [b, n]
        drop(p);
        let p = profile::span("memory update + pg");
        let pg = self.update_memory(&x_new, &g_new, &steps.stepped)?;
        drop(p);
        self.st.x = x_new;
        self.st.g = g_new;
        self.stopping_tests(&steps, &pg)
    }

    /// d = -H_F (F ⊙ g) [b, n] with gᵀd, ‖d‖₂ and ‖d‖_∞ [b] (one packed host copy); problems where d
    /// is not a descent direction (rounding, NaN) drop their memory and take d = -F ⊙ g. On a GPU the
    /// two-loop recursion runs over all problems at once (the chunks are CPU cache blocking).
    fn search_direction(&mut self, free: Option<&Tensor>) -> Result<(Tensor, [Vec<f64>; 3])> {
        let b = self.b();
        let chunk = if self.device.is_cuda() {
            0
        } else {
            self.set.chunk
        };
        let d = self.mem.direction(&self.st.g, free, chunk)?; // [b, n]
        let stats = self.direction_stats(&d)?;
        let bad: Vec<bool> = (0..b)
            .map(|s| self.st.running[s] && !is_descent(stats[0][s]))
            .collect();
        if bad.iter().any(|x| *x) {
            return self.steepest_descent_where(&bad, d, free);
        }
        Ok((d, stats))
    }

    /// gᵀd, ‖d‖₂ and ‖d‖_∞ per row, read in one device → host copy.
    fn direction_stats(&self, d: &Tensor) -> Result<[Vec<f64>; 3]> {
        to_vecs([
            &bdot(&self.st.g, d)?,
            &d.f_norm_scalaropt_dim(2.0, [-1i64].as_slice(), false)?,
            &d.f_norm_scalaropt_dim(f64::INFINITY, [-1i64].as_slice(), false)?,
        ])
    }

    /// Replace d by steepest descent on the free set in the rows `bad`; rows where that is no descent
    /// either end (F ⊙ g = 0 means a zero projected gradient; otherwise NaN).
    fn steepest_descent_where(
        &mut self,
        bad: &[bool],
        d: Tensor,             // [b, n]
        free: Option<&Tensor>, // [b, n]
    ) -> Result<(Tensor, [Vec<f64>; 3])> {
        for s in 0..self.b() {
            if bad[s] {
                self.mem.forget(s);
            }
        }
        let sd = match free {
            Some(fm) => self.st.g.f_mul(fm)?.f_neg()?,
            None => self.st.g.f_neg()?,
        }; // [b, n]
        let mask = mask_column(bad, self.device)?; // [b, 1]
        let d = sd.f_where_self(&mask, &d)?;
        let stats = self.direction_stats(&d)?;
        let gtd = &stats[0];
        for s in 0..self.b() {
            if bad[s] && !is_descent(gtd[s]) {
                let why = if gtd[s].is_nan() {
                    Termination::NonFinite
                } else {
                    Termination::Pgtol
                };
                self.end(s, why);
            }
        }
        Ok((d, stats))
    }

    /// A strong-Wolfe search per running problem; first step `min(1, 1/|d|₂)` without memory, else 1.
    fn start_line_searches(&self, gtd: &[f64], d_l2: &[f64], d_inf: &[f64]) -> Searches {
        let ls = (0..self.b())
            .map(|s| {
                if !self.st.running[s] {
                    return None;
                }
                let t0 = if self.mem.has_pairs(s) {
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
        Searches {
            ls,
            g_best: None,
            x_full: None,
        }
    }

    /// One batched evaluation: every problem in `searching` at its own trial point P(x + t d). Returns
    /// the problems that search on.
    fn line_search_round(
        &mut self,
        d: &Tensor, // [b, n]
        searching: &[usize],
        search: &mut Searches,
    ) -> Result<Vec<usize>> {
        let sub_i: Vec<i64> = searching.iter().map(|&s| s as i64).collect();
        let sub = if searching.len() == self.b() {
            None
        } else {
            Some(idx_tensor(&sub_i, self.device)?)
        };
        let (xs, ds) = match &sub {
            None => (self.st.x.shallow_clone(), d.shallow_clone()),
            Some(t) => (self.st.x.f_index_select(0, t)?, d.f_index_select(0, t)?),
        }; // [s, n]
        let tv: Vec<f64> = searching
            .iter()
            .map(|&s| search.ls[s].as_ref().map_or(0.0, |l| l.trial()))
            .collect();
        let tt = column(&tv, self.kind, self.device)?; // [s, 1]
        let p = profile::span("line search: trial point");
        let raw = xs.f_addcmul(&ds, &tt)?; // [s, n]
        let xt = self.boxes.project(&raw, sub.as_ref())?;
        drop(p);
        let (ft, gt) = self.eval_on_device(&xt, sub.as_ref())?;
        let p = profile::span("line search: rest");
        let d_eff = if self.boxes.is_free() {
            ds
        } else {
            // φ'(t) along the projected path: clipped coordinates do not move.
            ds.f_where_scalarother(&raw.f_eq_tensor(&xt)?, 0.0)?
        };
        // f and φ'(t) of the round in one device → host copy.
        let [ft, gtd_t] = to_vecs([&ft, &bdot(&gt, &d_eff)?])?;
        let mut next = Vec::with_capacity(searching.len());
        let mut best_rows = Vec::new(); // (local row, slot)
        for (k, &s) in searching.iter().enumerate() {
            let l = search.ls[s].as_mut().expect("searching");
            let u = l.update(ft[k], gtd_t[k]);
            if u.new_best {
                best_rows.push((k as i64, s as i64));
            }
            let budget_left = self.st.evals[s] + l.evals() < self.set.max_evals;
            if u.next.is_some() && budget_left {
                next.push(s);
            }
        }
        self.keep_best_points(search, &best_rows, gt, xt)?;
        drop(p);
        Ok(next)
    }

    /// Remember the gradients `gt` [s, n] at the rows `best` (local row, slot) that are their problem's
    /// new best point; when they are all rows of a full batch, remember the point `xt` too.
    fn keep_best_points(
        &self,
        search: &mut Searches,
        best: &[(i64, i64)],
        gt: Tensor, // [s, n]
        xt: Tensor, // [s, n]
    ) -> Result<()> {
        if best.is_empty() {
            return Ok(());
        }
        if best.len() == self.b() {
            search.g_best = Some(gt);
            search.x_full = Some(xt);
            return Ok(());
        }
        search.x_full = None;
        let loc: Vec<i64> = best.iter().map(|r| r.0).collect();
        let slots: Vec<i64> = best.iter().map(|r| r.1).collect();
        let mut gn = match search.g_best.take() {
            Some(t) => t,
            None => self.st.g.f_detach_copy()?,
        }; // [b, n]
        let _ = gn.f_index_copy_(
            0,
            &idx_tensor(&slots, self.device)?,
            &gt.f_index_select(0, &idx_tensor(&loc, self.device)?)?,
        )?;
        search.g_best = Some(gn);
        Ok(())
    }

    /// Move every problem whose search succeeded to its best point: returns what happened, x⁺ and g⁺.
    fn take_steps(&mut self, d: &Tensor, search: Searches) -> Result<(Steps, Tensor, Tensor)> {
        let b = self.b();
        let mut steps = vec![0.0; b];
        let mut stepped = vec![false; b];
        let mut f_old = vec![0.0; b];
        for s in 0..b {
            if let Some(l) = &search.ls[s] {
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
        let x_new = match search.x_full {
            Some(x) => x,
            None => {
                let tt = column(&steps, self.kind, self.device)?; // [b, 1]
                let mut x_new = self.boxes.project(&self.st.x.f_addcmul(d, &tt)?, None)?; // [b, n]
                if stepped.iter().any(|s| !*s) {
                    let mask = mask_column(&stepped, self.device)?; // [b, 1]
                    x_new = x_new.f_where_self(&mask, &self.st.x)?;
                }
                x_new
            }
        };
        let g_new = match search.g_best {
            Some(g) => g,
            None => self.st.g.shallow_clone(),
        };
        let searched = search.ls.iter().map(|l| l.is_some()).collect();
        let steps = Steps {
            searched,
            stepped,
            f_old,
        };
        Ok((steps, x_new, g_new))
    }

    /// Store (s, y) = (x⁺ - x, g⁺ - g) for the problems that stepped with sᵀy > ε·yᵀy (scipy's test);
    /// also computes the projected gradient's norm and the free set at x⁺ (kept in `st.free`), so that
    /// sᵀy, yᵀy and that norm [b] come to the host in one copy. Returns the norms.
    fn update_memory(
        &mut self,
        x_new: &Tensor,
        g_new: &Tensor,
        stepped: &[bool],
    ) -> Result<Vec<f64>> {
        // (s, y) written straight into the memory's next ring slot.
        let (s_vec, y_vec) = self.mem.next_pair()?; // [b, n] each
        let _ = x_new.f_sub_out(&s_vec, &self.st.x)?;
        let _ = g_new.f_sub_out(&y_vec, &self.st.g)?;
        let sy_t = bdot(&s_vec, &y_vec)?; // [b]
        let yy_t = bdot(&y_vec, &y_vec)?; // [b]
        let (pg, free) = self.boxes.pg_and_free(x_new, g_new)?;
        let [sy, yy, pg] = to_vecs([&sy_t, &yy_t, &pg])?;
        self.st.free = free;
        let accepted: Vec<bool> = (0..self.b())
            .map(|s| stepped[s] && sy[s] > self.eps * yy[s])
            .collect();
        self.mem.commit(&sy_t, &yy_t, &accepted)?;
        Ok(pg)
    }

    /// scipy's stopping tests per problem at the new iterates, given their projected-gradient norms.
    fn stopping_tests(&mut self, steps: &Steps, pg: &[f64]) -> Result<()> {
        self.update_pg(pg);
        for s in 0..self.b() {
            if !steps.searched[s] {
                continue;
            }
            if !steps.stepped[s] {
                self.after_failed_search(s);
                continue;
            }
            self.st.failed_once[s] = false;
            self.st.iters[s] += 1;
            if let Some(why) = self.stop_reason(s, steps.f_old[s], pg[s]) {
                self.end(s, why);
            }
        }
        Ok(())
    }

    /// A failed line search drops the memory and retries with steepest descent; a second failure in a
    /// row (or one without memory) ends the problem.
    fn after_failed_search(&mut self, s: usize) {
        let out_of_evals = self.st.evals[s] >= self.set.max_evals;
        if self.st.failed_once[s] || !self.mem.has_pairs(s) {
            self.end(s, Termination::LineSearchFailed);
        } else {
            self.st.failed_once[s] = true;
            self.mem.forget(s);
            if out_of_evals {
                self.end(s, Termination::MaxEvals);
            }
        }
    }

    /// Why problem `s` stops after a step from f = `f_old` (projected-gradient norm `pg`), if it does.
    fn stop_reason(&self, s: usize, f_old: f64, pg: f64) -> Option<Termination> {
        let tol = self.set.factr * f64::EPSILON;
        let (fo, fn_) = (f_old, self.st.f[s]);
        if pg <= self.set.pgtol {
            Some(Termination::Pgtol)
        } else if (fo - fn_) <= tol * fo.abs().max(fn_.abs()).max(1.0) {
            Some(Termination::Factr)
        } else if self.st.iters[s] >= self.set.max_iter {
            Some(Termination::MaxIter)
        } else if self.st.evals[s] >= self.set.max_evals {
            Some(Termination::MaxEvals)
        } else {
            None
        }
    }
}
