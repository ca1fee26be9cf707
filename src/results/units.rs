//! The files of the units analysis (paper §3, Figs 1–4), their schemas, writers and readers:
//!
//! | file | contents |
//! |---|---|
//! | `topk.csv` | the top-T images of every direction ([`TopkRow`]) |
//! | `metrics.csv` | label purity / entropy and score statistics per direction ([`MetricsRow`]) |
//! | `summary.json` | per kind, comparisons, chance level, conclusion ([`UnitsSummary`]) |
//! | `layers.csv` | `--layer all`: one line per layer and kind ([`LayerRow`]) |
//! | `directions.safetensors` | `units` [Ku] i64, `random` [D, Kr], `orthogonal` [D, Ko], `layer_shape` |
//! | `figures.safetensors` + `figures.json` | what the figures show ([`UnitsFigures`]) |

use crate::results::Table;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The kind of a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectionKind {
    /// A natural basis vector e_i of the layer.
    Unit,
    /// A Gaussian random direction, normalised.
    Random,
    /// A member of a random orthonormal set.
    Orthogonal,
}

impl DirectionKind {
    /// Every kind, in column order.
    pub const ALL: [DirectionKind; 3] = [
        DirectionKind::Unit,
        DirectionKind::Random,
        DirectionKind::Orthogonal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DirectionKind::Unit => "unit",
            DirectionKind::Random => "random",
            DirectionKind::Orthogonal => "orthogonal",
        }
    }
}

/// Top-T images of one direction and its tie / activity statistics.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopList {
    pub kind: DirectionKind,
    /// Index within its kind.
    pub index: usize,
    /// Flat unit index (units only).
    pub unit: Option<i64>,
    /// Data indices of the top-T images, best first (ties by data index).
    pub data: Vec<usize>,
    pub scores: Vec<f32>,
    /// True when the T-th and (T+1)-th best scores are equal: the top-T set is not unique.
    pub tie_decided: bool,
    /// How many of the top-T scores equal the T-th best score (1 when there is no tie).
    pub boundary_ties: usize,
    /// Number of images with score > 0 (for a ReLU unit: images on which it is active).
    pub positive: i64,
    pub mean: f64,
    pub std: f64,
}

/// A mean with its percentile bootstrap confidence interval.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Estimate {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
}

/// Result of a two-sided Mann-Whitney U test (normal approximation with tie and continuity correction,
/// as scipy's `mannwhitneyu(a, b, method="asymptotic")`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct MannWhitney {
    /// U statistic of the first sample.
    pub u: f64,
    pub z: f64,
    pub p_value: f64,
}

/// Purity and entropy of random T-subsets of the labelled data: the chance level.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Chance {
    pub purity: Estimate,
    pub entropy_bits: Estimate,
    pub draws: usize,
}

/// Per-direction label metrics of the top-T set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectionMetrics {
    pub kind: DirectionKind,
    pub index: usize,
    pub unit: Option<i64>,
    pub purity: f64,
    pub entropy_bits: f64,
    pub majority_label: i64,
    pub tie_decided: bool,
}

/// Summary of one kind of direction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KindSummary {
    pub kind: DirectionKind,
    pub directions: usize,
    /// Directions whose top-T set is decided by ties (excluded from the metrics).
    pub tie_decided: usize,
    /// Directions with at most T images scoring > 0 (for units: active on ≤ T images).
    pub positive_at_most_top: usize,
    pub used: usize,
    pub purity: Option<Estimate>,
    pub entropy_bits: Option<Estimate>,
}

/// A comparison of units with one kind of random direction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub against: DirectionKind,
    /// mean purity(units) − mean purity(other), bootstrap interval.
    pub purity_diff: Option<Estimate>,
    pub purity_test: Option<MannWhitney>,
    /// mean entropy(units) − mean entropy(other).
    pub entropy_diff: Option<Estimate>,
    pub entropy_test: Option<MannWhitney>,
    pub verdict: String,
}

/// Everything `summary.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitsSummary {
    pub model: String,
    pub layer: String,
    pub layer_shape: Vec<i64>,
    pub data: String,
    pub n_images: usize,
    pub skipped_images: usize,
    pub top: usize,
    pub seed: u64,
    pub confidence_level: f64,
    pub bootstrap_reps: usize,
    pub kinds: Vec<KindSummary>,
    pub chance: Option<Chance>,
    pub comparisons: Vec<Comparison>,
    pub conclusion: String,
}

