//! Adversarial training with per-layer pools (§4.2, the paper's last MNIST experiment: "keeping a pool
//! of adversarial examples a random subset of which is continuously replaced by newly generated
//! adversarial examples and which is mixed into the original training set all the time … adversarial
//! examples are generated for each layer output and are used to train all the layers above").
//!
//! One [`pool::Pool`] per chosen layer (`input` and/or hidden activation outputs). Every `refresh_every`
//! minibatch steps (after `warmup_epochs`), each pool gets new adversarials: random training examples are
//! mapped to that layer's values under the current weights, and the project's batched attack
//! ([`crate::attack::attack_batch`], the L-BFGS-B engine) perturbs those values inside the layer's box
//! until the sub-network above the layer misclassifies them ([`subnet::Split`]). The first refresh fills
//! the pool, later ones replace a random `replace_fraction` of it. Each step's loss is
//! (1 − mix)·CE(clean minibatch) + mix·mean over pools of CE(upper layers on `batch_size`/L pool rows,
//! true labels) + weight decay, minimised by the same minibatch Adam as every other zoo model
//! ([`super::adam`]: one optimiser for all rows of the comparison).
//!
//! The paper gives none of the settings; the defaults here are first guesses, not chosen on P2
//! (docs/advtrain.md).

pub mod pool;
pub mod subnet;

use super::{adam, decay_vector, error_at, init_on, TrainOutcome};
use crate::attack::{attack_batch, random_targets, AttackSettings};
use crate::config::{ModelSpec, OptimizerSpec};
use crate::models::zoo::{forward_all, Architecture, ZooModel};
use crate::models::Classifier;
use crate::Result;
use pool::Pool;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use subnet::Split;
use tch::{Kind, Tensor};

/// The settings of per-layer adversarial training (the `advtrain:` block of a model in the YAML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvTrainSettings {
    /// Layers that get a pool: `input` and/or activation outputs below the top layer (`fc1.sigmoid`, …).
    pub layers: Vec<String>,
    /// Examples per pool.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Fraction of a full pool replaced per refresh, in (0, 1].
    #[serde(default = "default_replace")]
    pub replace_fraction: f64,
    /// Minibatch steps between refreshes (≥ 1).
    #[serde(default = "default_refresh")]
    pub refresh_every: usize,
    /// Weight of the pool loss in each step, in [0, 1] (0: clean only, 1: pools only once filled).
    #[serde(default = "default_mix")]
    pub mix: f64,
    /// Targeted (random target ≠ label) or untargeted adversarials.
    #[serde(default)]
    pub targeted: bool,
    /// Clean epochs before the pools are first filled.
    #[serde(default = "default_warmup")]
    pub warmup_epochs: usize,
    /// The attack's settings inside training.
    #[serde(default)]
    pub attack: AttackSettings,
}

fn default_pool_size() -> usize {
    1000
}
fn default_replace() -> f64 {
    0.1
}
fn default_refresh() -> usize {
    100
}
fn default_mix() -> f64 {
    0.5
}
fn default_warmup() -> usize {
    1
}

impl AdvTrainSettings {
    /// Checks the settings against the architecture, the number of training examples `n` and the
    /// number of epochs; Err((field under `advtrain.`, message with the fix)).
    pub fn check(
        &self,
        arch: &Architecture,
        n: usize,
        epochs: usize,
    ) -> std::result::Result<Vec<Split>, (String, String)> {
        let bad = |f: &str, m: String| Err((f.to_string(), m));
        if self.layers.is_empty() {
            return bad(
                "layers",
                "give at least one layer (e.g. [input, fc1.sigmoid])".into(),
            );
        }
        let mut splits: Vec<Split> = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            if splits.iter().any(|s| &s.layer == l) {
                return bad(&format!("layers[{i}]"), format!("`{l}` is listed twice"));
            }
            splits.push(Split::of(arch, l).map_err(|m| (format!("layers[{i}]"), m))?);
        }
        if self.pool_size == 0 || self.pool_size > n {
            return bad(
                "pool_size",
                format!(
                    "{} is out of range: a pool holds 1..={n} examples (the model's training set)",
                    self.pool_size
                ),
            );
        }
        if !(self.replace_fraction > 0.0 && self.replace_fraction <= 1.0) {
            return bad(
                "replace_fraction",
                format!("{} is outside (0, 1]", self.replace_fraction),
            );
        }
        if self.refresh_every == 0 {
            return bad("refresh_every", "must be ≥ 1 (steps)".into());
        }
        if !(0.0..=1.0).contains(&self.mix) {
            return bad("mix", format!("{} is outside [0, 1]", self.mix));
        }
        if self.warmup_epochs >= epochs {
            return bad(
                "warmup_epochs",
                format!(
                    "{} leaves no adversarial epoch of the optimizer's {epochs}: use fewer",
                    self.warmup_epochs
                ),
            );
        }
        self.attack
            .validate()
            .map_err(|e| ("attack".to_string(), e.to_string()))?;
        Ok(splits)
    }
}

