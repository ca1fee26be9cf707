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
    #[error(
        "stage `{label}` is not computed in chunks (only attack stages are): leave out --chunk"
    )]
    NotChunked { label: String },
    #[error("stage `{label}` has {chunks} chunk(s), numbered 0..{chunks}: no chunk {chunk}")]
    ChunkOutOfRange {
        label: String,
        chunk: usize,
        chunks: usize,
    },
    #[error("sbatch not found: install Slurm's client or use blindspot run")]
    SbatchMissing,
    #[error("`{command}` failed: {why}")]
    Slurm { command: String, why: String },
    #[error("another `blindspot slurm` is submitting this experiment ({owner}); wait for it, then run again")]
    SubmitBusy { owner: String },
}
