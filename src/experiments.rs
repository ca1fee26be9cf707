//! Running experiment files: each stage reads its inputs from files and writes its outputs atomically into
//! `runs/<experiment>/<stage>/`, finishing with a `.done.json` marker that records a fingerprint of its
//! configuration and inputs. Re-running skips stages whose fingerprint is unchanged; an interrupted run
//! redoes only unfinished stages; `--shard i/n` splits the model stages over machines (round robin).

use crate::config::{Experiment, ModelSpec};
use crate::data::MnistData;
use crate::fingerprint::of_json as fingerprint;
use crate::models::zoo::ZooModel;
use crate::results::models::ModelErrors;
use crate::results::Table;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Tensor};

/// Bumped when a stage's outputs change meaning, so old results are recomputed.
const STAGE_VERSION: u32 = 1;

/// Marker written last into a finished stage's folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DoneMarker {
    pub stage: String,
    pub fingerprint: String,
    pub seconds: f64,
    pub finished_unix: u64,
}

/// The marker of `dir` if the stage finished with this fingerprint.
pub fn is_done(dir: &Path, fp: &str) -> Option<DoneMarker> {
    let m: DoneMarker = crate::io::read_json(&dir.join(".done.json")).ok()?;
    (m.fingerprint == fp).then_some(m)
}

pub fn mark_done(dir: &Path, stage: &str, fp: &str, seconds: f64) -> Result<()> {
    let finished_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    crate::io::write_json(
        &dir.join(".done.json"),
        &DoneMarker {
            stage: stage.into(),
            fingerprint: fp.into(),
            seconds,
            finished_unix,
        },
    )
}

/// What a run did: stage timings (label, seconds, skipped) and the stages it ran or skipped.
#[derive(Debug, Default)]
pub struct RunLog {
    pub timings: Vec<(String, f64, bool)>,
    pub ran: Vec<String>,
    pub skipped: Vec<String>,
}

/// Runs one resumable stage: skipped when `dir` holds a `.done.json` with fingerprint `fp` (unless
/// `force`), else `work(dir)` and the marker; a folder left by another fingerprint is emptied first, one
/// left by an interrupted run of the same fingerprint is resumed. Records what happened in `log`.
pub fn stage(
    dir: &Path,
    label: &str,
    fp: &str,
    force: bool,
    runlog: &mut RunLog,
    work: impl FnOnce(&Path) -> Result<()>,
) -> Result<bool> {
    if !force {
        if let Some(m) = is_done(dir, fp) {
            log::info!("{label}: up to date, skipped");
            runlog.timings.push((label.to_string(), m.seconds, true));
            runlog.skipped.push(label.to_string());
            return Ok(false);
        }
    }
    // `.started.json` holds the fingerprint the folder's partial work belongs to: an interrupted stage
    // with the same fingerprint resumes; anything made for another fingerprint (or forced) is removed.
    let started = dir.join(".started.json");
    let stale = force
        || dir.join(".done.json").exists()
        || crate::io::read_json::<serde_json::Value>(&started)
            .is_ok_and(|v| v.get("fingerprint").and_then(|f| f.as_str()) != Some(fp));
    if stale && dir.exists() {
        log::info!(
            "{label}: inputs or config changed, clearing {}",
            dir.display()
        );
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    log::info!("{label}: running");
    let t = Instant::now();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    crate::io::write_json(
        &started,
        &serde_json::json!({"stage": label, "fingerprint": fp}),
    )?;
    work(dir)?;
    let secs = t.elapsed().as_secs_f64();
    mark_done(dir, label, fp, secs)?;
    runlog.timings.push((label.to_string(), secs, false));
    runlog.ran.push(label.to_string());
    Ok(true)
}

/// Fingerprint of a model reference: its stage's fingerprint for zoo models, else the file's SHA-256.
fn model_fingerprint(path: &Path) -> String {
    if let Ok(m) = crate::io::read_json::<DoneMarker>(&path.join(".done.json")) {
        return m.fingerprint;
    }
    if path.is_file() {
        return crate::fingerprint::sha256_file(path).unwrap_or_default();
    }
    crate::fingerprint::sha256_file(&path.join("weights.safetensors")).unwrap_or_default()
}

#[derive(clap::Parser)]
struct UnitsCli {
    #[command(flatten)]
    args: crate::units::UnitsArgs,
}

#[derive(clap::Parser)]
struct SpectralCli {
    #[command(flatten)]
    args: crate::spectral::SpectralArgs,
}

fn parse_args<P: clap::Parser>(what: &str, argv: Vec<String>) -> Result<P> {
    P::try_parse_from(argv).map_err(|e| Error::Invalid(format!("{what}: {e}")))
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
    let (mut model, outcomes) = crate::train::train_model(spec, &x, &y, seed)?;
    drop((x, y));
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

/// Options of `blindspot run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Redo every stage even when its outputs are up to date.
    pub force: bool,
    /// `(i, n)`: run only the model stages with index ≡ i (mod n); the report waits for all.
    pub shard: Option<(usize, usize)>,
}

/// What a run did, for the command line.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub report: Option<PathBuf>,
    pub trained: Vec<String>,
    pub skipped: Vec<String>,
}

