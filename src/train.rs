//! Training the zoo (§4.2): loss = mean cross-entropy + Σ_layers λ_l·Σw²/k_l (k_l = units of layer l,
//! connection weights only), minimised by full-batch L-BFGS (the engine of [`crate::optim`] with B = 1 and no
//! bounds: "trained with L-BFGS until convergence") or by minibatch Adam; and the sparse autoencoder of
//! AE400-10 (reconstruction + KL sparsity + weight decay), whose frozen code feeds a softmax layer.
//! Adversarial training with per-layer pools (§4.2) is [`advtrain`].

mod adam;
pub mod advtrain;
pub use adam::{adam, error_at, HeldoutEval};

use crate::config::{ArchSpec, ModelSpec, OptimizerSpec};
use crate::models::zoo::{
    forward_all, init_params, presets, Architecture, Layer, ParamEntry, ZooModel,
};
use crate::optim::{minimize, BatchObjective, Bounds, IterInfo, LbfgsbSettings, Observer};
use crate::Result;
use serde::Serialize;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// What goes wrong in training (besides the optimiser's and the model's own errors): each names the run
/// (`label`: the model, or `<model> AE` for the autoencoder stage) and says the fix.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Full-batch L-BFGS ended at a NaN or infinite loss.
    #[error(
        "{label}: L-BFGS ended with a non-finite loss ({loss}), termination {termination}: check the data and the weight decay for NaN or huge values"
    )]
    LbfgsNonFinite {
        label: String,
        loss: f64,
        termination: String,
    },
    /// The Adam loss became NaN or infinite.
    #[error("{label}: loss became {loss} at epoch {epoch}, step {step}; lower the learning rate")]
    AdamDiverged {
        label: String,
        loss: f64,
        epoch: usize,
        step: i64,
    },
    /// The autoencoder stage was given L-BFGS.
    #[error(
        "{model}: the autoencoder stage supports `pretrain: {{kind: adam}}` only (full-batch L-BFGS on a 628k-parameter autoencoder exceeds the time budget; see README)"
    )]
    AutoencoderPretrain { model: String },
    /// An adversarial-training setting that does not fit the model or its data.
    #[error("{model}: {field}: {msg}")]
    AdvTrainSetting {
        model: String,
        field: String,
        msg: String,
    },
}

/// Initial parameters [P] of `arch` on `device`, drawn by the CPU generator (the same weights from a
/// seed on every device: CUDA's generator draws other numbers) and copied once.
fn init_on(arch: &Architecture, device: Device) -> Tensor {
    init_params(arch, Device::Cpu).to_device(device)
}

/// Per-element weight-decay coefficients [P]: λ_l/k_l on the weights of layer l, 0 on biases.
pub fn decay_vector(arch: &Architecture, lambdas: &[f64], device: Device) -> Tensor {
    let units = arch.layer_units();
    let parts: Vec<Tensor> = arch
        .param_layout()
        .iter()
        .map(|p| {
            let c = if p.is_weight {
                lambdas[p.layer] / units[p.layer] as f64
            } else {
                0.0
            };
            Tensor::full([p.numel], c, (Kind::Float, device))
        })
        .collect();
    Tensor::cat(&parts, 0)
}

/// What a loss function sees: the architecture, its layout and the (on-device) data.
pub struct Problem<'a> {
    pub arch: &'a Architecture,
    pub layout: &'a [ParamEntry],
    /// [N, ..input_shape]
    pub x: &'a Tensor,
    /// [N] i64
    pub y: &'a Tensor,
    /// [P]
    pub decay: &'a Tensor,
}

impl Problem<'_> {
    /// Loss (scalar) at `theta` [P] on examples `x`, `y`: mean cross-entropy + weight decay.
    pub fn loss(&self, theta: &Tensor, x: &Tensor, y: &Tensor, train: bool) -> Tensor {
        let logits = forward_all(self.arch, self.layout, theta, x, train, false)
            .pop()
            .expect("layers"); // [N, 10]
        let ce = logits.log_softmax(-1, logits.kind()).nll_loss(y); // mean over N, in the model's dtype
        ce + (self.decay * theta * theta).sum(theta.kind())
    }

    /// Loss and gradient at `theta` [P] on the full data set.
    pub fn loss_and_grad(&self, theta: &Tensor) -> (Tensor, Tensor) {
        let theta = theta.detach().set_requires_grad(true);
        let loss = self.loss(&theta, self.x, self.y, false);
        let g = Tensor::run_backward(&[&loss], &[&theta], false, false)
            .pop()
            .expect("grad");
        (loss.detach(), g)
    }
}

