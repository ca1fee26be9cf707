//! Cross-model generalisation of adversarial examples: Tables 2 and 4 of the paper (§4.2).
//!
//! Rows are sets of examples, columns are models, a cell is the error of the column's model on the row's
//! examples (share of examples whose predicted class differs from the true label):
//! - `adversarial` rows: the verified adversarials of an attack (its `adversarial.safetensors`; failed
//!   examples, which carry the original image, are left out). Table 2 uses training-set adversarials of
//!   the Table 1 models, Table 4 test-set adversarials of M1, M1′, M2.
//! - `gaussian` rows: the attacked originals of the first row plus i.i.d. N(0, σ²) noise, clipped to the
//!   input box unless `clip_noise` is off (Table 2: σ = 0.1, 0.3; Table 4: 0.06, 0.1; the paper lists σ as
//!   their distortion, which only unclipped noise has).
//! - `amplified` rows (Table 4): x + a·r/d(r) with r = x′ − x and d(r) = sqrt(Σr²/n) the distortion, so
//!   each perturbation is scaled to distortion a ("magnified to have a stddev of 0.1"), clipped to the box.
//!
//! The distortion column is measured on the images actually evaluated (after clipping), averaged over the
//! row's examples.

use crate::models::Classifier;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

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
    /// Mean distortion sqrt(Σ(x̃ − x)²/n) of the evaluated images x̃.
    pub distortion: f64,
    /// Error of each column model (same order as [`TransferTable::models`]).
    pub errors: Vec<f64>,
}

impl Row {
    /// Key of the row in the paper's tables ([`crate::report::paper::paper_transfer`]).
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

/// An attack's output: the model it was made for and its `adversarial.safetensors`.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub file: PathBuf,
}

fn mean(t: &Tensor) -> Result<f64> {
    Ok(t.f_mean(Kind::Double)?.f_double_value(&[])?)
}

/// Error of each model on `x` [N, ..] with labels `y` [N].
fn errors(models: &[&dyn Classifier], x: &Tensor, y: &Tensor, batch: i64) -> Result<Vec<f64>> {
    models
        .iter()
        .map(|m| crate::models::classifier::accuracy(*m, x, y, batch).map(|a| 1.0 - a))
        .collect()
}

/// Settings of a transfer table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferSpec {
    /// Gaussian-noise rows: their stddevs.
    #[serde(default)]
    pub noise: Vec<f64>,
    /// Amplified rows: the distortion every adversarial perturbation is scaled to (one row per source
    /// and value).
    #[serde(default)]
    pub amplify: Vec<f64>,
    /// Images per forward pass.
    #[serde(default = "default_batch")]
    pub batch: i64,
    /// Clip noisy images to the input box (valid images); `false` keeps x + noise as it is, so the
    /// row's distortion is σ (the paper's tables list σ as the distortion).
    #[serde(default = "default_true")]
    pub clip_noise: bool,
}

fn default_true() -> bool {
    true
}

fn default_batch() -> i64 {
    10_000
}

impl Default for TransferSpec {
    fn default() -> Self {
        Self {
            noise: Vec::new(),
            amplify: Vec::new(),
            batch: default_batch(),
            clip_noise: true,
        }
    }
}

impl TransferSpec {
    /// Checks the values; `field` prefixes the error's field path.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if let Some(s) = self.noise.iter().find(|s| !(s.is_finite() && **s >= 0.0)) {
            return Err(format!("noise: stddev {s} must be finite and ≥ 0"));
        }
        if let Some(a) = self.amplify.iter().find(|a| !(a.is_finite() && **a > 0.0)) {
            return Err(format!("amplify: distortion {a} must be finite and > 0"));
        }
        if self.batch < 1 {
            return Err(format!("batch: {} must be ≥ 1", self.batch));
        }
        Ok(())
    }
}

