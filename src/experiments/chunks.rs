//! One stage computed by several processes at once, one chunk each (the tasks of a Slurm job array, see
//! [`super::slurm`]), then merged by one whole-stage run. The stage folder's `.started.json` says which
//! fingerprint its partial work belongs to, and work of another fingerprint is cleared; these rules keep
//! chunk tasks from clearing or duplicating each other's work:
//!
//! 1. The folder's identity is read, and a folder of other inputs cleared, only under the stage's *open
//!    lock* (`.locks/<stage>#open.lock`), which every process holds only for that moment.
//! 2. A chunk task starts only if no live process holds the stage lock (a whole-stage run computes every
//!    missing chunk itself), and takes its chunk's lock (`<stage>#chunk-00003`) before it releases the
//!    open lock; it holds it until the chunk's files are written. A chunk whose lock is held is skipped.
//! 3. A folder of other inputs is cleared only when no chunk lock is live: a chunk task that finds chunk
//!    tasks of other inputs running skips its chunk (the merge computes it).
//! 4. A whole-stage run (the merge) holds the stage lock, then waits under rule 1 until no chunk lock is
//!    live before it opens the folder: it never computes a chunk a task is computing, and no task starts
//!    while it runs.
//!
//! A lock whose owner died (a `kill -9`, a cancelled job) is stale and ignored or taken over
//! ([`super::lock`]); a chunk task that dies leaves no chunk files (they are written atomically), so the
//! merge attacks that chunk itself.

use super::lock::{is_stale, lock_path, read_owner, Acquired, LockOwner, StageLock};
use super::stage::{current_marker, fingerprint, Ctx, Stage};
use super::RunError;
use crate::results::checkpoint::{Checkpoint, OnOther};
use crate::{Error, Result};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// What one chunk task did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Attacked its chunk and wrote its files.
    Ran,
    /// Its files were there already.
    Present,
    /// The stage is finished with its current inputs.
    UpToDate,
    /// Left to another process (which one, why).
    Skipped(String),
}

/// How long a process waits for a stage's open lock before giving up (it is held for moments).
const OPEN_WAIT: Duration = Duration::from_secs(600);

fn open_label(label: &str) -> String {
    format!("{label}#open")
}

fn chunk_label(label: &str, ci: usize) -> String {
    format!("{label}#chunk-{ci:05}")
}

fn describe(o: &LockOwner) -> String {
    format!(
        "{} pid {}{}",
        o.host,
        o.pid,
        o.slurm_job
            .as_ref()
            .map(|j| format!(" (Slurm job {j})"))
            .unwrap_or_default()
    )
}

