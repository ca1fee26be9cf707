//! `blindspot verify`: an attack's stored adversarials re-evaluated on their model another way (float64,
//! another batch size, other threads or device): how many stay adversarial, and their margins.

use anyhow::{Context, Result};
use blindspot::attack::recheck::{recheck_file, Precision};
use std::path::PathBuf;

/// `blindspot verify`: do an attack's successes stay adversarial when the model is evaluated another way?
#[derive(clap::Args, Debug, Clone)]
pub struct VerifyArgs {
    /// An attack's output folder (`blindspot attack --out`, an experiment's `attacks/<model>`) or its
    /// `adversarial.safetensors`.
    #[arg(long)]
    pub adversarials: PathBuf,
    /// The model the adversarials were made for (default: the path recorded in the folder's
    /// summary.json); its weights must be the recorded ones.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// f32 (the model as it is) or f64 (weights and inputs converted to double; zoo models).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionArg,
    /// Examples per forward pass.
    #[arg(long, default_value_t = blindspot::attack::DEFAULT_BATCH)]
    pub batch: i64,
    /// libtorch intra-op threads (default: libtorch's choice).
    #[arg(long)]
    pub threads: Option<i32>,
    /// cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Write the result (counts, margin quantiles, every flipped example) as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write every success's stored and fresh margin and its largest |logit| as CSV here.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Exit with status 1 when a stored success is not adversarial any more.
    #[arg(long)]
    pub strict: bool,
}

/// `--precision`.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum PrecisionArg {
    F32,
    F64,
}

/// Runs `blindspot verify`.
pub fn run(a: &VerifyArgs) -> Result<()> {
    if let Some(t) = a.threads {
        tch::set_num_threads(t);
    }
    let device = blindspot::device::parse_device(&a.device)?;
    let file = if a.adversarials.is_dir() {
        a.adversarials.join("adversarial.safetensors")
    } else {
        a.adversarials.clone()
    };
    let precision = match a.precision {
        PrecisionArg::F32 => Precision::F32,
        PrecisionArg::F64 => Precision::F64,
    };
    let (r, fresh) = recheck_file(&file, a.model.as_deref(), device, precision, a.batch)?;
    if let Some(p) = &a.json {
        blindspot::io::write_json(p, &r)?;
    }
    if let Some(p) = &a.csv {
        let mut t =
            blindspot::results::Table::new(&["row", "stored_margin", "margin", "max_abs_logit"]);
        for f in &fresh {
            t.push(vec![
                f.row.to_string(),
                format!("{:e}", f.stored_margin),
                format!("{:e}", f.margin),
                format!("{:e}", f.max_abs_logit),
            ]);
        }
        t.write_csv(p)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let pct = |k: usize| 100.0 * k as f64 / r.stored_successes.max(1) as f64;
    println!(
        "{} ({:?}, batch {}, {} threads, {}): {} stored successes of {} examples; still adversarial {} ({:.3}%); margin >= min_margin {:e}: {} ({:.3}%); largest margin change {:.3e}",
        r.model,
        r.precision,
        r.batch,
        r.threads,
        r.device,
        r.stored_successes,
        r.examples,
        r.still_adversarial,
        pct(r.still_adversarial),
        r.min_margin,
        r.past_min_margin,
        pct(r.past_min_margin),
        r.max_margin_change,
    );
    let q: Vec<String> = r
        .margin_quantiles
        .iter()
        .map(|(q, v)| format!("{}%: {v:.3e}", 100.0 * q))
        .collect();
    println!("margins: {}", q.join(", "));
    for f in r.flipped.iter().take(20) {
        println!(
            "not adversarial: row {} (label {}, target {}) -> class {}, margin {:.3e} (stored {:.3e})",
            f.row, f.label, f.target, f.predicted, f.margin, f.stored_margin
        );
    }
    if r.flipped.len() > 20 {
        println!("... and {} more (see --json)", r.flipped.len() - 20);
    }
    if a.strict && !r.flipped.is_empty() {
        anyhow::bail!(
            "{} of {} stored successes are not adversarial in this evaluation",
            r.flipped.len(),
            r.stored_successes
        );
    }
    Ok(())
}