/// One refresh of one pool (a row of `pools.csv`).
#[derive(Debug, Clone, Serialize)]
pub struct RefreshRow {
    pub step: usize,
    pub layer: String,
    /// Examples attacked.
    pub attacked: usize,
    /// Attacks that succeeded with a perturbation (their adversarials entered the pool).
    pub succeeded: usize,
    /// Examples the sub-network already misclassified (left out of the pool).
    pub already: usize,
    /// Mean sqrt(Σr²/n) of the successful adversarials, n = values of one example at the layer.
    pub mean_distortion: f64,
    /// Filled slots after the refresh.
    pub filled: usize,
    pub seconds: f64,
}

/// Mean cross-entropy of logits [B, K] against labels [B].
fn ce(logits: &Tensor, y: &Tensor) -> Tensor {
    logits.log_softmax(-1, logits.kind()).nll_loss(y)
}

/// The state of a run: the pools, their splits, the random stream and the refresh log.
struct Pools<'a> {
    settings: &'a AdvTrainSettings,
    arch: &'a Architecture,
    name: &'a str,
    splits: Vec<Split>,
    pools: Vec<Pool>,
    rng: ChaCha8Rng,
    seed: u64,
    log: Vec<RefreshRow>,
}

impl Pools<'_> {
    /// Refreshes every pool at θ [P] from the training data `x` [N, ..], `y` [N].
    fn refresh(&mut self, step: usize, theta: &Tensor, x: &Tensor, y: &Tensor) -> Result<()> {
        let n = x.size()[0] as usize;
        for (split, pool) in self.splits.iter().zip(self.pools.iter_mut()) {
            let start = Instant::now();
            let slots = pool.slots_to_refresh(self.settings.replace_fraction, &mut self.rng);
            let src: Vec<i64> = rand::seq::index::sample(&mut self.rng, n, slots.len())
                .into_iter()
                .map(|i| i as i64)
                .collect();
            let idx = Tensor::from_slice(&src).to_device(x.device()); // [k]
            let h = split.values(self.arch, theta, &x.index_select(0, &idx)); // [k, ..shape]
            let labels = y.index_select(0, &idx); // [k]
            let net = split.subnet(self.name, theta)?;
            let targets = if self.settings.targeted {
                let l = Vec::<i64>::try_from(&labels.to_device(tch::Device::Cpu))?;
                let t = random_targets(&l, net.num_classes(), self.seed ^ step as u64);
                Some(Tensor::from_slice(&t).to_device(x.device()))
            } else {
                None
            };
            let out = attack_batch(&net, &h, &labels, targets.as_ref(), &self.settings.attack)?;
            // A row the sub-network already misclassifies needs no perturbation: it is a clean
            // value, not an adversarial, and stays out of the pool (counted in `already`).
            let k = slots.len() as i64;
            let d = (&out.adversarial - h.to_kind(Kind::Float))
                .reshape([k, -1])
                .square()
                .mean_dim(1, false, Kind::Double)
                .sqrt(); // [k]
            let d = Vec::<f64>::try_from(&d.to_device(tch::Device::Cpu))?;
            let ok: Vec<bool> = (0..slots.len())
                .map(|i| out.success[i] && !out.already_adversarial[i])
                .collect();
            let good: Vec<f64> = (0..slots.len()).filter(|&i| ok[i]).map(|i| d[i]).collect();
            pool.put(&slots, &out.adversarial, &labels, &ok);
            self.log.push(RefreshRow {
                step,
                layer: split.layer.clone(),
                attacked: slots.len(),
                succeeded: good.len(),
                already: out.already_adversarial.iter().filter(|a| **a).count(),
                mean_distortion: good.iter().sum::<f64>() / good.len().max(1) as f64,
                filled: pool.len(),
                seconds: start.elapsed().as_secs_f64(),
            });
        }
        Ok(())
    }

    /// Mean over non-empty pools of the upper layers' CE on `rows` pool rows in total, at θ [P] (with
    /// gradient); None while every pool is empty.
    fn loss(&mut self, theta: &Tensor, rows: usize) -> Option<Tensor> {
        let per = rows.div_ceil(self.pools.len()).max(1);
        let parts: Vec<Tensor> = self
            .splits
            .iter()
            .zip(&self.pools)
            .filter_map(|(s, p)| {
                let (h, y) = p.sample(per, &mut self.rng)?; // [per, ..shape], [per]
                Some(ce(&s.upper_logits(theta, &h, true), &y))
            })
            .collect();
        if parts.is_empty() {
            return None;
        }
        Some(Tensor::stack(&parts, 0).mean(Kind::Float))
    }
}

