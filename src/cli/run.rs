//! `blindspot run`, `blindspot status` and `blindspot report`: an experiment file's stages in one
//! process (or one stage, for a scheduler job), their state, and the report.

use anyhow::Result;
use blindspot::config::Experiment;
use blindspot::experiments::{self, ChunkOutcome, RunOptions, State};
use std::path::{Path, PathBuf};

/// `blindspot run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The experiment file, e.g. experiments/quick.yaml.
    pub experiment: PathBuf,
    /// Redo every stage even if its outputs are up to date.
    #[arg(long)]
    pub force: bool,
    /// Run only this stage (e.g. `attacks/N100-100-10`, see `blindspot status`); its inputs must be
    /// finished. For scheduler jobs (`blindspot slurm`).
    #[arg(long)]
    pub stage: Option<String>,
    /// With --stage: compute only this chunk of an attack stage (a Slurm array task); the stage's own
    /// run (`--stage` alone) then merges the chunks.
    #[arg(long, requires = "stage", conflicts_with = "force")]
    pub chunk: Option<usize>,
    /// Override the experiment's device (cpu, cuda, cuda:N).
    #[arg(long)]
    pub device: Option<String>,
}

/// Loads an experiment file, with the device overridden.
pub fn load(path: &Path, device: Option<String>) -> Result<Experiment> {
    let mut exp = Experiment::load(path)?;
    if let Some(d) = device {
        exp.device = d;
        exp.validate(&path.display().to_string())?;
    }
    Ok(exp)
}

/// Runs `blindspot run`.
pub fn run(a: RunArgs) -> Result<()> {
    let exp = load(&a.experiment, a.device)?;
    if let (Some(label), Some(chunk)) = (&a.stage, a.chunk) {
        let what = match experiments::run_chunk(&exp, label, chunk)? {
            ChunkOutcome::Ran => "computed".to_string(),
            ChunkOutcome::Present => "already there".to_string(),
            ChunkOutcome::UpToDate => "the stage is up to date".to_string(),
            ChunkOutcome::Skipped(why) => format!("skipped: {why}"),
        };
        println!("{label} chunk {chunk}: {what}");
        return Ok(());
    }
    if let Some(label) = &a.stage {
        let ran = experiments::run_one(&exp, label, a.force)?;
        println!(
            "{label}: {}",
            if ran {
                "ran"
            } else {
                "up to date (or run by another process)"
            }
        );
        return Ok(());
    }
    let s = experiments::run(&exp, &RunOptions { force: a.force })?;
    println!("run folder: {}", s.run_dir.display());
    println!(
        "trained: {} | up to date: {}{}",
        s.trained.len(),
        s.skipped.len(),
        if s.busy.is_empty() {
            String::new()
        } else {
            format!(" | run by other processes: {}", s.busy.join(", "))
        }
    );
    match s.report {
        Some(r) => println!("report: {}", r.display()),
        None => println!("report: not yet (stages still running elsewhere)"),
    }
    Ok(())
}

/// `blindspot status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The experiment file.
    pub experiment: PathBuf,
    /// Print JSON (one object per stage) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `blindspot status`: one line per stage; exit code 0 whatever the states.
pub fn status(a: StatusArgs) -> Result<()> {
    let exp = load(&a.experiment, None)?;
    let st = experiments::status(&exp)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(());
    }
    let w = st.iter().map(|s| s.label.len()).max().unwrap_or(5).max(5);
    for s in &st {
        let state = match s.state {
            State::Done => "done",
            State::Stale => "stale",
            State::Running => "running",
            State::Waiting => "waiting",
            State::Partial => "partial",
            State::NotStarted => "not started",
        };
        let fp = s.fingerprint.as_deref().map(|f| &f[..12]).unwrap_or("-");
        println!("{:w$}  {state:11}  {fp:12}  {}", s.label, s.detail);
    }
    Ok(())
}

/// `blindspot report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The experiment file.
    pub experiment: PathBuf,
}

/// Runs `blindspot report`: rewrites report.md from the finished stages' files.
pub fn report(a: ReportArgs) -> Result<()> {
    let exp = load(&a.experiment, None)?;
    let path = experiments::report(&exp)?;
    println!("report: {}", path.display());
    Ok(())
}
