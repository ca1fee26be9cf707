//! The paper's attack (§4.1): "minimize c·|r| + loss_f(x + r, l) subject to x + r ∈ [0, 1]^m" with
//! box-constrained L-BFGS and a line search over c, batched: every example of a batch has its own c and
//! its own L-BFGS-B problem, all solved in lockstep by [`crate::optim::lbfgsb::minimize`].
//!
//! # Choices where the paper is ambiguous
//! - **|r| is the squared ℓ₂ norm** ‖r‖₂² (smooth at r = 0, as in foolbox/cleverhans); the reported
//!   distortion is the paper's sqrt(‖r‖₂²/n).
//! - **c weights the loss, not |r|**: we minimise `‖r‖₂² + c·loss_f(x + r, l)`, which is the paper's
//!   objective divided by its c (our c = 1/c_paper). A larger c buys misclassification with more
//!   distortion, so the paper's "minimum c > 0 for which the minimiser r satisfies f(x + r) = l" is, in our
//!   parametrisation, literally the *smallest* c that succeeds (= the largest c_paper): the smallest
//!   distortion. (Weighting |r| and searching for the minimum c would return the *largest* distortion.)
//! - **Search over c, per example**: start at `c_init`; *bracket* by multiplying (on failure) or dividing
//!   (on success) by `bracket_factor` until one failing c_lo and one succeeding c_hi are known, then
//!   *bisect* geometrically (c = sqrt(c_lo·c_hi)) until c_hi/c_lo <= 1 + `c_rel_tol`. Defaults (tuned on N100-100-10 against foolbox, see
//!   docs/benchmarks.md): c_init 1, factor 3, c_rel_tol 0.05, m = 5, loose per-solve tolerances
//!   (pgtol 1e-3 on ‖r‖² + c·loss, factr 1e12): tighter ones cost 2× the evaluations for < 0.5% distortion. Each solve is warm
//!   started from the solution of the nearest (in log c) solved c of that example (the original image for
//!   the first solve). The best (smallest distortion) adversarial seen over all solves is kept.
//! - loss_f: cross-entropy of the target class (targeted), or −log(1 − p_label) = −log Σ_{j≠label} p_j
//!   (untargeted; bounded below, zero when the label has probability 0).
//! - An example the model already gets "wrong" (classified as the target, or, untargeted, not as its
//!   label) needs no perturbation: distortion 0, c = 0.

use crate::models::Classifier;
use crate::optim::lbfgsb::{minimize, BatchObjective, Bounds, LbfgsbSettings, Termination};
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

/// Settings of the c search and of each L-BFGS-B solve.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttackSettings {
    /// First c tried for every example.
    pub c_init: f64,
    /// Bracketing factor (> 1).
    pub bracket_factor: f64,
    /// Give up (failure) when no c <= c_max succeeds.
    pub c_max: f64,
    /// Stop lowering c below c_min (the example succeeds with the smallest c tried).
    pub c_min: f64,
    /// Bisection stops when c_hi / c_lo <= 1 + c_rel_tol.
    pub c_rel_tol: f64,
    /// Most L-BFGS-B solves per example (bracketing + bisection).
    pub max_solves: usize,
    /// Memory m of each solve.
    pub history: usize,
    /// Most iterations of each solve.
    pub max_iter: usize,
    /// Projected-gradient tolerance of each solve (scipy's pgtol).
    pub pgtol: f64,
    /// Relative-reduction tolerance (scipy's factr; times 2.2e-16).
    pub factr: f64,
    /// Where each solve starts.
    pub warm_start: WarmStart,
}

/// Start point of each solve of the c search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmStart {
    /// The solution of the nearest (in log c) solved c of the example.
    Nearest,
    /// The solution of the largest failing c (the original image until one fails).
    Failing,
    /// Always the original image (foolbox's choice; most evaluations).
    Original,
}

impl Default for AttackSettings {
    fn default() -> Self {
        AttackSettings {
            c_init: 1.0,
            bracket_factor: 3.0,
            c_max: 1e6,
            c_min: 1e-6,
            c_rel_tol: 0.05,
            max_solves: 40,
            history: 5,
            max_iter: 100,
            pgtol: 1e-3,
            factr: 1e12,
            warm_start: WarmStart::Original,
        }
    }
}

