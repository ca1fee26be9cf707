//! Spectral analysis of instability (§4.3, Table 5): exact per-layer frame bounds, their product as a
//! whole-network Lipschitz bound, and the empirical ratio found by gradient ascent beside it.
//!
//! | paper | module |
//! |---|---|
//! | conv layers: the Fourier formula of §4.3 (normalisation corrected) | [`conv`] |
//! | zero-padded convs exactly (what torch applies): Lanczos on `AᵀA` | [`power`] |
//! | fully connected layers; dense references of every operator | [`dense`] |
//! | max-pooling, average pooling, local response normalisation | [`pool`] |
//! | the layer walk over a network (zoo folder, TorchScript + layer spec) | [`network`], [`analysis`] |
//! | "how loose is the bound": gradient ascent on the Lipschitz ratio | [`empirical`] |
//!
//! Entry point: [`run`] on a [`SpectralSpec`] writes `bounds.csv` and `bounds.json` (the types of
//! `crate::results::spectral`); `crate::report::spectral` renders `table5.md` and `spectrum.png` from them.
//! [`analyse_spec`] is the same analysis without writing files, [`analyse_network`] the same on a network
//! already built (the Python package's `blindspot.spectral`).

pub mod analysis;
pub mod conv;
pub mod dense;
pub mod empirical;
mod error;
pub mod network;
pub mod pool;
pub mod power;

pub use crate::results::spectral::{
    Analysis, Empirical, IterRecord, LayerInfo, Mode, Row, SpectralReport, Spectrum,
};
pub use analysis::{analyse, AnalyseOptions};
pub use empirical::empirical_ratio;
pub use error::SpectralError;

use crate::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One spectral analysis (`blindspot spectral`, a `spectral:` stage): the model and how to analyse it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpectralSpec {
    /// A zoo model folder (model.json + weights.safetensors) or a TorchScript file (.pt).
    pub model: PathBuf,
    /// YAML layer spec for TorchScript models not in torchvision's AlexNet layout (`--spec`,
    /// `docs/spectral.md`); zoo folders default to their own architecture.
    #[serde(default)]
    pub layer_spec: Option<PathBuf>,
    /// Per-example input shape `[C, H, W]` (required for TorchScript; zoo folders default to their own).
    #[serde(default)]
    pub input_shape: Option<Vec<i64>>,
    /// Conv boundary handling: circular (FFT, exact), zero (torch's zero padding, Lanczos), both.
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// Lanczos residual tolerance ‖AᵀAv − σ²v‖ ≤ tol·σ²_max, in (0, 1).
    #[serde(default = "default_tol")]
    pub tol: f64,
    /// Lanczos steps per conv layer at most.
    #[serde(default = "default_max_iter")]
    pub max_iter: usize,
    /// Converge the smallest zero-padded singular value too (`false`: faster on large layers).
    #[serde(default = "default_true")]
    pub zero_lower: bool,
    /// Gradient-ascent steps for the empirical Lipschitz ratio (0: one evaluation only).
    #[serde(default = "default_ascent_steps")]
    pub ascent_steps: usize,
    /// Random starting points of the gradient ascent (≤ 0: no empirical ratio).
    #[serde(default = "default_ascent_starts")]
    pub ascent_starts: i64,
    /// Seed of the Lanczos start vectors and of the gradient ascent.
    #[serde(default)]
    pub seed: i64,
}

fn default_mode() -> Mode {
    Mode::Both
}
fn default_tol() -> f64 {
    1e-6
}
fn default_max_iter() -> usize {
    300
}
fn default_true() -> bool {
    true
}
fn default_ascent_steps() -> usize {
    50
}
fn default_ascent_starts() -> i64 {
    2
}

impl SpectralSpec {
    /// The defaults (those of `blindspot spectral`) for `model`.
    pub fn new(model: impl Into<PathBuf>) -> Self {
        SpectralSpec {
            model: model.into(),
            layer_spec: None,
            input_shape: None,
            mode: default_mode(),
            tol: default_tol(),
            max_iter: default_max_iter(),
            zero_lower: true,
            ascent_steps: default_ascent_steps(),
            ascent_starts: default_ascent_starts(),
            seed: 0,
        }
    }

    /// Checks the settings (before any model is loaded): `tol` in (0, 1), a positive input shape.
    pub fn validate(&self) -> Result<()> {
        if !(self.tol > 0.0 && self.tol < 1.0) {
            return Err(SpectralError::Setting {
                flag: "tol",
                value: self.tol,
                range: "(0, 1)",
            }
            .into());
        }
        if let Some(s) = &self.input_shape {
            if s.is_empty() || s.iter().any(|&d| d <= 0) {
                return Err(SpectralError::InputShape { shape: s.clone() }.into());
            }
        }
        Ok(())
    }
}

