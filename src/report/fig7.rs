//! Fig 7 of the paper (§4.2), drawn from the Fig 7 stage's files (`fig7.json`, `fig7.safetensors`):
//! one grid per model (original, adversarial, difference ×3 around grey, Gaussian noise of the same
//! stddev) and panel (c) (noise of stddev 1), with the measured accuracies in the titles.

use crate::report::grid::{image_grid, GridOptions, GridRow};
use crate::Result;
use std::path::Path;
use tch::Tensor;

/// Draws rows of grey-level images (each `[k, 1, H, W]`, values in [0, 1]) into a PNG: one labelled row
/// per entry, a title on top.
fn draw_grid(path: &Path, title: &str, rows: &[(String, &Tensor)]) -> Result<()> {
    let rows: Vec<GridRow> = rows
        .iter()
        .map(|(label, t)| GridRow::new(label.clone(), (0..t.size()[0]).map(|i| t.get(i)).collect()))
        .collect();
    image_grid(
        path,
        &rows,
        &GridOptions {
            title: Some(title.to_string()),
            scale: 3,
            ..GridOptions::default()
        },
    )
}

/// Draws `fig7_<model>.png` for every panel and `fig7c.png` into `dir` from the files there.
pub fn draw(dir: &Path) -> Result<()> {
    let (fig, images) = crate::results::fig7::read(dir)?;
    for (pi, (p, (adv, diff, noisy))) in fig.panels.iter().zip(&images.panels).enumerate() {
        let letter = (b'a' + pi as u8) as char;
        let name = p.png.file_name().unwrap_or(p.png.as_os_str());
        let stddev = p.stddev;
        draw_grid(
            &dir.join(name),
            &format!(
                "Fig 7({letter}) {}: adversarial distortion {stddev:.3}, accuracy {:.0}%; Gaussian noise stddev {stddev:.3}: accuracy {:.1}%",
                p.model,
                100.0 * p.adversarial_accuracy,
                100.0 * p.noise_accuracy
            ),
            &[
                ("original".into(), &images.shown),
                ("adversarial".into(), adv),
                ("difference (x3)".into(), diff),
                (format!("noise σ={stddev:.3}"), noisy),
            ],
        )?;
    }
    draw_grid(
        &dir.join("fig7c.png"),
        &format!(
            "Fig 7(c) Gaussian noise stddev 1: {} accuracy {:.1}% clipped to [0,1], {:.1}% unclipped (paper: 51%)",
            fig.panel_c_model,
            100.0 * fig.panel_c_accuracy,
            100.0 * fig.panel_c_accuracy_unclipped
        ),
        &[
            ("original".into(), &images.shown),
            ("noise σ=1".into(), &images.panel_c_noisy),
        ],
    )
}