impl AttackSettings {
    /// Checks every field; names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, why: &str| Err(Error::Invalid(format!("attack setting `{f}` {why}")));
        if !(self.c_init > 0.0 && self.c_init.is_finite()) {
            return bad("c_init", "must be finite and > 0");
        }
        if !(self.bracket_factor > 1.0 && self.bracket_factor.is_finite()) {
            return bad("bracket_factor", "must be finite and > 1");
        }
        if !(self.c_min > 0.0 && self.c_min <= self.c_init && self.c_init <= self.c_max) {
            return bad("c_min/c_max", "need 0 < c_min <= c_init <= c_max");
        }
        if !(self.c_rel_tol > 0.0 && self.c_rel_tol.is_finite()) {
            return bad("c_rel_tol", "must be finite and > 0");
        }
        if self.max_solves == 0 {
            return bad("max_solves", "must be >= 1");
        }
        if self.max_iter == 0 {
            return bad("max_iter", "must be >= 1");
        }
        self.lbfgsb().map(|_| ())
    }

    /// The engine settings of one solve.
    pub fn lbfgsb(&self) -> Result<LbfgsbSettings> {
        LbfgsbSettings::default()
            .with_history(self.history)?
            .with_max_iter(self.max_iter)?
            .with_max_evals(self.max_iter * 2 + 10)?
            .with_pgtol(self.pgtol)?
            .with_factr(self.factr)
    }
}

/// Raw result of [`attack_batch`] (before the fresh-forward verification of [`super::verify`]).
#[derive(Debug)]
pub struct BatchOutcome {
    /// Best adversarial found, or the original image where none was found: [B, ..input_shape].
    pub adversarial: Tensor,
    /// The search found an adversarial (to be verified).
    pub success: Vec<bool>,
    /// The c of the best adversarial (0 when the original is already misclassified; NaN on failure).
    pub c: Vec<f64>,
    /// L-BFGS-B iterations, all solves together.
    pub iterations: Vec<usize>,
    /// Objective evaluations (forward + backward), all solves together.
    pub evaluations: Vec<usize>,
    /// L-BFGS-B solves.
    pub solves: Vec<usize>,
    /// Why an example failed.
    pub reason: Vec<Option<String>>,
}

/// The batched objective ‖x' − x0‖² + c·loss(x') of the problems `rows` (one per active example).
struct Objective<'a> {
    model: &'a dyn Classifier,
    /// Example shape, batch dimension excluded.
    shape: Vec<i64>,
    x0: Tensor,    // [B, n]
    c: Tensor,     // [B] (x0's kind)
    class: Tensor, // [B] i64: target (targeted) or label (untargeted)
    rows: Tensor,  // [a] i64: engine problem k → example rows[k]
    targeted: bool,
}

/// Per-example loss [b]: cross-entropy of `class` (targeted) or −log(1 − p_class) (untargeted).
fn class_loss(logits: &Tensor, class: &Tensor, targeted: bool) -> Result<Tensor> {
    let lse = logits.f_logsumexp([-1i64].as_slice(), false)?; // [b]
    let zc = logits
        .f_gather(1, &class.f_unsqueeze(1)?, false)?
        .f_squeeze_dim(1)?; // [b]
    if targeted {
        Ok(lse.f_sub(&zc)?)
    } else {
        let k = logits.size()[1];
        let onehot = class.f_one_hot(k)?.f_to_kind(Kind::Bool)?; // [b, K]
        let others = logits.f_masked_fill(&onehot, f64::NEG_INFINITY)?; // [b, K]
        Ok(lse.f_sub(&others.f_logsumexp([-1i64].as_slice(), false)?)?)
    }
}

impl BatchObjective for Objective<'_> {
    fn eval(&mut self, x: &Tensor, idx: &Tensor) -> Result<(Tensor, Tensor)> {
        let ex = self.rows.f_index_select(0, idx)?; // [b]
        let b = x.size()[0];
        let x0 = self.x0.f_index_select(0, &ex)?; // [b, n]
        let c = self.c.f_index_select(0, &ex)?; // [b]
        let class = self.class.f_index_select(0, &ex)?; // [b]
        let xr = x.f_detach()?.f_set_requires_grad(true)?; // [b, n]
        let mut shape = vec![b];
        shape.extend_from_slice(&self.shape);
        let logits = self.model.logits(&xr.f_view(shape.as_slice())?)?; // [b, K]
        let loss = class_loss(&logits, &class, self.targeted)?; // [b]
        let grad = Tensor::f_run_backward(&[loss.f_sum(None::<Kind>)?], &[&xr], false, false)?
            .pop()
            .ok_or_else(|| Error::Other("autograd returned no gradient".into()))?; // [b, n]
        let r = x.f_sub(&x0)?; // [b, n]
        let loss = loss.f_detach()?.f_to_kind(x.kind())?;
        let f = r
            .f_square()?
            .f_sum_dim_intlist([-1i64].as_slice(), false, None::<Kind>)?
            + c.f_mul(&loss)?; // [b]
        let g = r.f_mul_scalar(2.0)? + grad.f_to_kind(x.kind())?.f_mul(&c.f_unsqueeze(1)?)?; // [b, n]
        Ok((f, g))
    }
}

