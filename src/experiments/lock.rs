//! One lock per stage, so that two processes (two shells, two Slurm jobs, two hosts on shared storage)
//! never run one stage at once. The lock is a file `runs/<name>/.locks/<stage>.lock`, created exclusively,
//! holding its owner (host, pid, Slurm job id) and a heartbeat the owner rewrites every
//! [`heartbeat_interval`] seconds. A second process skips a locked stage. A lock is stale, and taken over,
//! when its heartbeat is older than [`stale_after`] seconds (default 120: an owner on another host that
//! stopped), or when its owner is on this host and its process is gone (a `kill -9`).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Who holds a lock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockOwner {
    pub stage: String,
    pub host: String,
    pub pid: u32,
    /// `$SLURM_JOB_ID` (with `_$SLURM_ARRAY_TASK_ID` in an array), if any.
    pub slurm_job: Option<String>,
    pub started_unix: u64,
    pub heartbeat_unix: u64,
}

/// Seconds between heartbeats (`BLINDSPOT_LOCK_HEARTBEAT_S`, default 20).
pub fn heartbeat_interval() -> u64 {
    env_secs("BLINDSPOT_LOCK_HEARTBEAT_S", 20)
}

/// Age in seconds after which a heartbeat is stale (`BLINDSPOT_LOCK_STALE_S`, default 120).
pub fn stale_after() -> u64 {
    env_secs("BLINDSPOT_LOCK_STALE_S", 120)
}

fn env_secs(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// This machine's host name (`/etc/hostname`, `$HOSTNAME`, else `unknown`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// The Slurm job this process runs in, if any.
pub fn slurm_job() -> Option<String> {
    let job = std::env::var("SLURM_JOB_ID").ok()?;
    Some(match std::env::var("SLURM_ARRAY_TASK_ID") {
        Ok(t) => format!("{job}_{t}"),
        Err(_) => job,
    })
}

/// The lock file of a stage.
pub fn lock_path(run_dir: &Path, label: &str) -> PathBuf {
    run_dir
        .join(".locks")
        .join(format!("{}.lock", label.replace('/', "__")))
}

/// Reads a lock's owner (None if there is no lock or it is unreadable).
pub fn read_owner(path: &Path) -> Option<LockOwner> {
    crate::io::read_json(path).ok()
}

/// Whether a lock's owner is gone: heartbeat too old, or its process dead on this host.
pub fn is_stale(owner: &LockOwner) -> bool {
    if now_unix().saturating_sub(owner.heartbeat_unix) > stale_after() {
        return true;
    }
    owner.host == host_name() && !Path::new(&format!("/proc/{}", owner.pid)).exists()
}

/// A held stage lock; released (its file removed) when dropped.
pub struct StageLock {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    beat: Option<std::thread::JoinHandle<()>>,
}

/// The outcome of trying to lock a stage.
pub enum Acquired {
    Held(StageLock),
    /// Another live process holds it.
    Busy(LockOwner),
}

impl StageLock {
    /// Tries to lock `label`'s stage; takes over a stale lock.
    pub fn acquire(run_dir: &Path, label: &str) -> Result<Acquired> {
        let path = lock_path(run_dir, label);
        let dir = path.parent().unwrap_or(run_dir);
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        for _ in 0..3 {
            let owner = LockOwner {
                stage: label.to_string(),
                host: host_name(),
                pid: std::process::id(),
                slurm_job: slurm_job(),
                started_unix: now_unix(),
                heartbeat_unix: now_unix(),
            };
            match crate::io::create_new_json(&path, &owner) {
                Ok(true) => return Ok(Acquired::Held(Self::start(path, owner))),
                Ok(false) => {}
                Err(e) => return Err(e),
            }
            match read_owner(&path) {
                Some(o) if !is_stale(&o) => return Ok(Acquired::Busy(o)),
                stale => {
                    if let Some(held) = Self::take_over(&path, label, stale.as_ref(), &owner)? {
                        return Ok(held);
                    }
                }
            }
        }
        match read_owner(&path) {
            Some(o) => Ok(Acquired::Busy(o)),
            None => Err(Error::io(
                &path,
                std::io::Error::other("could not take the stage lock"),
            )),
        }
    }

    /// Replaces a stale lock under a takeover guard (created exclusively, so one process at a time): the
    /// guard's holder re-reads the lock, and replaces it only if it is still stale. Returns the outcome,
    /// or None to try again (another process held the guard). A guard older than [`stale_after`] (its
    /// holder died) is removed.
    fn take_over(
        path: &Path,
        label: &str,
        stale: Option<&LockOwner>,
        owner: &LockOwner,
    ) -> Result<Option<Acquired>> {
        let guard = path.with_extension("lock.takeover");
        if !crate::io::create_new_json(&guard, owner)? {
            let old = std::fs::metadata(&guard)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|a| a.as_secs() > stale_after());
            if old {
                let _ = std::fs::remove_file(&guard);
            } else {
                std::thread::sleep(Duration::from_millis(100));
            }
            return Ok(None);
        }
        let result = (|| -> Result<Option<Acquired>> {
            match read_owner(path) {
                Some(o) if !is_stale(&o) => return Ok(Some(Acquired::Busy(o))),
                Some(o) if Some(&o) != stale => return Ok(None),
                _ => {}
            }
            log::warn!(
                "{label}: taking over a stale lock{}",
                stale
                    .map(|o| format!(" of {} pid {}", o.host, o.pid))
                    .unwrap_or_default()
            );
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path, e)),
            }
            Ok(crate::io::create_new_json(path, owner)?
                .then(|| Acquired::Held(Self::start(path.to_path_buf(), owner.clone()))))
        })();
        let _ = std::fs::remove_file(&guard);
        result
    }

    fn start(path: PathBuf, mut owner: LockOwner) -> StageLock {
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (path.clone(), stop.clone());
        let beat = std::thread::spawn(move || {
            let every = Duration::from_secs(heartbeat_interval());
            let tick = Duration::from_millis(200);
            let mut waited = Duration::ZERO;
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                waited += tick;
                if waited >= every {
                    waited = Duration::ZERO;
                    owner.heartbeat_unix = now_unix();
                    if let Err(e) = crate::io::write_json(&p, &owner) {
                        log::warn!("heartbeat of {}: {e}", p.display());
                    }
                }
            }
        });
        StageLock {
            path,
            stop,
            beat: Some(beat),
        }
    }
}

