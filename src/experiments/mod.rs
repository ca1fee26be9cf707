//! Running experiment files (YAML → typed specs → stages → result files → report): each stage reads its
//! inputs from files and writes its outputs atomically into `runs/<experiment>/<stage>/`, finishing with
//! a `.done.json` marker that records a fingerprint of its configuration and inputs. Re-running skips
//! stages whose fingerprint is unchanged; an interrupted run redoes only unfinished stages; `--shard i/n`
//! splits the stages over machines (round robin over the plan).
//!
//! - [`stage`]: the one [`stage::Stage`] abstraction and the runner of one stage.
//! - one file per stage kind: [`models`], [`attacks`], [`fig7`], [`transfer`], [`units`], [`spectral`].
//!
//! The plan ([`plan`]) lists every stage of an experiment in order — models first, then units, attacks,
//! Fig 7, spectral and transfer — and serves the runner, the completeness check and the report alike.

mod attacks;
mod fig7;
mod models;
mod spectral;
mod stage;
mod transfer;
mod units;

pub use models::{evaluate_all, train_and_save};

use crate::config::Experiment;
use crate::data::MnistData;
use crate::{Error, Result};
use stage::{is_finished, run_stage, Ctx, RunLog, Stage};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options of `blindspot run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Redo every stage even when its outputs are up to date.
    pub force: bool,
    /// `(i, n)`: run only the stages at positions ≡ i (mod n) of the plan; the report waits for all.
    pub shard: Option<(usize, usize)>,
}

/// What a run did, for the command line.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub report: Option<PathBuf>,
    pub trained: Vec<String>,
    pub skipped: Vec<String>,
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

/// Writes the resolved configuration, loads and records the data.
fn prepare(exp: &Experiment, run_dir: &Path, runlog: &mut RunLog) -> Result<MnistData> {
    std::fs::create_dir_all(run_dir).map_err(|e| Error::io(run_dir, e))?;
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

/// Runs an experiment: data, every stage of the plan whose inputs are ready (this shard's), the report
/// once every stage is finished.
pub fn run(exp: &Experiment, opts: &RunOptions) -> Result<RunSummary> {
    let device = crate::device::parse_device(&exp.device)?;
    let run_dir = exp.run_dir();
    let mut runlog = RunLog::default();
    let data = prepare(exp, &run_dir, &mut runlog)?;
    let ctx = Ctx {
        exp,
        run_dir: run_dir.clone(),
        device,
        data: &data,
    };
    let stages = plan(exp);
    for (i, stage) in stages.iter().enumerate() {
        if opts.shard.is_some_and(|(k, n)| i % n != k) {
            continue;
        }
        if !stage.needs(exp, &run_dir).iter().all(|d| is_finished(d)) {
            continue;
        }
        run_stage(stage.as_ref(), &ctx, opts.force, &mut runlog)?;
    }
    let all_done = stages.iter().all(|s| is_finished(&s.dir(&run_dir)));
    let report = if all_done {
        Some(crate::report::run::write_report(&report_inputs(
            exp,
            &run_dir,
            runlog.timings,
        ))?)
    } else {
        log::info!("not all stages are finished (sharded run?): the report is written by the run that finishes last");
        None
    };
    Ok(RunSummary {
        run_dir,
        report,
        trained: runlog.ran,
        skipped: runlog.skipped,
    })
}

/// A folder-name-safe version of a model or layer name (a path's file stem for model paths).
pub(crate) fn sanitize(s: &str) -> String {
    let base = std::path::Path::new(s)
        .file_stem()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = if s.contains('/') { base } else { s.to_string() };
    crate::results::folder_name(&base)
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
            })
            .collect(),
        attacks: exp
            .attacks
            .iter()
            .map(|a| entry(&a.model, "", attacks::attack_dir(rel, a)))
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
