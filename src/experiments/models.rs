//! The model stages (§4.2, Tables 1 and 3): train one zoo model of the experiment, evaluate it on every
//! MNIST set and save it (`model.json`, `weights.safetensors`, `train_log.csv`) in `models/<name>/`.

use super::stage::{Ctx, Stage};
use crate::config::{ModelSpec, TrainSet};
use crate::data::MnistData;
use crate::models::zoo::ZooModel;
use crate::results::models::ModelErrors;
use crate::results::Table;
use crate::Result;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Tensor};

/// Trains one model of the experiment.
pub(crate) struct ModelStage<'a> {
    pub spec: &'a ModelSpec,
}

impl Stage for ModelStage<'_> {
    fn label(&self) -> String {
        format!("models/{}", self.spec.name)
    }
    fn dir(&self, run_dir: &Path) -> PathBuf {
        run_dir.join("models").join(&self.spec.name)
    }
    fn needs(&self, _exp: &crate::config::Experiment) -> Vec<String> {
        Vec::new()
    }
    fn inputs(&self, ctx: &Ctx) -> Result<serde_json::Value> {
        Ok(serde_json::json!({
            "common": ctx.common(self.seed(ctx)), "spec": self.spec, "data": ctx.data_input()
        }))
    }
    fn run(&self, ctx: &Ctx, dir: &Path) -> Result<()> {
        train_and_save(self.spec, ctx.data, self.seed(ctx), ctx.device, dir).map(|_| ())
    }
}

impl ModelStage<'_> {
    fn seed(&self, ctx: &Ctx) -> u64 {
        self.spec.seed.unwrap_or(ctx.exp.seed)
    }
}

/// Evaluates `model` on train, test, P1 and P2 (P1/P2 errors are read off the train predictions).
pub fn evaluate_all(model: &ZooModel, data: &MnistData) -> Result<ModelErrors> {
    use crate::models::classifier::predict;
    let pred_train = predict(model, &data.train.images, 10_000)?; // [60000]
    let wrong = pred_train
        .ne_tensor(&data.train.labels)
        .to_kind(tch::Kind::Float); // [60000]
    let frac = |idx: &[i64]| {
        wrong
            .index_select(0, &Tensor::from_slice(idx))
            .mean(tch::Kind::Float)
            .double_value(&[])
    };
    Ok(ModelErrors {
        train: wrong.mean(tch::Kind::Float).double_value(&[]),
        test: crate::train::error_rate(model, &data.test.images, &data.test.labels)?,
        p1: frac(&data.split.p1),
        p2: frac(&data.split.p2),
    })
}

/// Adversarial training's refresh log (`pools.csv`: one row per refresh of one layer's pool), if any.
fn write_pools(outcomes: &[crate::train::TrainOutcome], out: &Path) -> Result<()> {
    let rows: Vec<_> = outcomes.iter().flat_map(|o| &o.pools).collect();
    if rows.is_empty() {
        return Ok(());
    }
    let mut t = Table::new(&[
        "step",
        "layer",
        "attacked",
        "succeeded",
        "already",
        "mean_distortion",
        "filled",
        "seconds",
    ]);
    for r in rows {
        t.push(vec![
            r.step.to_string(),
            r.layer.clone(),
            r.attacked.to_string(),
            r.succeeded.to_string(),
            r.already.to_string(),
            format!("{:.6}", r.mean_distortion),
            r.filled.to_string(),
            format!("{:.3}", r.seconds),
        ]);
    }
    t.write_csv(&out.join("pools.csv"))
}

/// The held-out error after each Adam epoch (`heldout.csv`), for models trained on P1 or P2.
fn write_heldout(
    outcomes: &[crate::train::TrainOutcome],
    spec: &ModelSpec,
    out: &Path,
) -> Result<()> {
    let set = match spec.train_on {
        TrainSet::P1 => "p2",
        TrainSet::P2 => "p1",
        TrainSet::Train => return Ok(()),
    };
    let mut t = Table::new(&["phase", "step", "seconds", "heldout_set", "error"]);
    for (phase, o) in outcomes.iter().enumerate() {
        for r in &o.log {
            if let Some(e) = r.heldout_error {
                t.push(vec![
                    phase.to_string(),
                    r.step.to_string(),
                    format!("{:.3}", r.seconds),
                    set.to_string(),
                    e.to_string(),
                ]);
            }
        }
    }
    if t.rows.is_empty() {
        return Ok(());
    }
    t.write_csv(&out.join("heldout.csv"))
}

/// Trains `spec` on `data`, evaluates it and saves it into `out` (model.json, weights.safetensors,
/// train_log.csv). Returns the model and its errors.
pub fn train_and_save(
    spec: &ModelSpec,
    data: &MnistData,
    seed: u64,
    device: Device,
    out: &Path,
) -> Result<(ZooModel, ModelErrors)> {
    let set = data.set(spec.train_on.name())?;
    let x = set.images.to_device(device);
    let y = set.labels.to_device(device);
    log::info!(
        "training {} on {:?} ({} images) on {:?}",
        spec.name,
        spec.train_on,
        set.len(),
        device
    );
    let start = Instant::now();
    // Trained on one half of the split: the other half is held out, its error logged per Adam epoch.
    let heldout = match spec.train_on {
        TrainSet::P1 => Some(data.set("p2")?),
        TrainSet::P2 => Some(data.set("p1")?),
        TrainSet::Train => None,
    };
    let h = heldout
        .as_ref()
        .map(|s| (s.images.to_device(device), s.labels.to_device(device)));
    let (mut model, outcomes) =
        crate::train::train_model_heldout(spec, &x, &y, seed, h.as_ref().map(|(a, b)| (a, b)))?;
    drop((x, y, h));
    let errors = evaluate_all(&model, data)?;
    log::info!(
        "{}: train error {:.3}%, test error {:.3}% ({:.1} s)",
        spec.name,
        100.0 * errors.train,
        100.0 * errors.test,
        start.elapsed().as_secs_f64()
    );
    let mut log_table = Table::new(&[
        "phase",
        "step",
        "loss",
        "grad_norm",
        "evaluations",
        "seconds",
    ]);
    for (phase, o) in outcomes.iter().enumerate() {
        for r in &o.log {
            log_table.push(vec![
                phase.to_string(),
                r.step.to_string(),
                r.loss.to_string(),
                r.grad_norm.to_string(),
                r.evaluations.to_string(),
                format!("{:.3}", r.seconds),
            ]);
        }
    }
    log_table.write_csv(&out.join("train_log.csv"))?;
    write_pools(&outcomes, out)?;
    write_heldout(&outcomes, spec, out)?;
    model.record = serde_json::json!({
        "spec": spec,
        "seed": seed,
        "weight_decay_form": "loss = mean cross-entropy + sum over layers of lambda_l * sum(W_l^2) / k_l, k_l = units (outputs) of layer l, biases not decayed",
        "train_on": spec.train_on,
        "split_seed": data.split.seed,
        "training": outcomes,
        "errors": errors,
        "data": { "mnist_dir": data.dir, "sha256": data.checksums },
        "device": format!("{device:?}"),
        "blindspot_version": env!("CARGO_PKG_VERSION"),
    });
    model.save(out)?;
    Ok((model, errors))
}