/// Parses `C,H,W` (or any comma-separated positive dimensions), as `--input-shape` and `input_shape:`.
pub fn parse_shape(s: &str) -> Result<Vec<i64>> {
    let v: std::result::Result<Vec<i64>, _> =
        s.split(',').map(|p| p.trim().parse::<i64>()).collect();
    match v {
        Ok(v) if !v.is_empty() && v.iter().all(|&d| d > 0) => Ok(v),
        _ => Err(SpectralError::InputShapeText {
            text: s.to_string(),
        }
        .into()),
    }
}

/// Runs the analysis of `spec` on `device` and writes `bounds.csv` and `bounds.json` into `out`
/// (`crate::report::spectral::render(out)` then draws `table5.md` and `spectrum.png` from them).
pub fn run(spec: &SpectralSpec, out: &Path, device: tch::Device) -> Result<SpectralReport> {
    let rep = analyse_spec(spec, device)?;
    crate::results::spectral::write(out, &rep)?;
    Ok(rep)
}

/// The analysis of [`run`] without writing files: the report of `bounds.json`.
pub fn analyse_spec(spec: &SpectralSpec, device: tch::Device) -> Result<SpectralReport> {
    let t0 = std::time::Instant::now();
    spec.validate()?;
    let (net, source) = network::load(
        &spec.model,
        spec.layer_spec.as_deref(),
        spec.input_shape.as_deref(),
        device,
    )?;
    let module = match &source {
        network::Source::TorchScript(_, m) => Some(m),
        network::Source::Zoo(_) => None,
    };
    analyse_network(&net, module, spec, device, t0)
}

/// The analysis of [`run`] on a network already built (from a folder or file by [`network::load`], from
/// a model in memory by [`network::from_zoo`] or [`network::from_module`]), without writing files:
/// `module` (a TorchScript model's) is cross-checked against the network's forward pass; `spec.model`
/// only names the model in the warning; `t0` is when the work began (the report's `seconds`).
pub fn analyse_network(
    net: &network::Network,
    module: Option<&tch::CModule>,
    spec: &SpectralSpec,
    device: tch::Device,
    t0: std::time::Instant,
) -> Result<SpectralReport> {
    spec.validate()?;
    let forward_mismatch = match module {
        Some(m) => {
            let d = network::forward_mismatch(net, m, device)?;
            if d > 1e-3 {
                log::warn!(
                    "{}: our forward pass from the layer spec differs from the TorchScript module by {d:.2e} (relative): the spec may not describe the model",
                    spec.model.display()
                );
            }
            Some(d)
        }
        None => None,
    };
    let opts = AnalyseOptions {
        mode: spec.mode,
        tol: spec.tol,
        max_iter: spec.max_iter,
        zero_lower: spec.zero_lower,
        device,
        seed: spec.seed,
        ..Default::default()
    };
    let analysis = analyse(net, &opts)?;
    let empirical = if spec.ascent_starts > 0 {
        Some(empirical_ratio(
            net,
            spec.ascent_steps,
            spec.ascent_starts,
            spec.seed,
            device,
        )?)
    } else {
        None
    };
    let rep = SpectralReport {
        source: net.source.clone(),
        input_shape: net.input_shape.clone(),
        layers: net.layer_infos(),
        mode: spec.mode,
        analysis,
        empirical,
        forward_mismatch,
        seconds: t0.elapsed().as_secs_f64(),
    };
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_defaults_and_validation() {
        let s: SpectralSpec = serde_norway::from_str("model: m.pt").unwrap();
        assert_eq!(s, SpectralSpec::new("m.pt"));
        assert!(serde_norway::from_str::<SpectralSpec>("model: m.pt\nmodes: zero").is_err());
        let e = SpectralSpec {
            tol: 2.0,
            ..SpectralSpec::new("m.pt")
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert_eq!(e, "--tol 2 must be in (0, 1); pass a value in that range");
        let bad = SpectralSpec {
            input_shape: Some(vec![3, 0, 4]),
            ..SpectralSpec::new("m.pt")
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn shapes_parse() {
        assert_eq!(parse_shape("3, 224,224").unwrap(), vec![3, 224, 224]);
        for bad in ["3,x,4", "", "3,-1", "0"] {
            let e = parse_shape(bad).unwrap_err().to_string();
            assert!(e.contains("--input-shape"), "{e}");
        }
    }
}
