//! The cross-model tables (§4.2, Tables 2 and 4) as Markdown, ours beside the paper's value in every cell
//! the paper has, rendered from `transfer.json` (`crate::results::transfer`).

use crate::report::paper::{paper_transfer, paper_transfer_distortion};
use crate::results::transfer::{RowKind, TransferTable};
use crate::results::Table;
use crate::Result;
use std::path::Path;

/// Markdown table: one line per row, "ours (paper)" in every cell where the paper has a value.
pub fn markdown(t: &TransferTable) -> String {
    let mut head = vec!["examples".to_string(), "n".into()];
    head.extend(t.models.iter().cloned());
    head.push("distortion (ours / paper)".into());
    let head_refs: Vec<&str> = head.iter().map(|s| s.as_str()).collect();
    let mut tab = Table::new(&head_refs);
    for r in &t.rows {
        let key = r.key();
        let label = match r.kind {
            RowKind::Adversarial => format!("adversarial for {}", r.source),
            RowKind::Gaussian => format!(
                "Gaussian σ = {}{}",
                r.param.unwrap_or(f64::NAN),
                if t.clip_noise {
                    ", clipped"
                } else {
                    ", not clipped"
                }
            ),
            RowKind::Amplified => {
                format!("{}, amplified to {}", r.source, r.param.unwrap_or(f64::NAN))
            }
        };
        let mut line = vec![label, r.examples.to_string()];
        for (m, e) in t.models.iter().zip(&r.errors) {
            let (lo, hi) =
                super::interval::wilson((e * r.examples as f64).round(), r.examples as f64);
            let ours = format!("{:.1}% [{:.1}, {:.1}]", 100.0 * e, 100.0 * lo, 100.0 * hi);
            line.push(match paper_transfer(&key, m) {
                Some(p) => format!("{ours} ({:.1}%)", 100.0 * p),
                None => ours,
            });
        }
        line.push(match paper_transfer_distortion(&key) {
            Some(p) => format!("{:.4} / {p}", r.distortion),
            None => format!("{:.4} / –", r.distortion),
        });
        tab.push(line);
    }
    tab.markdown()
}

/// Writes `transfer.md` into a table's folder from its `transfer.json`.
pub fn write(dir: &Path) -> Result<String> {
    let t = crate::results::transfer::read(dir)?;
    let md = markdown(&t);
    crate::io::write_atomic(
        &dir.join("transfer.md"),
        format!(
            "# Cross-model generalisation (§4.2, Tables 2 and 4)\n\nError of each column's model on each row's examples; the paper's value in brackets.\n\n{md}"
        )
        .as_bytes(),
    )?;
    Ok(md)
}
