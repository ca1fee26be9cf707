//! Units vs random directions (paper §3, Figs 1-4).
//!
//! The paper compares the images x of a data set that maximise ⟨φ(x), e_i⟩ (a single unit i of a layer φ)
//! with those maximising ⟨φ(x), v⟩ (a random direction v), and finds both equally "semantic" by eye.
//! This module does one streaming pass over the data that keeps, for every direction, the top-T images
//! (memory O(T·K + batch), independent of the data set's size), and then measures, for labelled data, the
//! label purity and label entropy of each direction's top-T set, units vs random directions, with bootstrap
//! confidence intervals, a Mann-Whitney U test and the chance level of random T-subsets.
//!
//! | file | concept |
//! |---|---|
//! | [`directions`] | units e_i and random (orthonormal) directions v, seeded |
//! | [`scan`] | the streaming pass: top-T images per direction |
//! | [`stats`] | Mann–Whitney U, bootstrap intervals, erfc |
//! | [`metrics`] | label purity and entropy, chance level, the summary and its conclusion |
//! | `outputs` | what the stage writes (tables, what the figures show) through [`crate::results::units`] |
//!
//! The entry points take a typed [`UnitsSpec`] (the CLI's options, the YAML `units:` stage): [`run`] for
//! one layer or all of them, [`analyse`] for one layer of an open data set, [`compute`] for the same
//! without files (the Python package's `blindspot.units`). Figures are drawn from the
//! written files by [`crate::report::units`].
//!
//! Choices (documented in docs/units.md):
//! - φ(x) is the layer's activation tensor flattened to D numbers; a "unit" is one coordinate of it (for a
//!   conv layer: one channel at one position), exactly the paper's natural basis e_i. With `--units K`
//!   smaller than D, K units are drawn uniformly without replacement (seeded).
//! - Random directions are N(0, I_D) vectors normalised to length 1; `--orthogonal` adds a random
//!   orthonormal set (QR of a Gaussian matrix, signs fixed so it is Haar distributed).
//! - No per-unit standardisation: it would let rarely-active units dominate random projections. No
//!   centring either: ⟨φ(x) − μ, v⟩ = ⟨φ(x), v⟩ − ⟨μ, v⟩ ranks images exactly as ⟨φ(x), v⟩ does.
//! - Ties: the pass keeps the top T+1 scores. A direction whose T-th and (T+1)-th best scores are equal
//!   (typically a ReLU unit active on fewer than T images, whose top-T set is filled by zeros) has a top-T
//!   set decided by ties; such directions are counted and excluded from the metrics. Within a top-T list,
//!   ties are ordered by data index.

pub mod directions;
mod error;
pub mod metrics;
mod outputs;
pub mod scan;
pub mod stats;

pub use crate::results::units::{DirectionKind, TopList, UnitsSummary};
pub use directions::{
    gaussian, make_directions, random_directions, random_orthonormal, Count, Directions,
};
pub use error::UnitsError;
pub use metrics::{
    chance_level, direction_metrics, entropy_bits, label_counts, purity, summarise, Summary,
};
pub use scan::{check_layer, layer_shape, scan, Scan};
pub use stats::{bootstrap_diff, bootstrap_mean, erfc, mann_whitney};

use crate::data::sources::{Dataset, FolderReading};
use crate::models::Classifier;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Confidence level of the bootstrap intervals and significance level 1 − it of the tests.
pub(crate) const CONFIDENCE_LEVEL: f64 = 0.95;

/// What to analyse: the options of `blindspot units` and of a YAML `units:` stage (the model, device and
/// output folder are given to the entry points).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitsSpec {
    /// The layer to analyse, or `all`: every layer but the logits, each in its own sub-folder, with a
    /// `layers.csv` overview.
    pub layer: String,
    /// `mnist-test`, `mnist-train`, or an image folder (class sub-folders or flat).
    #[serde(default = "default_data")]
    pub data: String,
    /// Units (natural basis directions) drawn at random from the layer, or `all`.
    #[serde(default = "default_count")]
    pub units: Count,
    /// Random (Gaussian, normalised) directions.
    #[serde(default = "default_count_n")]
    pub random: usize,
    /// Also draw a random orthonormal set of as many directions as `random`.
    #[serde(default)]
    pub orthogonal: bool,
    /// Images kept per direction (T).
    #[serde(default = "default_top")]
    pub top: usize,
    #[serde(default)]
    pub seed: u64,
    /// Images per forward pass.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Bootstrap resamples for confidence intervals.
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
    /// How an image folder is read (undecodable files, label file, resize).
    #[serde(default)]
    pub folder: FolderReading,
    /// What the figures show (`None`: no figures).
    #[serde(default = "default_figures")]
    pub figures: Option<FigureSize>,
}

/// The size of the figures: directions (rows) and images per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FigureSize {
    pub rows: usize,
    pub cols: usize,
}

fn default_data() -> String {
    "mnist-test".into()
}
fn default_count() -> Count {
    Count::N(default_count_n())
}
fn default_count_n() -> usize {
    10
}
fn default_top() -> usize {
    8
}
fn default_batch() -> usize {
    256
}
fn default_bootstrap() -> usize {
    2000
}
fn default_figures() -> Option<FigureSize> {
    Some(FigureSize { rows: 10, cols: 10 })
}

