//! The models of an experiment file (YAML): the paper's MNIST zoo (§4.2, Tables 1 and 3), their
//! architectures, weight decay λ·Σw²/k per layer, the training set and the optimiser, validated field by
//! field.

use crate::models::zoo::{presets, Architecture, Layer};
use crate::train::advtrain::AdvTrainSettings;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Which training examples a model sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainSet {
    /// All 60,000 training images.
    Train,
    /// The first half of the seeded split (Table 3).
    P1,
    /// The second half.
    P2,
}

impl TrainSet {
    /// The name of the set in [`crate::data::sets::MnistData::set`]: `train`, `p1` or `p2`.
    pub fn name(self) -> &'static str {
        match self {
            TrainSet::Train => "train",
            TrainSet::P1 => "p1",
            TrainSet::P2 => "p2",
        }
    }
}

/// Hidden-unit non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Sigmoid,
    Relu,
}

impl Activation {
    pub fn layer(self) -> Layer {
        match self {
            Activation::Sigmoid => Layer::Sigmoid,
            Activation::Relu => Layer::Relu,
        }
    }
}

/// Architectures of the zoo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ArchSpec {
    /// Linear softmax on the pixels (softmax1–3).
    Softmax,
    /// Fully connected: 784 → hidden… → 10.
    Mlp {
        hidden: Vec<i64>,
        #[serde(default = "default_act")]
        activation: Activation,
        /// Dropout probability after each hidden activation (the dropout baseline of §4.2); absent: none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dropout: Option<f64>,
        /// Dropout probability on the input pixels; absent: none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input_dropout: Option<f64>,
    },
    /// [conv(kernel×kernel, c) → ReLU → max-pool 2×2] for each c of `channels` (one number or a list)
    /// → FC(hidden) → ReLU → dropout → FC(10).
    Conv {
        channels: Channels,
        kernel: i64,
        hidden: i64,
        dropout: f64,
    },
    /// Sparse sigmoid autoencoder (784 → code → 784) trained first, then a softmax on its frozen code.
    Autoencoder {
        code: i64,
        /// Target mean activation ρ of the code units (KL sparsity penalty).
        #[serde(default = "default_rho")]
        sparsity: f64,
        /// Weight β of the KL sparsity penalty.
        #[serde(default = "default_beta")]
        sparsity_weight: f64,
        /// Weight decay λ of the autoencoder's two layers (λ·Σw²/k each).
        #[serde(default = "default_ae_decay")]
        weight_decay: f64,
        /// Optimiser of the autoencoder stage.
        pretrain: OptimizerSpec,
    },
}

fn default_act() -> Activation {
    Activation::Sigmoid
}
fn default_rho() -> f64 {
    0.05
}
fn default_beta() -> f64 {
    3.0
}
fn default_ae_decay() -> f64 {
    1e-6
}

impl ArchSpec {
    /// The classifier's architecture.
    pub fn architecture(&self) -> Architecture {
        match self {
            ArchSpec::Softmax => presets::mlp(&[], Layer::Sigmoid),
            ArchSpec::Mlp {
                hidden,
                activation,
                dropout,
                input_dropout,
            } => presets::mlp_dropout(
                hidden,
                activation.layer(),
                input_dropout.unwrap_or(0.0),
                dropout.unwrap_or(0.0),
            ),
            ArchSpec::Conv {
                channels,
                kernel,
                hidden,
                dropout,
            } => presets::conv(&channels.to_vec(), *kernel, *hidden, *dropout),
            ArchSpec::Autoencoder { code, .. } => presets::ae_classifier(*code),
        }
    }
}

/// Output channels of the Conv net's conv layers: `32` (one conv layer) or `[32, 64]` (two).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Channels {
    One(i64),
    Many(Vec<i64>),
}

impl Channels {
    pub fn to_vec(&self) -> Vec<i64> {
        match self {
            Channels::One(c) => vec![*c],
            Channels::Many(v) => v.clone(),
        }
    }
}

/// Optimiser and its stopping rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerSpec {
    /// Full-batch L-BFGS (the engine with B = 1, no bounds), strong-Wolfe line search, until convergence
    /// (projected-gradient ≤ `pgtol`, relative reduction ≤ `factr`·eps) or `max_iter`.
    Lbfgs {
        #[serde(default = "default_max_iter")]
        max_iter: usize,
        #[serde(default = "default_history")]
        history: usize,
        #[serde(default = "default_pgtol")]
        pgtol: f64,
        #[serde(default = "default_factr")]
        factr: f64,
    },
    /// Minibatch Adam with a cosine learning-rate decay to zero.
    Adam {
        lr: f64,
        epochs: usize,
        #[serde(default = "default_batch")]
        batch_size: i64,
    },
}

fn default_max_iter() -> usize {
    1000
}
fn default_history() -> usize {
    10
}
fn default_pgtol() -> f64 {
    1e-5
}
fn default_factr() -> f64 {
    1e7
}
fn default_batch() -> i64 {
    128
}

/// One model of the zoo and how to train it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    pub arch: ArchSpec,
    /// λ per parameterised layer of the classifier (input side first), applied as λ·Σw²/k with k the
    /// layer's units; biases are not decayed.
    pub weight_decay: Vec<f64>,
    #[serde(default = "default_train_on")]
    pub train_on: TrainSet,
    pub optimizer: OptimizerSpec,
    /// Seed of the initialisation and minibatch order; default: the experiment's seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Adversarial training with per-layer pools (§4.2; docs/advtrain.md): the `advtrain` kind of model.
    /// Needs `optimizer: {kind: adam}`. Absent: ordinary training (and absent from the fingerprint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advtrain: Option<AdvTrainSettings>,
}

