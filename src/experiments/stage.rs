//! The one abstraction of a batch run: a [`Stage`] has a folder, the stages it reads, a fingerprint of its
//! configuration and of the *content* of every file it reads, and work that writes its outputs into its
//! folder. [`run_stage`] is the only code that decides whether a stage is skipped (finished with its
//! current fingerprint), resumed (partial work of this fingerprint, through
//! [`crate::results::checkpoint::Checkpoint`]) or redone from an emptied folder, and it holds the stage's
//! lock ([`super::lock`]) while it works.

use super::lock::{Acquired, StageLock};
use crate::config::Experiment;
use crate::data::MnistData;
use crate::results::checkpoint::{done_marker, DoneMarker, Provenance, RUN_FORMAT};
use crate::{Error, Result};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Device;

/// Bumped when a stage's outputs change meaning, so old results are recomputed.
pub(crate) const STAGE_VERSION: u32 = 2;

/// What every stage of a run may read: the experiment, its run folder, device and MNIST data, and a
/// memo of file hashes (each file is hashed once per run).
pub(crate) struct Ctx<'a> {
    pub exp: &'a Experiment,
    pub run_dir: PathBuf,
    pub device: Device,
    pub data: &'a MnistData,
    hashes: RefCell<HashMap<PathBuf, Hashed>>,
}

/// A memoised file hash: the size and modification time it was taken at, and the SHA-256.
type Hashed = (u64, Option<std::time::SystemTime>, String);

impl<'a> Ctx<'a> {
    pub(crate) fn new(exp: &'a Experiment, device: Device, data: &'a MnistData) -> Self {
        Ctx {
            exp,
            run_dir: exp.run_dir(),
            device,
            data,
            hashes: RefCell::new(HashMap::new()),
        }
    }

    /// SHA-256 of a file's content (memoised by path, size and modification time).
    pub(crate) fn file_sha(&self, path: &Path) -> Result<String> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let key = (meta.len(), meta.modified().ok());
        if let Some((len, mtime, sha)) = self.hashes.borrow().get(path) {
            if (*len, *mtime) == key {
                return Ok(sha.clone());
            }
        }
        let sha = crate::fingerprint::sha256_file(path)?;
        self.hashes
            .borrow_mut()
            .insert(path.to_path_buf(), (key.0, key.1, sha.clone()));
        Ok(sha)
    }

    /// What a stage reading a model depends on: for a zoo folder the content of its weights and its
    /// architecture (not its training record, whose timings change from run to run); for a TorchScript
    /// file its content.
    pub(crate) fn model_input(&self, model: &str) -> Result<Value> {
        let path = self.exp.model_path(model);
        if path.is_dir() {
            let rec: Value = crate::io::read_json(&path.join("model.json"))?;
            Ok(json!({
                "weights": self.file_sha(&path.join("weights.safetensors"))?,
                "architecture": rec["architecture"],
            }))
        } else {
            Ok(json!({ "file": self.file_sha(&path)? }))
        }
    }

    /// What a stage reading an image folder depends on, by a rule cheaper than hashing every image: the
    /// relative path, size and modification time of every file below it (sorted). Replacing an image
    /// changes its size or time; `touch` alone also reruns the stage.
    pub(crate) fn folder_input(&self, root: &Path) -> Result<Value> {
        let mut files = Vec::new();
        let mut seen = std::collections::HashSet::new();
        list_files(root, root, &mut files, &mut seen)?;
        files.sort();
        Ok(
            json!({ "folder_listing": crate::fingerprint::of_json(&json!(files)), "files": files.len() }),
        )
    }

    /// The MNIST files' content and the P1/P2 split seed.
    pub(crate) fn data_input(&self) -> Value {
        self.data.fingerprint_json()
    }

    /// What every stage's fingerprint holds: the stage format, the seed and the device.
    pub(crate) fn common(&self, seed: u64) -> Value {
        json!({ "v": STAGE_VERSION, "seed": seed, "device": self.exp.device })
    }
}

/// One stage of an experiment run.
pub(crate) trait Stage {
    /// Its label in logs, the report's stage times and its done-marker, e.g. `attacks/N100-100-10`.
    fn label(&self) -> String;
    /// Its folder.
    fn dir(&self, run_dir: &Path) -> PathBuf;
    /// The labels of the stages whose outputs it reads: it runs once they are finished with their
    /// current inputs.
    fn needs(&self, exp: &Experiment) -> Vec<String>;
    /// What its fingerprint covers: its resolved configuration, the seed, the device and the content of
    /// every file it reads. Computable once its needs are finished.
    fn inputs(&self, ctx: &Ctx) -> Result<Value>;
    /// Does the work, writing its outputs into `dir` (which exists; it may hold partial work of the same
    /// fingerprint to resume).
    fn run(&self, ctx: &Ctx, dir: &Path) -> Result<()>;
    /// The attack's success margin κ, for stages that attack (recorded in the provenance).
    fn margin(&self) -> Option<f64> {
        None
    }
    /// For a stage computed in independent chunks (a job array under Slurm, [`super::chunks`]): how
    /// many. None: one piece. Computable once its needs are finished.
    fn chunks(&self, _ctx: &Ctx) -> Result<Option<usize>> {
        Ok(None)
    }
    /// Whether chunk `i`'s files are in `dir`.
    fn chunk_done(&self, _dir: &Path, _i: usize) -> bool {
        false
    }
    /// Computes chunk `i` only, into `dir` (opened for this fingerprint); `run` merges the chunks (and
    /// computes any missing). Returns whether it computed (false: the chunk was there).
    fn run_chunk(&self, _ctx: &Ctx, _dir: &Path, _i: usize) -> Result<bool> {
        Ok(false)
    }
}

