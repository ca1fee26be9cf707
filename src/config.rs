//! Experiment files (YAML): the typed schema, parsed with unknown keys rejected and validated before any work
//! starts. Errors name the file, the field path and the fix. The resolved configuration (defaults filled in)
//! is written into the run folder.
//!
//! YAML crate: `serde_norway` — a maintained fork of the deprecated `serde_yaml` 0.9 with the same API and
//! error messages that carry the field path and line (see README "Design choices").

use crate::models::zoo::{presets, Architecture, Layer};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A whole experiment file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Run name: outputs go to `<runs_dir>/<name>/`.
    pub name: String,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default = "default_device")]
    pub device: String,
    /// Where run folders are created (relative to the current directory).
    #[serde(default = "default_runs_dir")]
    pub runs_dir: PathBuf,
    #[serde(default)]
    pub data: DataConfig,
    /// Models to train (each lands in `runs/<name>/models/<model name>/`).
    #[serde(default)]
    pub models: Vec<ModelSpec>,
    /// Units vs random directions analyses (§3), each in `runs/<name>/units/<model>-<layer>/`.
    #[serde(default)]
    pub units: Vec<UnitsStage>,
    /// Spectral analyses (§4.3), each in `runs/<name>/spectral/<model>/`.
    #[serde(default)]
    pub spectral: Vec<SpectralStage>,
    /// The paper's attack (§4.1, Table 1 distortions), each in `runs/<name>/attacks/<model>/`.
    #[serde(default)]
    pub attacks: Vec<AttackStage>,
    /// Fig 7 (adversarials vs Gaussian noise of the same stddev; noise of stddev 1), in `runs/<name>/fig7/`.
    #[serde(default)]
    pub fig7: Option<Fig7Stage>,
    /// Cross-model generalisation tables (§4.2, Tables 2 and 4), each in `runs/<name>/transfer/<table>/`.
    #[serde(default)]
    pub transfer: Vec<TransferStage>,
}

/// A transfer table: rows from attack stages of this experiment, columns from its models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferStage {
    /// Table name (its folder under `transfer/`), e.g. `table2`.
    pub name: String,
    /// Models whose attack stage (in `attacks:`) supplies a row of adversarials each.
    pub examples: Vec<String>,
    /// Models evaluated, one column each: models of this experiment or paths.
    pub models: Vec<String>,
    /// Gaussian-noise rows, amplified rows, batch, clipping (`blindspot transfer --help`).
    #[serde(default)]
    pub spec: crate::attack::transfer::TransferSpec,
}

/// The Fig 7 stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fig7Stage {
    /// Models of this experiment, one panel each (the paper: a softmax and N200-200-10).
    pub models: Vec<String>,
    /// Test images shown per grid.
    #[serde(default = "default_shown")]
    pub images: i64,
}

fn default_shown() -> i64 {
    10
}

/// An attack stage: a model of this experiment (or a model folder / TorchScript file) and what to attack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackStage {
    pub model: String,
    /// Split, examples, targets, batch, seed and solver settings (`blindspot attack --help`); the split
    /// seed is the experiment's `data.split_seed`.
    #[serde(default)]
    pub spec: crate::attack::AttackSpec,
}

/// A units-vs-random-directions stage: the options of `blindspot units` for one model and layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitsStage {
    /// A model of this experiment (by name) or a path to a model folder / TorchScript file.
    pub model: String,
    /// Layer name (`blindspot units --model M --list-layers`), or `all`.
    pub layer: String,
    #[serde(default = "default_units_data")]
    pub data: String,
    /// Number of units (or `all`).
    #[serde(default = "default_units_k")]
    pub units: String,
    #[serde(default = "default_random_k")]
    pub random: usize,
    #[serde(default)]
    pub orthogonal: bool,
    #[serde(default = "default_top")]
    pub top: usize,
}

fn default_units_data() -> String {
    "mnist-test".into()
}
fn default_units_k() -> String {
    "64".into()
}
fn default_random_k() -> usize {
    64
}
fn default_top() -> usize {
    8
}

/// A spectral stage: the options of `blindspot spectral` for one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpectralStage {
    /// A model of this experiment (by name) or a path to a model folder / TorchScript file.
    pub model: String,
    /// Layer spec for TorchScript models that are not in AlexNet's layout.
    #[serde(default)]
    pub spec: Option<PathBuf>,
    /// `C,H,W` (default: the zoo model's input shape).
    #[serde(default)]
    pub input_shape: Option<String>,
    /// circular | zero | both
    #[serde(default = "default_mode")]
    pub mode: String,
}

fn default_mode() -> String {
    "both".into()
}

