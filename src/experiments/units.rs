//! The units stages (§3, Figs 1–4): units vs random directions at one layer of a model, in
//! `units/<model>-<layer>/`.

use super::stage::{model_needs, Ctx, Stage};
use crate::config::{Experiment, UnitsStage};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The folder of a units stage.
pub(crate) fn units_dir(run_dir: &Path, u: &UnitsStage) -> PathBuf {
    run_dir.join("units").join(format!(
        "{}-{}",
        crate::config::model_stem(&u.model),
        crate::results::folder_name(&u.layer)
    ))
}

/// Units vs random directions at one layer.
pub(crate) struct UnitsRun<'a> {
    pub stage: &'a UnitsStage,
}

impl Stage for UnitsRun<'_> {
    fn label(&self) -> String {
        format!("units/{}-{}", self.stage.model, self.stage.layer)
    }
    fn dir(&self, run_dir: &Path) -> PathBuf {
        units_dir(run_dir, self.stage)
    }
    fn needs(&self, exp: &Experiment) -> Vec<String> {
        model_needs(exp, &self.stage.model)
    }
    fn inputs(&self, ctx: &Ctx) -> Result<serde_json::Value> {
        let data = match self.stage.data.as_str() {
            "mnist-test" | "mnist-train" => ctx.data_input(),
            folder => ctx.folder_input(Path::new(folder))?,
        };
        Ok(serde_json::json!({
            "common": ctx.common(ctx.exp.seed), "stage": self.stage,
            "model": ctx.model_input(&self.stage.model)?, "data": data
        }))
    }
    fn run(&self, ctx: &Ctx, d: &Path) -> Result<()> {
        let u = self.stage;
        let label = self.label();
        let spec = crate::units::UnitsSpec {
            data: u.data.clone(),
            units: u.units.parse().map_err(|e: crate::units::UnitsError| {
                Error::config(&label, "units", e.to_string())
            })?,
            random: u.random,
            orthogonal: u.orthogonal,
            top: u.top,
            seed: ctx.exp.seed,
            ..crate::units::UnitsSpec::new(&u.layer)
        };
        let model = ctx.exp.model_path(&u.model);
        let m = crate::models::torchscript::load_classifier(&model, ctx.device)?;
        crate::units::run(m.as_ref(), &spec, d, |dir, s| {
            crate::report::units::draw(dir)?;
            println!("[{}] {}", s.layer, s.conclusion);
            Ok(())
        })
        .map(|_| ())
    }
}
