//! The transfer stages (§4.2, Tables 2 and 4): each table's rows from attack stages of the experiment,
//! its columns from models, in `transfer/<table>/`.

use super::attacks::attack_dir;
use super::stage::{model_needs, Ctx, Stage};
use crate::config::{AttackStage, Experiment, TransferStage};
use crate::Result;
use std::path::{Path, PathBuf};

/// The folder of a transfer table.
pub(crate) fn transfer_dir(run_dir: &Path, t: &TransferStage) -> PathBuf {
    run_dir.join("transfer").join(&t.name)
}

/// One cross-model table.
pub(crate) struct TransferRun<'a> {
    pub stage: &'a TransferStage,
    /// The attack stages of its rows, in the table's order.
    pub rows: Vec<&'a AttackStage>,
}

impl<'a> TransferRun<'a> {
    pub(crate) fn new(exp: &'a Experiment, stage: &'a TransferStage) -> Self {
        let rows = stage
            .examples
            .iter()
            .filter_map(|e| exp.attacks.iter().find(|a| &a.name() == e))
            .collect();
        TransferRun { stage, rows }
    }
}

impl Stage for TransferRun<'_> {
    fn label(&self) -> String {
        format!("transfer/{}", self.stage.name)
    }
    fn dir(&self, run_dir: &Path) -> PathBuf {
        transfer_dir(run_dir, self.stage)
    }
    fn needs(&self, exp: &Experiment) -> Vec<String> {
        let mut v: Vec<String> = self
            .rows
            .iter()
            .map(|a| format!("attacks/{}", a.name()))
            .collect();
        for m in &self.stage.models {
            v.extend(model_needs(exp, m));
        }
        v
    }
    fn inputs(&self, ctx: &Ctx) -> Result<serde_json::Value> {
        let attacks = self
            .rows
            .iter()
            .map(|a| ctx.file_sha(&attack_dir(&ctx.run_dir, a).join("adversarial.safetensors")))
            .collect::<Result<Vec<_>>>()?;
        let models = self
            .stage
            .models
            .iter()
            .map(|m| ctx.model_input(m))
            .collect::<Result<Vec<_>>>()?;
        Ok(serde_json::json!({
            "common": ctx.common(ctx.exp.seed), "stage": self.stage,
            "attacks": attacks, "models": models
        }))
    }
    fn run(&self, ctx: &Ctx, dir: &Path) -> Result<()> {
        let sources: Vec<crate::attack::transfer::Source> = self
            .rows
            .iter()
            .map(|a| crate::attack::transfer::Source {
                name: a.name(),
                file: attack_dir(&ctx.run_dir, a).join("adversarial.safetensors"),
            })
            .collect();
        let loaded = self
            .stage
            .models
            .iter()
            .map(|m| {
                crate::models::torchscript::load_classifier(&ctx.exp.model_path(m), ctx.device)
            })
            .collect::<Result<Vec<_>>>()?;
        let cols: Vec<(String, &dyn crate::models::Classifier)> = self
            .stage
            .models
            .iter()
            .zip(&loaded)
            .map(|(n, m)| (n.clone(), m.as_ref()))
            .collect();
        let table =
            crate::attack::transfer::transfer(&sources, &cols, &self.stage.spec, ctx.exp.seed)?;
        crate::results::transfer::write(&table, dir)?;
        crate::report::transfer::write(dir).map(|_| ())
    }
}