/// The training loss as a B = 1 problem for the batched engine.
struct FullBatch<'a> {
    problem: Problem<'a>,
}

impl BatchObjective for FullBatch<'_> {
    fn eval(&mut self, x: &Tensor, _idx: &Tensor) -> Result<(Tensor, Tensor)> {
        // x [1, P] → f [1], g [1, P]
        let (f, g) = self.problem.loss_and_grad(&x.get(0));
        Ok((f.view([1]), g.unsqueeze(0)))
    }
}

/// One row of a training log.
#[derive(Debug, Clone, Serialize)]
pub struct LogRow {
    pub step: usize,
    pub loss: f64,
    pub grad_norm: f64,
    pub evaluations: usize,
    pub seconds: f64,
    /// Error on the held-out set after this row (Adam with a held-out set only): `heldout.csv`.
    pub heldout_error: Option<f64>,
}

/// How a training run went (goes into `model.json`).
#[derive(Debug, Clone, Serialize)]
pub struct TrainOutcome {
    pub optimizer: String,
    pub iterations: usize,
    pub evaluations: usize,
    pub final_loss: f64,
    pub termination: String,
    pub seconds: f64,
    #[serde(skip)]
    pub log: Vec<LogRow>,
    /// Adversarial training's pool refreshes (empty otherwise): `pools.csv`.
    #[serde(skip)]
    pub pools: Vec<advtrain::RefreshRow>,
}

/// `a[0]` and `b[0]` read in one device → host copy.
fn host_pair(a: &Tensor, b: &Tensor) -> (f64, f64) {
    let both = Tensor::cat(
        &[
            a.detach()
                .reshape([-1])
                .narrow(0, 0, 1)
                .to_kind(Kind::Double),
            b.detach()
                .reshape([-1])
                .narrow(0, 0, 1)
                .to_kind(Kind::Double),
        ],
        0,
    )
    .to_device(Device::Cpu);
    let v = Vec::<f64>::try_from(&both).unwrap_or_else(|_| vec![f64::NAN; 2]);
    (v[0], v[1])
}

struct LbfgsObserver {
    bar: indicatif::ProgressBar,
    start: Instant,
    log: Vec<LogRow>,
}

impl Observer for LbfgsObserver {
    fn observe(&mut self, info: &IterInfo) -> bool {
        // One packed device → host copy per iteration for both numbers.
        let (loss, pg) = host_pair(info.f, info.pg_norm);
        self.log.push(LogRow {
            step: info.iter,
            loss,
            grad_norm: pg,
            evaluations: info.evals_total,
            seconds: self.start.elapsed().as_secs_f64(),
            heldout_error: None,
        });
        self.bar.set_position(info.iter as u64);
        self.bar.set_message(format!("loss {loss:.5}"));
        true
    }
}

/// Minimises the problem's loss from `theta0` [P] with full-batch L-BFGS.
pub(crate) fn train_lbfgs(
    problem: Problem,
    theta0: &Tensor,
    settings: &LbfgsbSettings,
    label: &str,
) -> Result<(Tensor, TrainOutcome)> {
    let start = Instant::now();
    let mut obs = LbfgsObserver {
        bar: crate::progress::bar(settings.max_iter as u64, label, "it"),
        start,
        log: Vec::new(),
    };
    let mut obj = FullBatch { problem };
    let sol = minimize(
        &mut obj,
        &theta0.unsqueeze(0),
        &Bounds::None,
        settings,
        Some(&mut obs),
    )?;
    obs.bar.finish_and_clear();
    let theta = sol.x.get(0);
    let final_loss = sol.f.double_value(&[0]);
    if !final_loss.is_finite() {
        return Err(TrainError::LbfgsNonFinite {
            label: label.to_string(),
            loss: final_loss,
            termination: format!("{:?}", sol.termination[0]),
        }
        .into());
    }
    let outcome = TrainOutcome {
        optimizer: "lbfgs".into(),
        iterations: sol.iterations[0],
        evaluations: sol.evaluations[0],
        final_loss,
        termination: format!("{:?}", sol.termination[0]),
        seconds: start.elapsed().as_secs_f64(),
        log: obs.log,
        pools: Vec::new(),
    };
    Ok((theta, outcome))
}

