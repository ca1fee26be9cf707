//! What a units analysis leaves in its folder, written through [`crate::results::units`]: the tables of a
//! scan (`topk.csv`, `metrics.csv`) and what its figures show (`figures.safetensors` + `figures.json`: the
//! top images of the first directions of each kind and the row labels), from which
//! [`crate::report::units`] draws Figs 1–4 without the data set.

use crate::data::sources::Dataset;
use crate::results::units::{self as files, DirectionKind, KindFigure, TopList, UnitsFigures};
use crate::units::metrics::{direction_metrics, label_counts, purity};
use crate::units::{Directions, Scan};
use crate::Result;
use std::path::Path;
use tch::Tensor;

/// Writes `topk.csv` and `metrics.csv` of `scan` into `out` (labels: by data index, if labelled).
pub(crate) fn write_tables(out: &Path, scan: &Scan, labels: Option<&[i64]>) -> Result<()> {
    files::write_topk_csv(&out.join("topk.csv"), &scan.lists, labels)?;
    let metrics = labels.map(|l| direction_metrics(&scan.lists, l));
    files::write_metrics_csv(&out.join("metrics.csv"), &scan.lists, metrics.as_deref())
}

/// What the figures of a scan show (Figs 1-4): per kind, a row per direction (the first `rows` whose top
/// set is not decided by ties) with its top `cols` images, fetched from `data`.
pub(crate) fn figures(
    scan: &Scan,
    dirs: &Directions,
    data: &dyn Dataset,
    title: &str,
    rows: usize,
    cols: usize,
) -> Result<UnitsFigures> {
    let labels = data.labels();
    let names = data.class_names();
    let mut kinds = Vec::new();
    for kind in DirectionKind::ALL {
        let chosen: Vec<&TopList> = scan
            .lists
            .iter()
            .filter(|l| l.kind == kind && !l.tie_decided)
            .take(rows)
            .collect();
        if chosen.is_empty() {
            continue;
        }
        let mut row_labels = Vec::new();
        let mut images = Vec::new();
        for l in chosen {
            let idx: Vec<usize> = l.data.iter().take(cols).copied().collect();
            images.push(data.fetch(&idx)?); // [k, C, H, W]
            row_labels.push(row_label(l, dirs, labels.as_deref(), &names));
        }
        kinds.push(KindFigure {
            kind,
            labels: row_labels,
            images: Tensor::f_stack(&images, 0)?, // [rows, k, C, H, W]
        });
    }
    Ok(UnitsFigures {
        title: title.to_string(),
        kinds,
    })
}

/// The label of a figure row: the direction, the unit's position, and (labelled data) the purity and
/// majority class of its top images.
fn row_label(l: &TopList, dirs: &Directions, labels: Option<&[i64]>, names: &[String]) -> String {
    let mut label = match l.unit {
        Some(u) if dirs.layer_shape.len() > 1 => {
            format!("unit {u}\n{}", dirs.unit_position(u))
        }
        Some(u) => format!("unit {u}"),
        None => format!("{} {}", l.kind.as_str(), l.index),
    };
    if let Some(ls) = labels {
        let tl: Vec<i64> = l
            .data
            .iter()
            .map(|&i| ls.get(i).copied().unwrap_or(-1))
            .collect();
        let c = label_counts(&tl);
        let maj = c
            .iter()
            .enumerate()
            .max_by_key(|x| x.1)
            .map(|x| x.0)
            .unwrap_or(0);
        let mname = names.get(maj).cloned().unwrap_or_else(|| maj.to_string());
        label.push_str(&format!("\npurity {:.2} ({mname})", purity(&c)));
    }
    label
}
