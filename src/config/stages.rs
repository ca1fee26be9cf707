//! The analysis stages of an experiment file (YAML): attacks (§4.1), Fig 7, transfer tables (§4.2),
//! units vs random directions (§3) and spectral bounds (§4.3). Each names a model of the experiment (or a
//! model path) and the settings of its analysis.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A transfer table: rows from attack stages of this experiment, columns from its models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferStage {
    /// Table name (its folder under `transfer/`), e.g. `table2`.
    pub name: String,
    /// Attack stages (in `attacks:`, by name: the model's unless the stage has its own `name`) that
    /// supply a row of adversarials each.
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
    /// The stage's name: its folder under `attacks/` and how transfer tables refer to it (default: the
    /// model's name, or a model path's file stem). Two attacks on one model need two names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Split, examples, targets, batch, seed and solver settings (`blindspot attack --help`); the split
    /// seed is the experiment's `data.split_seed`.
    #[serde(default)]
    pub spec: crate::attack::AttackSpec,
}

impl AttackStage {
    /// The stage's name: `name`, else the model's name (a model path's file stem).
    pub fn name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => model_stem(&self.model),
        }
    }
}

/// A model reference as a folder-name part: a path with a separator gives its file stem
/// (`runs/x/models/N100` → `N100`, `models/alexnet.pt` → `alexnet`), anything else itself; characters
/// outside the name pattern become `_`.
pub fn model_stem(model: &str) -> String {
    if model.contains(['/', '\\']) {
        let stem = std::path::Path::new(model)
            .file_stem()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        crate::results::folder_name(&stem)
    } else {
        crate::results::folder_name(model)
    }
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
