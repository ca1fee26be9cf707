//! Errors of drawing figures: each names the file being drawn.

use std::path::PathBuf;

/// What can go wrong while drawing a figure.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: image grids are written as PNG (use a .png file name)", path.display())]
    NotPng { path: PathBuf },
    #[error("{}: no rows to draw", path.display())]
    NoRows { path: PathBuf },
    #[error("{}: grid of {width}×{height} pixels is too large; use fewer rows or a smaller cell", path.display())]
    TooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
    },
    #[error("{}: {what}: {msg}", path.display())]
    Draw {
        path: PathBuf,
        what: &'static str,
        msg: String,
    },
}
