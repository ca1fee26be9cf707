//! Tables as Markdown and CSV, written atomically.

use crate::Result;
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

    /// CSV text.
    pub fn csv(&self) -> Result<String> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let map = |e: csv::Error| crate::Error::Other(format!("csv: {e}"));
        w.write_record(&self.header).map_err(map)?;
        for r in &self.rows {
            w.write_record(r).map_err(map)?;
        }
        let bytes = w
            .into_inner()
            .map_err(|e| crate::Error::Other(format!("csv: {e}")))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    pub fn write_csv(&self, path: &Path) -> Result<()> {
        crate::io::write_atomic(path, self.csv()?.as_bytes())
    }
}

/// Formats a fraction as a percentage with two decimals, or `–` when absent.
pub fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.2}%", 100.0 * x))
        .unwrap_or_else(|| "–".into())
}
