//! Errors of a batch run: the plan, the run folder, the stage locks.

use std::path::PathBuf;

/// What can stop a run before or between stages.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("stages `{first}` and `{second}` would both write {}: give one of them another name (attack stages take `name:`)", dir.display())]
    SameFolder {
        first: String,
        second: String,
        dir: PathBuf,
    },
    #[error("{} was made by an earlier version of blindspot ({found}); this version writes {expected}. Move or delete the folder (its results are kept elsewhere only if you move it), or set another `name:` for the experiment, then run again", dir.display())]
    OldRunFolder {
        dir: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{} is not a run folder of experiment `{expected}` (it belongs to `{found}`): set another `name:` or `runs_dir:`", dir.display())]
    OtherExperiment {
        dir: PathBuf,
        found: String,
        expected: String,
    },
    #[error("no stage `{label}` in this experiment; its stages are: {known}")]
    UnknownStage { label: String, known: String },
    #[error("stage `{label}` cannot run yet: {missing} is not finished with its current inputs")]
    NotReady { label: String, missing: String },
}
