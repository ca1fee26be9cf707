//! The L-BFGS memory of B problems (paper §4.1 attack, §3 training) and the two-loop recursion that turns
//! it into search directions, restricted to each problem's free set.
//!
//! The (s, y) pairs live in one ring of m slots shared by all problems, S, Y [m, b, n], with their dot
//! products sᵀy, |y|² [m, b] and a per-problem validity flag per slot: a problem that skips an update
//! leaves an invalid slot, so it may briefly hold m - 1 pairs. The recursion runs over chunks of problems
//! so that its 4m passes over [chunk, n] stay in cache.

// Per-problem host flags are indexed by slot * m + ring slot.
#![allow(clippy::needless_range_loop)]

use super::ops::bdot;
use crate::Result;
use tch::{Device, Kind, Tensor};

/// The ring of (s, y) pairs of every running problem.
pub(crate) struct Memory {
    /// Memory m: ring slots.
    m: usize,
    kind: Kind,
    device: Device,
    /// Curvature threshold ε (dtype epsilon): pairs need sᵀy > ε·|y|².
    eps: f64,
    s: Tensor,  // [m, b, n]
    y: Tensor,  // [m, b, n]
    sy: Tensor, // [m, b]: s_jᵀy_j
    yy: Tensor, // [m, b]: |y_j|²
    /// valid[problem * m + j]: the pair in ring slot j is usable by this problem.
    valid: Vec<bool>,
    /// Next ring slot to write, and number of slots ever written (<= m).
    head: usize,
    filled: usize,
}

/// One stored pair of the rows being processed, kept from the first loop for the second.
struct Pair {
    s: Tensor,     // [c, n]
    ym: Tensor,    // [c, n]: y restricted to the free set
    rho: Tensor,   // [c]
    alpha: Tensor, // [c]
}

impl Memory {
    /// An empty memory of `m` pairs for `b` problems of `n` coordinates.
    pub(crate) fn new(
        m: usize,
        b: i64,
        n: i64,
        kind: Kind,
        device: Device,
        eps: f64,
    ) -> Result<Self> {
        // Uninitialised: only slots already written (`filled`) are ever read, and a write fills every row.
        Ok(Memory {
            m,
            kind,
            device,
            eps,
            s: Tensor::f_empty([m as i64, b, n], (kind, device))?,
            y: Tensor::f_empty([m as i64, b, n], (kind, device))?,
            sy: Tensor::f_zeros([m as i64, b], (kind, device))?,
            yy: Tensor::f_ones([m as i64, b], (kind, device))?,
            valid: vec![false; b as usize * m],
            head: 0,
            filled: 0,
        })
    }

    /// Forget every pair of problem `slot` (its next direction is steepest descent).
    pub(crate) fn forget(&mut self, slot: usize) {
        let m = self.m;
        self.valid[slot * m..(slot + 1) * m].fill(false);
    }

    /// Problem `slot` holds at least one usable pair.
    pub(crate) fn has_pairs(&self, slot: usize) -> bool {
        let m = self.m;
        self.valid[slot * m..(slot + 1) * m].iter().any(|v| *v)
    }

    /// The next ring slot's S and Y rows [b, n], to be written in place (`x⁺ − x`, `g⁺ − g`) before
    /// [`Self::commit`]: no temporaries, no copy.
    pub(crate) fn next_pair(&self) -> Result<(Tensor, Tensor)> {
        let j = self.head as i64;
        Ok((self.s.f_get(j)?, self.y.f_get(j)?))
    }

    /// Makes the pair written into [`Self::next_pair`] (with sᵀy, |y|² [b]) usable by the `accepted`
    /// problems. When none accepted, the slot stays where it is (its old pair, overwritten, is marked
    /// unusable for every problem).
    pub(crate) fn commit(&mut self, sy: &Tensor, yy: &Tensor, accepted: &[bool]) -> Result<()> {
        let j = self.head as i64;
        self.sy.f_get(j)?.f_copy_(sy)?;
        self.yy.f_get(j)?.f_copy_(yy)?;
        for p in 0..accepted.len() {
            self.valid[p * self.m + self.head] = accepted[p];
        }
        if accepted.iter().any(|a| *a) {
            self.head = (self.head + 1) % self.m;
            self.filled = (self.filled + 1).min(self.m);
        }
        Ok(())
    }

