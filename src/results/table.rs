//! Tables as Markdown and CSV, written atomically: the one table writer of every result file and report.

use crate::{Error, Result};
use std::path::Path;

/// A table: a header and rows of cells (already formatted).
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// GitHub-flavoured Markdown.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "| {} |\n|{}\n",
            self.header.join(" | "),
            "---|".repeat(self.header.len())
        );
        for r in &self.rows {
            s.push_str(&format!(
                "| {} |\n",
                r.iter()
                    .map(|c| c.replace('|', "\\|"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
        s
    }

    /// CSV text (RFC 4180 quoting, as the `csv` crate writes it); `path` names the file in errors.
    pub fn csv(&self, path: &Path) -> Result<String> {
        let map = |e: &dyn std::fmt::Display| Error::format(path, format!("writing CSV: {e}"));
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&self.header).map_err(|e| map(&e))?;
        for r in &self.rows {
            w.write_record(r).map_err(|e| map(&e))?;
        }
        let bytes = w.into_inner().map_err(|e| map(&e))?;
        String::from_utf8(bytes).map_err(|e| map(&e))
    }

    /// Writes the CSV text to `path` atomically.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        crate::io::write_atomic(path, self.csv(path)?.as_bytes())
    }
}

/// Formats a fraction as a percentage with two decimals, or `–` when absent.
pub fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.2}%", 100.0 * x))
        .unwrap_or_else(|| "–".into())
}
