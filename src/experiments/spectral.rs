//! The spectral stages (§4.3, Table 5): per-layer frame bounds of one model, in `spectral/<model>/`.

use super::stage::{model_needs, Ctx, Stage};
use crate::config::{Experiment, SpectralStage};
use crate::Result;
use std::path::{Path, PathBuf};

/// The folder of a spectral stage.
pub(crate) fn spectral_dir(run_dir: &Path, sp: &SpectralStage) -> PathBuf {
    run_dir
        .join("spectral")
        .join(crate::config::model_stem(&sp.model))
}

/// The frame bounds of one model.
pub(crate) struct SpectralRun<'a> {
    pub stage: &'a SpectralStage,
}

impl Stage for SpectralRun<'_> {
    fn label(&self) -> String {
        format!("spectral/{}", self.stage.model)
    }
    fn dir(&self, run_dir: &Path) -> PathBuf {
        spectral_dir(run_dir, self.stage)
    }
    fn needs(&self, exp: &Experiment) -> Vec<String> {
        model_needs(exp, &self.stage.model)
    }
    fn inputs(&self, ctx: &Ctx) -> Result<serde_json::Value> {
        let layer_spec = match &self.stage.spec {
            Some(p) => Some(ctx.file_sha(p)?),
            None => None,
        };
        Ok(serde_json::json!({
            "common": ctx.common(ctx.exp.seed), "stage": self.stage,
            "model": ctx.model_input(&self.stage.model)?, "layer_spec": layer_spec
        }))
    }
    fn run(&self, ctx: &Ctx, d: &Path) -> Result<()> {
        use crate::spectral::{SpectralError, SpectralSpec};
        let sp = self.stage;
        let model = ctx.exp.model_path(&sp.model);
        let mode = sp.mode.parse().map_err(SpectralError::from)?;
        let seed =
            i64::try_from(ctx.exp.seed).map_err(|_| SpectralError::Seed { seed: ctx.exp.seed })?;
        let spec = SpectralSpec {
            layer_spec: sp.spec.clone(),
            input_shape: sp
                .input_shape
                .as_deref()
                .map(crate::spectral::parse_shape)
                .transpose()?,
            mode,
            seed,
            ..SpectralSpec::new(&model)
        };
        crate::spectral::run(&spec, d, ctx.device)?;
        crate::report::spectral::render(d)
    }
}
