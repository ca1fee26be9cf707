//! Reports: tables beside the paper's values, figures drawn with plotters.

pub mod figures;
pub mod fonts;
pub mod paper;
pub mod tables;
