//! The paper's attack (§4.1): box-constrained L-BFGS on ‖r‖² + c·loss_f(x + r, l) with a per-example
//! search over c, batched, every result verified in a fresh forward pass; run over data sets in resumable
//! chunks (§4.2: Table 1's "av. min. distortion"), on image folders (Fig 5), for Fig 7's panels, and across
//! models (Tables 2 and 4).
//!
//! - [`lbfgs`]: the attack on one batch ([`attack_batch`], [`AttackSettings`]).
//! - [`search`]: the per-example search over c ([`CSearch`]).
//! - [`verify`]: the fresh-forward verification of every returned example.
//! - [`runner`]: a data set in resumable chunks ([`attack_dataset`], [`run_mnist`]).
//! - [`tensors`]: examples held in memory, checked and attacked like a data set's chunks, nothing
//!   written ([`tensors::attack_tensors`], the Python package's `blindspot.attack`).
//! - [`folder`]: an image folder labelled by the model's predictions ([`folder::attack_folder`]).
//! - [`noise`]: the Gaussian-noise baselines of Fig 7 and Tables 2, 4.
//! - [`fig7`]: Fig 7's numbers and images (adversarials vs noise of the same stddev).
//! - [`transfer`]: the cross-model tables (Tables 2 and 4).
//! - [`recheck`]: stored adversarials re-evaluated another way (float64, batch size, threads):
//!   `blindspot verify`.
//!
//! Outputs of a data-set attack (schemas in [`crate::results::attack`]): `adversarial.safetensors`
//! (`adversarial` [N, ..], `original` [N, ..], `label` [N], `target` [N] (−1 when untargeted),
//! `success` [N] u8), `attack.csv` (one row per example: index, label, target, success, c, distortion,
//! iterations, evaluations, seconds, reason), `summary.json` and `chunks/` (finished chunks; an
//! interrupted run resumes there).

pub mod error;
pub mod fig7;
pub mod folder;
pub mod lbfgs;
pub mod noise;
pub mod recheck;
pub mod runner;
pub mod search;
pub mod tensors;
pub mod transfer;
pub mod verify;

pub use crate::results::attack::{AttackSummary, ExampleResult};
pub use error::AttackError;
pub use lbfgs::{attack_batch, AttackSettings, BatchOutcome, WarmStart, DEFAULT_MIN_MARGIN};
pub use runner::{attack_dataset, attack_dataset_of, run_mnist};
pub use search::CSearch;
pub use verify::{verify, Verdict};

use crate::Result;
use rand::{Rng, SeedableRng};

/// Random targets ≠ label, from `seed` (one draw per example, independent of the chunking): [N] i64.
pub fn random_targets(labels: &[i64], classes: i64, seed: u64) -> Vec<i64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    labels
        .iter()
        .map(|&l| {
            let k = rng.gen_range(1..classes.max(2));
            (l + k).rem_euclid(classes)
        })
        .collect()
}

/// What to attack, as an experiment stage (YAML) or from the CLI.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AttackSpec {
    /// train, test, p1 or p2.
    #[serde(default = "default_split")]
    pub split: String,
    /// Attack the first N examples (None = all, unless `indices`).
    #[serde(default)]
    pub first: Option<usize>,
    /// Explicit indices into the split (overrides `first`).
    #[serde(default)]
    pub indices: Option<Vec<i64>>,
    /// Explicit targets, one per attacked example (targeted only).
    #[serde(default)]
    pub targets: Option<Vec<i64>>,
    #[serde(default = "default_true")]
    pub targeted: bool,
    #[serde(default = "default_batch")]
    pub batch: i64,
    #[serde(default)]
    pub seed: u64,
    /// Seed of the P1/P2 split (only used for p1/p2).
    #[serde(default = "default_split_seed")]
    pub split_seed: u64,
    #[serde(default)]
    pub settings: AttackSettings,
}

fn default_split() -> String {
    "train".into()
}
/// Examples per chunk (attacks) or per forward pass (transfer tables) unless set: peak memory is
/// proportional to it.
pub const DEFAULT_BATCH: i64 = 10_000;

pub(crate) fn default_true() -> bool {
    true
}
pub(crate) fn default_batch() -> i64 {
    DEFAULT_BATCH
}
fn default_split_seed() -> u64 {
    2014
}

impl AttackSpec {
    /// Checks the batch size and the attack settings (before any model or data is loaded).
    pub fn validate(&self) -> Result<()> {
        if self.batch <= 0 {
            return Err(AttackError::Batch(self.batch).into());
        }
        self.settings.validate()
    }
}

impl Default for AttackSpec {
    fn default() -> Self {
        AttackSpec {
            split: default_split(),
            first: None,
            indices: None,
            targets: None,
            targeted: true,
            batch: default_batch(),
            seed: 0,
            split_seed: default_split_seed(),
            settings: AttackSettings::default(),
        }
    }
}
