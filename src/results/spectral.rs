//! Result files of the spectral analysis (§4.3, Table 5): `bounds.csv` (one row per layer and method) and
//! `bounds.json` (everything: rows, spectra, Lanczos records, the network's layers, product bounds, the
//! empirical Lipschitz ratio). `crate::spectral` produces a [`SpectralReport`]; [`write()`] stores it and
//! [`read()`] gives it back, so `crate::report::spectral` renders `table5.md` and `spectrum.png` from files.

use super::Table;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `bounds.csv`: one row per layer and method.
pub const BOUNDS_CSV: &str = "bounds.csv";
/// `bounds.json`: the whole [`SpectralReport`].
pub const BOUNDS_JSON: &str = "bounds.json";

/// The exact CSV header of `bounds.csv`.
pub const CSV_HEADER: [&str; 8] = [
    "layer",
    "kind",
    "weight_shape",
    "stride",
    "input_shape",
    "lower",
    "upper",
    "method",
];

/// Which boundary handling the conv bounds use (`--mode`, `mode:` of a stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Circular convolution on the layer's input size: FFT, exact (the paper's method).
    Circular,
    /// Zero padding (what torch computes): exact by Lanczos, with the FFT bound beside it.
    Zero,
    /// Both.
    Both,
}

impl Mode {
    /// Every mode, as written on the command line and in YAML.
    pub const NAMES: [&'static str; 3] = ["circular", "zero", "both"];

    /// The name as written on the command line, in YAML and in `bounds.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Circular => "circular",
            Mode::Zero => "zero",
            Mode::Both => "both",
        }
    }
}

/// A mode name that is not one of [`Mode::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mode `{0}` is not known; use circular, zero or both")]
pub struct UnknownMode(pub String);

impl std::str::FromStr for Mode {
    type Err = UnknownMode;
    fn from_str(s: &str) -> std::result::Result<Self, UnknownMode> {
        match s {
            "circular" => Ok(Mode::Circular),
            "zero" => Ok(Mode::Zero),
            "both" => Ok(Mode::Both),
            _ => Err(UnknownMode(s.to_string())),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of `bounds.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub layer: String,
    pub kind: String,
    pub weight_shape: String,
    pub stride: String,
    pub input_shape: String,
    /// Empty when the method gives no lower bound (an upper bound only, or unconverged).
    pub lower: Option<f64>,
    #[serde(deserialize_with = "lossy::f64")]
    pub upper: f64,
    pub method: String,
}

/// Sorted (descending) singular values of one layer, subsampled for plotting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spectrum {
    pub layer: String,
    pub method: String,
    pub count: i64,
    #[serde(deserialize_with = "lossy::vec")]
    pub values: Vec<f64>,
}

/// Extreme singular values of an operator found from its Gram operator, with their convergence record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extremes {
    #[serde(deserialize_with = "lossy::f64")]
    pub sigma_max: f64,
    #[serde(deserialize_with = "lossy::f64")]
    pub sigma_min: f64,
    /// `‖G v − θ v‖ / θ_max` of the top and bottom Ritz pairs.
    #[serde(deserialize_with = "lossy::f64")]
    pub rel_residual_max: f64,
    #[serde(deserialize_with = "lossy::f64")]
    pub rel_residual_min: f64,
    pub converged_max: bool,
    pub converged_min: bool,
    pub iterations: usize,
}

/// Convergence record of one iterative (zero-padded) conv computation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterRecord {
    pub layer: String,
    pub dimension: i64,
    /// `Float` or `Double`: the precision of the convolutions inside Lanczos.
    pub precision: String,
    pub seconds: f64,
    pub extremes: Extremes,
}

/// All per-layer results of the analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub rows: Vec<Row>,
    pub spectra: Vec<Spectrum>,
    pub iterative: Vec<IterRecord>,
    /// Product of the per-layer upper bounds, convs by the exact zero-padded norm (when computed).
    pub product_exact: Option<f64>,
    /// Product with convs by the FFT bound on the padded torus: a guaranteed upper bound.
    #[serde(deserialize_with = "lossy::f64")]
    pub product_fft_bound: f64,
    /// Seconds per layer and method.
    pub timings: Vec<(String, String, f64)>,
}

/// The largest ratio `‖φ(x + r) − φ(x)‖ / ‖r‖` found by gradient ascent (Adam) over `x` and the
/// direction of `r` (radius fixed at RMS 0.01 per coordinate), from `starts` random `x ∈ [0, 1]ⁿ`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Empirical {
    #[serde(deserialize_with = "lossy::f64")]
    pub ratio: f64,
    pub radius: f64,
    pub steps: usize,
    pub starts: i64,
}

/// One layer of the analysed network, in forward order: what `table5.md` pairs with the paper's rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// Parameter prefix (conv, linear) or given/derived name (`relu#3`).
    pub name: String,
    /// As in a layer spec and in `bounds.csv`: `conv2d`, `linear`, `max_pool2d`, …, `dropout`, `flatten`.
    pub kind: String,
    /// Per-example input and output shapes (e.g. `[3, 224, 224]` → `[64, 55, 55]`).
    pub input_shape: Vec<i64>,
    pub output_shape: Vec<i64>,
}

/// Everything one analysis computed: the content of `bounds.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpectralReport {
    pub source: String,
    pub input_shape: Vec<i64>,
    /// The network's layers in forward order (every layer, with or without a row in `bounds.csv`).
    pub layers: Vec<LayerInfo>,
    pub mode: Mode,
    pub analysis: Analysis,
    pub empirical: Option<Empirical>,
    /// TorchScript only: max |ours − module| / max |module| of the logits on a random input.
    pub forward_mismatch: Option<f64>,
    pub seconds: f64,
}

/// `bounds.csv` as a table: the header [`CSV_HEADER`], numbers as `{:.9e}`, an empty `lower` for none.
pub fn csv_table(rows: &[Row]) -> Table {
    let mut t = Table::new(&CSV_HEADER);
    for r in rows {
        t.push(vec![
            r.layer.clone(),
            r.kind.clone(),
            r.weight_shape.clone(),
            r.stride.clone(),
            r.input_shape.clone(),
            r.lower.map(fmt_num).unwrap_or_default(),
            fmt_num(r.upper),
            r.method.clone(),
        ]);
    }
    t
}

fn fmt_num(v: f64) -> String {
    format!("{v:.9e}")
}

/// Writes `bounds.csv` and `bounds.json` into `dir` (created if needed), each atomically.
pub fn write(dir: &Path, report: &SpectralReport) -> Result<()> {
    csv_table(&report.analysis.rows).write_csv(&dir.join(BOUNDS_CSV))?;
    crate::io::write_json(&dir.join(BOUNDS_JSON), report)
}

/// Reads `bounds.json` from `dir`. (JSON writes non-finite numbers as `null`; they come back as NaN.)
pub fn read(dir: &Path) -> Result<SpectralReport> {
    let path = dir.join(BOUNDS_JSON);
    if !path.exists() {
        return Err(Error::format(
            &path,
            "missing: run `blindspot spectral` (or the experiment's spectral stage) to write it",
        ));
    }
    crate::io::read_json(&path)
}

/// Readers of plain `f64` fields that JSON may hold as `null` (NaN and infinities are written so).
mod lossy {
    use serde::{Deserialize, Deserializer};

