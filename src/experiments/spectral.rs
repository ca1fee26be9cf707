//! The spectral stages (§4.3, Table 5): per-layer frame bounds of one model, in `spectral/<model>/`.

use super::stage::{model_fingerprint, model_needs, Ctx, Stage, STAGE_VERSION};
use crate::config::{Experiment, SpectralStage};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The folder of a spectral stage.
pub(crate) fn spectral_dir(run_dir: &Path, sp: &SpectralStage) -> PathBuf {
    run_dir.join("spectral").join(super::sanitize(&sp.model))
}

/// The frame bounds of one model.
pub(crate) struct SpectralRun<'a> {
    pub stage: &'a SpectralStage,
}

#[derive(clap::Parser)]
struct SpectralCli {
    #[command(flatten)]
    args: crate::spectral::SpectralArgs,
}

impl Stage for SpectralRun<'_> {
    fn label(&self) -> String {
        format!("spectral/{}", self.stage.model)
    }
    fn dir(&self, run_dir: &Path) -> PathBuf {
        spectral_dir(run_dir, self.stage)
    }
    fn needs(&self, exp: &Experiment, run_dir: &Path) -> Vec<PathBuf> {
        model_needs(exp, run_dir, &self.stage.model)
    }
    fn fingerprint(&self, ctx: &Ctx) -> Result<serde_json::Value> {
        let model = ctx.exp.model_path(&self.stage.model);
        Ok(serde_json::json!({
            "v": STAGE_VERSION, "stage": self.stage, "seed": ctx.exp.seed,
            "model": model_fingerprint(&model)
        }))
    }
    fn run(&self, ctx: &Ctx, d: &Path) -> Result<()> {
        use clap::Parser;
        let sp = self.stage;
        let model = ctx.exp.model_path(&sp.model);
        let mut argv: Vec<String> = [
            "spectral",
            "--model",
            &model.to_string_lossy(),
            "--out",
            &d.to_string_lossy(),
            "--mode",
            &sp.mode,
            "--device",
            &ctx.exp.device,
            "--seed",
            &ctx.exp.seed.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(s) = &sp.spec {
            argv.extend(["--spec".to_string(), s.to_string_lossy().into_owned()]);
        }
        if let Some(s) = &sp.input_shape {
            argv.extend(["--input-shape".to_string(), s.clone()]);
        }
        let cli = SpectralCli::try_parse_from(argv)
            .map_err(|e| Error::Invalid(format!("{}: {e}", self.label())))?;
        crate::spectral::run(&cli.args).map(|_| ())
    }
}