/// Runs an experiment: data, models, report.
pub fn run(exp: &Experiment, opts: &RunOptions) -> Result<RunSummary> {
    let device = crate::device::parse_device(&exp.device)?;
    let run_dir = exp.run_dir();
    std::fs::create_dir_all(&run_dir).map_err(|e| Error::io(&run_dir, e))?;
    let resolved = serde_norway::to_string(exp).map_err(|e| {
        Error::format(
            run_dir.join("config.resolved.yaml"),
            format!("serialising: {e}"),
        )
    })?;
    crate::io::write_atomic(&run_dir.join("config.resolved.yaml"), resolved.as_bytes())?;

    let t0 = Instant::now();
    let data = MnistData::load(&exp.data.mnist_dir(), exp.data.split_seed)?;
    crate::io::write_json(&run_dir.join("data/split.json"), &data.split)?;
    crate::io::write_json(&run_dir.join("data/data.json"), &data.fingerprint_json())?;
    let mut runlog = RunLog::default();
    runlog.timings.push((
        "data (load + verify MNIST)".to_string(),
        t0.elapsed().as_secs_f64(),
        false,
    ));
    log::info!(
        "data loaded and verified in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    for (i, spec) in exp.models.iter().enumerate() {
        if let Some((k, n)) = opts.shard {
            if i % n != k {
                continue;
            }
        }
        let dir = run_dir.join("models").join(&spec.name);
        let seed = spec.seed.unwrap_or(exp.seed);
        let fp = fingerprint(&serde_json::json!({
            "v": STAGE_VERSION, "spec": spec, "seed": seed, "device": exp.device, "data": data.fingerprint_json()
        }));
        let label = format!("models/{}", spec.name);
        stage(&dir, &label, &fp, opts.force, &mut runlog, |d| {
            train_and_save(spec, &data, seed, device, d).map(|_| ())
        })?;
    }
    let models_done = |m: &str| {
        exp.model(m).is_none() || run_dir.join("models").join(m).join(".done.json").exists()
    };
    // Analysis stages run in the shard that owns index (models + j) mod n.
    let mine = |j: usize| {
        opts.shard
            .is_none_or(|(k, n)| (exp.models.len() + j) % n == k)
    };
    let mut j = 0;
    for u in &exp.units {
        j += 1;
        if !mine(j - 1) || !models_done(&u.model) {
            continue;
        }
        let model = exp.model_path(&u.model);
        let dir = units_dir(&run_dir, u);
        let fp = fingerprint(
            &serde_json::json!({"v": STAGE_VERSION, "stage": u, "seed": exp.seed, "model": model_fingerprint(&model)}),
        );
        let label = format!("units/{}-{}", u.model, u.layer);
        stage(&dir, &label, &fp, opts.force, &mut runlog, |d| {
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
                &exp.seed.to_string(),
                "--device",
                &exp.device,
            ]
            .iter()
            .map(|s| s.to_string())
            .chain(u.orthogonal.then(|| "--orthogonal".to_string()))
            .collect();
            let cli: UnitsCli = parse_args(&label, argv)?;
            crate::units::run(&cli.args).map(|_| ())
        })?;
    }
    for a in &exp.attacks {
        j += 1;
        if !mine(j - 1) || !models_done(&a.model) {
            continue;
        }
        let model = exp.model_path(&a.model);
        let dir = attack_dir(&run_dir, a);
        let mut spec = a.spec.clone();
        spec.split_seed = exp.data.split_seed;
        let fp = fingerprint(
            &serde_json::json!({"v": STAGE_VERSION, "stage": spec, "device": exp.device, "model": model_fingerprint(&model), "data": data.fingerprint_json()}),
        );
        let label = format!("attacks/{}", a.model);
        stage(&dir, &label, &fp, opts.force, &mut runlog, |d| {
            crate::attack::run_mnist(&model, &spec, d, device, &data.dir).map(|_| ())
        })?;
    }
    if let Some(f) = &exp.fig7 {
        j += 1;
        if mine(j - 1) && f.models.iter().all(|m| models_done(m)) {
            let paths: Vec<PathBuf> = f.models.iter().map(|m| exp.model_path(m)).collect();
            let fps: Vec<String> = paths.iter().map(|p| model_fingerprint(p)).collect();
            let fp = fingerprint(
                &serde_json::json!({"v": STAGE_VERSION, "stage": f, "seed": exp.seed, "models": fps}),
            );
            let label = "fig7".to_string();
            stage(
                &run_dir.join("fig7"),
                &label,
                &fp,
                opts.force,
                &mut runlog,
                |d| {
                    let models = paths
                        .iter()
                        .map(|p| ZooModel::load(p, device))
                        .collect::<Result<Vec<_>>>()?;
                    let refs: Vec<&dyn crate::models::Classifier> = models
                        .iter()
                        .map(|m| m as &dyn crate::models::Classifier)
                        .collect();
                    let shown = data.test.images.f_narrow(0, 0, f.images)?;
                    let shown_labels = data.test.labels.f_narrow(0, 0, f.images)?;
                    crate::attack::fig7::fig7(
                        &refs,
                        &shown,
                        &shown_labels,
                        &data.test.images,
                        &data.test.labels,
                        d,
                        exp.seed,
                        &crate::attack::AttackSettings::default(),
                    )?;
                    crate::report::fig7::draw(d)
                },
            )?;
        }
    }
    for sp in &exp.spectral {
        j += 1;
        if !mine(j - 1) || !models_done(&sp.model) {
            continue;
        }
        let model = exp.model_path(&sp.model);
        let dir = spectral_dir(&run_dir, sp);
        let fp = fingerprint(
            &serde_json::json!({"v": STAGE_VERSION, "stage": sp, "seed": exp.seed, "model": model_fingerprint(&model)}),
        );
        let label = format!("spectral/{}", sp.model);
        stage(&dir, &label, &fp, opts.force, &mut runlog, |d| {
            let mut argv: Vec<String> = [
                "spectral",
                "--model",
                &model.to_string_lossy(),
                "--out",
                &d.to_string_lossy(),
                "--mode",
                &sp.mode,
                "--device",
                &exp.device,
                "--seed",
                &exp.seed.to_string(),
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
            let cli: SpectralCli = parse_args(&label, argv)?;
            crate::spectral::run(&cli.args).map(|_| ())
        })?;
    }
    for t in &exp.transfer {
        j += 1;
        let rows: Vec<&crate::config::AttackStage> = t
            .examples
            .iter()
            .filter_map(|e| exp.attacks.iter().find(|a| &a.model == e))
            .collect();
        let attacks_done = rows
            .iter()
            .all(|a| attack_dir(&run_dir, a).join(".done.json").exists());
        if !mine(j - 1) || !attacks_done || !t.models.iter().all(|m| models_done(m)) {
            continue;
        }
        let attack_fps: Vec<String> = rows
            .iter()
            .map(|a| model_fingerprint(&attack_dir(&run_dir, a)))
            .collect();
        let model_paths: Vec<PathBuf> = t.models.iter().map(|m| exp.model_path(m)).collect();
        let model_fps: Vec<String> = model_paths.iter().map(|p| model_fingerprint(p)).collect();
        let fp = fingerprint(&serde_json::json!({
            "v": STAGE_VERSION, "stage": t, "seed": exp.seed, "device": exp.device,
            "attacks": attack_fps, "models": model_fps
        }));
        let label = format!("transfer/{}", t.name);
        stage(
            &transfer_dir(&run_dir, t),
            &label,
            &fp,
            opts.force,
            &mut runlog,
            |d| {
                let sources: Vec<crate::attack::transfer::Source> = rows
                    .iter()
                    .map(|a| crate::attack::transfer::Source {
                        name: a.model.clone(),
                        file: attack_dir(&run_dir, a).join("adversarial.safetensors"),
                    })
                    .collect();
                let loaded = model_paths
                    .iter()
                    .map(|p| crate::models::torchscript::load_classifier(p, device))
                    .collect::<Result<Vec<_>>>()?;
                let cols: Vec<(String, &dyn crate::models::Classifier)> = t
                    .models
                    .iter()
                    .zip(&loaded)
                    .map(|(n, m)| (n.clone(), m.as_ref()))
                    .collect();
                let table = crate::attack::transfer::transfer(&sources, &cols, &t.spec, exp.seed)?;
                crate::results::transfer::write(&table, d)?;
                crate::report::transfer::write(d).map(|_| ())
            },
        )?;
    }

    let all_done = stage_dirs(exp, &run_dir)
        .iter()
        .all(|d| d.join(".done.json").exists());
    let report = if all_done {
        Some(crate::report::run::write_report(&report_inputs(
            exp,
            &run_dir,
            runlog.timings,
        ))?)
    } else {
        log::info!("not all model stages are finished (sharded run?): the report is written by the run that finishes last");
        None
    };
    Ok(RunSummary {
        run_dir,
        report,
        trained: runlog.ran,
        skipped: runlog.skipped,
    })
}