/// Writes `summary.json`.
pub fn write_summary(path: &Path, summary: &UnitsSummary) -> Result<()> {
    crate::io::write_json(path, summary)
}

/// Reads `summary.json`.
pub fn read_summary(path: &Path) -> Result<UnitsSummary> {
    crate::io::read_json(path)
}

/// Writes `directions.safetensors`: `units` i64 [Ku] (flat unit indices), `random` [D, Kr],
/// `orthogonal` [D, Ko] (directions as columns) and `layer_shape` i64. The score of image x on random
/// direction j is `flatten(φ(x)) · random[:, j]`.
pub fn write_directions(
    path: &Path,
    layer_shape: &[i64],
    units: &[i64],
    random: &Tensor,
    orthogonal: &Tensor,
) -> Result<()> {
    let units = Tensor::from_slice(units);
    let shape = Tensor::from_slice(layer_shape);
    crate::io::write_safetensors(
        path,
        &[
            ("units", &units),
            ("random", random),
            ("orthogonal", orthogonal),
            ("layer_shape", &shape),
        ],
    )
}

// ------------------------------------------------------------------------------------------------ tables

/// A line of `topk.csv`: one image in the top list of one direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopkRow {
    pub kind: DirectionKind,
    /// Index of the direction within its kind.
    pub direction: usize,
    pub unit: Option<i64>,
    /// 0 for the best image.
    pub rank: usize,
    pub data_index: usize,
    pub score: f32,
    pub label: Option<i64>,
}

/// A line of `metrics.csv`: one direction (purity, entropy and majority label only for labelled data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    pub kind: DirectionKind,
    pub direction: usize,
    pub unit: Option<i64>,
    pub purity: Option<f64>,
    pub entropy_bits: Option<f64>,
    pub majority_label: Option<i64>,
    pub tie_decided: bool,
    pub boundary_ties: usize,
    pub positive_count: i64,
    pub mean_score: f64,
    pub std_score: f64,
}

/// A line of `layers.csv`: one layer and kind, with the units-vs-kind test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRow {
    pub layer: String,
    pub kind: DirectionKind,
    pub directions: usize,
    pub tie_decided: usize,
    pub used: usize,
    pub purity: Option<f64>,
    pub purity_lo: Option<f64>,
    pub purity_hi: Option<f64>,
    pub entropy_bits: Option<f64>,
    pub entropy_lo: Option<f64>,
    pub entropy_hi: Option<f64>,
    pub purity_diff_vs_units: Option<f64>,
    pub mannwhitney_p_purity: Option<f64>,
    pub chance_purity: Option<f64>,
    pub chance_entropy_bits: Option<f64>,
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// Writes `topk.csv`: kind, direction, unit, rank, data_index, score, label (empty when unlabelled).
pub fn write_topk_csv(path: &Path, lists: &[TopList], labels: Option<&[i64]>) -> Result<()> {
    let mut t = Table::new(&[
        "kind",
        "direction",
        "unit",
        "rank",
        "data_index",
        "score",
        "label",
    ]);
    for l in lists {
        for (r, (&i, &s)) in l.data.iter().zip(&l.scores).enumerate() {
            t.push(vec![
                l.kind.as_str().to_string(),
                l.index.to_string(),
                opt(l.unit),
                r.to_string(),
                i.to_string(),
                format!("{s:e}"),
                opt(labels.and_then(|ls| ls.get(i))),
            ]);
        }
    }
    t.write_csv(path)
}