fn default_train_on() -> TrainSet {
    TrainSet::Train
}

impl ModelSpec {
    /// Checks the spec; `field` is its path in the file, e.g. `models[2]`.
    pub fn validate(&self, file: &str, field: &str) -> Result<()> {
        let err = |f: &str, m: String| Err(Error::config(file, format!("{field}.{f}"), m));
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            return err("name", format!("`{}` cannot be a folder name", self.name));
        }
        let arch = self.arch.architecture();
        if let Err(e) = arch.shapes() {
            return err("arch", e.to_string());
        }
        let n = arch.num_param_layers();
        if self.weight_decay.len() != n {
            return err(
                "weight_decay",
                format!("{} values given, the architecture has {n} parameterised layers (give one λ per layer)", self.weight_decay.len()),
            );
        }
        if let Some(l) = self
            .weight_decay
            .iter()
            .find(|l| !(l.is_finite() && **l >= 0.0))
        {
            return err(
                "weight_decay",
                format!("{l} is not a finite non-negative number"),
            );
        }
        match &self.arch {
            ArchSpec::Mlp { hidden, .. } if hidden.iter().any(|h| *h < 1) => {
                return err("arch.hidden", "sizes must be ≥ 1".into())
            }
            ArchSpec::Mlp {
                dropout,
                input_dropout,
                ..
            } => {
                for (f, p) in [
                    ("arch.dropout", dropout),
                    ("arch.input_dropout", input_dropout),
                ] {
                    if p.is_some_and(|p| !(0.0..1.0).contains(&p)) {
                        return err(f, "must be in [0, 1)".into());
                    }
                }
            }
            ArchSpec::Conv { dropout, .. } if !(0.0..1.0).contains(dropout) => {
                return err("arch.dropout", "must be in [0, 1)".into())
            }
            ArchSpec::Conv {
                channels, hidden, ..
            } => {
                let ch = channels.to_vec();
                if ch.is_empty() || ch.iter().any(|c| *c < 1) {
                    return err(
                        "arch.channels",
                        "give one or more channel counts, each ≥ 1 (e.g. 32 or [32, 64])".into(),
                    );
                }
                if *hidden < 1 {
                    return err("arch.hidden", "must be ≥ 1".into());
                }
            }
            ArchSpec::Autoencoder {
                sparsity, pretrain, ..
            } => {
                if self.weight_decay.first().is_some_and(|l| *l != 0.0) {
                    return err(
                        "weight_decay",
                        "the first entry is the frozen encoder's and must be 0 (its decay is `arch.weight_decay`)".into(),
                    );
                }
                if !(*sparsity > 0.0 && *sparsity < 1.0) {
                    return err("arch.sparsity", "must be in (0, 1)".into());
                }
                validate_opt(pretrain, file, &format!("{field}.arch.pretrain"))?;
            }
            _ => {}
        }
        validate_opt(&self.optimizer, file, &format!("{field}.optimizer"))?;
        if let Some(a) = &self.advtrain {
            self.validate_advtrain(a, &arch, file, field)?;
        }
        Ok(())
    }

    /// The `advtrain` block against the architecture, the training set's size and the optimiser.
    fn validate_advtrain(
        &self,
        a: &AdvTrainSettings,
        arch: &Architecture,
        file: &str,
        field: &str,
    ) -> Result<()> {
        let OptimizerSpec::Adam { epochs, .. } = self.optimizer else {
            return Err(Error::config(
                file,
                format!("{field}.optimizer"),
                "adversarial training (`advtrain`) runs minibatch Adam: use `optimizer: {kind: adam, ...}`",
            ));
        };
        if matches!(self.arch, ArchSpec::Autoencoder { .. }) {
            return Err(Error::config(
                file,
                format!("{field}.advtrain"),
                "not available for the autoencoder model",
            ));
        }
        let n = match self.train_on {
            TrainSet::Train => 60_000,
            TrainSet::P1 | TrainSet::P2 => 30_000,
        };
        a.check(arch, n, epochs)
            .map(|_| ())
            .map_err(|(f, m)| Error::config(file, format!("{field}.advtrain.{f}"), m))
    }
}

fn validate_opt(o: &OptimizerSpec, file: &str, field: &str) -> Result<()> {
    let err = |f: &str, m: &str| Err(Error::config(file, format!("{field}.{f}"), m));
    match o {
        OptimizerSpec::Lbfgs {
            max_iter,
            history,
            pgtol,
            factr,
        } => {
            if *max_iter == 0 {
                return err("max_iter", "must be ≥ 1");
            }
            if *history == 0 {
                return err("history", "must be ≥ 1");
            }
            if pgtol.is_nan() || factr.is_nan() || *pgtol < 0.0 || *factr < 0.0 {
                return err("pgtol", "pgtol and factr must be ≥ 0");
            }
        }
        OptimizerSpec::Adam {
            lr,
            epochs,
            batch_size,
        } => {
            if !(*lr > 0.0 && lr.is_finite()) {
                return err("lr", "must be a positive number");
            }
            if *epochs == 0 {
                return err("epochs", "must be ≥ 1");
            }
            if *batch_size < 1 || *batch_size > super::Limits::BATCH {
                return err("batch_size", "must be in 1..=1000000");
            }
        }
    }
    Ok(())
}
