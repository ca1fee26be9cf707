//! The attack stages (§4.1; Table 1's and Table 3's last column): the paper's attack on one model over an
//! MNIST split, in `attacks/<model>/`.

use super::stage::{model_fingerprint, model_needs, Ctx, Stage, STAGE_VERSION};
use crate::config::{AttackStage, Experiment};
use crate::Result;
use std::path::{Path, PathBuf};

/// The folder of an attack stage.
pub(crate) fn attack_dir(run_dir: &Path, a: &AttackStage) -> PathBuf {
    run_dir.join("attacks").join(super::sanitize(&a.model))
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
        format!("attacks/{}", self.stage.model)
    }
    fn dir(&self, run_dir: &Path) -> PathBuf {
        attack_dir(run_dir, self.stage)
    }
    fn needs(&self, exp: &Experiment, run_dir: &Path) -> Vec<PathBuf> {
        model_needs(exp, run_dir, &self.stage.model)
    }
    fn fingerprint(&self, ctx: &Ctx) -> Result<serde_json::Value> {
        let model = ctx.exp.model_path(&self.stage.model);
        Ok(serde_json::json!({
            "v": STAGE_VERSION, "stage": self.spec(ctx), "device": ctx.exp.device,
            "model": model_fingerprint(&model), "data": ctx.data.fingerprint_json()
        }))
    }
    fn run(&self, ctx: &Ctx, dir: &Path) -> Result<()> {
        let model = ctx.exp.model_path(&self.stage.model);
        crate::attack::run_mnist(&model, &self.spec(ctx), dir, ctx.device, &ctx.data.dir)
            .map(|_| ())
    }
}
