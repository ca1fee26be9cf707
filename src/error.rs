//! Library errors: each names the file, field or shape involved and, where there is one, the fix.

use std::path::PathBuf;

/// The library's error type. `main` maps it to a message and a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error("checksum mismatch for {path}: expected {expected}, found {found}. {hint}")]
    Checksum {
        path: PathBuf,
        expected: String,
        found: String,
        hint: String,
    },
    #[error("configuration error in {file}: field `{field}`: {msg}")]
    Config {
        file: String,
        field: String,
        msg: String,
    },
    #[error("{what} {expected}, got {got:?}")]
    Shape {
        what: String,
        expected: String,
        got: Vec<i64>,
    },
    #[error("device `{requested}`: {why}")]
    Device { requested: String, why: String },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("benchmark peer {}: {msg}", program.display())]
    Peer { program: PathBuf, msg: String },
    #[error(transparent)]
    Checkpoint(#[from] crate::results::checkpoint::OtherWork),
    #[error(transparent)]
    Path(#[from] crate::results::paths::PathError),
    // Component errors, each with its own context.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Model(#[from] crate::models::ModelError),
    #[error(transparent)]
    Optim(#[from] crate::optim::OptimError),
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    #[error(transparent)]
    Attack(#[from] crate::attack::AttackError),
    #[error(transparent)]
    Units(#[from] crate::units::UnitsError),
    #[error(transparent)]
    Spectral(#[from] crate::spectral::SpectralError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error(transparent)]
    Run(#[from] crate::experiments::RunError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }
    pub fn config(
        file: impl Into<String>,
        field: impl Into<String>,
        msg: impl Into<String>,
    ) -> Self {
        Error::Config {
            file: file.into(),
            field: field.into(),
            msg: msg.into(),
        }
    }
}
