//! The engine behind [`super::minimize`]: the state of B problems advancing in lockstep as rows of
//! [b, n] tensors, and what drives it. As in argmin's `Solver`/`Executor` split, the solver steps
//! ([`Engine::init`], [`Engine::next_iter`] in [`iteration`], the stopping tests) are apart from the
//! driver ([`Engine::run`]: the loop, the observer, compaction) and from the result ([`Engine::finish`]).
//!
//! Rows ("slots") are the problems not yet compacted away: finished problems stop being evaluated at
//! once and leave the state tensors when they are at least 1/8 of the rows (or at the end).

// Per-problem host vectors (f, evals, flags) are indexed in parallel by slot.
#![allow(clippy::needless_range_loop)]

mod iteration;

use super::bounds::Boxes;
use super::lbfgsb::{BatchObjective, IterInfo, Observer, Solution, Termination};
use super::memory::Memory;
use super::ops::{dtype_eps, idx_tensor, to_vec};
use super::{LbfgsbSettings, OptimError};
use crate::Result;
use tch::{Device, Kind, Tensor};

/// Per-problem state of the running rows.
struct State {
    /// slot → original problem index.
    orig: Vec<i64>,
    orig_t: Tensor, // [b] i64
    x: Tensor,      // [b, n]
    g: Tensor,      // [b, n]
    f: Vec<f64>,    // [b]
    /// Free mask F [b, n] at x (None without bounds).
    free: Option<Tensor>,
    running: Vec<bool>,
    iters: Vec<usize>,
    evals: Vec<usize>,
    /// The previous line search of this problem failed (memory dropped, next failure ends it).
    failed_once: Vec<bool>,
}

/// What is known of every original problem (indexed by row of x0): finished rows are final.
struct Results {
    x: Tensor, // [B, n]
    f: Vec<f64>,
    pg: Vec<f64>,
    iters: Vec<usize>,
    evals: Vec<usize>,
    term: Vec<Option<Termination>>,
}

/// B box-constrained problems solved in lockstep.
pub(crate) struct Engine<'a> {
    obj: &'a mut dyn BatchObjective,
    set: LbfgsbSettings,
    boxes: Boxes,
    kind: Kind,
    device: Device,
    /// dtype epsilon: the curvature threshold of stored pairs.
    eps: f64,
    mem: Memory,
    st: State,
    out: Results,
    evals_total: usize,
}