/// Folder of a units stage.
fn units_dir(run_dir: &Path, u: &crate::config::UnitsStage) -> PathBuf {
    run_dir
        .join("units")
        .join(format!("{}-{}", sanitize(&u.model), sanitize(&u.layer)))
}

/// Folder of an attack stage.
fn attack_dir(run_dir: &Path, a: &crate::config::AttackStage) -> PathBuf {
    run_dir.join("attacks").join(sanitize(&a.model))
}

/// Folder of a transfer table.
fn transfer_dir(run_dir: &Path, t: &crate::config::TransferStage) -> PathBuf {
    run_dir.join("transfer").join(sanitize(&t.name))
}

/// Folder of a spectral stage.
fn spectral_dir(run_dir: &Path, sp: &crate::config::SpectralStage) -> PathBuf {
    run_dir.join("spectral").join(sanitize(&sp.model))
}

/// The folder of every stage of `exp` (all shards).
pub fn stage_dirs(exp: &Experiment, run_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = exp
        .models
        .iter()
        .map(|m| run_dir.join("models").join(&m.name))
        .collect();
    v.extend(exp.units.iter().map(|u| units_dir(run_dir, u)));
    v.extend(exp.attacks.iter().map(|a| attack_dir(run_dir, a)));
    v.extend(exp.fig7.iter().map(|_| run_dir.join("fig7")));
    v.extend(exp.spectral.iter().map(|sp| spectral_dir(run_dir, sp)));
    v.extend(exp.transfer.iter().map(|t| transfer_dir(run_dir, t)));
    v
}

