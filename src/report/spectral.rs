//! §4.3, Table 5 from the spectral analysis's result files: `table5.md` (our bounds per conv/linear layer
//! beside the paper's values, the other layers' factors, the whole-network numbers) and `spectrum.png`
//! (singular values per layer), both drawn from `bounds.json` as `crate::results::spectral::read` gives it.

use crate::results::spectral::{self as files, Analysis, Empirical, SpectralReport};
use crate::results::Table;
use crate::{Error, Result};
use std::path::Path;

/// `table5.md`: Table 5 beside the paper's.
pub const TABLE5_MD: &str = "table5.md";
/// `spectrum.png`: the singular values per layer.
pub const SPECTRUM_PNG: &str = "spectrum.png";

/// Reads `bounds.json` in `dir` and writes `table5.md` and (when there are spectra) `spectrum.png` beside
/// it, atomically.
pub fn render(dir: &Path) -> Result<()> {
    let rep = files::read(dir)?;
    crate::io::write_atomic(&dir.join(TABLE5_MD), markdown(&rep).as_bytes())?;
    if !rep.analysis.spectra.is_empty() {
        plot_spectra(&dir.join(SPECTRUM_PNG), &rep.analysis)?;
    }
    Ok(())
}

/// Paper's Table 5 for AlexNet (this arXiv version; see DIGEST.md): (layer, size, lower, upper).
pub const PAPER_TABLE5: [(&str, &str, &str, &str); 8] = [
    ("Conv. 1", "3×11×11×96 (stride 4)", "0.1", "20"),
    ("Conv. 2", "96×5×5×256", "0.06", "10"),
    ("Conv. 3", "256×3×3×384", "0.01", "7"),
    ("Conv. 4", "384×3×3×384", "5·10⁻⁵", "7.3"),
    ("Conv. 5", "384×3×3×256", "0.03", "11"),
    ("FC. 1", "9216×4096", "0.09", "3.12"),
    ("FC. 2", "4096×4096", "10⁻⁴", "4"),
    ("FC. 3", "4096×1000", "0.25", "4"),
];

fn short(v: Option<f64>) -> String {
    match v {
        Some(0.0) => "0".into(),
        Some(v) if (1e-2..1e4).contains(&v.abs()) => format!("{v:.4}"),
        Some(v) => format!("{v:.3e}"),
        None => "—".into(),
    }
}

/// `table5.md`: our bounds per conv/linear layer beside the paper's Table 5 (paired in order when the
/// network has AlexNet's 5 conv + 3 linear layers), then the other layers and the whole-network numbers.
pub fn markdown(rep: &SpectralReport) -> String {
    let a = &rep.analysis;
    let weighted: Vec<&str> = rep
        .layers
        .iter()
        .filter(|l| l.kind == "conv2d" || l.kind == "linear")
        .map(|l| l.name.as_str())
        .collect();
    let n_conv = rep.layers.iter().filter(|l| l.kind == "conv2d").count();
    let alexlike = n_conv == 5 && weighted.len() == 8;
    let mut s = String::new();
    s.push_str(&format!(
        "# Frame bounds per layer (paper §4.3, Table 5)\n\nModel: `{}`, input {:?}.\n\n",
        rep.source, rep.input_shape
    ));
    s.push_str("Conv layers: *circular* = FFT on the layer's input size (the paper's method, exact for circular convolution); *zero pad* = the operator torch applies, exact by Lanczos (residual-tested); *FFT bound* = circular value on the padded grid, an upper bound of the zero-padded norm. Linear layers: exact SVD/Gram eigenvalues (both column pairs).\n\n");
    s.push_str(&weighted_table(a, &weighted, alexlike).markdown());
    s.push_str("\nOther layers (ℓ₂ Lipschitz factors; max-pooling = √(max windows covering one pixel), exact):\n\n");
    s.push_str(&other_table(a).markdown());
    s.push_str(&whole_network(a, rep.empirical.as_ref()));
    if alexlike {
        s.push_str("\nPaper column: Table 5 of the arXiv version (DIGEST.md). Its strided formula's normalisation is off and it treats overlapping max-pooling as contractive (it is not: factor 2 for 3×3 stride 2); torchvision's AlexNet also has other channel widths (64/192/384/256/256) than the paper's (96/256/384/384/256), so only the order of magnitude is comparable, and only with trained weights.\n");
    }
    s
}