fn default_seed() -> u64 {
    1
}
fn default_device() -> String {
    "cpu".into()
}
fn default_runs_dir() -> PathBuf {
    PathBuf::from("runs")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Folder with the four MNIST IDX files; default: the vendored `assets/mnist`.
    #[serde(default)]
    pub mnist_dir: Option<PathBuf>,
    /// Seed of the P1/P2 split (Table 3).
    #[serde(default = "default_split_seed")]
    pub split_seed: u64,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            mnist_dir: None,
            split_seed: default_split_seed(),
        }
    }
}
fn default_split_seed() -> u64 {
    2014
}

impl DataConfig {
    pub fn mnist_dir(&self) -> PathBuf {
        self.mnist_dir
            .clone()
            .unwrap_or_else(crate::data::mnist::default_dir)
    }
}

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
            ArchSpec::Mlp { hidden, activation } => presets::mlp(hidden, activation.layer()),
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
        validate_opt(&self.optimizer, file, &format!("{field}.optimizer"))
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
            if *batch_size < 1 {
                return err("batch_size", "must be ≥ 1");
            }
        }
    }
    Ok(())
}

impl Experiment {
    /// Reads, parses (unknown keys are errors) and validates an experiment file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates YAML text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self> {
        let exp: Experiment = serde_norway::from_str(text).map_err(|e| {
            let loc = e
                .location()
                .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
                .unwrap_or_default();
            let msg = e.to_string();
            let (field, msg) = match msg.split_once(": ") {
                Some((f, m)) if !f.contains(' ') => (f.to_string(), m.to_string()),
                _ => ("(document)".to_string(), msg),
            };
            Error::config(file, field, format!("{msg}{loc}"))
        })?;
        exp.validate(file)?;
        Ok(exp)
    }

    pub fn validate(&self, file: &str) -> Result<()> {
        if self.name.is_empty() || self.name.contains(['/', '\\']) {
            return Err(Error::config(
                file,
                "name",
                format!("`{}` cannot be a folder name", self.name),
            ));
        }
        crate::device::parse_device(&self.device)
            .map_err(|e| Error::config(file, "device", e.to_string()))?;
        let dir = self.data.mnist_dir();
        for stem in [
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ] {
            if !dir.join(format!("{stem}.gz")).exists() && !dir.join(stem).exists() {
                return Err(Error::config(
                    file,
                    "data.mnist_dir",
                    format!(
                        "{} has no {stem}(.gz); point it at a folder with the four MNIST IDX files",
                        dir.display()
                    ),
                ));
            }
        }
        let mut tables = std::collections::HashSet::new();
        for (i, t) in self.transfer.iter().enumerate() {
            let f = |k: &str| format!("transfer[{i}].{k}");
            if t.name.is_empty() || t.name.contains(['/', '\\']) || !tables.insert(t.name.clone()) {
                return Err(Error::config(
                    file,
                    f("name"),
                    format!("`{}` must be a unique folder name", t.name),
                ));
            }
            if t.examples.is_empty() || t.models.is_empty() {
                return Err(Error::config(
                    file,
                    f("examples"),
                    "a table needs at least one row (`examples`) and one column (`models`)",
                ));
            }
            for (j, e) in t.examples.iter().enumerate() {
                if !self.attacks.iter().any(|a| &a.model == e) {
                    return Err(Error::config(
                        file,
                        f(&format!("examples[{j}]")),
                        format!("`{e}` has no attack stage in `attacks:`; add one or remove it"),
                    ));
                }
            }
            for (j, m) in t.models.iter().enumerate() {
                if self.model(m).is_none() && !Path::new(m).exists() {
                    return Err(Error::config(
                        file,
                        f(&format!("models[{j}]")),
                        format!("`{m}` is neither a model of this experiment nor an existing path"),
                    ));
                }
            }
            t.spec
                .validate()
                .map_err(|e| Error::config(file, format!("transfer[{i}]"), e.to_string()))?;
        }
        let mut seen = std::collections::HashSet::new();
        for (i, m) in self.models.iter().enumerate() {
            m.validate(file, &format!("models[{i}]"))?;
            if !seen.insert(m.name.clone()) {
                return Err(Error::config(
                    file,
                    format!("models[{i}].name"),
                    format!("`{}` is used twice", m.name),
                ));
            }
        }
        Ok(())
    }

    /// The model spec called `name`.
    pub fn model(&self, name: &str) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The run folder.
    pub fn run_dir(&self) -> PathBuf {
        self.runs_dir.join(&self.name)
    }

    /// The folder or file of a model reference: a model of this experiment, else a path.
    pub fn model_path(&self, m: &str) -> PathBuf {
        if self.model(m).is_some() {
            self.run_dir().join("models").join(m)
        } else {
            PathBuf::from(m)
        }
    }
}