/// A folder-name-safe version of a model or layer name.
pub fn sanitize(s: &str) -> String {
    let base = std::path::Path::new(s)
        .file_stem()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = if s.contains('/') { base } else { s.to_string() };
    crate::results::folder_name(&base)
}

/// What the report needs to know about the run besides its files.
fn report_inputs(
    exp: &Experiment,
    run_dir: &Path,
    timings: Vec<(String, f64, bool)>,
) -> crate::report::run::ReportInputs {
    use crate::report::run::{ModelEntry, ReportInputs, StageEntry};
    let rel = Path::new("");
    let entry = |model: &str, detail: &str, dir: PathBuf| StageEntry {
        model: model.to_string(),
        detail: detail.to_string(),
        dir,
    };
    ReportInputs {
        name: exp.name.clone(),
        run_dir: run_dir.to_path_buf(),
        split_seed: exp.data.split_seed,
        device: exp.device.clone(),
        models: exp
            .models
            .iter()
            .map(|m| ModelEntry {
                name: m.name.clone(),
                trained_on: m.train_on.name().to_string(),
            })
            .collect(),
        attacks: exp
            .attacks
            .iter()
            .map(|a| entry(&a.model, "", attack_dir(rel, a)))
            .collect(),
        transfer: exp
            .transfer
            .iter()
            .map(|t| entry(&t.name, "", transfer_dir(rel, t)))
            .collect(),
        fig7: exp.fig7.as_ref().map(|_| PathBuf::from("fig7")),
        units: exp
            .units
            .iter()
            .map(|u| entry(&u.model, &u.layer, units_dir(rel, u)))
            .collect(),
        spectral: exp
            .spectral
            .iter()
            .map(|sp| entry(&sp.model, "", spectral_dir(rel, sp)))
            .collect(),
        timings,
    }
}