/// Is each row adversarial? `logits` [b, K] → (adversarial [b], finite [b]) on the host.
pub(crate) fn adversarial_rows(
    logits: &Tensor,
    class: &Tensor,
    targeted: bool,
) -> Result<(Vec<bool>, Vec<bool>)> {
    let finite = logits
        .f_isfinite()?
        .f_all_dim(-1, false)?
        .f_to_device(Device::Cpu)?; // [b]
    let pred = logits.f_argmax(-1, false)?; // [b]
    let hit = pred.f_eq_tensor(class)?;
    let adv = if targeted { hit } else { hit.f_logical_not()? };
    let adv = adv.f_logical_and(&finite.f_to_device(adv.device())?)?;
    let to_bools = |t: &Tensor| -> Result<Vec<bool>> {
        Ok(
            Vec::<i64>::try_from(&t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Int64)?)?
                .into_iter()
                .map(|v| v != 0)
                .collect(),
        )
    };
    Ok((to_bools(&adv)?, to_bools(&finite)?))
}

/// Attack one batch. `x` [B, ..input_shape] inside the model's bounds, `labels` [B] i64, `targets`
/// [B] i64 (None = untargeted). Tensors may live anywhere; work happens on the model's device in f32.
pub fn attack_batch(
    model: &dyn Classifier,
    x: &Tensor,
    labels: &Tensor,
    targets: Option<&Tensor>,
    set: &AttackSettings,
) -> Result<BatchOutcome> {
    set.validate()?;
    crate::models::classifier::check_input(model, x)?;
    let dev = model.device();
    let bsz = x.size()[0];
    let b = bsz as usize;
    if labels.size() != [bsz] || targets.is_some_and(|t| t.size() != [bsz]) {
        return Err(Error::Shape(format!(
            "labels/targets must be [{bsz}], got {:?} / {:?}",
            labels.size(),
            targets.map(|t| t.size())
        )));
    }
    let full_shape = x.size();
    let n: i64 = full_shape[1..].iter().product();
    let x0 = x
        .f_to_device(dev)?
        .f_to_kind(Kind::Float)?
        .f_reshape([bsz, n])?
        .f_contiguous()?; // [B, n]
    let targeted = targets.is_some();
    let class = match targets {
        Some(t) => t,
        None => labels,
    }
    .f_to_device(dev)?
    .f_to_kind(Kind::Int64)?; // [B]
    let (lo_b, hi_b) = model.input_bounds();
    let shape: Vec<i64> = full_shape[1..].to_vec();
    let view = |t: &Tensor, rows: i64| -> Result<Tensor> {
        let mut s = vec![rows];
        s.extend_from_slice(&shape);
        Ok(t.f_view(s.as_slice())?)
    };

    let mut success = vec![false; b];
    let mut best_c = vec![f64::NAN; b];
    let mut best_d2 = vec![f64::INFINITY; b];
    let mut iterations = vec![0usize; b];
    let mut evaluations = vec![0usize; b];
    let mut solves = vec![0usize; b];
    let mut reason: Vec<Option<String>> = vec![None; b];
    let mut active = vec![true; b];

    // Already adversarial (or a model that is not finite on the clean input)?
    {
        let _g = tch::no_grad_guard();
        let logits = model.logits(&view(&x0, bsz)?)?;
        let (adv, finite) = adversarial_rows(&logits, &class, targeted)?;
        for i in 0..b {
            if !finite[i] {
                active[i] = false;
                reason[i] = Some("model output is not finite on the original image".into());
            } else if adv[i] {
                active[i] = false;
                success[i] = true;
                best_c[i] = 0.0;
                best_d2[i] = 0.0;
            }
        }
    }

    let best = x0.f_detach_copy()?; // [B, n]
    let x_lo = x0.f_detach_copy()?; // [B, n]: solution at c_lo (start: the original)
    let x_hi = x0.f_detach_copy()?; // [B, n]: solution at c_hi
    let mut c_lo = vec![0.0f64; b]; // 0 = no failing c known
    let mut c_hi = vec![f64::INFINITY; b]; // inf = no succeeding c known
    let mut c = vec![set.c_init; b];
    let lb = set.lbfgsb()?;
    let bounds = Bounds::Scalar {
        lower: lo_b,
        upper: hi_b,
    };

    for _round in 0..set.max_solves {
        let act: Vec<usize> = (0..b).filter(|&i| active[i]).collect();
        if act.is_empty() {
            break;
        }
        let a = act.len() as i64;
        let act_i: Vec<i64> = act.iter().map(|&i| i as i64).collect();
        let rows = Tensor::f_from_slice(&act_i)?.f_to_device(dev)?; // [a]
                                                                    // Warm start from the nearest solved c (in log c).
        let use_hi: Vec<bool> = act
            .iter()
            .map(|&i| {
                if set.warm_start != WarmStart::Nearest || c_hi[i].is_infinite() {
                    false
                } else if c_lo[i] == 0.0 {
                    true
                } else {
                    (c[i].ln() - c_lo[i].ln()).abs() >= (c_hi[i].ln() - c[i].ln()).abs()
                }
            })
            .collect();
        let mask = Tensor::f_from_slice(&use_hi)?
            .f_to_device(dev)?
            .f_unsqueeze(1)?; // [a, 1]
        let start = if set.warm_start == WarmStart::Original {
            x0.f_index_select(0, &rows)?
        } else {
            x_hi.f_index_select(0, &rows)?
                .f_where_self(&mask, &x_lo.f_index_select(0, &rows)?)?
        }; // [a, n]
        let c_t = Tensor::f_from_slice(&c)?
            .f_to_device(dev)?
            .f_to_kind(Kind::Float)?; // [B]
        let mut obj = Objective {
            model,
            shape: shape.clone(),
            x0: x0.shallow_clone(),
            c: c_t,
            class: class.shallow_clone(),
            rows: rows.shallow_clone(),
            targeted,
        };
        let sol = minimize(&mut obj, &start, &bounds, &lb, None)?;
        let xs = sol.x.f_detach()?; // [a, n]
        let (adv, finite) = {
            let _g = tch::no_grad_guard();
            let logits = model.logits(&view(&xs, a)?)?;
            adversarial_rows(&logits, &class.f_index_select(0, &rows)?, targeted)?
        };
        let d2 = Vec::<f64>::try_from(
            &xs.f_sub(&x0.f_index_select(0, &rows)?)?
                .f_square()?
                .f_sum_dim_intlist([-1i64].as_slice(), false, Kind::Double)?
                .f_to_device(Device::Cpu)?,
        )?; // [a]
        let (mut to_best, mut to_hi, mut to_lo) = (Vec::new(), Vec::new(), Vec::new());
        for (k, &i) in act.iter().enumerate() {
            iterations[i] += sol.iterations[k];
            evaluations[i] += sol.evaluations[k];
            solves[i] += 1;
            if !finite[k] || sol.termination[k] == Termination::NonFinite {
                if !success[i] {
                    reason[i] = Some(format!(
                        "model output not finite during the search (c = {:e})",
                        c[i]
                    ));
                }
                active[i] = false;
                continue;
            }
            if adv[k] {
                if d2[k] < best_d2[i] {
                    best_d2[i] = d2[k];
                    best_c[i] = c[i];
                    success[i] = true;
                    to_best.push((k as i64, i as i64));
                }
                c_hi[i] = c[i];
                to_hi.push((k as i64, i as i64));
            } else {
                c_lo[i] = c_lo[i].max(c[i]);
                to_lo.push((k as i64, i as i64));
            }
            // Next c.
            if c_hi[i].is_infinite() {
                c[i] *= set.bracket_factor;
                if c[i] > set.c_max {
                    active[i] = false;
                    reason[i] = Some(format!(
                        "no adversarial found for c <= c_max = {:e}",
                        set.c_max
                    ));
                }
            } else if c_lo[i] == 0.0 {
                c[i] /= set.bracket_factor;
                if c[i] < set.c_min {
                    active[i] = false;
                }
            } else if c_hi[i] / c_lo[i] <= 1.0 + set.c_rel_tol {
                active[i] = false;
            } else {
                c[i] = (c_lo[i] * c_hi[i]).sqrt();
            }
        }
        for (dst, pairs) in [(&best, &to_best), (&x_hi, &to_hi), (&x_lo, &to_lo)] {
            if pairs.is_empty() {
                continue;
            }
            let src: Vec<i64> = pairs.iter().map(|p| p.0).collect();
            let to: Vec<i64> = pairs.iter().map(|p| p.1).collect();
            let src = Tensor::f_from_slice(&src)?.f_to_device(dev)?;
            let to = Tensor::f_from_slice(&to)?.f_to_device(dev)?;
            let mut d = dst.shallow_clone();
            let _ = d.f_index_copy_(0, &to, &xs.f_index_select(0, &src)?)?;
        }
    }
    for i in 0..b {
        if !success[i] && reason[i].is_none() {
            reason[i] = Some(format!(
                "no adversarial found within {} solves (c up to {:e})",
                solves[i], c[i]
            ));
        }
    }
    Ok(BatchOutcome {
        adversarial: best.f_view(full_shape.as_slice())?,
        success,
        c: best_c,
        iterations,
        evaluations,
        solves,
        reason,
    })
}
