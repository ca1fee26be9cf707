//! The attack stages (§4.1; Table 1's and Table 3's last column): the paper's attack on one model over an
//! MNIST split, in `attacks/<name>/` (the stage's `name`, else its model's).

use super::stage::{model_needs, Ctx, Stage};
use crate::config::{AttackStage, Experiment};
use crate::Result;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The folder of an attack stage.
pub(crate) fn attack_dir(run_dir: &Path, a: &AttackStage) -> PathBuf {
    run_dir.join("attacks").join(a.name())
}

/// Attacks one model.
pub(crate) struct AttackStageRun<'a> {
    pub stage: &'a AttackStage,
}

impl AttackStageRun<'_> {
    fn spec(&self, ctx: &Ctx) -> crate::attack::AttackSpec {
        let mut spec = self.stage.spec.clone();
        spec.split_seed = ctx.exp.data.split_seed;
        spec
    }
}

impl Stage for AttackStageRun<'_> {
    fn label(&self) -> String {
        format!("attacks/{}", self.stage.name())
    }
    fn dir(&self, run_dir: &Path) -> PathBuf {
        attack_dir(run_dir, self.stage)
    }
    fn needs(&self, exp: &Experiment) -> Vec<String> {
        model_needs(exp, &self.stage.model)
    }
    fn inputs(&self, ctx: &Ctx) -> Result<Value> {
        let spec = self.spec(ctx);
        Ok(json!({
            "common": ctx.common(spec.seed), "stage": spec,
            "model": ctx.model_input(&self.stage.model)?, "data": ctx.data_input()
        }))
    }
    fn margin(&self) -> Option<f64> {
        Some(self.stage.spec.settings.min_margin)
    }
    fn chunks(&self, ctx: &Ctx) -> Result<Option<usize>> {
        let spec = self.spec(ctx);
        let total = ctx.data.set(&spec.split)?.len();
        crate::attack::runner::chunk_count(&spec, total).map(Some)
    }
    fn chunk_done(&self, dir: &Path, i: usize) -> bool {
        crate::attack::runner::chunk_exists(dir, i)
    }
    fn run_chunk(&self, ctx: &Ctx, dir: &Path, i: usize) -> Result<bool> {
        let model = ctx.exp.model_path(&self.stage.model);
        let data = (ctx.device, ctx.data.dir.as_path());
        crate::attack::runner::run_mnist_chunk(&model, &self.spec(ctx), dir, data, i)
    }
    fn run(&self, ctx: &Ctx, dir: &Path) -> Result<()> {
        let model = ctx.exp.model_path(&self.stage.model);
        crate::attack::run_mnist(&model, &self.spec(ctx), dir, ctx.device, &ctx.data.dir)
            .map(|_| ())
    }
}