/// Writes `metrics.csv`: one line per direction; `metrics` (labelled data only) in the order of `lists`.
pub fn write_metrics_csv(
    path: &Path,
    lists: &[TopList],
    metrics: Option<&[DirectionMetrics]>,
) -> Result<()> {
    let mut t = Table::new(&[
        "kind",
        "direction",
        "unit",
        "purity",
        "entropy_bits",
        "majority_label",
        "tie_decided",
        "boundary_ties",
        "positive_count",
        "mean_score",
        "std_score",
    ]);
    for (j, l) in lists.iter().enumerate() {
        let m = metrics.map(|m| &m[j]);
        t.push(vec![
            l.kind.as_str().to_string(),
            l.index.to_string(),
            opt(l.unit),
            m.map(|m| format!("{:.6}", m.purity)).unwrap_or_default(),
            m.map(|m| format!("{:.6}", m.entropy_bits))
                .unwrap_or_default(),
            opt(m.map(|m| m.majority_label)),
            l.tie_decided.to_string(),
            l.boundary_ties.to_string(),
            l.positive.to_string(),
            format!("{:e}", l.mean),
            format!("{:e}", l.std),
        ]);
    }
    t.write_csv(path)
}

/// Writes `layers.csv` (`--layer all`): one line per layer and kind, with the units-vs-kind test.
pub fn write_layers_csv(path: &Path, summaries: &[UnitsSummary]) -> Result<()> {
    let mut t = Table::new(&[
        "layer",
        "kind",
        "directions",
        "tie_decided",
        "used",
        "purity",
        "purity_lo",
        "purity_hi",
        "entropy_bits",
        "entropy_lo",
        "entropy_hi",
        "purity_diff_vs_units",
        "mannwhitney_p_purity",
        "chance_purity",
        "chance_entropy_bits",
    ]);
    let f = |x: Option<f64>| x.map(|v| format!("{v:.6}")).unwrap_or_default();
    for s in summaries {
        for k in &s.kinds {
            let comp = s.comparisons.iter().find(|c| c.against == k.kind);
            t.push(vec![
                s.layer.clone(),
                k.kind.as_str().to_string(),
                k.directions.to_string(),
                k.tie_decided.to_string(),
                k.used.to_string(),
                f(k.purity.map(|e| e.mean)),
                f(k.purity.map(|e| e.lo)),
                f(k.purity.map(|e| e.hi)),
                f(k.entropy_bits.map(|e| e.mean)),
                f(k.entropy_bits.map(|e| e.lo)),
                f(k.entropy_bits.map(|e| e.hi)),
                f(comp.and_then(|c| c.purity_diff.map(|e| e.mean))),
                f(comp.and_then(|c| c.purity_test.map(|t| t.p_value))),
                f(s.chance.map(|c| c.purity.mean)),
                f(s.chance.map(|c| c.entropy_bits.mean)),
            ]);
        }
    }
    t.write_csv(path)
}

fn read_rows<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let bad = |e: csv::Error| Error::format(path, format!("invalid CSV: {e}"));
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    csv::Reader::from_reader(bytes.as_slice())
        .deserialize()
        .map(|r| r.map_err(bad))
        .collect()
}

/// Reads `topk.csv`.
pub fn read_topk_csv(path: &Path) -> Result<Vec<TopkRow>> {
    read_rows(path)
}

/// Reads `metrics.csv`.
pub fn read_metrics_csv(path: &Path) -> Result<Vec<MetricsRow>> {
    read_rows(path)
}

/// Reads `layers.csv`.
pub fn read_layers_csv(path: &Path) -> Result<Vec<LayerRow>> {
    read_rows(path)
}

// ----------------------------------------------------------------------------------------------- figures

/// The figure of one kind of direction: a row per direction, its label and its top images.
#[derive(Debug)]
pub struct KindFigure {
    pub kind: DirectionKind,
    /// Row labels (may contain `\n`), one per row.
    pub labels: Vec<String>,
    /// The images, [rows, cols, C, H, W] f32 in [0, 1] (stored as 8 bits).
    pub images: Tensor,
}

