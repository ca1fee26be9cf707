//! `blindspot attack`: the paper's L-BFGS attack (§4.1) on a zoo model or a TorchScript file, over an
//! MNIST split or an image folder (then with Fig 5's triplets, drawn by the report).

use anyhow::{Context, Result};
use blindspot::attack::{self, AttackSettings, AttackSpec, AttackSummary, CSearch, WarmStart};
use std::path::{Path, PathBuf};

/// `blindspot attack`: the paper's L-BFGS attack on a zoo model over an MNIST set.
#[derive(clap::Args, Debug, Clone)]
pub struct AttackArgs {
    /// Model: a zoo folder (model.json + weights.safetensors) or a TorchScript file (.pt, inputs in [0, 1]).
    #[arg(long)]
    pub model: PathBuf,
    /// MNIST split: train, test, p1 or p2 (ignored with --data).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Attack the images of this folder instead of MNIST (class sub-folders or flat; resized and
    /// centre-cropped to the model's input like torchvision). The label of each image is the model's own
    /// prediction on it (a folder's class order need not match the model's classes); select images with
    /// --first.
    #[arg(long, conflicts_with = "indices")]
    pub data: Option<PathBuf>,
    /// File of indices into the split, one per line.
    #[arg(long, conflicts_with = "first")]
    pub indices: Option<PathBuf>,
    /// Attack the first N examples of the split (default: all).
    #[arg(long)]
    pub first: Option<usize>,
    /// File of targets, one per line (the i-th target for the i-th attacked example).
    #[arg(long, conflicts_with = "untargeted")]
    pub targets: Option<PathBuf>,
    /// Any wrong class will do (default: a random target ≠ label per example, from --seed).
    #[arg(long)]
    pub untargeted: bool,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Examples per chunk (peak memory is proportional to it).
    #[arg(long, default_value_t = attack::DEFAULT_BATCH)]
    pub batch: i64,
    /// Seed of the random targets.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// MNIST folder (default: the vendored assets/mnist).
    #[arg(long)]
    pub mnist_dir: Option<PathBuf>,
    /// libtorch intra-op threads (default: libtorch's choice).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Bisection stops when c_hi/c_lo <= 1 + this.
    #[arg(long, default_value_t = AttackSettings::default().c_rel_tol)]
    pub c_rel_tol: f64,
    /// L-BFGS-B memory m.
    #[arg(long, default_value_t = AttackSettings::default().history)]
    pub history: usize,
    /// Iterations per L-BFGS-B solve (one solve per value of c).
    #[arg(long, default_value_t = AttackSettings::default().max_iter)]
    pub max_iter: usize,
    /// A solve stops when the projected gradient's ∞-norm is below this (absolute: models whose input
    /// gradients are tiny, e.g. 224×224 inputs, may need a smaller value).
    #[arg(long, default_value_t = AttackSettings::default().pgtol)]
    pub pgtol: f64,
    /// A solve stops when the objective's relative reduction is below factr·ε (scipy's factr; 0 = off).
    #[arg(long, default_value_t = AttackSettings::default().factr)]
    pub factr: f64,
    /// κ: a success needs target logit − highest other logit ≥ κ (untargeted: highest other − the label's
    /// logit ≥ κ), so it stays adversarial under another evaluation's rounding (docs/attack.md).
    #[arg(long, default_value_t = AttackSettings::default().min_margin)]
    pub min_margin: f64,
    /// How the search picks the next c: secant (root finding on the margin) or bisect (bracket ×/÷ 3,
    /// then geometric bisection); both stop at the same c_hi/c_lo (docs/attack.md).
    #[arg(long, value_enum, default_value = "secant")]
    pub c_search: CSearchArg,
    /// Where each solve starts: original (the clean image), failing (the solution of the largest
    /// failing c) or nearest (of the nearest solved c).
    #[arg(long, value_enum, default_value = "nearest")]
    pub warm_start: WarmStartArg,
    /// The first c tried for every example.
    #[arg(long, default_value_t = AttackSettings::default().c_init)]
    pub c_init: f64,
}

/// `--c-search` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum CSearchArg {
    Secant,
    Bisect,
}

/// `--warm-start` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum WarmStartArg {
    Original,
    Failing,
    Nearest,
}

/// Reads one integer per line (blank lines and `#` comments skipped).
pub fn read_int_file(path: &Path) -> Result<Vec<i64>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (no, line) in text.lines().enumerate() {
        let s = line.split('#').next().unwrap_or("").trim();
        if s.is_empty() {
            continue;
        }
        out.push(s.parse::<i64>().with_context(|| {
            format!(
                "{}: line {}: `{s}` is not an integer",
                path.display(),
                no + 1
            )
        })?);
    }
    Ok(out)
}

impl AttackArgs {
    /// The typed spec the library's attack takes.
    fn spec(&self) -> Result<AttackSpec> {
        Ok(AttackSpec {
            split: self.split.clone(),
            first: self.first,
            indices: self.indices.as_deref().map(read_int_file).transpose()?,
            targets: self.targets.as_deref().map(read_int_file).transpose()?,
            targeted: !self.untargeted,
            batch: self.batch,
            seed: self.seed,
            settings: AttackSettings {
                c_rel_tol: self.c_rel_tol,
                history: self.history,
                max_iter: self.max_iter,
                pgtol: self.pgtol,
                factr: self.factr,
                min_margin: self.min_margin,
                c_init: self.c_init,
                c_search: match self.c_search {
                    CSearchArg::Secant => CSearch::Secant,
                    CSearchArg::Bisect => CSearch::Bisect,
                },
                warm_start: match self.warm_start {
                    WarmStartArg::Original => WarmStart::Original,
                    WarmStartArg::Failing => WarmStart::Failing,
                    WarmStartArg::Nearest => WarmStart::Nearest,
                },
                ..AttackSettings::default()
            },
            ..AttackSpec::default()
        })
    }
}

/// Runs `blindspot attack`; on an image folder also draws Fig 5 (`fig5.png`, `fig5.json`).
pub fn run(args: &AttackArgs) -> Result<()> {
    if let Some(t) = args.threads {
        tch::set_num_threads(t);
    }
    let device = blindspot::device::parse_device(&args.device)?;
    let spec = args.spec()?;
    let s: AttackSummary = match &args.data {
        Some(dir) => {
            let s = attack::folder::attack_folder(&args.model, dir, spec, &args.out, device)?;
            if s.successes > 0 {
                // Fig 5: the first (up to) 8 successes as original / difference ×10 / adversarial.
                let f = blindspot::report::fig5::fig5(
                    &args.out.join("adversarial.safetensors"),
                    &args.out.join("fig5.png"),
                    8,
                )?;
                blindspot::io::write_json(&args.out.join("fig5.json"), &f)?;
            }
            s
        }
        None => {
            let mnist = args
                .mnist_dir
                .clone()
                .unwrap_or_else(blindspot::data::mnist::default_dir);
            attack::run_mnist(&args.model, &spec, &args.out, device, &mnist)?
        }
    };
    println!(
        "{} on {} ({} examples): success {:.2}% ({} already adversarial), mean distortion {:.4}, {:.0} evaluations/image, {:.1} images/s -> {}",
        s.model,
        s.split,
        s.examples,
        100.0 * s.success_rate,
        s.already_adversarial,
        s.mean_distortion,
        s.evaluations_per_image,
        s.images_per_second,
        args.out.display()
    );
    if blindspot::optim::profile::enabled() {
        eprintln!(
            "time by phase (BLINDSPOT_PROFILE):\n{}",
            blindspot::optim::profile::report()
        );
    }
    Ok(())
}
