//! The one image-grid drawer (plotters): one labelled row of images per line — the layout of the paper's
//! Figs 1-4 (§3: top images per unit / random direction), of Fig 7 (MNIST adversarials vs noise) and of the
//! Fig 5 triplets (original, difference, adversarial).
//!
//! Images are tensors [C, H, W] (C = 1 grey or 3 RGB) with values in [0, 1] (clamped). Each image is
//! scaled with nearest-neighbour sampling to fit a square cell, keeping its aspect ratio. Text uses the
//! DejaVu Sans font embedded in the binary, so figures look the same on every machine. Output: PNG.

use crate::report::fonts::ensure_fonts;
use crate::report::ReportError;
use crate::{Error, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// One row of a grid: a label (may contain `\n` for several lines) and its images [C, H, W] in [0, 1].
#[derive(Debug)]
pub struct GridRow {
    pub label: String,
    pub images: Vec<Tensor>,
}

impl GridRow {
    pub fn new(label: impl Into<String>, images: Vec<Tensor>) -> Self {
        GridRow {
            label: label.into(),
            images,
        }
    }
}

/// Layout of an image grid.
#[derive(Debug, Clone)]
pub struct GridOptions {
    /// A title above the grid.
    pub title: Option<String>,
    /// Titles above the image columns (e.g. "original", "difference ×10", "adversarial").
    pub column_titles: Option<Vec<String>>,
    /// Size in pixels of each (square) image cell; `None`: the largest image side times `scale`.
    pub cell: Option<u32>,
    /// Integer up-scaling used when `cell` is `None` (e.g. 2 for 28×28 MNIST digits → 56 pixels).
    pub scale: u32,
    /// Width in pixels of the row-label column (0: no label column).
    pub label_width: u32,
    /// Gap between cells in pixels.
    pub gap: u32,
    /// Font size in pixels.
    pub font_size: u32,
}

impl Default for GridOptions {
    fn default() -> Self {
        GridOptions {
            title: None,
            column_titles: None,
            cell: None,
            scale: 2,
            label_width: 150,
            gap: 2,
            font_size: 13,
        }
    }
}

fn draw_err(path: &Path, what: &'static str, e: impl std::fmt::Display) -> Error {
    ReportError::Draw {
        path: path.into(),
        what,
        msg: e.to_string(),
    }
    .into()
}

/// An image as 8-bit RGB, row-major: (width, height, bytes).
fn to_rgb8(t: &Tensor) -> Result<(u32, u32, Vec<u8>)> {
    let s = t.size();
    if s.len() != 3 || !(s[0] == 1 || s[0] == 3) || s[1] < 1 || s[2] < 1 {
        return Err(Error::Shape {
            what: "grid images must be".into(),
            expected: "[1 or 3, H, W]".into(),
            got: s,
        });
    }
    let (c, h, w) = (s[0] as usize, s[1] as usize, s[2] as usize);
    let t = t
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .nan_to_num(0.0, 1.0, 0.0)
        .clamp(0.0, 1.0)
        .permute([1, 2, 0]) // [H, W, C]
        .contiguous()
        .view([-1]);
    let v = Vec::<f32>::try_from(&t).map_err(Error::from)?;
    let mut out = Vec::with_capacity(h * w * 3);
    for p in v.chunks(c) {
        let px = |x: f32| (x * 255.0).round() as u8;
        if c == 1 {
            out.extend_from_slice(&[px(p[0]); 3]);
        } else {
            out.extend_from_slice(&[px(p[0]), px(p[1]), px(p[2])]);
        }
    }
    Ok((w as u32, h as u32, out))
}

/// Draws `rows` as a grid into a PNG at `path` (written atomically). Rows may have different lengths;
/// images of different sizes are each fitted to the cell.
pub fn image_grid(path: &Path, rows: &[GridRow], opts: &GridOptions) -> Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    if ext != "png" {
        return Err(ReportError::NotPng { path: path.into() }.into());
    }
    if rows.is_empty() {
        return Err(ReportError::NoRows { path: path.into() }.into());
    }
    let mut decoded: Vec<Vec<(u32, u32, Vec<u8>)>> = Vec::with_capacity(rows.len());
    for r in rows {
        decoded.push(r.images.iter().map(to_rgb8).collect::<Result<Vec<_>>>()?);
    }
    let max_side = decoded
        .iter()
        .flatten()
        .map(|(w, h, _)| (*w).max(*h))
        .max()
        .unwrap_or(16);
    let cell = opts.cell.unwrap_or(max_side * opts.scale.max(1)).max(4);
    let cols = decoded
        .iter()
        .map(|r| r.len())
        .max()
        .unwrap_or(0)
        .max(opts.column_titles.as_ref().map(|c| c.len()).unwrap_or(0))
        .max(1) as u32;
    let line_h = opts.font_size + 4;
    let gap = opts.gap;
    let title_h = if opts.title.is_some() { line_h + 6 } else { 0 };
    let coltitle_h = if opts.column_titles.is_some() {
        line_h + 2
    } else {
        0
    };
    let top = gap + title_h + coltitle_h;
    let left = opts.label_width + gap;
    let width = left + cols * (cell + gap);
    let height = top + rows.len() as u32 * (cell + gap);
    if (width as u64) * (height as u64) > 400_000_000 {
        return Err(ReportError::TooLarge {
            path: path.into(),
            width,
            height,
        }
        .into());
    }
    let mut buf = vec![255u8; (width * height * 3) as usize];
    // Blit images (nearest neighbour, aspect kept, centred in the cell).
    for (ri, row) in decoded.iter().enumerate() {
        for (ci, (w, h, px)) in row.iter().enumerate() {
            let f = (cell as f64) / ((*w).max(*h) as f64);
            let dw = ((*w as f64) * f).round().max(1.0) as u32;
            let dh = ((*h as f64) * f).round().max(1.0) as u32;
            let x0 = left + ci as u32 * (cell + gap) + (cell - dw.min(cell)) / 2;
            let y0 = top + ri as u32 * (cell + gap) + (cell - dh.min(cell)) / 2;
            for y in 0..dh.min(cell) {
                let sy = (((y as f64 + 0.5) / f) as u32).min(h - 1);
                for x in 0..dw.min(cell) {
                    let sx = (((x as f64 + 0.5) / f) as u32).min(w - 1);
                    let s = ((sy * w + sx) * 3) as usize;
                    let d = (((y0 + y) * width + x0 + x) * 3) as usize;
                    buf[d..d + 3].copy_from_slice(&px[s..s + 3]);
                }
            }
        }
    }
    // Text.
    ensure_fonts();
    {
        let backend = BitMapBackend::<plotters::backend::RGBPixel>::with_buffer_and_format(
            &mut buf,
            (width, height),
        )
        .map_err(|e| draw_err(path, "plotters backend", e))?;
        let area = backend.into_drawing_area();
        let font = ("sans-serif", opts.font_size as f64)
            .into_font()
            .color(&BLACK);
        let draw = |text: &str, x: u32, y: u32| -> Result<()> {
            area.draw_text(text, &font, (x as i32, y as i32))
                .map_err(|e| draw_err(path, "drawing text", e))
        };
        if let Some(t) = &opts.title {
            let bold = ("sans-serif", (opts.font_size + 2) as f64)
                .into_font()
                .style(FontStyle::Bold)
                .color(&BLACK);
            area.draw_text(t, &bold, (gap as i32 + 2, gap as i32 + 2))
                .map_err(|e| draw_err(path, "drawing text", e))?;
        }
        if let Some(ct) = &opts.column_titles {
            for (ci, t) in ct.iter().enumerate() {
                draw(t, left + ci as u32 * (cell + gap) + 2, gap + title_h)?;
            }
        }
        if opts.label_width > 0 {
            let max_chars = (opts.label_width as usize * 2 / opts.font_size.max(1) as usize).max(4);
            for (ri, r) in rows.iter().enumerate() {
                let y = top + ri as u32 * (cell + gap);
                for (li, l) in r.label.lines().enumerate() {
                    if (li as u32 + 1) * line_h > cell.max(line_h) {
                        break;
                    }
                    let l: String = l.chars().take(max_chars).collect();
                    draw(&l, gap + 2, y + li as u32 * line_h + 2)?;
                }
            }
        }
        area.present().map_err(|e| draw_err(path, "plotters", e))?;
    }
    let img = image::RgbImage::from_raw(width, height, buf)
        .ok_or_else(|| draw_err(path, "image buffer", "size mismatch"))?;
    let mut png = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut png),
        image::ImageOutputFormat::Png,
    )
    .map_err(|e| draw_err(path, "encoding PNG", e))?;
    crate::io::write_atomic(path, &png)
}
