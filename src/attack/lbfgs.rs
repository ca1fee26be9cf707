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
//! - **Search over c, per example** ([`super::search`]): start at `c_init`; find a failing c_lo and a
//!   succeeding c_hi and narrow them until c_hi/c_lo <= 1 + `c_rel_tol`. The default `c_search: secant`
//!   steps by root finding on the margin as a function of log c; `bisect` brackets by `bracket_factor`
//!   and bisects geometrically. Defaults: c_init 1, factor 3, c_rel_tol 0.05, m = 5, loose per-solve
//!   tolerances (pgtol 1e-3 on ‖r‖² + c·loss, factr 1e12): tighter ones cost 2× the evaluations for
//!   < 0.5% distortion. Each solve is warm started from the solution of the nearest (in log c) solved c
//!   of that example (`warm_start: nearest`; the original image for the first solve). The best (smallest
//!   distortion) adversarial seen over all solves is kept. Secant + nearest take 2.6× fewer evaluations
//!   than bisect + clean starts at the same mean distortion (docs/benchmarks.md, "Attack at the
//!   machine's limit").
//! - loss_f: cross-entropy of the target class (targeted), or −log(1 − p_label) = −log Σ_{j≠label} p_j
//!   (untargeted; bounded below, zero when the label has probability 0).
//! - **Success means a margin** κ (`min_margin`): a solve succeeds when its solution's target logit
//!   exceeds every other logit by at least κ (untargeted: some other logit exceeds the label's by κ), in
//!   the forward pass the search makes anyway, so the search finds the smallest c whose minimiser is past
//!   the margin (a c whose solution falls short counts as failing). κ absorbs the rounding of another
//!   evaluation (float64, another batch size or thread count): docs/attack.md has the measurement.
//! - An example the model already gets "wrong" by the margin (classified as the target, or, untargeted,
//!   not as its label) needs no perturbation: distortion 0, c = 0, flagged `already_adversarial`.

pub use super::search::CSearch;
use super::search::{Moves, Search};
use super::verify::adversarial_rows;
use super::AttackError;
use crate::models::Classifier;
use crate::optim::{minimize, BatchObjective, Bounds, LbfgsbSettings};
use crate::Result;
use tch::{Device, Kind, Tensor};

/// Settings of the c search and of each L-BFGS-B solve.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttackSettings {
    /// First c tried for every example.
    pub c_init: f64,
    /// Bracketing factor (> 1).
    pub bracket_factor: f64,
    /// Give up (failure) when no c <= c_max succeeds. 1e9: the untargeted loss −log(1 − p_label) is
    /// ~p_label, 1e-3 on the flat logits of a random 1000-class net, so c there reaches ~1e6.
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
    /// How the next c is picked (docs of [`super::search`]).
    pub c_search: CSearch,
    /// κ: success needs target logit − highest other logit ≥ κ (untargeted: highest other − label's
    /// logit ≥ κ), absolute, in logits (and > 0 always). Tested inside the c search and by verification.
    pub min_margin: f64,
}

/// The default κ, chosen by measurement (docs/attack.md "The margin κ"): the smallest value of a fixed
/// grid whose adversarials stay adversarial in float64, float32 at batch 1 and 10,000, with 1 and 2
/// threads, on all 60,000 training images of N100-100-10 and softmax1.
pub const DEFAULT_MIN_MARGIN: f64 = 1e-5;

/// Start point of each solve of the c search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmStart {
    /// The solution of the nearest (in log c) solved c of the example; the original image while no
    /// succeeding c is known (a failing solution can sit where the loss no longer moves the logits).
    Nearest,
    /// The solution of the largest failing c once a succeeding c is known, else the original image.
    Failing,
    /// Always the original image (foolbox's choice; most evaluations).
    Original,
}

impl Default for AttackSettings {
    fn default() -> Self {
        AttackSettings {
            c_init: 1.0,
            bracket_factor: 3.0,
            c_max: 1e9,
            c_min: 1e-6,
            c_rel_tol: 0.05,
            max_solves: 40,
            history: 5,
            max_iter: 100,
            pgtol: 1e-3,
            factr: 1e12,
            warm_start: WarmStart::Nearest,
            c_search: CSearch::default(),
            min_margin: DEFAULT_MIN_MARGIN,
        }
    }
}

