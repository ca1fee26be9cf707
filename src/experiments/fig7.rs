//! The Fig 7 stage (§4.2): adversarials of the shown test images and Gaussian-noise accuracies, computed
//! by [`crate::attack::fig7`] and saved in `fig7/`; the report draws the grids there.

use super::stage::{model_needs, Ctx, Stage};
use crate::config::{Experiment, Fig7Stage};
use crate::models::zoo::ZooModel;
use crate::Result;
use std::path::{Path, PathBuf};

/// Fig 7 of the experiment's models.
pub(crate) struct Fig7Run<'a> {
    pub stage: &'a Fig7Stage,
}

impl Stage for Fig7Run<'_> {
    fn label(&self) -> String {
        "fig7".into()
    }
    fn dir(&self, run_dir: &Path) -> PathBuf {
        run_dir.join("fig7")
    }
    fn needs(&self, exp: &Experiment) -> Vec<String> {
        self.stage
            .models
            .iter()
            .flat_map(|m| model_needs(exp, m))
            .collect()
    }
    fn inputs(&self, ctx: &Ctx) -> Result<serde_json::Value> {
        let models = self
            .stage
            .models
            .iter()
            .map(|m| ctx.model_input(m))
            .collect::<Result<Vec<_>>>()?;
        Ok(serde_json::json!({
            "common": ctx.common(ctx.exp.seed), "stage": self.stage, "models": models,
            "data": ctx.data_input(), "attack": crate::attack::AttackSettings::default()
        }))
    }
    fn margin(&self) -> Option<f64> {
        Some(crate::attack::AttackSettings::default().min_margin)
    }
    fn run(&self, ctx: &Ctx, dir: &Path) -> Result<()> {
        let models = self
            .stage
            .models
            .iter()
            .map(|m| ZooModel::load(&ctx.exp.model_path(m), ctx.device))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&dyn crate::models::Classifier> = models
            .iter()
            .map(|m| m as &dyn crate::models::Classifier)
            .collect();
        let test = &ctx.data.test;
        crate::attack::fig7::fig7(
            &refs,
            &test.images.f_narrow(0, 0, self.stage.images)?,
            &test.labels.f_narrow(0, 0, self.stage.images)?,
            &test.images,
            &test.labels,
            dir,
            ctx.exp.seed,
            &crate::attack::AttackSettings::default(),
        )?;
        crate::report::fig7::draw(dir)
    }
}
