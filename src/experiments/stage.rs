//! The one abstraction of a batch run: a [`Stage`] has a folder, the stages it reads, a fingerprint of its
//! configuration and inputs, and work that writes its outputs into its folder. [`run_stage`] is the only
//! code that decides whether a stage is skipped (finished with this fingerprint), resumed (partial work of
//! this fingerprint, through [`Checkpoint`]) or redone from an emptied folder.

use crate::config::Experiment;
use crate::data::MnistData;
use crate::results::checkpoint::{done_marker, Checkpoint, OnOther};
use crate::Result;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Device;

/// Bumped when a stage's outputs change meaning, so old results are recomputed.
pub(crate) const STAGE_VERSION: u32 = 1;

/// What every stage of a run may read: the experiment, its run folder, device and MNIST data.
pub(crate) struct Ctx<'a> {
    pub exp: &'a Experiment,
    pub run_dir: PathBuf,
    pub device: Device,
    pub data: &'a MnistData,
}

/// One stage of an experiment run.
pub(crate) trait Stage {
    /// Its label in logs, the report's stage times and its done-marker, e.g. `attacks/N100-100-10`.
    fn label(&self) -> String;
    /// Its folder.
    fn dir(&self, run_dir: &Path) -> PathBuf;
    /// The folders of the stages whose outputs it reads: it runs once they are finished.
    fn needs(&self, exp: &Experiment, run_dir: &Path) -> Vec<PathBuf>;
    /// The JSON whose SHA-256 is its fingerprint: configuration, seed, device and its inputs.
    fn fingerprint(&self, ctx: &Ctx) -> Result<serde_json::Value>;
    /// Does the work, writing its outputs into `dir` (which exists; it may hold partial work of the same
    /// fingerprint to resume).
    fn run(&self, ctx: &Ctx, dir: &Path) -> Result<()>;
}

/// What a run did: stage timings (label, seconds, skipped) and the stages it ran or skipped.
#[derive(Debug, Default)]
pub(crate) struct RunLog {
    pub timings: Vec<(String, f64, bool)>,
    pub ran: Vec<String>,
    pub skipped: Vec<String>,
}

/// Whether a stage's folder is finished (its done-marker exists).
pub(crate) fn is_finished(dir: &Path) -> bool {
    done_marker(dir).is_some()
}

/// Runs one resumable stage: skipped when its folder's done-marker has its fingerprint (unless `force`),
/// else its work and the marker; a folder left by another fingerprint is emptied first, one left by an
/// interrupted run of the same fingerprint is resumed. Records what happened in `runlog`.
pub(crate) fn run_stage(
    stage: &dyn Stage,
    ctx: &Ctx,
    force: bool,
    runlog: &mut RunLog,
) -> Result<bool> {
    let label = stage.label();
    let dir = stage.dir(&ctx.run_dir);
    let fp = crate::fingerprint::of_json(&stage.fingerprint(ctx)?);
    if !force {
        if let Some(m) = done_marker(&dir).filter(|m| m.fingerprint == fp) {
            log::info!("{label}: up to date, skipped");
            runlog.timings.push((label.clone(), m.seconds, true));
            runlog.skipped.push(label);
            return Ok(false);
        }
    }
    // `.started.json` holds the fingerprint the folder's partial work belongs to.
    let identity = serde_json::json!({"stage": label, "fingerprint": fp});
    let ckpt = Checkpoint::open(&dir, ".started.json", &identity, OnOther::Clear, force)?;
    log::info!("{label}: running");
    let t = Instant::now();
    stage.run(ctx, ckpt.dir())?;
    let secs = t.elapsed().as_secs_f64();
    ckpt.finish(&label, &fp, secs)?;
    runlog.timings.push((label.clone(), secs, false));
    runlog.ran.push(label);
    Ok(true)
}

/// The folder of a model of the experiment (which an analysis of it needs), none for a model path.
pub(crate) fn model_needs(exp: &Experiment, run_dir: &Path, model: &str) -> Vec<PathBuf> {
    match exp.model(model) {
        Some(m) => vec![run_dir.join("models").join(&m.name)],
        None => Vec::new(),
    }
}

/// Fingerprint of a model reference: its stage's fingerprint for zoo models of the run, else the file's
/// SHA-256.
pub(crate) fn model_fingerprint(path: &Path) -> String {
    if let Some(m) = done_marker(path) {
        return m.fingerprint;
    }
    if path.is_file() {
        return crate::fingerprint::sha256_file(path).unwrap_or_default();
    }
    crate::fingerprint::sha256_file(&path.join("weights.safetensors")).unwrap_or_default()
}
