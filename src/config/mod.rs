//! Experiment files (YAML): the typed schema, parsed with unknown keys rejected and validated before any work
//! starts. Errors name the file, the field path and the fix. The resolved configuration (defaults filled in)
//! is written into the run folder.
//!
//! YAML crate: `serde_norway` — a maintained fork of the deprecated `serde_yaml` 0.9 with the same API and
//! error messages that carry the field path and line (see README "Design choices").

mod model;
pub mod slurm;
mod stages;
mod validate;

pub use model::{Activation, ArchSpec, Channels, ModelSpec, OptimizerSpec, TrainSet};
pub use slurm::{SlurmConfig, SlurmResources};
pub use stages::{model_stem, AttackStage, Fig7Stage, SpectralStage, TransferStage, UnitsStage};
pub use validate::Limits;

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
    /// Resources of the jobs `blindspot slurm` submits, per-stage overrides, job arrays (docs/slurm.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmConfig>,
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