impl Drop for StageLock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.beat.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_then_released_and_stale_locks_are_taken_over() {
        let t = tempfile::tempdir().unwrap();
        let run = t.path();
        let a = match StageLock::acquire(run, "attacks/x").unwrap() {
            Acquired::Held(l) => l,
            Acquired::Busy(_) => panic!("free lock"),
        };
        match StageLock::acquire(run, "attacks/x").unwrap() {
            Acquired::Busy(o) => {
                assert_eq!((o.pid, o.stage.as_str()), (std::process::id(), "attacks/x"))
            }
            Acquired::Held(_) => panic!("a held lock was taken"),
        }
        drop(a);
        assert!(!lock_path(run, "attacks/x").exists());
        // A lock of a dead process on this host is taken over.
        let dead = LockOwner {
            stage: "attacks/x".into(),
            host: host_name(),
            pid: 999_999_999,
            slurm_job: None,
            started_unix: now_unix(),
            heartbeat_unix: now_unix(),
        };
        crate::io::write_json(&lock_path(run, "attacks/x"), &dead).unwrap();
        assert!(matches!(
            StageLock::acquire(run, "attacks/x").unwrap(),
            Acquired::Held(_)
        ));
        // A lock on another host with a fresh heartbeat is respected; an old heartbeat is not.
        let mut other = LockOwner {
            host: "elsewhere".into(),
            pid: 1,
            ..dead
        };
        crate::io::write_json(&lock_path(run, "attacks/y"), &other).unwrap();
        assert!(matches!(
            StageLock::acquire(run, "attacks/y").unwrap(),
            Acquired::Busy(_)
        ));
        other.heartbeat_unix -= stale_after() + 5;
        crate::io::write_json(&lock_path(run, "attacks/y"), &other).unwrap();
        assert!(matches!(
            StageLock::acquire(run, "attacks/y").unwrap(),
            Acquired::Held(_)
        ));
    }

    #[test]
    fn racing_takeovers_of_one_stale_lock_leave_one_holder() {
        let t = tempfile::tempdir().unwrap();
        let run = t.path().to_path_buf();
        for round in 0..5 {
            let label = format!("attacks/r{round}");
            let dead = LockOwner {
                stage: label.clone(),
                host: host_name(),
                pid: 999_999_999,
                slurm_job: None,
                started_unix: now_unix(),
                heartbeat_unix: now_unix(),
            };
            crate::io::write_json(&lock_path(&run, &label), &dead).unwrap();
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (run, label, b) = (run.clone(), label.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        b.wait();
                        match StageLock::acquire(&run, &label).unwrap() {
                            Acquired::Held(l) => {
                                // Hold it while the others try.
                                std::thread::sleep(Duration::from_millis(300));
                                drop(l);
                                1
                            }
                            Acquired::Busy(_) => 0,
                        }
                    })
                })
                .collect();
            let held: i32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(held, 1, "round {round}: {held} holders");
        }
    }
}