    /// Store (s, y) [b, n] with sᵀy, |y|² [b] in the next ring slot, usable by the `accepted` problems.
    #[cfg(test)]
    pub(crate) fn push(
        &mut self,
        s: &Tensor,
        y: &Tensor,
        sy: &Tensor,
        yy: &Tensor,
        accepted: &[bool],
    ) -> Result<()> {
        let (mut ss, mut ys) = self.next_pair()?;
        ss.f_copy_(s)?;
        ys.f_copy_(y)?;
        self.commit(sy, yy, accepted)
    }

    /// Keep the problems `keep` (host indices, the same rows as `kt`) and drop the others.
    pub(crate) fn compact(&mut self, keep: &[usize], kt: &Tensor) -> Result<()> {
        let m = self.m;
        if self.s.size()[1] > 0 {
            self.s = self.s.f_index_select(1, kt)?;
            self.y = self.y.f_index_select(1, kt)?;
        }
        self.sy = self.sy.f_index_select(1, kt)?;
        self.yy = self.yy.f_index_select(1, kt)?;
        self.valid = keep
            .iter()
            .flat_map(|&s| self.valid[s * m..(s + 1) * m].to_vec())
            .collect();
        Ok(())
    }

    /// Free the pair tensors S, Y (when only the iterates are still needed).
    pub(crate) fn release(&mut self) -> Result<()> {
        let empty = Tensor::f_zeros([self.m as i64, 0, 0], (self.kind, self.device))?;
        self.s = empty.shallow_clone();
        self.y = empty;
        Ok(())
    }

    /// Ring slots from newest to oldest.
    fn slots_newest_first(&self) -> Vec<usize> {
        (0..self.filled)
            .map(|k| (self.head + self.m - 1 - k) % self.m)
            .collect()
    }

    /// The validity flags as a [m, b] bool tensor on the device.
    fn valid_tensor(&self, b: usize) -> Result<Tensor> {
        let m = self.m;
        let valid: Vec<bool> = (0..m)
            .flat_map(|j| (0..b).map(move |s| (j, s)))
            .map(|(j, s)| self.valid[s * m + j])
            .collect();
        Ok(Tensor::f_from_slice(&valid)?
            .f_view([m as i64, b as i64])?
            .f_to_device(self.device)?)
    }

    /// d = -H_F (F ⊙ g) [b, n] for all problems (`g`, `free` [b, n]), in chunks of `chunk` problems
    /// (0 = all at once).
    pub(crate) fn direction(
        &self,
        g: &Tensor,
        free: Option<&Tensor>,
        chunk: usize,
    ) -> Result<Tensor> {
        let b = g.size()[0];
        let valid = self.valid_tensor(b as usize)?; // [m, b]
        let chunk = if chunk == 0 { b } else { chunk as i64 };
        if chunk >= b {
            return self.direction_rows(g, free, 0, b, &valid);
        }
        let mut parts = Vec::new();
        let mut lo = 0;
        while lo < b {
            let c = chunk.min(b - lo);
            let gc = g.f_narrow(0, lo, c)?;
            let fm = match free {
                Some(fm) => Some(fm.f_narrow(0, lo, c)?),
                None => None,
            };
            parts.push(self.direction_rows(&gc, fm.as_ref(), lo, c, &valid)?);
            lo += c;
        }
        Ok(Tensor::f_cat(&parts, 0)?)
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
        let mut gamma = self.fallback_gamma(&order, lo, c, valid)?; // [c]
        let mut saved = Vec::with_capacity(order.len());
        for (k, &j) in order.iter().enumerate() {
            let pair = self.first_loop_pair(&mut q, &mut gamma, j, k == 0, free, lo, c, valid)?;
            saved.push(pair);
        }
        let mut r = q.f_mul(&gamma.f_unsqueeze(1)?)?; // [c, n]
        for p in saved.iter().rev() {
            // ym is zero off the free set, so ymᵀr only sees r's free part.
            let beta = p.rho.f_mul(&bdot(&p.ym, &r)?)?; // [c]
            let _ = r.f_addcmul_(&p.s, &p.alpha.f_sub(&beta)?.f_unsqueeze(1)?)?;
        }
        if let Some(fm) = free {
            let _ = r.f_mul_(fm)?;
        }
        Ok(r.f_neg()?)
    }

