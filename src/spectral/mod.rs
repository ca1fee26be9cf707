//! Spectral analysis of instability (§4.3, Table 5): exact per-layer frame bounds.

pub mod analysis;
pub mod conv;
pub mod dense;
pub mod network;
pub mod pool;
pub mod power;
pub mod report;

use crate::{Error, Result};
use std::path::PathBuf;

pub use analysis::{analyse, empirical_ratio, AnalyseOptions, Analysis, Empirical, Mode, Row};

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
    #[arg(long, value_enum, default_value_t = Mode::Both)]
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

/// Parses `C,H,W` (or any comma-separated positive dimensions).
pub fn parse_shape(s: &str) -> Result<Vec<i64>> {
    let v: std::result::Result<Vec<i64>, _> =
        s.split(',').map(|p| p.trim().parse::<i64>()).collect();
    match v {
        Ok(v) if !v.is_empty() && v.iter().all(|&d| d > 0) => Ok(v),
        _ => Err(Error::Invalid(format!(
            "--input-shape `{s}`: expected positive integers separated by commas, e.g. 3,224,224"
        ))),
    }
}

/// Everything `run` computed (also written to `<out>/bounds.json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SpectralReport {
    pub source: String,
    pub input_shape: Vec<i64>,
    pub mode: Mode,
    pub analysis: Analysis,
    pub empirical: Option<Empirical>,
    /// TorchScript only: max |ours − module| / max |module| of the logits on a random input.
    pub forward_mismatch: Option<f64>,
    pub seconds: f64,
}

/// Runs the analysis and writes `bounds.csv`, `bounds.json`, `table5.md`, `spectrum.png` under `--out`.
pub fn run(args: &SpectralArgs) -> Result<SpectralReport> {
    let t0 = std::time::Instant::now();
    let device = crate::device::parse_device(&args.device)?;
    let shape = args.input_shape.as_deref().map(parse_shape).transpose()?;
    let (net, source) = network::load(&args.model, args.spec.as_deref(), shape.as_deref(), device)?;
    let forward_mismatch = match &source {
        network::Source::TorchScript(_, m) => {
            let d = network::forward_mismatch(&net, m, device)?;
            if d > 1e-3 {
                log::warn!(
                    "{}: our forward pass from the layer spec differs from the TorchScript module by {d:.2e} (relative): the spec may not describe the model",
                    args.model.display()
                );
            }
            Some(d)
        }
        network::Source::Zoo(_) => None,
    };
    let opts = AnalyseOptions {
        mode: args.mode,
        tol: args.tol,
        max_iter: args.max_iter,
        zero_lower: !args.no_zero_lower,
        device,
        seed: args.seed,
        ..Default::default()
    };
    if !(args.tol > 0.0 && args.tol < 1.0) {
        return Err(Error::Invalid(format!(
            "--tol {} must be in (0, 1)",
            args.tol
        )));
    }
    let analysis = analyse(&net, &opts)?;
    let empirical = if args.ascent_starts > 0 {
        Some(empirical_ratio(
            &net,
            args.ascent_steps,
            args.ascent_starts,
            args.seed,
            device,
        )?)
    } else {
        None
    };
    let rep = SpectralReport {
        source: net.source.clone(),
        input_shape: net.input_shape.clone(),
        mode: args.mode,
        analysis,
        empirical,
        forward_mismatch,
        seconds: t0.elapsed().as_secs_f64(),
    };
    write_outputs(&args.out, &net, &rep)?;
    Ok(rep)
}

/// Writes the four outputs atomically.
pub fn write_outputs(
    out: &std::path::Path,
    net: &network::Network,
    rep: &SpectralReport,
) -> Result<()> {
    crate::io::write_atomic(
        &out.join("bounds.csv"),
        report::csv_text(&rep.analysis.rows)?.as_bytes(),
    )?;
    crate::io::write_json(&out.join("bounds.json"), rep)?;
    let md = report::markdown(net, &rep.analysis, rep.empirical.as_ref());
    crate::io::write_atomic(&out.join("table5.md"), md.as_bytes())?;
    if !rep.analysis.spectra.is_empty() {
        report::plot_spectra(&out.join("spectrum.png"), &rep.analysis)?;
    }
    Ok(())
}

/// Timings of [`bench`] (seconds) on one model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub load_s: f64,
    /// All layers, both bounds: FFT (circular) for convs, SVD/Gram eigenvalues for linear layers.
    pub fast_all_layers_s: f64,
    /// Exact zero-padded conv norms (Lanczos, upper only), all conv layers.
    pub zero_upper_s: f64,
    /// Exact zero-padded conv bounds, upper and lower (Lanczos, `max_iter` steps at most).
    pub zero_both_s: f64,
    /// Per conv layer: (name, Lanczos steps, Lanczos s, power steps, power s, power converged).
    pub lanczos_vs_power: Vec<(String, usize, f64, usize, f64, bool)>,
    pub per_layer: Vec<(String, String, f64)>,
}

