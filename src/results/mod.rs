//! Result files: the schemas, readers and writers of everything a stage leaves on disk (tables as CSV and
//! Markdown, adversarial sets, summaries, done-markers). Every module may use it; it imports no analysis
//! module (attack, units, spectral, train, experiments, report), so the report can be drawn from files alone.

pub mod table;

pub use table::{pct, Table};
