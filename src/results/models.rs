//! What the report reads of a trained zoo model's `model.json` (Tables 1 and 3): its errors on every
//! MNIST set and its training record.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Examples of MNIST's training set, its test set, and each half (P1, P2) of Table 3's split.
pub const TRAIN_SIZE: usize = 60_000;
pub const TEST_SIZE: usize = 10_000;
pub const P_SIZE: usize = 30_000;

/// Errors of a model on every MNIST set (train 60,000, test 10,000, and the seeded halves P1, P2).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ModelErrors {
    pub train: f64,
    pub test: f64,
    pub p1: f64,
    pub p2: f64,
}

/// The parts of a model folder's record the report shows.
#[derive(Debug, Clone)]
pub struct ModelRecord {
    pub errors: ModelErrors,
    /// Optimisers of the training phases, joined by `+` (e.g. `adam+lbfgs`).
    pub optimizer: String,
    /// Iterations of all training phases together.
    pub iterations: u64,
    /// Training seconds of all phases together.
    pub seconds: f64,
}

/// Reads `model.json` of a zoo model folder.
pub fn read_record(dir: &Path) -> Result<ModelRecord> {
    let path = dir.join("model.json");
    let rec: serde_json::Value = crate::io::read_json(&path)?;
    let errors: ModelErrors = serde_json::from_value(rec["errors"].clone())
        .map_err(|e| Error::format(&path, format!("field `errors`: {e}")))?;
    let trainings = rec["training"].as_array().cloned().unwrap_or_default();
    Ok(ModelRecord {
        errors,
        optimizer: trainings
            .iter()
            .filter_map(|o| o["optimizer"].as_str())
            .collect::<Vec<_>>()
            .join("+"),
        iterations: trainings
            .iter()
            .filter_map(|o| o["iterations"].as_u64())
            .sum(),
        seconds: trainings.iter().filter_map(|o| o["seconds"].as_f64()).sum(),
    })
}
