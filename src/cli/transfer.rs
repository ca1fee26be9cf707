//! `blindspot transfer`: cross-model generalisation (§4.2, Tables 2 and 4).

use anyhow::Result;
use blindspot::attack::transfer::{source_of, transfer_checked, RowKind, TransferSpec};
use blindspot::models::Classifier;
use std::path::PathBuf;

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
    /// The model each --adversarials row was made for, in the same order (default: the column with the
    /// weights recorded in the row's summary.json, else the model path recorded there). Every row is
    /// re-verified on it; a model with other weights than the recorded ones is refused.
    #[arg(long, num_args = 1..)]
    pub source_models: Vec<PathBuf>,
    /// Gaussian-noise rows: stddevs (noise on the first row's originals, clipped to the box).
    #[arg(long, num_args = 0..)]
    pub noise: Vec<f64>,
    /// Amplified rows: scale each perturbation to this distortion (Table 4 uses 0.1).
    #[arg(long, num_args = 0..)]
    pub amplify: Vec<f64>,
    /// Images per forward pass.
    #[arg(long, default_value_t = blindspot::attack::DEFAULT_BATCH)]
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

/// Runs `blindspot transfer`: computes the table, writes its files and prints its Markdown.
pub fn run(a: &TransferArgs) -> Result<()> {
    let device = blindspot::device::parse_device(&a.device)?;
    let spec = TransferSpec {
        noise: a.noise.clone(),
        amplify: a.amplify.clone(),
        batch: a.batch,
        clip_noise: !a.no_clip_noise,
    };
    spec.validate()?;
    let sources = a
        .adversarials
        .iter()
        .map(|p| source_of(p))
        .collect::<blindspot::Result<Vec<_>>>()?;
    let loaded = a
        .models
        .iter()
        .map(|p| blindspot::models::torchscript::load_classifier(p, device))
        .collect::<blindspot::Result<Vec<_>>>()?;
    let cols: Vec<(String, &dyn Classifier)> = loaded
        .iter()
        .map(|m| (m.name().to_string(), m.as_ref()))
        .collect();
    if !a.source_models.is_empty() && a.source_models.len() != sources.len() {
        anyhow::bail!(
            "--source-models gives {} models for {} --adversarials rows: give one per row, in order",
            a.source_models.len(),
            sources.len()
        );
    }
    let own = a
        .source_models
        .iter()
        .map(|p| blindspot::models::torchscript::load_classifier(p, device))
        .collect::<blindspot::Result<Vec<_>>>()?;
    let own: Vec<Option<&dyn Classifier>> = own.iter().map(|m| Some(m.as_ref())).collect();
    let t = transfer_checked(&sources, &own, &cols, &spec, a.seed)?;
    for r in t
        .rows
        .iter()
        .filter(|r| r.unverified > 0 && r.kind == RowKind::Adversarial)
    {
        println!(
            "{}: {} stored successes are not adversarial on their source model; left out",
            r.source, r.unverified
        );
    }
    std::fs::create_dir_all(&a.out)?;
    blindspot::results::transfer::write(&t, &a.out)?;
    let md = blindspot::report::transfer::write(&a.out)?;
    println!("{md}");
    println!("-> {}", a.out.display());
    Ok(())
}
