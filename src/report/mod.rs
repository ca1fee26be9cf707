//! Reports: tables beside the paper's values (Markdown + CSV), figures drawn with plotters.

pub mod fig5;
pub mod fig7;
pub mod fonts;
pub mod grid;
pub mod paper;
pub mod units;