impl<'a> Engine<'a> {
    /// The state at x0 [B, n] (projected onto the box, as scipy does); nothing evaluated yet.
    pub(crate) fn start(
        obj: &'a mut dyn BatchObjective,
        x0: &Tensor,
        boxes: Boxes,
        set: LbfgsbSettings,
    ) -> Result<Self> {
        let (kind, device) = (x0.kind(), x0.device());
        let (bsz, n) = (x0.size()[0], x0.size()[1]);
        let b = bsz as usize;
        let x = boxes
            .project(&x0.f_detach()?.f_contiguous()?, None)?
            .f_detach_copy()?;
        let orig: Vec<i64> = (0..bsz).collect();
        let orig_t = idx_tensor(&orig, device)?;
        let eps = dtype_eps(kind);
        let mem = Memory::new(set.history, bsz, n, kind, device, eps)?;
        let st = State {
            orig,
            orig_t,
            g: x.f_zeros_like()?,
            x,
            f: vec![0.0; b],
            free: None,
            running: vec![true; b],
            iters: vec![0; b],
            evals: vec![0; b],
            failed_once: vec![false; b],
        };
        let out = Results {
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
            kind,
            device,
            eps,
            mem,
            st,
            out,
            evals_total: 0,
        })
    }

    /// Rows still in the state.
    fn b(&self) -> usize {
        self.st.orig.len()
    }

    /// Evaluate rows `sub` (None = all) at `x` [s, n]; checks shapes, returns (f [s] host, g [s, n]).
    fn eval(&mut self, x: &Tensor, sub: Option<&Tensor>) -> Result<(Vec<f64>, Tensor)> {
        let (f, g) = self.eval_on_device(x, sub)?;
        Ok((to_vec(&f)?, g))
    }

    /// [`Self::eval`] with f [s] left where the objective made it (detached), for callers that pack it
    /// with other numbers into one host copy.
    fn eval_on_device(&mut self, x: &Tensor, sub: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let idx = match sub {
            Some(s) => self.st.orig_t.f_index_select(0, s)?,
            None => self.st.orig_t.shallow_clone(),
        };
        let rows = x.size()[0];
        let p = super::profile::span("objective (fwd+bwd)");
        let (f, g) = self.obj.eval(x, &idx)?;
        drop(p);
        if f.size() != [rows] || g.size() != x.size() {
            return Err(OptimError::ObjectiveShape {
                f: f.size(),
                g: g.size(),
                x: x.size(),
                rows,
            }
            .into());
        }
        self.evals_total += rows as usize;
        let g = g
            .f_detach()?
            .f_to_device(self.device)?
            .f_to_kind(self.kind)?;
        Ok((f.f_detach()?, g))
    }

    /// Problem `slot` stops for `why`; its record is final.
    fn end(&mut self, slot: usize, why: Termination) {
        let st = &mut self.st;
        st.running[slot] = false;
        let o = st.orig[slot] as usize;
        self.out.term[o] = Some(why);
        self.out.f[o] = st.f[slot];
        self.out.iters[o] = st.iters[slot];
        self.out.evals[o] = st.evals[slot];
    }

    /// Record the projected-gradient norms `pg` [b] and current f of every row.
    fn update_pg(&mut self, pg: &[f64]) {
        for (slot, p) in pg.iter().enumerate() {
            let o = self.st.orig[slot] as usize;
            self.out.pg[o] = *p;
            self.out.f[o] = self.st.f[slot];
        }
    }

    /// Evaluate the start point and end the problems that need no iteration.
    fn init(&mut self) -> Result<()> {
        let (f, g) = self.eval(&self.st.x.shallow_clone(), None)?;
        self.st.f = f;
        self.st.g = g;
        let (pg, free) = self.boxes.pg_and_free(&self.st.x, &self.st.g)?;
        let pg = to_vec(&pg)?;
        self.st.free = free;
        self.update_pg(&pg);
        for slot in 0..self.b() {
            self.st.evals[slot] = 1;
            if let Some(why) = self.start_termination(slot, pg[slot]) {
                self.end(slot, why);
            }
        }
        Ok(())
    }

    /// Why problem `slot` stops at its start point (projected-gradient norm `pg`), if it does.
    fn start_termination(&self, slot: usize, pg: f64) -> Option<Termination> {
        if !self.st.f[slot].is_finite() || !pg.is_finite() {
            Some(Termination::NonFinite)
        } else if pg <= self.set.pgtol {
            Some(Termination::Pgtol)
        } else if self.set.max_iter == 0 {
            Some(Termination::MaxIter)
        } else if self.set.max_evals <= 1 {
            Some(Termination::MaxEvals)
        } else {
            None
        }
    }

    /// Drive the problems to their ends: iterate, report to the observer, compact.
    pub(crate) fn run(&mut self, mut observer: Option<&mut dyn Observer>) -> Result<()> {
        self.init()?;
        let mut iter = 0;
        while self.st.running.iter().any(|r| *r) {
            iter += 1;
            self.next_iter()?;
            if let Some(obs) = observer.as_deref_mut() {
                self.observe(obs, iter)?;
            }
            let b = self.b();
            let frozen = self.st.running.iter().filter(|r| !**r).count();
            if frozen > 0 && (frozen == b || frozen * 8 >= b) {
                let _p = super::profile::span("compaction");
                self.compact()?;
            }
        }
        Ok(())
    }

    /// Show the observer iteration `iter`; it may stop every running problem.
    fn observe(&mut self, obs: &mut dyn Observer, iter: usize) -> Result<()> {
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
        Ok(())
    }

    /// Copy finished rows to the results and drop them from the state.
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
        let keep_i: Vec<i64> = keep.iter().map(|&s| s as i64).collect();
        let kt = idx_tensor(&keep_i, self.device)?;
        st.x = st.x.f_index_select(0, &kt)?;
        st.g = st.g.f_index_select(0, &kt)?;
        if let Some(f) = &st.free {
            st.free = Some(f.f_index_select(0, &kt)?);
        }
        self.mem.compact(&keep, &kt)?;
        st.orig = keep.iter().map(|&s| st.orig[s]).collect();
        st.orig_t = idx_tensor(&st.orig, self.device)?;
        st.f = keep.iter().map(|&s| st.f[s]).collect();
        st.running = keep.iter().map(|&s| st.running[s]).collect();
        st.iters = keep.iter().map(|&s| st.iters[s]).collect();
        st.evals = keep.iter().map(|&s| st.evals[s]).collect();
        st.failed_once = keep.iter().map(|&s| st.failed_once[s]).collect();
        self.boxes.compact(&kt)?;
        Ok(())
    }

    /// The solution of every problem (those still running end as [`Termination::Stopped`]).
    pub(crate) fn finish(mut self) -> Result<Solution> {
        for slot in 0..self.b() {
            self.st.running[slot] = false;
        }
        // Only x is needed now: drop the memory before compacting.
        self.mem.release()?;
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
}