impl AttackSettings {
    /// Checks every field; names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, why: &'static str| {
            Err(AttackError::Setting { field, why }.into())
        };
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
        if !(self.min_margin >= 0.0 && self.min_margin.is_finite()) {
            return bad("min_margin", "must be finite and >= 0");
        }
        self.lbfgsb().map(|_| ())
    }

    /// The engine settings of one solve.
    pub(crate) fn lbfgsb(&self) -> Result<LbfgsbSettings> {
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
    /// The search found an adversarial past the margin (to be verified).
    pub success: Vec<bool>,
    /// Adversarial (past the margin) before any perturbation: distortion 0, c = 0.
    pub already_adversarial: Vec<bool>,
    /// The margin of the best adversarial in the search's forward pass (NaN on failure).
    pub margin: Vec<f64>,
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

/// The batched objective ‖x' − x0‖² + c·loss(x') of one round's problems (engine problem k is the
/// round's k-th active example; everything per problem is gathered once per round).
struct Objective<'a> {
    model: &'a dyn Classifier,
    /// Example shape, batch dimension excluded.
    shape: Vec<i64>,
    x0: Tensor,     // [a, n]
    c_half: Tensor, // [a, 1]: c / 2 (x0's kind)
    c: Tensor,      // [a] f64
    class: Tensor,  // [a] i64: target (targeted) or label (untargeted)
    /// The loss at the original of each example, [a] f64: subtracted so the objective has no constant.
    loss0: Tensor,
    targeted: bool,
}

/// Per-example loss [b] f64: cross-entropy of `class` (targeted) or −log(1 − p_class) (untargeted),
/// computed from the logits cast to f64 (the differences of two log-sum-exps near log K do not cancel
/// there; in f32 they keep ~7 digits of a value ~log K, less than one sign step changes on flat logits).
fn class_loss(logits: &Tensor, class: &Tensor, targeted: bool) -> Result<Tensor> {
    let logits = logits.f_to_kind(Kind::Double)?; // [b, K]
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
        let b = x.size()[0];
        // All of the round's problems in order (the engine's first rounds): no gathering.
        let all = b == self.x0.size()[0];
        let pick = |t: &Tensor| -> Result<Tensor> {
            Ok(if all {
                t.shallow_clone()
            } else {
                t.f_index_select(0, idx)?
            })
        };
        let x0 = pick(&self.x0)?; // [b, n]
        let class = pick(&self.class)?; // [b]
        let xr = x.f_detach()?.f_set_requires_grad(true)?; // [b, n]
        let mut shape = vec![b];
        shape.extend_from_slice(&self.shape);
        let p = crate::optim::profile::span("objective: model fwd+bwd");
        let logits = self.model.logits(&xr.f_view(shape.as_slice())?)?; // [b, K]
        let loss = class_loss(&logits, &class, self.targeted)?; // [b]
        let grad = Tensor::f_run_backward(&[loss.f_sum(None::<Kind>)?], &[&xr], false, false)?
            .pop()
            .ok_or(AttackError::NoGradient)?; // [b, n]
        drop(p);
        let r = x.f_sub(&x0)?; // [b, n]
                               // f = ‖r‖² + c·(loss − loss(x0)), in f64 before rounding to x's kind: the objective starts at 0
                               // instead of c·log K, so neither f32 rounding nor the relative-reduction test (factr) swallows
                               // its changes.
        let dloss = loss.f_detach()?.f_sub(&pick(&self.loss0)?)?; // [b] f64
        let f = crate::optim::bdot(&r, &r)?
            .f_to_kind(Kind::Double)?
            .f_add(&pick(&self.c)?.f_mul(&dloss)?)?
            .f_to_kind(x.kind())?; // [b]
                                   // g = 2r + c·∇loss = 2·(r + (c/2)·∇loss): two passes.
        let mut g = r.f_addcmul(&grad.f_to_kind(x.kind())?, &pick(&self.c_half)?)?; // [b, n]
        let _ = g.f_mul_scalar_(2.0)?;
        Ok((f, g))
    }
}

/// The batch of one attack, on the model's device: originals `x0` [B, n] f32 and the class each loss
/// aims at (target, or label when untargeted) [B] i64.
struct Problem<'a> {
    model: &'a dyn Classifier,
    x0: Tensor,
    class: Tensor,
    targeted: bool,
    /// κ of [`AttackSettings::min_margin`].
    min_margin: f64,
    /// The loss at each original, [B] f64 (see [`Objective::loss0`]).
    loss0: Tensor,
    /// One example's shape, batch dimension excluded.
    shape: Vec<i64>,
}

