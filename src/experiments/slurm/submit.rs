//! Talking to Slurm: `sbatch --parsable`, `squeue` (which earlier jobs are still queued or running), and
//! `jobs.json`, the record of the jobs submitted for each stage (so a second `blindspot slurm` does not
//! submit a queued stage twice).

use crate::experiments::RunError;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The jobs of one stage's last submission (an array and its merge, or one job).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct Record {
    pub jobs: Vec<String>,
    pub submitted_unix: u64,
}

/// `jobs.json`: stage label (or `report`) → its jobs.
pub(super) type Records = BTreeMap<String, Record>;

pub(super) const RECORDS: &str = "jobs.json";

pub(super) fn read_records(dir: &Path) -> Records {
    crate::io::read_json(&dir.join(RECORDS)).unwrap_or_default()
}

pub(super) fn write_records(dir: &Path, r: &Records) -> Result<()> {
    crate::io::write_json(&dir.join(RECORDS), r)
}

/// The executable `name` on `$PATH`.
pub(super) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file() && is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The job id of an array task id (`12_3` → `12`) or a job id.
pub(super) fn master_id(id: &str) -> &str {
    id.split('_').next().unwrap_or(id)
}

/// Of `ids`, those Slurm still knows as pending, running or finishing (`squeue`'s default states);
/// array tasks count for their array.
pub(super) fn alive(ids: &[String]) -> Result<HashSet<String>> {
    let mut want: Vec<&str> = ids.iter().map(|i| master_id(i)).collect();
    want.sort_unstable();
    want.dedup();
    if want.is_empty() {
        return Ok(HashSet::new());
    }
    let squeue = which("squeue").ok_or_else(|| RunError::Slurm {
        command: "squeue".into(),
        why: "not found on PATH (needed to see whether earlier jobs are still queued)".into(),
    })?;
    let list = want.join(",");
    let out = Command::new(&squeue)
        .args(["-h", "-o", "%F", "-j", &list])
        .output()
        .map_err(|e| Error::io(&squeue, e))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // Every id unknown (finished and purged): nothing is alive.
        if stderr.contains("Invalid job id") {
            return Ok(HashSet::new());
        }
        return Err(RunError::Slurm {
            command: format!("squeue -h -o %F -j {list}"),
            why: stderr.trim().to_string(),
        }
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// Runs `sbatch` with `args` and returns the job id it prints (`--parsable`: `id` or `id;cluster`).
pub(super) fn sbatch(sbatch: &Path, args: &[String]) -> Result<String> {
    let shown = format!("sbatch {}", args.join(" "));
    let out = Command::new(sbatch)
        .args(args)
        .output()
        .map_err(|e| Error::io(sbatch, e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(RunError::Slurm {
            command: shown,
            why: format!(
                "exit code {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
        .into());
    }
    let id = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .and_then(|l| l.split(';').next())
        .unwrap_or("")
        .to_string();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RunError::Slurm {
            command: shown,
            why: format!("expected a job id from --parsable, got `{}`", stdout.trim()),
        }
        .into());
    }
    Ok(id)
}
