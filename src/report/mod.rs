//! Reports: the only module that draws figures or renders report tables, always from result files read
//! through [`crate::results`], never by running an attack or an analysis. Tables beside the paper's
//! values (Markdown + CSV), figures drawn with plotters, one font setup ([`fonts`]) and one image-grid
//! drawer ([`grid`]).

pub mod error;
pub mod fig5;
pub mod fig7;
pub mod fonts;
pub mod grid;
pub mod interval;
pub mod paper;
pub mod run;
pub mod spectral;
pub mod transfer;
pub mod units;

pub use error::ReportError;
