//! Running experiment files: each stage reads its inputs from files and writes its outputs atomically into
//! `runs/<experiment>/<stage>/`, finishing with a `.done.json` marker that records a fingerprint of its
//! configuration and inputs. Re-running skips stages whose fingerprint is unchanged; an interrupted run
//! redoes only unfinished stages; `--shard i/n` splits the model stages over machines (round robin).

use crate::config::{Experiment, ModelSpec, TrainSet};
use crate::data::MnistData;
use crate::fingerprint::of_json as fingerprint;
use crate::models::zoo::ZooModel;
use crate::report::paper;
use crate::results::{pct, Table};
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
struct SpectralCli {
    #[command(flatten)]
    args: crate::spectral::SpectralArgs,
}

fn parse_args<P: clap::Parser>(what: &str, argv: Vec<String>) -> Result<P> {
    P::try_parse_from(argv).map_err(|e| Error::Invalid(format!("{what}: {e}")))
}

/// Errors of a model on every MNIST set.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Errors {
    pub train: f64,
    pub test: f64,
    pub p1: f64,
    pub p2: f64,
}

/// Evaluates `model` on train, test, P1 and P2 (P1/P2 errors are read off the train predictions).
pub fn evaluate_all(model: &ZooModel, data: &MnistData) -> Result<Errors> {
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
    Ok(Errors {
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
) -> Result<(ZooModel, Errors)> {
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
    let resolved = serde_norway::to_string(exp)
        .map_err(|e| Error::Other(format!("serialising config: {e}")))?;
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
            let spec = crate::units::UnitsSpec {
                data: u.data.clone(),
                units: u.units.parse().map_err(|e: crate::units::UnitsError| {
                    Error::config(&label, "units", e.to_string())
                })?,
                random: u.random,
                orthogonal: u.orthogonal,
                top: u.top,
                seed: exp.seed,
                ..crate::units::UnitsSpec::new(&u.layer)
            };
            let m = crate::models::torchscript::load_classifier(&model, device)?;
            crate::units::run(m.as_ref(), &spec, d, |dir, s| {
                crate::report::units::draw(dir)?;
                println!("[{}] {}", s.layer, s.conclusion);
                Ok(())
            })
            .map(|_| ())
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
            crate::attack::run_stage(&model, &spec, d, device, &data.dir).map(|_| ())
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
                    let shown = data.test.images.narrow(0, 0, f.images).to_device(device);
                    let shown_labels = data.test.labels.narrow(0, 0, f.images).to_device(device);
                    let r = crate::report::fig7::fig7(
                        &refs,
                        &shown,
                        &shown_labels,
                        &data.test.images,
                        &data.test.labels,
                        d,
                        exp.seed,
                        &crate::attack::AttackSettings::default(),
                    )?;
                    crate::io::write_json(&d.join("fig7.json"), &r)
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
                let sources: Vec<crate::transfer::Source> = rows
                    .iter()
                    .map(|a| crate::transfer::Source {
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
                let table = crate::transfer::transfer(&sources, &cols, &t.spec, exp.seed)?;
                crate::transfer::write(&table, d)
            },
        )?;
    }

    let all_done = stage_dirs(exp, &run_dir)
        .iter()
        .all(|d| d.join(".done.json").exists());
    let report = if all_done {
        Some(write_report(exp, &run_dir, &runlog.timings)?)
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

/// Writes `report.md` and `models.csv` for a run whose model stages are finished.
pub fn write_report(
    exp: &Experiment,
    run_dir: &Path,
    timings: &[(String, f64, bool)],
) -> Result<PathBuf> {
    let mut t = Table::new(&[
        "model",
        "trained on",
        "optimiser",
        "iterations",
        "train err (ours)",
        "train err (paper)",
        "test err (ours)",
        "test err (paper)",
        "P1 err (ours / paper)",
        "P2 err (ours / paper)",
        "target",
        "met",
        "seconds",
    ]);
    let mut csv = Table::new(&[
        "model",
        "train_on",
        "optimizer",
        "iterations",
        "train_err",
        "paper_train_err",
        "test_err",
        "paper_test_err",
        "p1_err",
        "paper_p1_err",
        "p2_err",
        "paper_p2_err",
        "target",
        "met",
        "seconds",
    ]);
    let mut misses = Vec::new();
    for spec in &exp.models {
        let path = run_dir.join("models").join(&spec.name).join("model.json");
        let rec: serde_json::Value = crate::io::read_json(&path)?;
        let errors: Errors = serde_json::from_value(rec["errors"].clone())
            .map_err(|e| Error::format(&path, format!("field `errors`: {e}")))?;
        let trainings = rec["training"].as_array().cloned().unwrap_or_default();
        let iterations: u64 = trainings
            .iter()
            .filter_map(|o| o["iterations"].as_u64())
            .sum();
        let seconds: f64 = trainings.iter().filter_map(|o| o["seconds"].as_f64()).sum();
        let opt = trainings
            .iter()
            .filter_map(|o| o["optimizer"].as_str())
            .collect::<Vec<_>>()
            .join("+");
        let p = paper::paper_model(&spec.name).unwrap_or_default();
        let own = match spec.train_on {
            TrainSet::Train => errors.train,
            TrainSet::P1 => errors.p1,
            TrainSet::P2 => errors.p2,
        };
        let (target, met) = match paper::target(&spec.name) {
            Some((d, check)) => {
                let ok = check(own, errors.test);
                if !ok {
                    misses.push(format!(
                        "{} (target {d}: own-set error {}, test error {})",
                        spec.name,
                        pct(Some(own)),
                        pct(Some(errors.test))
                    ));
                }
                (d.to_string(), if ok { "yes" } else { "NO" }.to_string())
            }
            None => ("–".into(), "–".into()),
        };
        let train_on = format!("{:?}", spec.train_on).to_lowercase();
        t.push(vec![
            spec.name.clone(),
            train_on.clone(),
            opt.clone(),
            iterations.to_string(),
            pct(Some(errors.train)),
            pct(p.train_err),
            pct(Some(errors.test)),
            pct(p.test_err),
            format!("{} / {}", pct(Some(errors.p1)), pct(p.p1_err)),
            format!("{} / {}", pct(Some(errors.p2)), pct(p.p2_err)),
            target.clone(),
            met.clone(),
            format!("{seconds:.1}"),
        ]);
        let f = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        csv.push(vec![
            spec.name.clone(),
            train_on,
            opt,
            iterations.to_string(),
            errors.train.to_string(),
            f(p.train_err),
            errors.test.to_string(),
            f(p.test_err),
            errors.p1.to_string(),
            f(p.p1_err),
            errors.p2.to_string(),
            f(p.p2_err),
            target,
            met,
            format!("{seconds:.3}"),
        ]);
    }
    csv.write_csv(&run_dir.join("models.csv"))?;
    let mut timing = Table::new(&["stage", "seconds", "this run"]);
    for (s, secs, skipped) in timings {
        timing.push(vec![
            s.clone(),
            format!("{secs:.1}"),
            if *skipped {
                "skipped (up to date)".into()
            } else {
                "ran".into()
            },
        ]);
    }
    let mut md = format!(
        "# Report: {}\n\nReproduction of Szegedy et al., *Intriguing properties of neural networks* (ICLR 2014), Tables 1 and 3 \
         (model errors). Errors are measured on the full MNIST sets (train 60,000, test 10,000; P1/P2 = the seeded halves of \
         the training set, split seed {}). Loss: mean cross-entropy + Σ λ·Σw²/k (k = units of the layer).\n\n## Models (Tables 1, 3)\n\n{}\n",
        exp.name, exp.data.split_seed, t.markdown()
    );
    if misses.is_empty() {
        md.push_str("All models with a target meet it.\n");
    } else {
        md.push_str(&format!(
            "Targets missed: {}. See README \"Reproduction notes\" for the reasons.\n",
            misses.join("; ")
        ));
    }
    md.push_str(&attack_section(exp, run_dir));
    md.push_str(&transfer_section(exp, run_dir));
    md.push_str(&fig7_section(run_dir));
    md.push_str(&units_section(exp, run_dir));
    md.push_str(&spectral_section(exp, run_dir));
    md.push_str(&format!(
        "\n## Stage times\n\n{}\nMachine: {} CPU threads seen by libtorch ({}).\n",
        timing.markdown(),
        tch::get_num_threads(),
        exp.device
    ));
    let path = run_dir.join("report.md");
    crate::io::write_atomic(&path, md.as_bytes())?;
    Ok(path)
}

/// The report's §3 section: each units stage's conclusion and figures.
fn units_section(exp: &Experiment, run_dir: &Path) -> String {
    if exp.units.is_empty() {
        return String::new();
    }
    let mut md = String::from("\n## Units vs random directions (§3, Figs 1–2)\n\nLabel purity of the top-T images of each direction (share of the most common label), units vs random directions, 95% bootstrap intervals and a two-sided Mann-Whitney test; the paper's evidence is visual only.\n\n");
    let mut t = Table::new(&[
        "model",
        "layer",
        "images",
        "units: purity",
        "random: purity",
        "difference (units − random)",
        "p",
        "conclusion",
    ]);
    for u in &exp.units {
        let rel = units_dir(Path::new(""), u).display().to_string();
        let Ok(sum) =
            crate::io::read_json::<serde_json::Value>(&run_dir.join(&rel).join("summary.json"))
        else {
            continue;
        };
        let est = |v: &serde_json::Value| match (
            v["mean"].as_f64(),
            v["lo"].as_f64(),
            v["hi"].as_f64(),
        ) {
            (Some(m), Some(l), Some(h)) => format!("{m:.3} [{l:.3}, {h:.3}]"),
            _ => "–".into(),
        };
        let kinds = sum["kinds"].as_array().cloned().unwrap_or_default();
        let kind = |k: &str| {
            kinds
                .iter()
                .find(|x| x["kind"] == k)
                .map(|x| est(&x["purity"]))
                .unwrap_or_else(|| "–".into())
        };
        let cmp = sum["comparisons"]
            .as_array()
            .and_then(|c| c.first().cloned())
            .unwrap_or_default();
        t.push(vec![
            u.model.clone(),
            u.layer.clone(),
            sum["n_images"].to_string(),
            kind("unit"),
            kind("random"),
            est(&cmp["purity_diff"]),
            cmp["purity_test"]["p_value"]
                .as_f64()
                .map(|p| format!("{p:.3}"))
                .unwrap_or_else(|| "–".into()),
            sum["conclusion"].as_str().unwrap_or("").to_string(),
        ]);
        md.push_str(&format!(
            "- {} / {}: ![units]({rel}/unit.png) ![random]({rel}/random.png)\n",
            u.model, u.layer
        ));
    }
    format!("{md}\n{}", t.markdown())
}

/// The report's §4.3 section: each spectral stage's table.
fn spectral_section(exp: &Experiment, run_dir: &Path) -> String {
    let mut md = String::new();
    for sp in &exp.spectral {
        let rel = spectral_dir(Path::new(""), sp).display().to_string();
        if let Ok(t) = std::fs::read_to_string(run_dir.join(&rel).join("table5.md")) {
            let body: String = t
                .lines()
                .skip_while(|l| l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n");
            md.push_str(&format!("\n## Spectral bounds of {} (§4.3, Table 5)\n{body}\n\nSpectra: ![spectrum]({rel}/spectrum.png)\n", sp.model));
        }
    }
    md
}

/// The report's §4.1 section: Table 1's last column (average minimum distortion) beside the paper's.
fn attack_section(exp: &Experiment, run_dir: &Path) -> String {
    if exp.attacks.is_empty() {
        return String::new();
    }
    let mut t = Table::new(&[
        "model",
        "set",
        "examples",
        "targeted",
        "success (ours)",
        "av. min. distortion (ours)",
        "paper",
        "ours / paper",
        "within ±25%",
        "evals / image",
        "images / s",
        "attack time",
    ]);
    let mut outside = Vec::new();
    for a in &exp.attacks {
        let path = attack_dir(run_dir, a).join("summary.json");
        let Ok(s) = crate::io::read_json::<crate::attack::AttackSummary>(&path) else {
            continue;
        };
        let paper = paper::paper_model(&a.model).and_then(|p| p.distortion);
        let ratio = paper.map(|p| s.mean_distortion / p); // ours / paper
        t.push(vec![
            a.model.clone(),
            s.split.clone(),
            s.examples.to_string(),
            if s.targeted {
                "random target"
            } else {
                "untargeted"
            }
            .into(),
            pct(Some(s.success_rate)),
            format!("{:.4}", s.mean_distortion),
            paper.map(|p| format!("{p}")).unwrap_or_else(|| "–".into()),
            ratio
                .map(|r| format!("{r:.2}"))
                .unwrap_or_else(|| "–".into()),
            match ratio {
                Some(r) if (r - 1.0).abs() <= 0.25 => "yes".into(),
                Some(_) => {
                    outside.push(a.model.clone());
                    "NO".into()
                }
                None => "–".into(),
            },
            format!("{:.0}", s.evaluations_per_image),
            format!("{:.1}", s.images_per_second),
            format!("{:.0} s", s.seconds),
        ]);
    }
    let why = if outside.is_empty() {
        String::new()
    } else {
        format!(
            "\nOutside ±25% of the paper: {}. The minimal distortion measures the model as much as the attack: it grows with the weight decay's strength.{}\n",
            outside.join(", "),
            if outside.iter().any(|m| m.starts_with("softmax")) {
                " Under the λ·Σw²/k reading used here the decay of a softmax layer is k = 10 times weaker than under λ·Σw²; softmax1 trained with λ·Σw² gives the paper's error rates and distortion 0.060 (paper 0.062; README \"Results\")."
            } else {
                ""
            }
        )
    };
    format!(
        "\n## Adversarial examples (§4.1, last column of Tables 1 and 3)\n\nThe paper's box-constrained L-BFGS attack with a search over c; every success re-verified in a fresh forward pass. Distortion = sqrt(Σ(x′ − x)²/n), averaged over successful examples. The paper attacks all 60,000 training images for Table 1 and the 10,000 test images for Table 3 (M1, M1′, M2), as `experiments/paper.yaml` does; other experiments attack a subset.\n\n{}{why}",
        t.markdown()
    )
}

/// The report's §4.2 cross-model section (Tables 2 and 4).
fn transfer_section(exp: &Experiment, run_dir: &Path) -> String {
    let mut md = String::new();
    for t in &exp.transfer {
        let path = transfer_dir(run_dir, t).join("transfer.json");
        let Ok(table) = crate::io::read_json::<crate::transfer::TransferTable>(&path) else {
            continue;
        };
        md.push_str(&format!(
            "\n## Cross-model generalisation: {} (§4.2, Tables 2 and 4)\n\nError of each column's model on each row's examples, ours (the paper's in brackets where it has the cell). Adversarial rows: every verified adversarial of that model's attack stage; Gaussian rows: the first row's originals plus noise of that stddev, {}; amplified rows: each perturbation scaled to that distortion, clipped. Distortion: measured on the evaluated images.\n\n{}",
            t.name,
            if table.clip_noise { "clipped to [0, 1]" } else { "not clipped" },
            crate::transfer::markdown(&table)
        ));
    }
    md
}

/// The report's Fig 7 section.
fn fig7_section(run_dir: &Path) -> String {
    let Ok(f) = crate::io::read_json::<serde_json::Value>(&run_dir.join("fig7/fig7.json")) else {
        return String::new();
    };
    let mut t = Table::new(&[
        "model",
        "shown",
        "adversarial stddev",
        "accuracy on adversarials (paper 0%)",
        "accuracy, Gaussian noise of that stddev (test set)",
        "grid",
    ]);
    for p in f["panels"].as_array().cloned().unwrap_or_default() {
        let png = Path::new(p["png"].as_str().unwrap_or(""))
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        t.push(vec![
            p["model"].as_str().unwrap_or("").into(),
            p["images"].to_string(),
            format!("{:.4}", p["stddev"].as_f64().unwrap_or(f64::NAN)),
            pct(p["adversarial_accuracy"].as_f64()),
            pct(p["noise_accuracy"].as_f64()),
            format!("![fig7](fig7/{png})"),
        ]);
    }
    format!(
        "\n## Fig 7: adversarials vs Gaussian noise\n\n{}\nPanel (c), {}: accuracy on test images with Gaussian noise of stddev 1 = {} clipped to [0, 1], {} unclipped (paper: 51%; the paper does not say whether it clipped). ![fig7c](fig7/fig7c.png)\n",
        t.markdown(),
        f["panel_c_model"].as_str().unwrap_or(""),
        pct(f["panel_c_accuracy"].as_f64()),
        pct(f["panel_c_accuracy_unclipped"].as_f64())
    )
}
