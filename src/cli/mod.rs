//! The command line: clap `Args` per command, their conversion into the library's typed specs, and the
//! exit codes. No library module depends on clap. Paper ↔ command: `train`/`eval`/`run` (§4.2 zoo, Tables
//! 1, 3), `attack` (§4.1), `transfer` (Tables 2, 4), `units` (§3), `spectral` (§4.3), `bench`
//! (docs/benchmarks.md).

use anyhow::{bail, Context, Result};
use blindspot::config::Experiment;
use blindspot::data::MnistData;
use blindspot::experiments;
use blindspot::models::zoo::ZooModel;
use clap::{Parser, Subcommand};

mod attack;
mod run;
mod slurm;
mod transfer;
use std::path::PathBuf;

mod spectral;
mod units;
mod verify;

#[derive(Parser)]
#[command(
    name = "blindspot",
    version,
    about = "Reproduce and apply Szegedy et al., Intriguing properties of neural networks (ICLR 2014)",
    long_about = "blindspot reproduces every experiment of Szegedy et al. (ICLR 2014) at full scale: the MNIST model zoo \
                  (Tables 1, 3), the box-constrained L-BFGS attack, spectral frame bounds and units vs random directions, \
                  and runs them on your own models. Start with `blindspot run experiments/quick.yaml`."
)]
struct Cli {
    /// Log level: error, warn, info, debug (also RUST_LOG).
    #[arg(long, global = true, default_value = "info")]
    log: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run an experiment file (YAML): train its models, run its analyses, write the report. Resumable:
    /// finished stages whose configuration and inputs did not change are skipped; each stage is locked
    /// while it runs, so several processes can share one run folder.
    Run(run::RunArgs),
    /// The state of every stage of an experiment: done, stale (and why), running, waiting, partial.
    Status(run::StatusArgs),
    /// Rewrite an experiment's report from its finished stages.
    Report(run::ReportArgs),
    /// Run an experiment on a Slurm cluster: one sbatch script per stage in runs/<name>/slurm/, submitted
    /// with afterok dependencies on the stages each reads, large attack stages as job arrays over their
    /// chunks, then a report job. Resources from the experiment's `slurm:` section (docs/slurm.md).
    Slurm(slurm::SlurmArgs),
    /// Train one model of an experiment file and save it (model.json + weights.safetensors).
    Train {
        /// The experiment file that defines the model, e.g. experiments/paper.yaml.
        experiment: PathBuf,
        /// Name of the model in that file (e.g. N100-100-10).
        #[arg(long)]
        model: String,
        /// Output folder (default: runs/<experiment>/models/<model>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Seed (default: the model's, else the experiment's).
        #[arg(long)]
        seed: Option<u64>,
        /// Device: cpu, cuda, cuda:N (default: the experiment's).
        #[arg(long)]
        device: Option<String>,
    },
    /// Evaluate a saved model's error on an MNIST set.
    Eval {
        /// Model folder (holding model.json and weights.safetensors).
        #[arg(long)]
        model: PathBuf,
        /// train, test, p1 or p2 (the halves of Table 3).
        #[arg(long, default_value = "test")]
        split: String,
        /// Seed of the P1/P2 split (default: the one the model was trained with, else 2014).
        #[arg(long)]
        split_seed: Option<u64>,
        /// MNIST folder (default: the vendored assets/mnist).
        #[arg(long)]
        mnist_dir: Option<PathBuf>,
        /// Device: cpu, cuda, cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Units vs random directions (paper §3, Figs 1–4): the top images of a data set for units and random
    /// directions of a layer, as CSV, figures and label-purity statistics.
    Units(units::UnitsArgs),
    /// The paper's attack (§4.1): box-constrained L-BFGS on c·‖r‖ + loss(x + r, target) with a per-example
    /// search over c, batched; every adversarial re-verified. Writes adversarial.safetensors, a CSV row per
    /// example and summary.json.
    Attack(attack::AttackArgs),
    /// Spectral analysis (paper §4.3, Table 5): exact lower and upper frame bounds of every linear layer of a
    /// zoo model or a TorchScript conv net (AlexNet layout needs no spec), pooling factors, the product
    /// bound and an empirical Lipschitz ratio.
    Spectral(spectral::SpectralArgs),
    /// Cross-model generalisation (paper §4.2, Tables 2 and 4): the error of several models on the
    /// adversarials made for each of them (attack output folders), plus Gaussian-noise and amplified rows.
    Transfer(transfer::TransferArgs),
    /// Re-evaluate an attack's stored adversarials on their model another way (float64, another batch size,
    /// threads or device): how many stay adversarial, and their margins.
    Verify(verify::VerifyArgs),
    /// Benchmarks (results go to docs/benchmarks.md by hand, with machine and date).
    Bench {
        #[command(subcommand)]
        which: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Forward+backward of N100-100-10 on the full 60,000-image batch, ours vs the same ops in PyTorch,
    /// interleaved in one run.
    FwdBwd {
        /// Timed repetitions per round.
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Rounds (ours, then PyTorch, alternating).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Python with torch for the peer (default: .venv/bin/python).
        #[arg(long)]
        python: Option<PathBuf>,
    },
    /// One timed streaming units pass (§3) of a layer against the forward passes alone; prints JSON
    /// (its peer: scripts/bench_units_torch.py; scripts/gpu_validate.sh runs both).
    Units {
        /// A zoo model folder or a TorchScript file (.pt).
        #[arg(long)]
        model: PathBuf,
        /// mnist-test, mnist-train, or an image folder.
        #[arg(long)]
        data: String,
        #[arg(long)]
        layer: String,
        /// Units drawn at random from the layer.
        #[arg(long, default_value_t = 100)]
        units: usize,
        /// Random directions.
        #[arg(long, default_value_t = 100)]
        random: usize,
        #[arg(long, default_value_t = 9)]
        top: usize,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// cpu, cuda, cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

/// Parses the command line, runs it and returns the process exit code (clap exits by itself with 2 on a
/// usage error).
pub fn main() -> i32 {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(&cli.log))
        .format_timestamp_secs()
        .init();
    match dispatch(cli.cmd) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Run(a) => run::run(a)?,
        Cmd::Status(a) => run::status(a)?,
        Cmd::Report(a) => run::report(a)?,
        Cmd::Slurm(a) => slurm::run(&a)?,
        Cmd::Train {
            experiment,
            model,
            out,
            seed,
            device,
        } => {
            let mut exp = Experiment::load(&experiment)?;
            if let Some(d) = device {
                exp.device = d;
            }
            let dev = blindspot::device::parse_device(&exp.device)?;
            let Some(spec) = exp.model(&model).cloned() else {
                let names: Vec<_> = exp.models.iter().map(|m| m.name.as_str()).collect();
                bail!(
                    "{} has no model `{model}`; it defines: {}",
                    experiment.display(),
                    names.join(", ")
                );
            };
            let out = out.unwrap_or_else(|| exp.run_dir().join("models").join(&spec.name));
            let data = MnistData::load(&exp.data.mnist_dir(), exp.data.split_seed)?;
            let seed = seed.or(spec.seed).unwrap_or(exp.seed);
            let (_, e) = experiments::train_and_save(&spec, &data, seed, dev, &out)?;
            println!(
                "{}: train error {:.2}%, test error {:.2}%, P1 {:.2}%, P2 {:.2}% -> {}",
                spec.name,
                100.0 * e.train,
                100.0 * e.test,
                100.0 * e.p1,
                100.0 * e.p2,
                out.display()
            );
        }
        Cmd::Eval {
            model,
            split,
            split_seed,
            mnist_dir,
            device,
        } => {
            let dev = blindspot::device::parse_device(&device)?;
            let m = ZooModel::load(&model, dev)?;
            let seed = split_seed
                .or_else(|| m.record.get("split_seed").and_then(|v| v.as_u64()))
                .unwrap_or(2014);
            let dir = mnist_dir.unwrap_or_else(blindspot::data::mnist::default_dir);
            let data = MnistData::load(&dir, seed)?;
            let set = data.set(&split)?;
            let err = blindspot::train::error_rate(&m, &set.images, &set.labels)?;
            println!(
                "{} on {split} ({} images): error {:.4}% ({} wrong)",
                m.name,
                set.len(),
                100.0 * err,
                (err * set.len() as f64).round() as i64
            );
        }
        Cmd::Units(a) => units::run(&a)?,
        Cmd::Transfer(a) => transfer::run(&a)?,
        Cmd::Verify(a) => verify::run(&a)?,
        Cmd::Attack(a) => attack::run(&a)?,
        Cmd::Spectral(a) => spectral::run(&a)?,
        Cmd::Bench { which } => match which {
            BenchCmd::FwdBwd {
                reps,
                rounds,
                python,
            } => {
                let python = python.unwrap_or_else(|| PathBuf::from(".venv/bin/python"));
                blindspot_bench_fwd_bwd(reps, rounds, &python).context("bench fwd-bwd")?;
            }
            BenchCmd::Units {
                model,
                data,
                layer,
                units,
                random,
                top,
                batch,
                device,
            } => {
                let dev = blindspot::device::parse_device(&device)?;
                let spec = blindspot::units::UnitsSpec {
                    data,
                    units: blindspot::units::Count::N(units),
                    random,
                    top,
                    batch,
                    ..blindspot::units::UnitsSpec::new(layer)
                };
                let r = blindspot::bench::units::bench_path(&model, &spec, dev)?;
                println!("{}", serde_json::to_string(&r)?);
            }
        },
    }
    Ok(())
}

fn blindspot_bench_fwd_bwd(reps: usize, rounds: usize, python: &std::path::Path) -> Result<()> {
    let r = blindspot::bench::fwd_bwd::fwd_bwd(reps, rounds, python)?;
    println!("{r}");
    Ok(())
}
