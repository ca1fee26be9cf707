//! The units stages (§3, Figs 1–4): units vs random directions at one layer of a model, in
//! `units/<model>-<layer>/`.

use super::stage::{model_fingerprint, model_needs, Ctx, Stage, STAGE_VERSION};
use crate::config::{Experiment, UnitsStage};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The folder of a units stage.
pub(crate) fn units_dir(run_dir: &Path, u: &UnitsStage) -> PathBuf {
    run_dir.join("units").join(format!(
        "{}-{}",
        super::sanitize(&u.model),
        super::sanitize(&u.layer)
    ))
}

/// Units vs random directions at one layer.
pub(crate) struct UnitsRun<'a> {
    pub stage: &'a UnitsStage,
}

#[derive(clap::Parser)]
struct UnitsCli {
    #[command(flatten)]
    args: crate::units::UnitsArgs,
}

impl Stage for UnitsRun<'_> {
    fn label(&self) -> String {
        format!("units/{}-{}", self.stage.model, self.stage.layer)
    }
    fn dir(&self, run_dir: &Path) -> PathBuf {
        units_dir(run_dir, self.stage)
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
        let u = self.stage;
        let model = ctx.exp.model_path(&u.model);
        let argv: Vec<String> = [
            "units",
            "--model",
            &model.to_string_lossy(),
            "--layer",
            &u.layer,
            "--data",
            &u.data,
            "--units",
            &u.units,
            "--random",
            &u.random.to_string(),
            "--top",
            &u.top.to_string(),
            "--out",
            &d.to_string_lossy(),
            "--seed",
            &ctx.exp.seed.to_string(),
            "--device",
            &ctx.exp.device,
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(u.orthogonal.then(|| "--orthogonal".to_string()))
        .collect();
        let cli = UnitsCli::try_parse_from(argv)
            .map_err(|e| Error::Invalid(format!("{}: {e}", self.label())))?;
        crate::units::run(&cli.args).map(|_| ())
    }
}