/// What a run did: stage timings (label, seconds, skipped) and the stages it ran or skipped.
#[derive(Debug, Default)]
pub(crate) struct RunLog {
    pub timings: Vec<(String, f64, bool)>,
    pub ran: Vec<String>,
    pub skipped: Vec<String>,
}

/// A stage's fingerprint: the SHA-256 of its inputs.
pub(crate) fn fingerprint(stage: &dyn Stage, ctx: &Ctx) -> Result<(String, Value)> {
    let inputs = stage.inputs(ctx)?;
    Ok((crate::fingerprint::of_json(&inputs), inputs))
}

/// The done-marker of a stage if it finished with its current fingerprint.
pub(crate) fn current_marker(stage: &dyn Stage, ctx: &Ctx) -> Result<Option<DoneMarker>> {
    let Some(m) = done_marker(&stage.dir(&ctx.run_dir)) else {
        return Ok(None);
    };
    let (fp, _) = fingerprint(stage, ctx)?;
    Ok((m.fingerprint == fp).then_some(m))
}

fn provenance(stage: &dyn Stage, ctx: &Ctx) -> Provenance {
    Provenance {
        blindspot: env!("CARGO_PKG_VERSION").into(),
        commit: env!("BLINDSPOT_COMMIT").into(),
        libtorch: env!("BLINDSPOT_LIBTORCH").into(),
        device: format!("{:?}", ctx.device),
        threads: tch::get_num_threads(),
        host: super::lock::host_name(),
        slurm_job: super::lock::slurm_job(),
        min_margin: stage.margin(),
    }
}

/// What [`run_stage`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ran,
    UpToDate,
    /// Another live process holds the stage's lock.
    Busy,
}

/// Runs one resumable stage under its lock: skipped when its done-marker has its current fingerprint
/// (unless `force`), else its work and the marker; a folder left by another fingerprint is emptied first,
/// one left by an interrupted run of the same fingerprint is resumed. Records what happened in `runlog`.
pub(crate) fn run_stage(
    stage: &dyn Stage,
    ctx: &Ctx,
    force: bool,
    runlog: &mut RunLog,
) -> Result<Outcome> {
    let label = stage.label();
    let dir = stage.dir(&ctx.run_dir);
    crate::results::paths::check_inside(&ctx.run_dir, &dir)?;
    let (fp, inputs) = fingerprint(stage, ctx)?;
    let up_to_date = |runlog: &mut RunLog| -> bool {
        match done_marker(&dir).filter(|m| m.fingerprint == fp) {
            Some(m) if !force => {
                log::info!("{label}: up to date, skipped");
                runlog.timings.push((label.clone(), m.seconds, true));
                runlog.skipped.push(label.clone());
                true
            }
            _ => false,
        }
    };
    if up_to_date(runlog) {
        return Ok(Outcome::UpToDate);
    }
    let _lock = match StageLock::acquire(&ctx.run_dir, &label)? {
        Acquired::Held(l) => l,
        Acquired::Busy(o) => {
            log::warn!(
                "{label}: being run by {} pid {}{} (heartbeat {} s ago); skipped",
                o.host,
                o.pid,
                o.slurm_job
                    .map(|j| format!(" (Slurm job {j})"))
                    .unwrap_or_default(),
                super::lock::now_unix().saturating_sub(o.heartbeat_unix)
            );
            return Ok(Outcome::Busy);
        }
    };
    // Another process may have finished it while we waited for the lock.
    if up_to_date(runlog) {
        return Ok(Outcome::UpToDate);
    }
    // `.started.json` holds the fingerprint the folder's partial work belongs to.
    let identity = json!({"stage": label, "fingerprint": fp});
    // Opened under the stage's open lock once no chunk task runs (super::chunks, rule 4).
    let ckpt = super::chunks::open_stage_folder(&ctx.run_dir, &label, &dir, &identity, force)?;
    log::info!("{label}: running");
    let t = Instant::now();
    stage.run(ctx, ckpt.dir())?;
    let secs = t.elapsed().as_secs_f64();
    super::chunks::hold_before_done(&label);
    ckpt.finish(&DoneMarker {
        format: RUN_FORMAT.into(),
        stage: label.clone(),
        fingerprint: fp,
        inputs,
        seconds: secs,
        finished_unix: super::lock::now_unix(),
        provenance: Some(provenance(stage, ctx)),
    })?;
    runlog.timings.push((label.clone(), secs, false));
    runlog.ran.push(label);
    Ok(Outcome::Ran)
}

/// The stage of a model of the experiment (which an analysis of it needs), none for a model path.
pub(crate) fn model_needs(exp: &Experiment, model: &str) -> Vec<String> {
    match exp.model(model) {
        Some(m) => vec![format!("models/{}", m.name)],
        None => Vec::new(),
    }
}

/// Every file below `dir` as "relative path, size, modification time (ns)"; folders reached twice (a
/// symbolic-link loop) are listed once.
fn list_files(
    root: &Path,
    dir: &Path,
    out: &mut Vec<String>,
    seen: &mut std::collections::HashSet<PathBuf>,
) -> Result<()> {
    let canon = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    if !seen.insert(canon) {
        return Ok(());
    }
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = e.map_err(|e| Error::io(dir, e))?.path();
        let meta = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?;
        if meta.is_dir() {
            list_files(root, &p, out, seen)?;
        } else {
            let ns = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            out.push(format!("{rel}\t{}\t{ns}", meta.len()));
        }
    }
    Ok(())
}