/// What the figures of one layer show (Figs 1–4): `figures.safetensors` holds the images of each kind
/// under its name as 8-bit values (u8 [rows, cols, C, H, W], pixel = value / 255: what a PNG shows, at a
/// quarter of the size of f32), `figures.json` the title and the row labels.
#[derive(Debug)]
pub struct UnitsFigures {
    /// E.g. `model / layer`.
    pub title: String,
    /// Only kinds with at least one row, in column order.
    pub kinds: Vec<KindFigure>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FigureLabels {
    title: String,
    kinds: Vec<KindLabels>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KindLabels {
    kind: DirectionKind,
    labels: Vec<String>,
}

impl UnitsFigures {
    pub const TENSORS: &'static str = "figures.safetensors";
    pub const LABELS: &'static str = "figures.json";

    /// Writes `figures.safetensors` and `figures.json` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let bytes = self
            .kinds
            .iter()
            .map(|k| to_u8(&k.images))
            .collect::<Result<Vec<Tensor>>>()?;
        let tensors: Vec<(&str, &Tensor)> = self
            .kinds
            .iter()
            .zip(&bytes)
            .map(|(k, t)| (k.kind.as_str(), t))
            .collect();
        crate::io::write_safetensors(&dir.join(Self::TENSORS), &tensors)?;
        let labels = FigureLabels {
            title: self.title.clone(),
            kinds: self
                .kinds
                .iter()
                .map(|k| KindLabels {
                    kind: k.kind,
                    labels: k.labels.clone(),
                })
                .collect(),
        };
        crate::io::write_json(&dir.join(Self::LABELS), &labels)
    }

    /// Reads what [`UnitsFigures::write`] wrote into `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        let labels: FigureLabels = crate::io::read_json(&dir.join(Self::LABELS))?;
        let path = dir.join(Self::TENSORS);
        let mut tensors: std::collections::HashMap<String, Tensor> =
            crate::io::read_safetensors(&path)?.into_iter().collect();
        let mut kinds = Vec::new();
        for k in labels.kinds {
            let images = tensors
                .remove(k.kind.as_str())
                .ok_or_else(|| Error::format(&path, format!("no `{}` tensor", k.kind.as_str())))?;
            if images.kind() != Kind::Uint8
                || images.dim() != 5
                || images.size()[0] != k.labels.len() as i64
            {
                return Err(Error::format(
                    &path,
                    format!(
                        "`{}` is {:?} {:?}; expected u8 [{} rows, cols, C, H, W]",
                        k.kind.as_str(),
                        images.kind(),
                        images.size(),
                        k.labels.len()
                    ),
                ));
            }
            kinds.push(KindFigure {
                kind: k.kind,
                labels: k.labels,
                images: images.to_kind(Kind::Float) / 255.0,
            });
        }
        Ok(UnitsFigures {
            title: labels.title,
            kinds,
        })
    }
}

/// Images in [0, 1] as 8-bit values round(255·x) (NaN → 0, clamped), as an image file stores them.
fn to_u8(images: &Tensor) -> Result<Tensor> {
    let x = images
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .nan_to_num(0.0, 1.0, 0.0)
        .clamp(0.0, 1.0)
        .contiguous();
    let v = Vec::<f32>::try_from(&x.view([-1]))?;
    let q: Vec<u8> = v.iter().map(|&p| (p * 255.0).round() as u8).collect();
    Ok(Tensor::from_slice(&q).view(x.size().as_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figure_images_are_stored_as_the_bytes_a_png_shows() {
        let x = Tensor::from_slice(&[-0.5f32, 0.0, 0.5, 1.0 / 255.0, 0.998, 2.0, f32::NAN, 0.25])
            .view([1, 2, 1, 2, 2]); // [rows, cols, C, H, W]
        let q = Vec::<u8>::try_from(&to_u8(&x).unwrap().view([-1])).unwrap();
        assert_eq!(q, vec![0, 0, 128, 1, 254, 255, 0, 64]);
        let dir = tempfile::tempdir().unwrap();
        let figs = UnitsFigures {
            title: "m / l".into(),
            kinds: vec![KindFigure {
                kind: DirectionKind::Random,
                labels: vec!["random 0\npurity 1.00 (3)".into()],
                images: x,
            }],
        };
        figs.write(dir.path()).unwrap();
        let back = UnitsFigures::read(dir.path()).unwrap();
        assert_eq!(back.title, "m / l");
        assert_eq!(back.kinds[0].kind, DirectionKind::Random);
        assert_eq!(back.kinds[0].labels, figs.kinds[0].labels);
        let y = Vec::<f32>::try_from(&back.kinds[0].images.view([-1])).unwrap();
        assert_eq!(y[2], 128.0 / 255.0);
        // Read back and stored again: the same bytes.
        assert_eq!(
            Vec::<u8>::try_from(&to_u8(&back.kinds[0].images).unwrap().view([-1])).unwrap(),
            q
        );
    }
}