/// Runs `opt` on `problem` from `theta0` (Adam: with the held-out error after each epoch if given).
fn optimise(
    problem: Problem,
    theta0: &Tensor,
    opt: &OptimizerSpec,
    label: &str,
    heldout: Option<HeldoutEval>,
) -> Result<(Tensor, TrainOutcome)> {
    match opt {
        OptimizerSpec::Lbfgs {
            max_iter,
            history,
            pgtol,
            factr,
        } => {
            #[allow(clippy::needless_update)]
            // the engine has more settings (line search) left at their defaults
            let settings = LbfgsbSettings {
                history: *history,
                max_iter: *max_iter,
                max_evals: max_iter * 2 + 20,
                pgtol: *pgtol,
                factr: *factr,
                ..Default::default()
            };
            train_lbfgs(problem, theta0, &settings, label)
        }
        OptimizerSpec::Adam {
            lr,
            epochs,
            batch_size,
        } => {
            let n = problem.x.size()[0];
            adam(
                theta0,
                *lr,
                *epochs,
                *batch_size,
                n,
                label,
                |t, idx| {
                    let xb = problem.x.index_select(0, idx);
                    let yb = problem.y.index_select(0, idx);
                    Ok(problem.loss(t, &xb, &yb, true))
                },
                heldout,
            )
        }
    }
}

/// Sparse autoencoder loss at `theta` [P] on `x` [b, 1, 28, 28]: ½·mean‖x̂ − x‖² + β·Σ_j KL(ρ‖ρ̂_j) + decay.
fn autoencoder_loss(
    arch: &Architecture,
    layout: &[ParamEntry],
    theta: &Tensor,
    x: &Tensor,
    rho: f64,
    beta: f64,
    decay: &Tensor,
) -> Tensor {
    let outs = forward_all(arch, layout, theta, x, true, true);
    let code = &outs[2]; // [b, code] after the sigmoid
    let recon = &outs[4]; // [b, 784]
    let target = x.flatten(1, -1);
    let rec = (recon - &target)
        .square()
        .sum_dim_intlist(1, false, Kind::Float)
        .mean(Kind::Float)
        * 0.5;
    let rho_hat = code.mean_dim(0, false, Kind::Float).clamp(1e-6, 1.0 - 1e-6); // [code]
    let one_minus: Tensor = 1.0 - &rho_hat;
    let kl = ((rho / &rho_hat).log() * rho + ((1.0 - rho) / one_minus).log() * (1.0 - rho))
        .sum(Kind::Float);
    rec + kl * beta + (decay * theta * theta).sum(Kind::Float)
}

/// Trains the model `spec` on `x` [N, 1, 28, 28], `y` [N] (already on `device`), seeded with `seed`.
pub fn train_model(
    spec: &ModelSpec,
    x: &Tensor,
    y: &Tensor,
    seed: u64,
) -> Result<(ZooModel, Vec<TrainOutcome>)> {
    train_model_heldout(spec, x, y, seed, None)
}

/// [`train_model`], with Adam's log rows carrying the error on `heldout` ([M, ..] images, [M] labels, on
/// x's device) after every epoch (not for the autoencoder).
pub fn train_model_heldout(
    spec: &ModelSpec,
    x: &Tensor,
    y: &Tensor,
    seed: u64,
    heldout: Option<(&Tensor, &Tensor)>,
) -> Result<(ZooModel, Vec<TrainOutcome>)> {
    crate::device::seed_everything(seed);
    let arch = spec.arch.architecture();
    match &spec.arch {
        ArchSpec::Autoencoder {
            code,
            sparsity,
            sparsity_weight,
            weight_decay,
            pretrain,
        } => {
            let ae = AutoencoderStage {
                code: *code,
                rho: *sparsity,
                beta: *sparsity_weight,
                weight_decay: *weight_decay,
                pretrain,
            };
            train_autoencoder_classifier(spec, arch, &ae, x, y)
        }
        _ if spec.advtrain.is_some() => {
            let adv = spec.advtrain.as_ref().expect("checked");
            advtrain::train(spec, adv, (x, y), seed, heldout)
        }
        _ => {
            let device = x.device();
            let layout = arch.param_layout();
            let decay = decay_vector(&arch, &spec.weight_decay, device);
            let theta0 = init_on(&arch, device);
            let problem = Problem {
                arch: &arch,
                layout: &layout,
                x,
                y,
                decay: &decay,
            };
            let eval = |t: &Tensor| match heldout {
                Some((hx, hy)) => error_at(&arch, &layout, t, hx, hy),
                None => Ok(f64::NAN),
            };
            let eval_ref: HeldoutEval = &eval;
            let h = heldout.map(|_| eval_ref);
            let (theta, out) = optimise(problem, &theta0, &spec.optimizer, &spec.name, h)?;
            let model = ZooModel::new(&spec.name, arch.clone(), theta, serde_json::json!({}))?;
            Ok((model, vec![out]))
        }
    }
}

