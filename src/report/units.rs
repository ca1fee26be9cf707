//! Figs 1–4 of the paper (§3): for each kind of direction (units, random, orthogonal), one row per
//! direction with its top images, drawn from what a units analysis saved (`figures.safetensors` and
//! `figures.json`, read through [`crate::results::units::UnitsFigures`]), never from the data set.

use crate::report::grid::{image_grid, GridOptions, GridRow};
use crate::results::units::UnitsFigures;
use crate::Result;
use std::path::{Path, PathBuf};

/// Draws `unit.png`, `random.png` and `orthogonal.png` (those kinds the analysis in `dir` has rows for)
/// into `dir`; returns the files written.
pub fn draw(dir: &Path) -> Result<Vec<PathBuf>> {
    let figures = UnitsFigures::read(dir)?;
    let mut written = Vec::new();
    for k in &figures.kinds {
        let size = k.images.size(); // [rows, cols, C, H, W]
        let grid: Vec<GridRow> = k
            .labels
            .iter()
            .enumerate()
            .map(|(r, label)| {
                let row = k.images.get(r as i64); // [cols, C, H, W]
                let images = (0..size[1]).map(|i| row.get(i)).collect();
                GridRow::new(label.clone(), images)
            })
            .collect();
        let height = size[3]; // the examples' H
        let opts = GridOptions {
            title: Some(format!(
                "{}: top images per {}",
                figures.title,
                k.kind.as_str()
            )),
            scale: if height <= 64 { 2 } else { 1 },
            cell: (height > 128).then_some(112),
            ..GridOptions::default()
        };
        let path = dir.join(format!("{}.png", k.kind.as_str()));
        image_grid(&path, &grid, &opts)?;
        written.push(path);
    }
    Ok(written)
}
