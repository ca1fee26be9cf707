//! `blindspot slurm`: writes and submits (or prints, `--dry-run`) the Slurm jobs of an experiment.

use anyhow::{Context, Result};
use blindspot::experiments::slurm::{slurm, Part, SlurmOptions};
use std::path::PathBuf;

/// `blindspot slurm`.
#[derive(clap::Args, Debug)]
pub struct SlurmArgs {
    /// The experiment file, e.g. experiments/paper.yaml.
    pub experiment: PathBuf,
    /// Print the scripts and the sbatch command lines (dependencies as `<stage>` placeholders); write
    /// and submit nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn part(p: &Part) -> String {
    match p {
        Part::Stage => "job".into(),
        Part::Chunks { chunks, of } => format!("array of {} chunk(s) of {of}", chunks.len()),
        Part::Merge => "merge".into(),
        Part::Report => "report".into(),
    }
}

/// Runs `blindspot slurm`.
pub fn run(a: &SlurmArgs) -> Result<()> {
    let exp = super::run::load(&a.experiment, None)?;
    let binary = std::env::current_exe().context("the path of this blindspot binary")?;
    let s = slurm(
        &exp,
        &SlurmOptions {
            experiment_file: a.experiment.clone(),
            binary,
            dry_run: a.dry_run,
        },
    )?;
    if s.dry_run {
        for j in &s.jobs {
            println!("### {}\n{}", j.script_path.display(), j.script);
            println!("$ {}\n", j.command.join(" "));
        }
    }
    let w = s
        .jobs
        .iter()
        .map(|j| j.label.len())
        .chain(s.not_submitted.iter().map(|(l, _)| l.len()))
        .max()
        .unwrap_or(5);
    for j in &s.jobs {
        let id = j
            .job_id
            .as_deref()
            .map(|i| format!("submitted as job {i}"))
            .unwrap_or_else(|| "would be submitted".into());
        println!("{:w$}  {}: {id}", j.label, part(&j.part));
    }
    for (l, why) in &s.not_submitted {
        println!("{l:w$}  {why}");
    }
    if !s.dry_run && !s.jobs.is_empty() {
        println!(
            "scripts and logs: {} (squeue --me; blindspot status {})",
            s.dir.display(),
            a.experiment.display()
        );
    }
    Ok(())
}