/// The autoencoder stage of AE400-10: code size, KL sparsity target ρ and weight β, weight decay λ of
/// both layers, optimiser.
struct AutoencoderStage<'a> {
    code: i64,
    rho: f64,
    beta: f64,
    weight_decay: f64,
    pretrain: &'a OptimizerSpec,
}

/// AE400-10: the sparse autoencoder first, then a softmax layer on its frozen code; the model is the
/// encoder followed by the softmax (`arch`).
fn train_autoencoder_classifier(
    spec: &ModelSpec,
    arch: Architecture,
    stage: &AutoencoderStage,
    x: &Tensor,
    y: &Tensor,
) -> Result<(ZooModel, Vec<TrainOutcome>)> {
    let device = x.device();
    let (ae, ae_theta, ae_out) = pretrain_autoencoder(spec, stage, x)?;
    // Stage 2: softmax on the frozen code.
    // The encoder is the autoencoder's first three layers (flatten, enc, sigmoid) and the first
    // parameters of its flat vector.
    let enc = Architecture {
        input_shape: ae.input_shape.clone(),
        layers: ae.layers[..3].to_vec(),
    };
    let enc_theta = ae_theta.narrow(0, 0, enc.num_params());
    let codes = encode(&enc, &enc_theta, x); // [N, code]
    let top = Architecture {
        input_shape: vec![stage.code],
        layers: vec![Layer::Linear {
            name: "fc".into(),
            in_features: stage.code,
            out_features: 10,
        }],
    };
    let top_layout = top.param_layout();
    let top_decay = decay_vector(&top, &spec.weight_decay[1..], device);
    let problem = Problem {
        arch: &top,
        layout: &top_layout,
        x: &codes,
        y,
        decay: &top_decay,
    };
    let (top_theta, top_out) = optimise(
        problem,
        &init_on(&top, device),
        &spec.optimizer,
        &spec.name,
        None,
    )?;
    let theta = Tensor::cat(&[enc_theta, top_theta], 0);
    let model = ZooModel::new(&spec.name, arch, theta, serde_json::json!({}))?;
    Ok((model, vec![ae_out, top_out]))
}

/// Stage 1 of AE400-10: the sparse autoencoder on `x` [N, 1, 28, 28] (Adam only): its architecture,
/// parameters [P] and record.
fn pretrain_autoencoder(
    spec: &ModelSpec,
    stage: &AutoencoderStage,
    x: &Tensor,
) -> Result<(Architecture, Tensor, TrainOutcome)> {
    let device = x.device();
    let ae = presets::autoencoder(stage.code);
    let ae_layout = ae.param_layout();
    let wd = stage.weight_decay;
    let ae_decay = decay_vector(&ae, &[wd, wd], device);
    let theta0 = init_on(&ae, device);
    let label = format!("{} AE", spec.name);
    let (ae_theta, ae_out) = match stage.pretrain {
        OptimizerSpec::Adam {
            lr,
            epochs,
            batch_size,
        } => adam(
            &theta0,
            *lr,
            *epochs,
            *batch_size,
            x.size()[0],
            &label,
            |t, idx| {
                let xb = x.index_select(0, idx);
                Ok(autoencoder_loss(
                    &ae, &ae_layout, t, &xb, stage.rho, stage.beta, &ae_decay,
                ))
            },
            None,
        )?,
        OptimizerSpec::Lbfgs { .. } => {
            return Err(TrainError::AutoencoderPretrain {
                model: spec.name.clone(),
            }
            .into())
        }
    };
    Ok((ae, ae_theta, ae_out))
}

/// The code of the encoder `enc` (parameters `enc_theta`) for every image of `x` [N, 1, 28, 28], in
/// chunks of 10,000, without gradients: [N, code].
fn encode(enc: &Architecture, enc_theta: &Tensor, x: &Tensor) -> Tensor {
    let enc_layout = enc.param_layout();
    tch::no_grad(|| {
        let mut outs = Vec::new();
        let n = x.size()[0];
        let mut i = 0;
        while i < n {
            let len = 10_000.min(n - i);
            let xb = x.narrow(0, i, len); // [len, 1, 28, 28]
            outs.extend(forward_all(enc, &enc_layout, enc_theta, &xb, false, false)); // [len, code]
            i += len;
        }
        Tensor::cat(&outs, 0) // [N, code]
    })
}

/// Fraction of examples `x` [N, ..] misclassified (labels `y` [N]), evaluated in chunks, no dropout.
pub fn error_rate(model: &dyn crate::models::Classifier, x: &Tensor, y: &Tensor) -> Result<f64> {
    Ok(1.0 - crate::models::classifier::accuracy(model, x, y, 10_000)?)
}