    pub(super) fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }

    pub(super) fn vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?
            .into_iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> SpectralReport {
        SpectralReport {
            source: "m".into(),
            input_shape: vec![1, 4, 4],
            layers: vec![LayerInfo {
                name: "fc".into(),
                kind: "linear".into(),
                input_shape: vec![1, 4, 4],
                output_shape: vec![3],
            }],
            mode: Mode::Zero,
            analysis: Analysis {
                rows: vec![Row {
                    layer: "fc".into(),
                    kind: "linear".into(),
                    weight_shape: "3x16".into(),
                    stride: String::new(),
                    input_shape: "1x4x4".into(),
                    lower: None,
                    upper: 0.1 + 0.2,
                    method: "svd".into(),
                }],
                spectra: vec![Spectrum {
                    layer: "fc".into(),
                    method: "svd".into(),
                    count: 2,
                    values: vec![2.5, f64::NAN],
                }],
                iterative: vec![],
                product_exact: None,
                product_fft_bound: 3.0,
                timings: vec![("fc".into(), "svd".into(), 0.5)],
            },
            empirical: Some(Empirical {
                ratio: 1.25,
                radius: 0.04,
                steps: 3,
                starts: 2,
            }),
            forward_mismatch: Some(f64::INFINITY),
            seconds: 1.0,
        }
    }

    #[test]
    fn bounds_round_trip_and_csv_text() {
        let dir = tempfile::tempdir().unwrap();
        let r = report();
        write(dir.path(), &r).unwrap();
        let csv = std::fs::read_to_string(dir.path().join(BOUNDS_CSV)).unwrap();
        assert_eq!(
            csv,
            "layer,kind,weight_shape,stride,input_shape,lower,upper,method\nfc,linear,3x16,,1x4x4,,3.000000000e-1,svd\n"
        );
        let back = read(dir.path()).unwrap();
        assert_eq!(back.analysis.rows, r.analysis.rows);
        assert_eq!(back.layers, r.layers);
        assert!(back.analysis.spectra[0].values[1].is_nan());
        // Non-finite optional numbers come back as absent (JSON has no infinity).
        assert_eq!(back.forward_mismatch, None);
        assert!(read(&dir.path().join("nothing")).is_err());
    }

    #[test]
    fn mode_names_parse_and_print() {
        for n in Mode::NAMES {
            assert_eq!(n.parse::<Mode>().unwrap().to_string(), n);
        }
        let e = "diagonal".parse::<Mode>().unwrap_err().to_string();
        assert!(e.contains("diagonal") && e.contains("circular"), "{e}");
    }
}
