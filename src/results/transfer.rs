//! Result files of the cross-model tables (§4.2, Tables 2 and 4): `transfer.json` (the whole table) and
//! `transfer.csv` (one line per row). The Markdown beside the paper's values is the report's
//! (`crate::report::transfer`).

use crate::results::Table;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What one row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowKind {
    Adversarial,
    Gaussian,
    Amplified,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub kind: RowKind,
    /// The attacked model whose adversarials (or originals, for `gaussian`) the row uses.
    pub source: String,
    /// σ of `gaussian` rows, the target distortion of `amplified` rows.
    pub param: Option<f64>,
    pub examples: i64,
    /// The source's stored successes that were not adversarial on their source model when re-verified,
    /// left out of the row (0 in tables of earlier versions).
    #[serde(default)]
    pub unverified: i64,
    /// Mean distortion sqrt(Σ(x̃ − x)²/n) of the evaluated images x̃.
    pub distortion: f64,
    /// Error of each column model (same order as [`TransferTable::models`]).
    pub errors: Vec<f64>,
}

impl Row {
    /// Key of the row in the paper's tables (`crate::report::paper::paper_transfer`).
    pub fn key(&self) -> String {
        match self.kind {
            RowKind::Adversarial => self.source.clone(),
            RowKind::Gaussian => format!("gaussian {}", self.param.unwrap_or(f64::NAN)),
            RowKind::Amplified => format!(
                "{} amplified {}",
                self.source,
                self.param.unwrap_or(f64::NAN)
            ),
        }
    }
}

/// The whole table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferTable {
    pub models: Vec<String>,
    pub rows: Vec<Row>,
    pub seed: u64,
    /// Whether the Gaussian rows' images were clipped to the box.
    pub clip_noise: bool,
}

/// Writes `transfer.json` and `transfer.csv` into `out`.
pub fn write(t: &TransferTable, out: &Path) -> Result<()> {
    crate::io::write_json(&out.join("transfer.json"), t)?;
    let mut head = vec!["kind", "source", "param", "examples", "distortion"];
    head.extend(t.models.iter().map(|s| s.as_str()));
    let mut csv = Table::new(&head);
    for r in &t.rows {
        let mut line = vec![
            format!("{:?}", r.kind).to_lowercase(),
            r.source.clone(),
            r.param.map(|p| p.to_string()).unwrap_or_default(),
            r.examples.to_string(),
            r.distortion.to_string(),
        ];
        line.extend(r.errors.iter().map(|e| e.to_string()));
        csv.push(line);
    }
    csv.write_csv(&out.join("transfer.csv"))
}

/// Reads `transfer.json` from a table's folder.
pub fn read(dir: &Path) -> Result<TransferTable> {
    crate::io::read_json(&dir.join("transfer.json"))
}
