//! `blindspot units` (paper §3, Figs 1–4): the clap options, their conversion into a
//! [`UnitsSpec`], the run (analysis, then the figures drawn from its files) and what is printed.

use anyhow::{bail, Result};
use blindspot::data::images::OnBadImage;
use blindspot::data::sources::FolderReading;
use blindspot::units::{Count, FigureSize, UnitsSpec};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use std::path::PathBuf;

/// `blindspot units`: top images per unit vs random directions of a layer (paper §3, Figs 1-4).
#[derive(Debug, Clone, clap::Args)]
pub struct UnitsArgs {
    /// A zoo model folder or a TorchScript file (.pt).
    #[arg(long)]
    pub model: PathBuf,
    /// The layer to analyse (see --list-layers), or `all`: every layer but the logits, each in its own
    /// sub-folder of --out, with a `layers.csv` overview.
    #[arg(long)]
    pub layer: Option<String>,
    /// mnist-test, mnist-train, or an image folder (class sub-folders or flat).
    #[arg(long, default_value = "mnist-test")]
    pub data: String,
    /// Number of units (natural basis directions), drawn at random from the layer, or `all`.
    #[arg(long, default_value = "10")]
    pub units: Count,
    /// Number of random (Gaussian, normalised) directions.
    #[arg(long, default_value_t = 10)]
    pub random: usize,
    /// Also draw a random orthonormal set of as many directions as --random (kind `orthogonal`).
    #[arg(long)]
    pub orthogonal: bool,
    /// Images kept per direction.
    #[arg(long, default_value_t = 8)]
    pub top: usize,
    /// Output folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the model's layer names, one a line, and exit.
    #[arg(long)]
    pub list_layers: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// What to do with an image file that cannot be decoded.
    #[arg(long, value_parser = on_bad_image(), default_value = "skip")]
    pub on_bad_image: OnBadImage,
    /// Label file for a flat image folder (`<file> <label>` lines, or one label a line in file order).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Image-folder preprocessing: resize the shorter side to this (default: input size · 256/224).
    #[arg(long)]
    pub resize: Option<u32>,
    /// Rows (directions) per figure.
    #[arg(long, default_value_t = 10)]
    pub fig_rows: usize,
    /// Images per figure row.
    #[arg(long, default_value_t = 10)]
    pub fig_cols: usize,
    /// Bootstrap resamples for confidence intervals.
    #[arg(long, default_value_t = 2000)]
    pub bootstrap: usize,
    /// Skip drawing figures.
    #[arg(long)]
    pub no_figures: bool,
}

/// `--on-bad-image skip|fail`, parsed by [`OnBadImage`]'s `FromStr`, each value with its help.
fn on_bad_image() -> impl TypedValueParser<Value = OnBadImage> {
    PossibleValuesParser::new([
        PossibleValue::new("skip").help("Warn, count it, and go on without it"),
        PossibleValue::new("fail").help("Stop with an error naming the file"),
    ])
    .try_map(|s| s.parse::<OnBadImage>())
}

impl UnitsArgs {
    /// The analysis these options ask for, on `layer`.
    pub fn spec(&self, layer: &str) -> UnitsSpec {
        UnitsSpec {
            layer: layer.to_string(),
            data: self.data.clone(),
            units: self.units,
            random: self.random,
            orthogonal: self.orthogonal,
            top: self.top,
            seed: self.seed,
            batch: self.batch,
            bootstrap: self.bootstrap,
            folder: FolderReading {
                on_bad_image: self.on_bad_image,
                labels: self.labels.clone(),
                resize: self.resize,
            },
            figures: (!self.no_figures).then_some(FigureSize {
                rows: self.fig_rows,
                cols: self.fig_cols,
            }),
        }
    }
}

/// Runs `blindspot units`: lists the layers, or analyses them and draws each one's figures, printing each
/// layer's conclusion (and, for one layer, what was analysed).
pub fn run(args: &UnitsArgs) -> Result<()> {
    let device = blindspot::device::parse_device(&args.device)?;
    let model = blindspot::models::torchscript::load_classifier(&args.model, device)?;
    if args.list_layers {
        for n in model.layer_names() {
            println!("{n}");
        }
        return Ok(());
    }
    let Some(layer) = args.layer.as_deref() else {
        bail!(
            "--layer is required; available layers: {}",
            model.layer_names().join(", ")
        );
    };
    let Some(out) = args.out.as_deref() else {
        bail!("--out <folder> is required");
    };
    let spec = args.spec(layer);
    let summaries = blindspot::units::run(model.as_ref(), &spec, out, |dir, s| {
        if spec.figures.is_some() {
            blindspot::report::units::draw(dir)?;
        }
        println!("[{}] {}", s.layer, s.conclusion);
        Ok(())
    })?;
    if let [s] = summaries.as_slice() {
        println!("{}: layer {} over {} images", s.model, s.layer, s.n_images);
        println!("{}", s.conclusion);
    }
    Ok(())
}
