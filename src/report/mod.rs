//! Reports: tables beside the paper's values (Markdown + CSV), figures drawn with plotters.

pub mod paper;
pub mod tables;