impl UnitsSpec {
    /// The defaults of `blindspot units` for `layer`.
    pub fn new(layer: impl Into<String>) -> Self {
        UnitsSpec {
            layer: layer.into(),
            data: default_data(),
            units: default_count(),
            random: default_count_n(),
            orthogonal: false,
            top: default_top(),
            seed: 0,
            batch: default_batch(),
            bootstrap: default_bootstrap(),
            folder: FolderReading::default(),
            figures: default_figures(),
        }
    }

    /// Checks what can be checked before a model or data set is loaded.
    pub fn validate(&self) -> Result<()> {
        if self.top == 0 {
            return Err(UnitsError::ZeroTop { top: self.top }.into());
        }
        if self.units == Count::N(0) && self.random == 0 {
            return Err(UnitsError::NoDirections.into());
        }
        Ok(())
    }

    /// Orthonormal directions drawn: as many as `random` with `orthogonal`, else none.
    pub fn orthogonal_count(&self) -> usize {
        if self.orthogonal {
            self.random
        } else {
            0
        }
    }

    /// The layers `layer` names on `model`: itself, or for `all` every layer but the logits.
    pub fn layers(&self, model: &dyn Classifier) -> Vec<String> {
        if self.layer == "all" {
            model
                .layer_names()
                .into_iter()
                .filter(|n| n != "logits")
                .collect()
        } else {
            vec![self.layer.clone()]
        }
    }
}

/// Runs the analysis of `spec` on `model`: one layer into `out`, or (`layer: all`, several layers) each
/// layer into `out/<layer>/` and an overview `out/layers.csv`. `after_layer(folder, summary)` is called
/// when a layer's files are written (callers draw its figures there, see [`crate::report::units`]).
pub fn run(
    model: &dyn Classifier,
    spec: &UnitsSpec,
    out: &Path,
    mut after_layer: impl FnMut(&Path, &UnitsSummary) -> Result<()>,
) -> Result<Vec<UnitsSummary>> {
    spec.validate()?;
    let data = crate::data::sources::open(&spec.data, &model.input_shape(), &spec.folder)?;
    let layers = spec.layers(model);
    let mut summaries = Vec::new();
    for l in &layers {
        let dir = if layers.len() > 1 {
            out.join(crate::results::folder_name(l))
        } else {
            out.to_path_buf()
        };
        let one = UnitsSpec {
            layer: l.clone(),
            ..spec.clone()
        };
        let summary = analyse(model, data.as_ref(), &one, &dir)?;
        after_layer(&dir, &summary)?;
        summaries.push(summary);
    }
    if layers.len() > 1 {
        crate::results::units::write_layers_csv(&out.join("layers.csv"), &summaries)?;
    }
    Ok(summaries)
}

/// One layer's analysis held in memory: the directions, the scan (every direction's top images) and its
/// summary; [`analyse`] writes them, the Python package returns them.
#[derive(Debug)]
pub struct LayerAnalysis {
    pub directions: Directions,
    pub scan: Scan,
    pub summary: UnitsSummary,
}

/// Analyses one layer (`spec.layer`) of `model` on an open data set without writing anything: the
/// directions, the streaming scan and the summary (per-kind metrics, comparisons, conclusion).
pub fn compute(
    model: &dyn Classifier,
    data: &dyn Dataset,
    spec: &UnitsSpec,
) -> Result<LayerAnalysis> {
    spec.validate()?;
    let layer = spec.layer.as_str();
    check_layer(model, layer)?;
    let shape = layer_shape(model, layer)?;
    let dirs = make_directions(
        &shape,
        spec.units,
        spec.random,
        spec.orthogonal_count(),
        spec.seed,
    )?;
    let scan = scan::scan(model, data, layer, &dirs, spec.top, spec.batch, true)?;
    if scan.n_images <= spec.top {
        log::warn!(
            "only {} images for --top {}: every top list is the whole data set",
            scan.n_images,
            spec.top
        );
    }
    let labels = data.labels();
    let s = summarise(
        &scan,
        labels.as_deref(),
        spec.bootstrap,
        CONFIDENCE_LEVEL,
        spec.seed,
    );
    let summary = UnitsSummary {
        model: model.name().to_string(),
        layer: layer.to_string(),
        layer_shape: shape,
        data: data.describe(),
        n_images: scan.n_images,
        skipped_images: scan.skipped.len(),
        top: spec.top,
        seed: spec.seed,
        confidence_level: CONFIDENCE_LEVEL,
        bootstrap_reps: spec.bootstrap,
        kinds: s.kinds,
        chance: s.chance,
        comparisons: s.comparisons,
        conclusion: s.conclusion,
    };
    Ok(LayerAnalysis {
        directions: dirs,
        scan,
        summary,
    })
}

/// Analyses one layer (`spec.layer`) of `model` on an open data set ([`compute`]), writing into `out`:
/// `directions.safetensors`, `topk.csv`, `metrics.csv`, `summary.json`, and (with `spec.figures`) what the
/// figures show.
pub fn analyse(
    model: &dyn Classifier,
    data: &dyn Dataset,
    spec: &UnitsSpec,
    out: &Path,
) -> Result<UnitsSummary> {
    let a = compute(model, data, spec)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    a.directions.save(&out.join("directions.safetensors"))?;
    let labels = data.labels();
    outputs::write_tables(out, &a.scan, labels.as_deref())?;
    crate::results::units::write_summary(&out.join("summary.json"), &a.summary)?;
    if let Some(f) = spec.figures {
        let title = format!("{} / {}", model.name(), spec.layer);
        outputs::figures(&a.scan, &a.directions, data, &title, f.rows, f.cols)?.write(out)?;
    }
    Ok(a.summary)
}