/// Benchmark of the speed targets (AlexNet 224×224: ≤ 30 s for all bounds, ≤ 60 s for the exact
/// zero-padded conv norms) and of Lanczos against plain power iteration at the same residual tolerance.
pub fn bench(
    model: &std::path::Path,
    input_shape: &[i64],
    tol: f64,
    power_cap: usize,
) -> Result<BenchReport> {
    let t = std::time::Instant::now();
    let (net, _) = network::load(model, None, Some(input_shape), tch::Device::Cpu)?;
    let load_s = t.elapsed().as_secs_f64();
    let base = AnalyseOptions {
        tol,
        ..Default::default()
    };
    let t = std::time::Instant::now();
    let fast = analyse(
        &net,
        &AnalyseOptions {
            mode: Mode::Circular,
            ..base.clone()
        },
    )?;
    let fast_all_layers_s = t.elapsed().as_secs_f64();
    eprintln!(
        "bench: all layers, FFT + SVD/Gram: {fast_all_layers_s:.1} s; per layer {:?}",
        fast.timings
    );
    let t = std::time::Instant::now();
    let zero = analyse(
        &net,
        &AnalyseOptions {
            mode: Mode::Zero,
            zero_lower: false,
            ..base.clone()
        },
    )?;
    let linear_s: f64 = zero
        .timings
        .iter()
        .filter(|x| x.1 != "iterative-zero")
        .map(|x| x.2)
        .sum();
    let zero_upper_s = t.elapsed().as_secs_f64() - linear_s;
    eprintln!(
        "bench: zero-padded conv norms (Lanczos): {zero_upper_s:.1} s; {:?}",
        zero.iterative
            .iter()
            .map(|r| (
                &r.layer,
                r.extremes.iterations,
                r.seconds,
                r.extremes.sigma_max
            ))
            .collect::<Vec<_>>()
    );
    let t = std::time::Instant::now();
    let both = analyse(
        &net,
        &AnalyseOptions {
            mode: Mode::Zero,
            zero_lower: true,
            ..base.clone()
        },
    )?;
    let linear_s2: f64 = both
        .timings
        .iter()
        .filter(|x| x.1 != "iterative-zero")
        .map(|x| x.2)
        .sum();
    let zero_both_s = t.elapsed().as_secs_f64() - linear_s2;
    eprintln!(
        "bench: zero-padded upper+lower: {zero_both_s:.1} s; {:?}",
        both.iterative
            .iter()
            .map(|r| (&r.layer, r.extremes.iterations, r.extremes.converged_min))
            .collect::<Vec<_>>()
    );
    let mut lvp = Vec::new();
    let _g = tch::no_grad_guard();
    for (l, rec) in net
        .layers
        .iter()
        .filter(|l| l.op.kind() == "conv2d")
        .zip(&zero.iterative)
    {
        if let network::Op::Conv { weight, geom, .. } = &l.op {
            let op = conv::ConvOp::new(
                weight,
                *geom,
                [l.input_shape[0], l.input_shape[1], l.input_shape[2]],
            )?;
            let kind = if rec.precision == "Float" {
                tch::Kind::Float
            } else {
                tch::Kind::Double
            };
            let (dim, gram) = power::conv_gram(&op, kind);
            let opts = power::IterOptions {
                tol,
                max_iter: power_cap,
                want_min: false,
                ..Default::default()
            };
            let t = std::time::Instant::now();
            let p = power::power_iteration(dim, &*gram, &opts)?;
            eprintln!(
                "bench: {} power {} steps {:.1} s (converged {}) vs Lanczos {} steps {:.1} s",
                l.name,
                p.iterations,
                t.elapsed().as_secs_f64(),
                p.converged_max,
                rec.extremes.iterations,
                rec.seconds
            );
            lvp.push((
                l.name.clone(),
                rec.extremes.iterations,
                rec.seconds,
                p.iterations,
                t.elapsed().as_secs_f64(),
                p.converged_max,
            ));
        }
    }
    let mut per_layer = fast.timings.clone();
    per_layer.extend(
        zero.timings
            .iter()
            .filter(|x| x.1 == "iterative-zero")
            .cloned(),
    );
    Ok(BenchReport {
        load_s,
        fast_all_layers_s,
        zero_upper_s,
        zero_both_s,
        lanczos_vs_power: lvp,
        per_layer,
    })
}