/// Takes the open lock of `label`'s stage, waiting while another process holds it.
fn open_lock(run_dir: &Path, label: &str) -> Result<StageLock> {
    let t = Instant::now();
    loop {
        match StageLock::acquire(run_dir, &open_label(label))? {
            Acquired::Held(l) => return Ok(l),
            Acquired::Busy(o) if t.elapsed() > OPEN_WAIT => {
                let path = lock_path(run_dir, &open_label(label));
                return Err(Error::io(
                    &path,
                    std::io::Error::other(format!(
                        "held by {} for over {} s; delete it if that process is gone",
                        describe(&o),
                        OPEN_WAIT.as_secs()
                    )),
                ));
            }
            Acquired::Busy(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The live owners of `label`'s chunk locks.
fn live_chunk_locks(run_dir: &Path, label: &str) -> Vec<LockOwner> {
    let probe = lock_path(run_dir, &chunk_label(label, 0));
    let (Some(dir), Some(name)) = (probe.parent(), probe.file_name()) else {
        return Vec::new();
    };
    let name = name.to_string_lossy();
    let prefix = &name[..name.len() - "00000.lock".len()];
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(prefix) && n.ends_with(".lock")
        })
        .filter_map(|e| read_owner(&e.path()))
        .filter(|o| !is_stale(o))
        .collect()
}

/// The live owner of `label`'s stage lock.
fn live_stage_lock(run_dir: &Path, label: &str) -> Option<LockOwner> {
    read_owner(&lock_path(run_dir, label)).filter(|o| !is_stale(o))
}

/// Opens a stage's folder for a whole-stage run that holds the stage lock (rule 4): waits until no chunk
/// task of the stage is running, then opens (resumes, or clears work of other inputs) under the open lock.
pub(crate) fn open_stage_folder(
    run_dir: &Path,
    label: &str,
    dir: &Path,
    identity: &Value,
    force: bool,
) -> Result<Checkpoint> {
    let mut told = false;
    loop {
        let open = open_lock(run_dir, label)?;
        let running = live_chunk_locks(run_dir, label);
        if running.is_empty() {
            let ckpt = Checkpoint::open(dir, ".started.json", identity, OnOther::Clear, force)?;
            drop(open);
            return Ok(ckpt);
        }
        drop(open);
        if !told {
            log::info!(
                "{label}: waiting for {} chunk task(s) to finish ({})",
                running.len(),
                running.iter().map(describe).collect::<Vec<_>>().join(", ")
            );
            told = true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Computes chunk `ci` of a stage split in chunks (one Slurm array task), under rules 1–3. The stage's
/// needs are finished (the caller checked).
pub(crate) fn run_chunk(stage: &dyn Stage, ctx: &Ctx, ci: usize) -> Result<ChunkOutcome> {
    let label = stage.label();
    let dir = stage.dir(&ctx.run_dir);
    crate::results::paths::check_inside(&ctx.run_dir, &dir)?;
    let chunks = stage.chunks(ctx)?.ok_or_else(|| RunError::NotChunked {
        label: label.clone(),
    })?;
    if ci >= chunks {
        return Err(RunError::ChunkOutOfRange {
            label,
            chunk: ci,
            chunks,
        }
        .into());
    }
    let (fp, _) = fingerprint(stage, ctx)?;
    let identity = serde_json::json!({"stage": label, "fingerprint": fp});
    let done = || Ok(current_marker(stage, ctx)?.is_some());
    let (ckpt, _chunk_lock) = match open_for_chunk(&ctx.run_dir, &label, &dir, &identity, ci, done)?
    {
        Ok(held) => held,
        Err(outcome) => return Ok(outcome),
    };
    if stage.chunk_done(ckpt.dir(), ci) {
        return Ok(ChunkOutcome::Present);
    }
    log::info!("{label}: chunk {ci} of {chunks}");
    Ok(if stage.run_chunk(ctx, ckpt.dir(), ci)? {
        ChunkOutcome::Ran
    } else {
        ChunkOutcome::Present
    })
}

/// Rules 1–3 for chunk `ci`: under the open lock, unless the stage is finished (`done`), run whole by a
/// live process, or holds work of other inputs that chunk tasks are computing, opens the folder for
/// `identity` (clearing work of other inputs) and takes the chunk's lock. Err: what to report instead.
fn open_for_chunk(
    run_dir: &Path,
    label: &str,
    dir: &Path,
    identity: &Value,
    ci: usize,
    done: impl FnOnce() -> Result<bool>,
) -> Result<std::result::Result<(Checkpoint, StageLock), ChunkOutcome>> {
    let _open = open_lock(run_dir, label)?;
    if done()? {
        return Ok(Err(ChunkOutcome::UpToDate));
    }
    if let Some(o) = live_stage_lock(run_dir, label) {
        return Ok(Err(ChunkOutcome::Skipped(format!(
            "the whole stage is being run by {}",
            describe(&o)
        ))));
    }
    let running = live_chunk_locks(run_dir, label);
    let found = crate::io::read_json::<Value>(&dir.join(".started.json")).ok();
    if !running.is_empty() && found.as_ref() != Some(identity) {
        return Ok(Err(ChunkOutcome::Skipped(format!(
            "chunk tasks of other inputs are running ({}); the merge computes this chunk",
            running.iter().map(describe).collect::<Vec<_>>().join(", ")
        ))));
    }
    let ckpt = Checkpoint::open(dir, ".started.json", identity, OnOther::Clear, false)?;
    match StageLock::acquire(run_dir, &chunk_label(label, ci))? {
        Acquired::Held(l) => Ok(Ok((ckpt, l))),
        Acquired::Busy(o) => Ok(Err(ChunkOutcome::Skipped(format!(
            "chunk {ci} is being computed by {}",
            describe(&o)
        )))),
    }
}

/// Test hook of `tests/slurm.rs`: with `BLINDSPOT_TEST_HOLD_BEFORE_DONE=<stage label>`, a run of that
/// stage waits (at most 300 s) after writing its outputs and before its done-marker, so a test can
/// `kill -9` it in the middle of a merge.
pub(crate) fn hold_before_done(label: &str) {
    if std::env::var("BLINDSPOT_TEST_HOLD_BEFORE_DONE")
        .ok()
        .as_deref()
        != Some(label)
    {
        return;
    }
    log::warn!("{label}: holding before the done-marker (BLINDSPOT_TEST_HOLD_BEFORE_DONE)");
    std::thread::sleep(Duration::from_secs(300));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn held(run: &Path, label: &str) -> StageLock {
        match StageLock::acquire(run, label).unwrap() {
            Acquired::Held(l) => l,
            Acquired::Busy(_) => panic!("{label} is free"),
        }
    }

    #[test]
    fn chunk_tasks_never_clear_running_work_and_the_merge_waits_for_them() {
        let t = tempfile::tempdir().unwrap();
        let (run, dir) = (t.path(), t.path().join("attacks/x"));
        let (old, new) = (json!({"fp": "old"}), json!({"fp": "new"}));
        let not_done = || Ok(false);
        // A task of the old inputs holds chunk 0 and has written a file.
        let (_c, old0) = open_for_chunk(run, "attacks/x", &dir, &old, 0, not_done)
            .unwrap()
            .unwrap();
        std::fs::write(dir.join("chunk-0-old"), "x").unwrap();
        // A task of the new inputs does not clear it: it skips its chunk.
        let r = open_for_chunk(run, "attacks/x", &dir, &new, 1, not_done).unwrap();
        assert!(matches!(r, Err(ChunkOutcome::Skipped(ref w)) if w.contains("other inputs")));
        assert!(dir.join("chunk-0-old").exists());
        // A task of the same inputs joins it; the same chunk twice is skipped.
        let (_c, old1) = open_for_chunk(run, "attacks/x", &dir, &old, 1, not_done)
            .unwrap()
            .unwrap();
        let r = open_for_chunk(run, "attacks/x", &dir, &old, 1, not_done).unwrap();
        assert!(matches!(r, Err(ChunkOutcome::Skipped(ref w)) if w.contains("chunk 1")));
        // The merge of the new inputs (holding the stage lock) waits for both tasks, then clears.
        let stage = held(run, "attacks/x");
        let (r2, d2, n2) = (run.to_path_buf(), dir.clone(), new.clone());
        let merge = std::thread::spawn(move || {
            open_stage_folder(&r2, "attacks/x", &d2, &n2, false).map(|_| ())
        });
        std::thread::sleep(Duration::from_millis(1200));
        assert!(!merge.is_finished() && dir.join("chunk-0-old").exists());
        drop(old0);
        std::thread::sleep(Duration::from_millis(700));
        assert!(!merge.is_finished(), "one task still runs");
        drop(old1);
        merge.join().unwrap().unwrap();
        assert!(
            !dir.join("chunk-0-old").exists(),
            "cleared once no task ran"
        );
        // While the whole stage runs, a task leaves its chunk to it; once finished, nothing to do.
        let r = open_for_chunk(run, "attacks/x", &dir, &new, 0, not_done).unwrap();
        assert!(matches!(r, Err(ChunkOutcome::Skipped(ref w)) if w.contains("whole stage")));
        drop(stage);
        let r = open_for_chunk(run, "attacks/x", &dir, &new, 0, || Ok(true)).unwrap();
        assert!(matches!(r, Err(ChunkOutcome::UpToDate)));
    }
}
