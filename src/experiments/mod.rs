//! Running experiment files (YAML → typed specs → stages → result files → report): each stage reads its
//! inputs from files and writes its outputs atomically into `runs/<experiment>/<stage>/`, finishing with
//! a `.done.json` marker that records a fingerprint of its configuration and inputs. Re-running skips
//! stages whose fingerprint is unchanged; an interrupted run redoes only unfinished stages; each stage
//! holds a lock while it runs, so several processes (or Slurm jobs) can share one run folder.
//!
//! - [`stage`]: the one [`stage::Stage`] abstraction and the runner of one stage.
//! - one file per stage kind: [`models`], [`attacks`], [`fig7`], [`transfer`], [`units`], [`spectral`].
//!
//! The plan ([`plan`]) lists every stage of an experiment in order — models first, then units, attacks,
//! Fig 7, spectral and transfer — and serves the runner, the completeness check and the report alike.

mod attacks;
mod chunks;
mod error;
mod fig7;
pub mod lock;
mod models;
mod paper;
pub mod slurm;
mod spectral;
mod stage;
mod status;
mod transfer;
mod units;

pub use chunks::ChunkOutcome;
pub use error::RunError;
pub use models::{evaluate_all, train_and_save};
pub use status::{status, StageStatus, State};

use crate::config::Experiment;
use crate::data::MnistData;
use crate::{Error, Result};
use stage::{run_stage, Ctx, Outcome, RunLog, Stage};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options of `blindspot run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Redo every stage even when its outputs are up to date.
    pub force: bool,
}

/// What a run did, for the command line.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub report: Option<PathBuf>,
    pub trained: Vec<String>,
    pub skipped: Vec<String>,
    /// Stages another process was running (skipped here).
    pub busy: Vec<String>,
}

/// Every stage of `exp`, in the order they run.
fn plan(exp: &Experiment) -> Vec<Box<dyn Stage + '_>> {
    let mut v: Vec<Box<dyn Stage + '_>> = Vec::new();
    v.extend(
        exp.models
            .iter()
            .map(|spec| Box::new(models::ModelStage { spec }) as Box<dyn Stage>),
    );
    v.extend(
        exp.units
            .iter()
            .map(|stage| Box::new(units::UnitsRun { stage }) as Box<dyn Stage>),
    );
    v.extend(
        exp.attacks
            .iter()
            .map(|stage| Box::new(attacks::AttackStageRun { stage }) as Box<dyn Stage>),
    );
    v.extend(
        exp.fig7
            .iter()
            .map(|stage| Box::new(fig7::Fig7Run { stage }) as Box<dyn Stage>),
    );
    v.extend(
        exp.spectral
            .iter()
            .map(|stage| Box::new(spectral::SpectralRun { stage }) as Box<dyn Stage>),
    );
    v.extend(
        exp.transfer
            .iter()
            .map(|t| Box::new(transfer::TransferRun::new(exp, t)) as Box<dyn Stage>),
    );
    v
}

/// The folder of every stage of `exp` (all shards).
pub fn stage_dirs(exp: &Experiment, run_dir: &Path) -> Vec<PathBuf> {
    plan(exp).iter().map(|s| s.dir(run_dir)).collect()
}

/// Refuses a run folder made by an earlier version (no `blindspot-run.json`, or another format) and
/// marks a new one; a folder of another experiment is refused too.
fn claim_run_dir(exp: &Experiment, run_dir: &Path) -> Result<()> {
    use crate::results::checkpoint::RUN_FORMAT;
    let marker = run_dir.join(RUN_FILE);
    let expected = RUN_FORMAT.to_string();
    if let Ok(v) = crate::io::read_json::<serde_json::Value>(&marker) {
        let found = v["format"].as_str().unwrap_or("").to_string();
        if found != expected {
            return Err(RunError::OldRunFolder {
                dir: run_dir.to_path_buf(),
                found: format!("format `{found}`"),
                expected,
            }
            .into());
        }
        let name = v["experiment"].as_str().unwrap_or("");
        if name != exp.name {
            return Err(RunError::OtherExperiment {
                dir: run_dir.to_path_buf(),
                found: name.to_string(),
                expected: exp.name.clone(),
            }
            .into());
        }
        return Ok(());
    }
    let has_stages = ["models", "attacks", "units", "spectral", "transfer", "fig7"]
        .iter()
        .any(|d| run_dir.join(d).exists());
    if has_stages {
        return Err(RunError::OldRunFolder {
            dir: run_dir.to_path_buf(),
            found: format!("stage folders but no {RUN_FILE}"),
            expected,
        }
        .into());
    }
    std::fs::create_dir_all(run_dir).map_err(|e| Error::io(run_dir, e))?;
    crate::io::write_json(
        &marker,
        &serde_json::json!({"format": RUN_FORMAT, "experiment": exp.name}),
    )
}

/// The file that marks a run folder and its format.
pub const RUN_FILE: &str = "blindspot-run.json";

/// Writes the resolved configuration, loads and records the data.
fn prepare(exp: &Experiment, run_dir: &Path, runlog: &mut RunLog) -> Result<MnistData> {
    claim_run_dir(exp, run_dir)?;
    let resolved = serde_norway::to_string(exp).map_err(|e| {
        Error::format(
            run_dir.join("config.resolved.yaml"),
            format!("serialising: {e}"),
        )
    })?;
    crate::io::write_atomic(&run_dir.join("config.resolved.yaml"), resolved.as_bytes())?;
    let t0 = Instant::now();
    let data = MnistData::load(&exp.data.mnist_dir(), exp.data.split_seed)?;
    crate::io::write_json(&run_dir.join("data/split.json"), &data.split)?;
    crate::io::write_json(&run_dir.join("data/data.json"), &data.fingerprint_json())?;
    runlog.timings.push((
        "data (load + verify MNIST)".to_string(),
        t0.elapsed().as_secs_f64(),
        false,
    ));
    log::info!(
        "data loaded and verified in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(data)
}

/// Whether every stage `labels` names is finished with its current fingerprint (`current` holds what
/// is known so far; other stages are looked up).
fn needs_met(
    needs: &[String],
    stages: &[Box<dyn Stage + '_>],
    ctx: &Ctx,
    current: &mut HashMap<String, bool>,
) -> Result<bool> {
    for n in needs {
        let ok = match current.get(n) {
            Some(v) => *v,
            None => {
                let Some(s) = stages.iter().find(|s| &s.label() == n) else {
                    return Ok(false);
                };
                let ok = needs_met(&s.needs(ctx.exp), stages, ctx, current)?
                    && stage::current_marker(s.as_ref(), ctx)?.is_some();
                current.insert(n.clone(), ok);
                ok
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Runs an experiment: data, every stage of the plan whose inputs are ready, the report once every stage
/// is finished with its current fingerprint. Stages locked by another process are skipped (and the report
/// waits for them).
pub fn run(exp: &Experiment, opts: &RunOptions) -> Result<RunSummary> {
    let device = crate::device::parse_device(&exp.device)?;
    let run_dir = exp.run_dir();
    let stages = plan(exp);
    check_plan(&stages, &run_dir)?;
    let mut runlog = RunLog::default();
    let data = prepare(exp, &run_dir, &mut runlog)?;
    let ctx = Ctx::new(exp, device, &data);
    let mut current: HashMap<String, bool> = HashMap::new();
    let mut busy = Vec::new();
    for stage in &stages {
        let ok = needs_met(&stage.needs(exp), &stages, &ctx, &mut current)?
            && match run_stage(stage.as_ref(), &ctx, opts.force, &mut runlog)? {
                Outcome::Ran | Outcome::UpToDate => true,
                Outcome::Busy => {
                    busy.push(stage.label());
                    false
                }
            };
        current.insert(stage.label(), ok);
    }
    let all_done = stages
        .iter()
        .all(|s| current.get(&s.label()).copied().unwrap_or(false));
    let report = if all_done {
        Some(crate::report::run::write_report(&report_inputs(
            exp,
            &run_dir,
            runlog.timings,
        ))?)
    } else {
        log::info!("not every stage is finished with its current inputs (another process runs some?): the report is written by the run that finishes them");
        None
    };
    Ok(RunSummary {
        run_dir,
        report,
        trained: runlog.ran,
        skipped: runlog.skipped,
        busy,
    })
}

/// Runs one stage of the plan (for a scheduler job): its needs must be finished with their current
/// inputs. Returns whether it ran (false: up to date or run by another process).
pub fn run_one(exp: &Experiment, label: &str, force: bool) -> Result<bool> {
    with_ready_stage(exp, label, |stage, ctx| {
        let mut runlog = RunLog::default();
        Ok(run_stage(stage, ctx, force, &mut runlog)? == Outcome::Ran)
    })
}

/// Computes chunk `chunk` of one stage (a Slurm array task; [`chunks`] has the rules that let the
/// tasks of one stage run at once): its needs must be finished with their current inputs. The stage's
/// own run ([`run_one`]) then merges the chunks.
pub fn run_chunk(exp: &Experiment, label: &str, chunk: usize) -> Result<ChunkOutcome> {
    with_ready_stage(exp, label, |stage, ctx| {
        chunks::run_chunk(stage, ctx, chunk)
    })
}

/// Finds stage `label`, prepares the run folder and checks that the stage's needs are finished with their
/// current inputs, then calls `f`.
fn with_ready_stage<T>(
    exp: &Experiment,
    label: &str,
    f: impl FnOnce(&dyn Stage, &Ctx) -> Result<T>,
) -> Result<T> {
    let device = crate::device::parse_device(&exp.device)?;
    let run_dir = exp.run_dir();
    let stages = plan(exp);
    check_plan(&stages, &run_dir)?;
    let Some(stage) = stages.iter().find(|s| s.label() == label) else {
        return Err(RunError::UnknownStage {
            label: label.to_string(),
            known: stages
                .iter()
                .map(|s| s.label())
                .collect::<Vec<_>>()
                .join(", "),
        }
        .into());
    };
    let mut runlog = RunLog::default();
    let data = prepare(exp, &run_dir, &mut runlog)?;
    let ctx = Ctx::new(exp, device, &data);
    let mut current = HashMap::new();
    for n in stage.needs(exp) {
        if !needs_met(std::slice::from_ref(&n), &stages, &ctx, &mut current)? {
            return Err(RunError::NotReady {
                label: label.to_string(),
                missing: n,
            }
            .into());
        }
    }
    f(stage.as_ref(), &ctx)
}

/// Writes the report of a run whose stages are all finished with their current inputs.
pub fn report(exp: &Experiment) -> Result<PathBuf> {
    let device = crate::device::parse_device(&exp.device)?;
    let run_dir = exp.run_dir();
    let stages = plan(exp);
    let mut runlog = RunLog::default();
    let data = prepare(exp, &run_dir, &mut runlog)?;
    let ctx = Ctx::new(exp, device, &data);
    for s in &stages {
        match stage::current_marker(s.as_ref(), &ctx)? {
            Some(m) => runlog.timings.push((s.label(), m.seconds, true)),
            None => {
                return Err(RunError::NotReady {
                    label: "report".into(),
                    missing: s.label(),
                }
                .into())
            }
        }
    }
    crate::report::run::write_report(&report_inputs(exp, &run_dir, runlog.timings))
}

/// Checks the plan before any work starts: every stage folder is a valid name strictly inside the run
/// folder, and no two stages share one (the error names both).
fn check_plan(stages: &[Box<dyn Stage + '_>], run_dir: &Path) -> Result<()> {
    let mut seen: std::collections::HashMap<PathBuf, String> = std::collections::HashMap::new();
    for s in stages {
        let dir = s.dir(run_dir);
        crate::results::paths::check_inside(run_dir, &dir)?;
        if let Some(last) = dir.file_name() {
            crate::results::paths::check_name(
                &format!("the folder of stage {}", s.label()),
                &last.to_string_lossy(),
            )?;
        }
        if let Some(other) = seen.insert(dir.clone(), s.label()) {
            return Err(Error::Run(RunError::SameFolder {
                first: other,
                second: s.label(),
                dir,
            }));
        }
    }
    Ok(())
}

/// What the report needs to know about the run besides its files.
fn report_inputs(
    exp: &Experiment,
    run_dir: &Path,
    timings: Vec<(String, f64, bool)>,
) -> crate::report::run::ReportInputs {
    use crate::report::run::{ModelEntry, ReportInputs, StageEntry};
    let rel = Path::new("");
    let entry = |model: &str, detail: &str, dir: PathBuf| StageEntry {
        model: model.to_string(),
        detail: detail.to_string(),
        dir,
        paper_protocol: false,
    };
    ReportInputs {
        name: exp.name.clone(),
        run_dir: run_dir.to_path_buf(),
        split_seed: exp.data.split_seed,
        device: exp.device.clone(),
        models: exp
            .models
            .iter()
            .map(|m| ModelEntry {
                name: m.name.clone(),
                trained_on: m.train_on.name().to_string(),
                paper_protocol: paper::model_follows_paper(exp, &m.name),
            })
            .collect(),
        attacks: exp
            .attacks
            .iter()
            .map(|a| StageEntry {
                paper_protocol: paper::attack_follows_paper(exp, a),
                ..entry(&a.model, &a.name(), attacks::attack_dir(rel, a))
            })
            .collect(),
        transfer: exp
            .transfer
            .iter()
            .map(|t| entry(&t.name, "", transfer::transfer_dir(rel, t)))
            .collect(),
        fig7: exp.fig7.as_ref().map(|_| PathBuf::from("fig7")),
        units: exp
            .units
            .iter()
            .map(|u| entry(&u.model, &u.layer, units::units_dir(rel, u)))
            .collect(),
        spectral: exp
            .spectral
            .iter()
            .map(|sp| entry(&sp.model, "", spectral::spectral_dir(rel, sp)))
            .collect(),
        timings,
    }
}