    /// Full γ = sᵀy/yᵀy of the newest valid pair of each row [c] (1 when there is none).
    fn fallback_gamma(&self, order: &[usize], lo: i64, c: i64, valid: &Tensor) -> Result<Tensor> {
        let sy_all = self.sy.f_narrow(1, lo, c)?; // [m, c]
        let yy_all = self.yy.f_narrow(1, lo, c)?; // [m, c]
        let mut gamma = Tensor::f_ones([c], (self.kind, self.device))?;
        for &j in order.iter().rev() {
            let v = valid.f_get(j as i64)?.f_narrow(0, lo, c)?;
            let gj = sy_all.f_get(j as i64)?.f_div(&yy_all.f_get(j as i64)?)?;
            gamma = gj.f_where_self(&v, &gamma)?;
        }
        Ok(gamma)
    }

    /// One step of the first loop over ring slot `j` (`newest`: the first pair visited): q ← q - α y_F,
    /// and γ from the restricted newest pair when it is usable.
    #[allow(clippy::too_many_arguments)]
    fn first_loop_pair(
        &self,
        q: &mut Tensor,     // [c, n]
        gamma: &mut Tensor, // [c]
        j: usize,
        newest: bool,
        free: Option<&Tensor>, // [c, n]
        lo: i64,
        c: i64,
        valid: &Tensor, // [m, b] bool
    ) -> Result<Pair> {
        let j = j as i64;
        let s = self.s.f_get(j)?.f_narrow(0, lo, c)?; // [c, n]
        let y = self.y.f_get(j)?.f_narrow(0, lo, c)?; // [c, n]
        let v = valid.f_get(j)?.f_narrow(0, lo, c)?; // [c]
        let yy_full = self.yy.f_narrow(1, lo, c)?.f_get(j)?; // [c]
        let (ym, sy) = match free {
            Some(fm) => {
                let ym = y.f_mul(fm)?; // [c, n]
                let sy = bdot(&s, &ym)?; // [c]
                (ym, sy)
            }
            None => (y.shallow_clone(), self.sy.f_narrow(1, lo, c)?.f_get(j)?),
        };
        let ok = v.f_logical_and(&sy.f_gt_tensor(&yy_full.f_mul_scalar(self.eps)?)?)?;
        if newest && free.is_some() {
            let g_r = sy.f_div(&bdot(&ym, &ym)?)?;
            *gamma = g_r.f_where_self(&ok, gamma)?;
        }
        let rho = sy.f_reciprocal()?.f_where_self(&ok, &sy.f_zeros_like()?)?; // [c]
        let alpha = rho.f_mul(&bdot(&s, q)?)?; // [c]
        let _ = q.f_addcmul_(&ym, &alpha.f_neg()?.f_unsqueeze(1)?)?;
        Ok(Pair { s, ym, rho, alpha })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn randn(shape: &[i64]) -> Tensor {
        Tensor::randn(shape, (Kind::Double, Device::Cpu))
    }

    /// Dense BFGS inverse Hessian from pairs (oldest first), H0 = γI:
    /// H ← (I - ρ s yᵀ) H (I - ρ y sᵀ) + ρ s sᵀ.
    fn dense_h(pairs: &[(Tensor, Tensor)], gamma: f64, n: i64) -> Tensor {
        let eye = Tensor::eye(n, (Kind::Double, Device::Cpu));
        let mut h = &eye * gamma;
        for (s, y) in pairs {
            let rho = 1.0 / s.dot(y).double_value(&[]);
            let (sc, yc) = (s.unsqueeze(1), y.unsqueeze(1)); // [n, 1]
            let a = &eye - sc.matmul(&yc.tr()) * rho;
            h = a.matmul(&h).matmul(&a.tr()) + sc.matmul(&sc.tr()) * rho;
        }
        h
    }

    /// Pairs with positive curvature for one problem: y = A s with A symmetric positive definite.
    /// `s_mask` confines the steps s to some coordinates.
    fn pairs(k: usize, n: i64, s_mask: Option<&Tensor>) -> Vec<(Tensor, Tensor)> {
        let m = randn(&[n, n]);
        let a = m.matmul(&m.tr()) + Tensor::eye(n, (Kind::Double, Device::Cpu));
        (0..k)
            .map(|_| {
                let s = match s_mask {
                    Some(f) => randn(&[n]) * f,
                    None => randn(&[n]),
                };
                let y = a.matmul(&s);
                (s, y)
            })
            .collect()
    }

    fn store(mem: &mut Memory, pairs: &[(Tensor, Tensor)]) {
        for (s, y) in pairs {
            let (s, y) = (s.unsqueeze(0), y.unsqueeze(0)); // [1, n]
            let (sy, yy) = (bdot(&s, &y).unwrap(), bdot(&y, &y).unwrap());
            mem.push(&s, &y, &sy, &yy, &[true]).unwrap();
        }
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn two_loop_equals_dense_bfgs_including_ring_wraparound() {
        tch::manual_seed(3);
        let n = 6;
        let all = pairs(5, n, None);
        // m = 3: the ring keeps the newest three pairs.
        let mut mem = Memory::new(3, 1, n, Kind::Double, Device::Cpu, f64::EPSILON).unwrap();
        store(&mut mem, &all);
        let kept = &all[2..];
        let (s, y) = &kept[2];
        let gamma = s.dot(y).double_value(&[]) / y.dot(y).double_value(&[]);
        let g = randn(&[1, n]);
        let d = mem.direction(&g, None, 0).unwrap();
        let want = -dense_h(kept, gamma, n).matmul(&g.get(0));
        assert!(max_diff(&d.get(0), &want) < 1e-10, "{d} vs {want}");
    }

    #[test]
    fn restricted_two_loop_is_bfgs_on_the_free_coordinates() {
        tch::manual_seed(4);
        let n = 5;
        let f = Tensor::from_slice(&[1.0, 0.0, 1.0, 1.0, 0.0]);
        // Steps inside the free set (as once the binding set is stable): s_jᵀ(F ⊙ y_j) = s_jᵀy_j > 0.
        let all = pairs(3, n, Some(&f));
        let mut mem = Memory::new(4, 1, n, Kind::Double, Device::Cpu, f64::EPSILON).unwrap();
        store(&mut mem, &all);
        let restricted: Vec<(Tensor, Tensor)> = all
            .iter()
            .map(|(s, y)| (s.shallow_clone(), y * &f))
            .collect();
        let (s, yf) = &restricted[2];
        let gamma = s.dot(yf).double_value(&[]) / yf.dot(yf).double_value(&[]);
        let g = randn(&[1, n]);
        let d = mem.direction(&g, Some(&f.unsqueeze(0)), 0).unwrap();
        let want = -(dense_h(&restricted, gamma, n).matmul(&(g.get(0) * &f)) * &f);
        assert!(max_diff(&d.get(0), &want) < 1e-10, "{d} vs {want}");
    }

    #[test]
    fn chunks_forgetting_and_compaction_keep_rows_apart() {
        tch::manual_seed(5);
        let (b, n) = (3, 4);
        let mut mem = Memory::new(2, b, n, Kind::Double, Device::Cpu, f64::EPSILON).unwrap();
        let s = randn(&[b, n]);
        let y = &s * 2.0; // A = 2I: H = I/2 exactly
        let (sy, yy) = (bdot(&s, &y).unwrap(), bdot(&y, &y).unwrap());
        mem.push(&s, &y, &sy, &yy, &[true, false, true]).unwrap();
        assert!(mem.has_pairs(0) && !mem.has_pairs(1) && mem.has_pairs(2));
        let g = randn(&[b, n]);
        let whole = mem.direction(&g, None, 0).unwrap();
        let chunked = mem.direction(&g, None, 2).unwrap();
        assert!(max_diff(&whole, &chunked) < 1e-14);
        assert!(max_diff(&whole.get(0), &(g.get(0) * -0.5)) < 1e-12);
        assert!(whole.get(1).equal(&-g.get(1))); // no pair: steepest descent
        mem.forget(0);
        assert!(!mem.has_pairs(0));
        mem.compact(&[1, 2], &Tensor::from_slice(&[1i64, 2]))
            .unwrap();
        assert!(!mem.has_pairs(0) && mem.has_pairs(1));
        let d = mem.direction(&g.narrow(0, 1, 2), None, 0).unwrap();
        assert!(max_diff(&d.get(1), &(g.get(2) * -0.5)) < 1e-12);
    }
}