/// Computes the table: `sources` give the adversarial (and amplified) rows, the first source's originals
/// the Gaussian rows; `models` are the columns. Deterministic for a given `seed`.
pub fn transfer(
    sources: &[Source],
    models: &[(String, &dyn Classifier)],
    spec: &TransferSpec,
    seed: u64,
) -> Result<TransferTable> {
    spec.validate().map_err(Error::Invalid)?;
    if sources.is_empty() || models.is_empty() {
        return Err(Error::Invalid(
            "a transfer table needs at least one source of adversarials and one model".into(),
        ));
    }
    let bounds = models[0].1.input_bounds();
    if let Some((n, _)) = models.iter().find(|(_, m)| m.input_bounds() != bounds) {
        return Err(Error::Invalid(format!(
            "model `{n}` has input box {:?}, `{}` has {bounds:?}: one table needs one box",
            models
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, m)| m.input_bounds())
                .unwrap_or(bounds),
            models[0].0
        )));
    }
    let cols: Vec<&dyn Classifier> = models.iter().map(|(_, m)| *m).collect();
    let mut rows = Vec::new();
    let bar = crate::progress::bar(sources.len() as u64, "transfer", "sources");
    for (si, src) in sources.iter().enumerate() {
        let ex = crate::attack::read_adversarials(&src.file)?;
        for (name, m) in models {
            crate::models::classifier::check_input(*m, &ex.adversarial.narrow(0, 0, 1)).map_err(
                |e| {
                    Error::Invalid(format!(
                        "{}: its examples do not fit model `{name}`: {e}",
                        src.file.display()
                    ))
                },
            )?;
        }
        let n = ex.labels.size()[0];
        // A row of images `x` [M, ..] whose per-example distortions are `d` [M].
        let row = |kind, param, x: &Tensor, d: &Tensor| -> Result<Row> {
            Ok(Row {
                kind,
                source: src.name.clone(),
                param,
                examples: n,
                distortion: mean(d)?,
                errors: errors(&cols, x, &ex.labels, spec.batch)?,
            })
        };
        let d = crate::attack::distortions(&ex.adversarial, &ex.original)?; // [M]
        rows.push(row(RowKind::Adversarial, None, &ex.adversarial, &d)?);
        for &a in &spec.amplify {
            // x + a·r/d(r); examples with d = 0 (already of the target class) keep x.
            let shape: Vec<i64> = std::iter::once(n)
                .chain(std::iter::repeat_n(1, ex.original.dim() - 1))
                .collect();
            let scale = d
                .f_clamp_min(1e-12)?
                .f_reciprocal()?
                .f_mul_scalar(a)?
                .f_where_self(&d.f_gt(0.0)?, &d.f_zeros_like()?)?
                .f_to_kind(Kind::Float)?
                .f_view(shape.as_slice())?; // [M, 1, ..]
            let x = ex
                .adversarial
                .f_sub(&ex.original)?
                .f_mul(&scale)?
                .f_add(&ex.original)?
                .f_clamp(bounds.0, bounds.1)?;
            let dx = crate::attack::distortions(&x, &ex.original)?;
            rows.push(row(RowKind::Amplified, Some(a), &x, &dx)?);
        }
        if si == 0 {
            let box_ = if spec.clip_noise {
                bounds
            } else {
                (f64::NEG_INFINITY, f64::INFINITY)
            };
            for (k, &s) in spec.noise.iter().enumerate() {
                let x = crate::attack::noise::gaussian_noise(
                    &ex.original,
                    s,
                    seed.wrapping_add(k as u64),
                    box_,
                )?;
                let dx = crate::attack::distortions(&x, &ex.original)?;
                rows.push(row(RowKind::Gaussian, Some(s), &x, &dx)?);
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    // Paper order: adversarial rows, amplified rows, Gaussian rows.
    rows.sort_by_key(|r| match r.kind {
        RowKind::Adversarial => 0,
        RowKind::Amplified => 1,
        RowKind::Gaussian => 2,
    });
    Ok(TransferTable {
        models: models.iter().map(|(n, _)| n.clone()).collect(),
        rows,
        seed,
        clip_noise: spec.clip_noise,
    })
}

/// Markdown table: one line per row, "ours (paper)" in every cell where the paper has a value.
pub fn markdown(t: &TransferTable) -> String {
    let mut head = vec!["examples".to_string(), "n".into()];
    head.extend(t.models.iter().cloned());
    head.push("distortion (ours / paper)".into());
    let head_refs: Vec<&str> = head.iter().map(|s| s.as_str()).collect();
    let mut tab = crate::results::Table::new(&head_refs);
    for r in &t.rows {
        let key = r.key();
        let label = match r.kind {
            RowKind::Adversarial => format!("adversarial for {}", r.source),
            RowKind::Gaussian => format!(
                "Gaussian σ = {}{}",
                r.param.unwrap_or(f64::NAN),
                if t.clip_noise {
                    ", clipped"
                } else {
                    ", not clipped"
                }
            ),
            RowKind::Amplified => {
                format!("{}, amplified to {}", r.source, r.param.unwrap_or(f64::NAN))
            }
        };
        let mut line = vec![label, r.examples.to_string()];
        for (m, e) in t.models.iter().zip(&r.errors) {
            let ours = format!("{:.1}%", 100.0 * e);
            line.push(match crate::report::paper::paper_transfer(&key, m) {
                Some(p) => format!("{ours} ({:.1}%)", 100.0 * p),
                None => ours,
            });
        }
        let pd = crate::report::paper::paper_transfer_distortion(&key);
        line.push(match pd {
            Some(p) => format!("{:.4} / {p}", r.distortion),
            None => format!("{:.4} / –", r.distortion),
        });
        tab.push(line);
    }
    tab.markdown()
}

/// Writes `transfer.json`, `transfer.csv` and `transfer.md` into `out`.
pub fn write(t: &TransferTable, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    crate::io::write_json(&out.join("transfer.json"), t)?;
    let mut head = vec!["kind", "source", "param", "examples", "distortion"];
    head.extend(t.models.iter().map(|s| s.as_str()));
    let mut csv = crate::results::Table::new(&head);
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
    csv.write_csv(&out.join("transfer.csv"))?;
    crate::io::write_atomic(
        &out.join("transfer.md"),
        format!(
            "# Cross-model generalisation (§4.2, Tables 2 and 4)\n\nError of each column's model on each row's examples; the paper's value in brackets.\n\n{}",
            markdown(t)
        )
        .as_bytes(),
    )
}

// ---------------------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------------------

/// `blindspot transfer`: error of several models on the adversarials made for each of them (Tables 2, 4).
#[derive(Debug, Clone, clap::Args)]
pub struct TransferArgs {
    /// Attack output folders (`blindspot attack --out`) or their `adversarial.safetensors`, one row each;
    /// the row is named after the folder's `summary.json` model (else the folder).
    #[arg(long, num_args = 1.., required = true)]
    pub adversarials: Vec<PathBuf>,
    /// Models (zoo folders or TorchScript files), one column each.
    #[arg(long, num_args = 1.., required = true)]
    pub models: Vec<PathBuf>,
    /// Gaussian-noise rows: stddevs (noise on the first row's originals, clipped to the box).
    #[arg(long, num_args = 0..)]
    pub noise: Vec<f64>,
    /// Amplified rows: scale each perturbation to this distortion (Table 4 uses 0.1).
    #[arg(long, num_args = 0..)]
    pub amplify: Vec<f64>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 10_000)]
    pub batch: i64,
    /// Leave noisy images unclipped (they may leave [0, 1]; distortion = σ as in the paper's tables).
    #[arg(long)]
    pub no_clip_noise: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Output folder (transfer.md, transfer.csv, transfer.json).
    #[arg(long)]
    pub out: PathBuf,
}

