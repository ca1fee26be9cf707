//! Resumable work in a folder, one abstraction for every kind of it: a stage's folder (its outputs,
//! finished by `.done.json`) and an attack's chunks alike. An identity file records what the folder's
//! partial work was made for; work made for another identity is cleared (a stage whose inputs changed) or
//! refused (an attack's `--out` holding another run), work of the same identity is resumed.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What to do with a folder whose partial work was made for another identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOther {
    /// Empty the folder and start over.
    Clear,
    /// Stop with an error naming the folder.
    Refuse,
}

/// A folder of resumable work, opened for one identity.
#[derive(Debug)]
pub struct Checkpoint {
    dir: PathBuf,
}

/// The marker written last into a finished stage's folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DoneMarker {
    /// The run-folder format that wrote it ([`RUN_FORMAT`]); empty in markers of earlier versions.
    #[serde(default)]
    pub format: String,
    pub stage: String,
    /// SHA-256 of `inputs`.
    pub fingerprint: String,
    /// What was fingerprinted: configuration, seed, device and the content hashes of every file read.
    #[serde(default)]
    pub inputs: serde_json::Value,
    pub seconds: f64,
    pub finished_unix: u64,
    #[serde(default)]
    pub provenance: Option<Provenance>,
}

/// Where and with what a stage's outputs were made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    /// blindspot's version and the git commit of the build (`-dirty` with uncommitted changes).
    pub blindspot: String,
    pub commit: String,
    /// The libtorch version linked.
    pub libtorch: String,
    pub device: String,
    /// libtorch intra-op threads.
    pub threads: i32,
    pub host: String,
    pub slurm_job: Option<String>,
    /// The attack's success margin κ, for stages that attack.
    pub min_margin: Option<f64>,
}

/// The format of run folders this version writes (in `blindspot-run.json` and every done-marker).
pub const RUN_FORMAT: &str = "blindspot-run/2";

/// The file that marks a finished folder.
pub const DONE_FILE: &str = ".done.json";

/// Why [`Checkpoint::open`] refused a folder.
#[derive(Debug, thiserror::Error)]
#[error("{} holds other work ({file} differs): use another folder or delete it", dir.display())]
pub struct OtherWork {
    pub dir: PathBuf,
    pub file: String,
}

impl Checkpoint {
    /// Opens `dir` for the work described by `identity`, recorded in `dir/identity_file`. `fresh` (a
    /// forced rerun) clears the folder whatever it holds; a finished folder (`.done.json`) whose identity
    /// differs is cleared or refused like unfinished work.
    pub fn open(
        dir: &Path,
        identity_file: &str,
        identity: &serde_json::Value,
        on_other: OnOther,
        fresh: bool,
    ) -> Result<Self> {
        let file = dir.join(identity_file);
        let other = dir.exists()
            && (fresh
                || match crate::io::read_json::<serde_json::Value>(&file) {
                    Ok(old) => &old != identity,
                    // A folder with work but no readable identity was not made by this run.
                    Err(_) => dir.join(DONE_FILE).exists(),
                });
        if other {
            match on_other {
                OnOther::Refuse if !fresh => {
                    return Err(Error::Checkpoint(OtherWork {
                        dir: dir.to_path_buf(),
                        file: identity_file.to_string(),
                    }))
                }
                _ => {
                    log::info!("clearing {} (made for other inputs)", dir.display());
                    std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                }
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        if !file.exists() {
            crate::io::write_json(&file, identity)?;
        }
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Marks the folder finished (written last).
    pub fn finish(&self, marker: &DoneMarker) -> Result<()> {
        crate::io::write_json(&self.dir.join(DONE_FILE), marker)
    }
}

/// The done-marker of `dir`, if it has one.
pub fn done_marker(dir: &Path) -> Option<DoneMarker> {
    crate::io::read_json(&dir.join(DONE_FILE)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_identity_resumes_other_identity_clears_or_refuses() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("stage");
        Checkpoint::open(&dir, ".id.json", &json!({"fp": 1}), OnOther::Clear, false).unwrap();
        std::fs::write(dir.join("part"), b"x").unwrap();
        // same identity: the partial work stays
        Checkpoint::open(&dir, ".id.json", &json!({"fp": 1}), OnOther::Clear, false).unwrap();
        assert!(dir.join("part").exists());
        // another identity, refused: nothing is touched
        let e = Checkpoint::open(&dir, ".id.json", &json!({"fp": 2}), OnOther::Refuse, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("holds other work") && dir.join("part").exists(),
            "{e}"
        );
        // another identity, cleared
        Checkpoint::open(&dir, ".id.json", &json!({"fp": 2}), OnOther::Clear, false).unwrap();
        assert!(!dir.join("part").exists());
        // fresh: cleared even for the same identity
        std::fs::write(dir.join("part"), b"x").unwrap();
        let c =
            Checkpoint::open(&dir, ".id.json", &json!({"fp": 2}), OnOther::Clear, true).unwrap();
        assert!(!dir.join("part").exists());
        c.finish(&DoneMarker {
            format: RUN_FORMAT.into(),
            stage: "stage".into(),
            fingerprint: "abc".into(),
            inputs: json!({}),
            seconds: 1.0,
            finished_unix: 0,
            provenance: None,
        })
        .unwrap();
        assert_eq!(done_marker(&dir).unwrap().fingerprint, "abc");
    }
}