/// Trains `spec` (its `advtrain` block and Adam optimiser) on `x` [N, ..], `y` [N] with per-layer pools,
/// logging the error on `heldout` (images, labels) after every epoch if given. Returns the model and its
/// record, whose `pools` field is the refresh log.
pub fn train(
    spec: &ModelSpec,
    settings: &AdvTrainSettings,
    (x, y): (&Tensor, &Tensor),
    seed: u64,
    heldout: Option<(&Tensor, &Tensor)>,
) -> Result<(ZooModel, Vec<TrainOutcome>)> {
    let arch = spec.arch.architecture();
    let OptimizerSpec::Adam {
        lr,
        epochs,
        batch_size,
    } = spec.optimizer
    else {
        return Err(setting_error(
            spec,
            "optimizer",
            "advtrain needs `optimizer: {kind: adam}`",
        ));
    };
    let n = x.size()[0];
    let splits = settings
        .check(&arch, n as usize, epochs)
        .map_err(|(f, m)| setting_error(spec, &format!("advtrain.{f}"), &m))?;
    let device = x.device();
    let layout = arch.param_layout();
    let decay = decay_vector(&arch, &spec.weight_decay, device);
    let theta0 = init_on(&arch, device);
    let mut state = Pools {
        settings,
        arch: &arch,
        name: &spec.name,
        pools: splits
            .iter()
            .map(|s| Pool::new(&s.layer, settings.pool_size, &s.shape, device))
            .collect(),
        splits,
        rng: ChaCha8Rng::seed_from_u64(seed.wrapping_add(0xAD7)),
        seed,
        log: Vec::new(),
    };
    let steps_per_epoch = (n + batch_size - 1) / batch_size;
    let warmup = settings.warmup_epochs * steps_per_epoch as usize;
    let mut step = 0usize;
    let eval = |t: &Tensor| match heldout {
        Some((hx, hy)) => error_at(&arch, &layout, t, hx, hy),
        None => Ok(f64::NAN),
    };
    let eval_ref: super::HeldoutEval = &eval;
    let step_loss = |t: &Tensor, idx: &Tensor| {
        if step >= warmup && (step - warmup) % settings.refresh_every == 0 {
            state.refresh(step, t, x, y)?;
        }
        step += 1;
        let (xb, yb) = (x.index_select(0, idx), y.index_select(0, idx)); // [b, ..], [b]
        let logits = forward_all(&arch, &layout, t, &xb, true, false)
            .pop()
            .expect("layers"); // [b, 10]
        let clean = ce(&logits, &yb);
        let wd = (&decay * t * t).sum(Kind::Float);
        Ok(match state.loss(t, batch_size as usize) {
            Some(p) => clean * (1.0 - settings.mix) + p * settings.mix + wd,
            None => clean + wd,
        })
    };
    let (theta, mut out) = adam(
        &theta0,
        lr,
        epochs,
        batch_size,
        n,
        &spec.name,
        step_loss,
        heldout.map(|_| eval_ref),
    )?;
    out.optimizer = "adam+advtrain".into();
    out.pools = state.log;
    let model = ZooModel::new(&spec.name, arch.clone(), theta, serde_json::json!({}))?;
    Ok((model, vec![out]))
}

fn setting_error(spec: &ModelSpec, field: &str, msg: &str) -> crate::Error {
    super::TrainError::AdvTrainSetting {
        model: spec.name.clone(),
        field: field.to_string(),
        msg: msg.to_string(),
    }
    .into()
}