/// One row per conv/linear layer (`weighted`, in forward order): circular and zero-padded bounds, the FFT
/// bound, and the paper's row beside it when `alexlike`.
fn weighted_table(a: &Analysis, weighted: &[&str], alexlike: bool) -> Table {
    let find = |layer: &str, method: &str| {
        a.rows
            .iter()
            .find(|r| r.layer == layer && r.method == method)
    };
    let mut header = vec![
        "layer",
        "weight",
        "stride",
        "input",
        "lower (circular)",
        "upper (circular)",
        "lower (zero pad)",
        "upper (zero pad)",
        "FFT bound (zero pad)",
    ];
    if alexlike {
        header.extend(["paper layer", "paper size", "paper lower", "paper upper"]);
    }
    let mut t = Table::new(&header);
    for (i, name) in weighted.iter().enumerate() {
        let lin = a
            .rows
            .iter()
            .find(|r| r.layer == *name && r.kind == "linear");
        let circ = lin.or_else(|| find(name, "fft-circular"));
        let zero = lin.or_else(|| find(name, "iterative-zero"));
        let bound = find(name, "fft-zero-bound");
        let base = circ.or(zero).or(bound);
        let (ws, st, inp) = base
            .map(|r| {
                (
                    r.weight_shape.clone(),
                    r.stride.clone(),
                    r.input_shape.clone(),
                )
            })
            .unwrap_or_default();
        let mut row = vec![
            name.to_string(),
            ws,
            st,
            inp,
            short(circ.and_then(|r| r.lower)),
            short(circ.map(|r| r.upper)),
            short(zero.and_then(|r| r.lower)),
            short(zero.map(|r| r.upper)),
            short(bound.map(|r| r.upper)),
        ];
        if alexlike {
            let p = PAPER_TABLE5[i];
            row.extend([p.0, p.1, p.2, p.3].map(String::from));
        }
        t.push(row);
    }
    t
}

/// The layers without weights: pooling, activations, normalisation.
fn other_table(a: &Analysis) -> Table {
    let mut t = Table::new(&[
        "layer", "kind", "window", "input", "lower", "upper", "method",
    ]);
    for r in a
        .rows
        .iter()
        .filter(|r| r.kind != "conv2d" && r.kind != "linear")
    {
        t.push(vec![
            r.layer.clone(),
            r.kind.clone(),
            r.weight_shape.clone(),
            r.input_shape.clone(),
            short(r.lower),
            short(Some(r.upper)),
            r.method.clone(),
        ]);
    }
    t
}

/// The product bounds and the empirical ratio.
fn whole_network(a: &Analysis, emp: Option<&Empirical>) -> String {
    let mut s = String::from("\nWhole network (φ = logits):\n\n");
    s.push_str(&format!(
        "- product of per-layer upper bounds, convs by FFT bound (guaranteed): {}\n",
        short(Some(a.product_fft_bound))
    ));
    s.push_str(&format!(
        "- product of per-layer upper bounds, convs exact (zero pad): {}\n",
        short(a.product_exact)
    ));
    if let Some(e) = emp {
        s.push_str(&format!(
            "- largest ‖φ(x+r) − φ(x)‖/‖r‖ found by gradient ascent ({} starts × {} steps, ‖r‖ = {:.3}): {} (bound / found = {})\n",
            e.starts,
            e.steps,
            e.radius,
            short(Some(e.ratio)),
            short(a.product_exact.or(Some(a.product_fft_bound)).map(|b| b / e.ratio.max(1e-300)))
        ));
    }
    s
}

/// Draws the singular-value spectra (descending, log scale, x = normalised index) to a PNG or SVG.
pub fn plot_spectra(path: &Path, a: &Analysis) -> Result<()> {
    use plotters::prelude::*;
    crate::report::fonts::ensure_fonts();
    let mut lo = f64::INFINITY;
    let mut hi = 0f64;
    for s in &a.spectra {
        for &v in &s.values {
            if v > 0.0 {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    if !lo.is_finite() || hi <= 0.0 {
        return Err(Error::format(
            path,
            "nothing to plot: no spectrum has a positive singular value (check the model's weights)",
        ));
    }
    let lo = lo.max(hi * 1e-8) / 1.5;
    let hi = hi * 1.5;
    crate::io::with_atomic_path(path, |tmp| {
        let is_svg = path.extension().and_then(|e| e.to_str()) == Some("svg");
        if is_svg {
            draw(
                SVGBackend::new(tmp, (1000, 650)).into_drawing_area(),
                a,
                lo,
                hi,
                path,
            )
        } else {
            // plotters picks the image format from the extension: keep `.png` on the temporary name.
            let tmp_png = tmp.with_extension("png");
            draw(
                BitMapBackend::new(&tmp_png, (1000, 650)).into_drawing_area(),
                a,
                lo,
                hi,
                path,
            )?;
            std::fs::rename(&tmp_png, tmp).map_err(|e| Error::io(tmp, e))
        }
    })
}

fn draw<DB: plotters::prelude::DrawingBackend>(
    root: plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    a: &Analysis,
    lo: f64,
    hi: f64,
    path: &Path,
) -> Result<()> {
    use plotters::prelude::*;
    let err = |e: String| Error::format(path, format!("drawing the plot: {e}"));
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Singular values per layer (descending)", ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..1f64, (lo..hi).log_scale())
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("normalised index")
        .y_desc("singular value")
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (i, s) in a.spectra.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let n = s.values.len().max(2) as f64 - 1.0;
        let pts: Vec<(f64, f64)> = s
            .values
            .iter()
            .enumerate()
            .filter(|(_, &v)| v > 0.0)
            .map(|(j, &v)| (j as f64 / n, v.max(lo)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?
            .label(format!("{} ({})", s.layer, s.method))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerLeft)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