/// The source behind a path given to `--adversarials`.
pub fn source_of(p: &Path) -> Result<Source> {
    let (dir, file) = if p.is_dir() {
        (p.to_path_buf(), p.join("adversarial.safetensors"))
    } else {
        (
            p.parent().map(Path::to_path_buf).unwrap_or_default(),
            p.to_path_buf(),
        )
    };
    if !file.is_file() {
        return Err(Error::Invalid(format!(
            "{}: no adversarial.safetensors here; give an attack's output folder (blindspot attack --out)",
            p.display()
        )));
    }
    let name = crate::io::read_json::<serde_json::Value>(&dir.join("summary.json"))
        .ok()
        .and_then(|v| v["model"].as_str().map(String::from))
        .unwrap_or_else(|| crate::experiments::sanitize(&dir.to_string_lossy()));
    Ok(Source { name, file })
}

/// Runs `blindspot transfer`.
pub fn run(a: &TransferArgs) -> Result<TransferTable> {
    let device: Device = crate::device::parse_device(&a.device)?;
    let spec = TransferSpec {
        noise: a.noise.clone(),
        amplify: a.amplify.clone(),
        batch: a.batch,
        clip_noise: !a.no_clip_noise,
    };
    spec.validate().map_err(Error::Invalid)?;
    let sources = a
        .adversarials
        .iter()
        .map(|p| source_of(p))
        .collect::<Result<Vec<_>>>()?;
    let loaded = a
        .models
        .iter()
        .map(|p| crate::models::torchscript::load_classifier(p, device))
        .collect::<Result<Vec<_>>>()?;
    let cols: Vec<(String, &dyn Classifier)> = loaded
        .iter()
        .map(|m| (m.name().to_string(), m.as_ref()))
        .collect();
    let t = transfer(&sources, &cols, &spec, a.seed)?;
    write(&t, &a.out)?;
    Ok(t)
}