impl Problem<'_> {
    /// `t` [rows, n] viewed as model inputs [rows, ..shape].
    fn view(&self, t: &Tensor, rows: i64) -> Result<Tensor> {
        let mut s = vec![rows];
        s.extend_from_slice(&self.shape);
        Ok(t.f_view(s.as_slice())?)
    }

    /// One round: one L-BFGS-B solve per active example at its current c, recorded in `search`.
    fn round(&self, search: &mut Search, set: &AttackSettings, bounds: &Bounds) -> Result<()> {
        let _p = crate::optim::profile::span("attack round (all)");
        let dev = self.model.device();
        let act: Vec<usize> = (0..search.active.len())
            .filter(|&i| search.active[i])
            .collect();
        let a = act.len() as i64;
        let act_i: Vec<i64> = act.iter().map(|&i| i as i64).collect();
        let rows = Tensor::f_from_slice(&act_i)?.f_to_device(dev)?; // [a]
        let start = search.start_points(&act, &rows, &self.x0, set.warm_start)?; // [a, n]
        let c_act: Vec<f64> = act.iter().map(|&i| search.c[i]).collect();
        let c_t = Tensor::f_from_slice(&c_act)?.f_to_device(dev)?; // [a] f64
        let mut obj = Objective {
            model: self.model,
            shape: self.shape.clone(),
            x0: self.x0.f_index_select(0, &rows)?, // [a, n]
            c_half: c_t
                .f_mul_scalar(0.5)?
                .f_to_kind(Kind::Float)?
                .f_unsqueeze(1)?, // [a, 1]
            c: c_t,
            class: self.class.f_index_select(0, &rows)?,
            loss0: self.loss0.f_index_select(0, &rows)?,
            targeted: self.targeted,
        };
        let sol = minimize(&mut obj, &start, bounds, &set.lbfgsb()?, None)?;
        let xs = sol.x.f_detach()?; // [a, n]
        let verdict = {
            let _g = tch::no_grad_guard();
            let logits = self.model.logits(&self.view(&xs, a)?)?;
            adversarial_rows(
                &logits,
                &self.class.f_index_select(0, &rows)?,
                self.targeted,
                self.min_margin,
            )?
        };
        let d2 = Vec::<f64>::try_from(
            &xs.f_sub(&self.x0.f_index_select(0, &rows)?)?
                .f_square()?
                .f_sum_dim_intlist([-1i64].as_slice(), false, Kind::Double)?
                .f_to_device(Device::Cpu)?,
        )?; // [a]
        let mut moves = Moves::default();
        for (k, &i) in act.iter().enumerate() {
            search.record((k, i), &sol, (&verdict, d2[k]), set, &mut moves);
        }
        search.apply(&moves, &xs)
    }
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
    if labels.size() != [bsz] || targets.is_some_and(|t| t.size() != [bsz]) {
        return Err(AttackError::LabelShape {
            batch: bsz,
            labels: labels.size(),
            targets: targets.map(|t| t.size()),
        }
        .into());
    }
    let full_shape = x.size();
    let n: i64 = full_shape[1..].iter().product();
    let mut problem = Problem {
        model,
        x0: x
            .f_to_device(dev)?
            .f_to_kind(Kind::Float)?
            .f_reshape([bsz, n])?
            .f_contiguous()?, // [B, n]
        class: targets
            .unwrap_or(labels)
            .f_to_device(dev)?
            .f_to_kind(Kind::Int64)?, // [B]
        targeted: targets.is_some(),
        min_margin: set.min_margin,
        shape: full_shape[1..].to_vec(),
        loss0: Tensor::f_zeros([bsz], (Kind::Double, dev))?,
    };
    let mut search = Search::new(bsz as usize, &problem.x0, set.c_init)?;
    {
        let _g = tch::no_grad_guard();
        let logits = model.logits(&problem.view(&problem.x0, bsz)?)?;
        let rows = adversarial_rows(&logits, &problem.class, problem.targeted, set.min_margin)?;
        search.decide_clean(&rows);
        problem.loss0 = class_loss(&logits, &problem.class, problem.targeted)?; // [B] f64
    }
    let (lower, upper) = model.input_bounds();
    let bounds = Bounds::Scalar { lower, upper };
    for _round in 0..set.max_solves {
        if !search.active.iter().any(|&a| a) {
            break;
        }
        problem.round(&mut search, set, &bounds)?;
    }
    finish(search, &full_shape)
}

/// The outcome of a finished search: failure reasons filled in, the best adversarials viewed as inputs.
fn finish(mut search: Search, full_shape: &[i64]) -> Result<BatchOutcome> {
    for i in 0..search.success.len() {
        if !search.success[i] && search.reason[i].is_none() {
            search.reason[i] = Some(format!(
                "no adversarial found within {} solves (c up to {:e}; margin of the last failing \
                 solve {:e})",
                search.solves[i], search.c[i], search.fail_margin[i]
            ));
        }
    }
    Ok(BatchOutcome {
        adversarial: search.best.f_view(full_shape)?,
        success: search.success,
        already_adversarial: search.already,
        margin: search.margin,
        c: search.best_c,
        iterations: search.iterations,
        evaluations: search.evaluations,
        solves: search.solves,
        reason: search.reason,
    })
}
