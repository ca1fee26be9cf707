//! `blindspot spectral` (§4.3, Table 5): the clap arguments, their conversion into a
//! [`SpectralSpec`], and the one-line summary.

use anyhow::Result;
use blindspot::spectral::{self, Mode, SpectralSpec};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use std::path::PathBuf;

/// `blindspot spectral`: per-layer frame bounds (Table 5), product bound and empirical ratio.
#[derive(Debug, Clone, clap::Args)]
pub struct SpectralArgs {
    /// A zoo model folder (model.json + weights.safetensors) or a TorchScript file (.pt).
    #[arg(long)]
    pub model: PathBuf,
    /// YAML layer spec for TorchScript models not in torchvision's AlexNet layout (docs/spectral.md).
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Input shape C,H,W (required for TorchScript; zoo folders default to their own).
    #[arg(long)]
    pub input_shape: Option<String>,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Conv boundary handling: circular (FFT, exact), zero (torch's zero padding, Lanczos), both.
    #[arg(long, default_value = "both", value_parser = mode_parser())]
    pub mode: Mode,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Lanczos residual tolerance ‖AᵀAv − σ²v‖ ≤ tol·σ²_max.
    #[arg(long, default_value_t = 1e-6)]
    pub tol: f64,
    /// Lanczos steps per conv layer at most.
    #[arg(long, default_value_t = 300)]
    pub max_iter: usize,
    /// Skip converging the smallest zero-padded singular value (faster on large layers).
    #[arg(long)]
    pub no_zero_lower: bool,
    /// Gradient-ascent steps for the empirical Lipschitz ratio (0: one evaluation only).
    #[arg(long, default_value_t = 50)]
    pub ascent_steps: usize,
    /// Random starting points of the gradient ascent.
    #[arg(long, default_value_t = 2)]
    pub ascent_starts: i64,
    #[arg(long, default_value_t = 0)]
    pub seed: i64,
}

/// `--mode`: one of the modes (each described in `--help`, listed in the usage error), parsed by
/// `Mode`'s `FromStr`.
fn mode_parser() -> impl TypedValueParser<Value = Mode> {
    let help = |m: Mode| match m {
        Mode::Circular => {
            "Circular convolution on the layer's input size: FFT, exact (the paper's method)"
        }
        Mode::Zero => {
            "Zero padding (what torch computes): exact by Lanczos, with the FFT bound beside it"
        }
        Mode::Both => "Both",
    };
    let values = [Mode::Circular, Mode::Zero, Mode::Both]
        .map(|m| PossibleValue::new(m.as_str()).help(help(m)));
    PossibleValuesParser::new(values).try_map(|s| s.parse::<Mode>())
}

impl SpectralArgs {
    /// The library's spec for these arguments (`--input-shape` parsed and checked).
    pub fn to_spec(&self) -> Result<SpectralSpec> {
        let input_shape = self
            .input_shape
            .as_deref()
            .map(spectral::parse_shape)
            .transpose()?;
        Ok(SpectralSpec {
            model: self.model.clone(),
            layer_spec: self.spec.clone(),
            input_shape,
            mode: self.mode,
            tol: self.tol,
            max_iter: self.max_iter,
            zero_lower: !self.no_zero_lower,
            ascent_steps: self.ascent_steps,
            ascent_starts: self.ascent_starts,
            seed: self.seed,
        })
    }
}

/// Runs the analysis, renders `table5.md` and `spectrum.png`, prints the summary line.
pub fn run(a: &SpectralArgs) -> Result<()> {
    let device = blindspot::device::parse_device(&a.device)?;
    let spec = a.to_spec()?;
    let r = spectral::run(&spec, &a.out, device)?;
    blindspot::report::spectral::render(&a.out)?;
    println!(
        "{}: {} layer rows, product bound (FFT, guaranteed) {:.4}{}; empirical ratio {} ({:.1} s) -> {}",
        r.source,
        r.analysis.rows.len(),
        r.analysis.product_fft_bound,
        r.analysis.product_exact.map(|p| format!(", exact zero-padded product {p:.4}")).unwrap_or_default(),
        r.empirical.as_ref().map(|e| format!("{:.4}", e.ratio)).unwrap_or_else(|| "not computed".into()),
        r.seconds,
        a.out.join("bounds.csv").display()
    );
    Ok(())
}
