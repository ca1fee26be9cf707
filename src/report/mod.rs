//! Reports: tables beside the paper's values, figures drawn with plotters.
pub mod fonts;
