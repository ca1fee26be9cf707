//! A data set attacked in resumable chunks (§4.2: Table 1's "av. min. distortion" over all 60,000
//! training images): examples and targets are resolved and checked before any work, each chunk of
//! `spec.batch` examples is attacked ([`super::attack_batch`]), verified ([`super::verify`]) and saved in
//! `chunks/`, so an interrupted run resumes from its finished chunks; the final outputs are the files of
//! [`crate::results::attack`].
//!
//! A chunk loaded on resume is verified again on the model (one forward pass): a stored success that is
//! no longer adversarial (a damaged or edited chunk file, another libtorch) makes the whole chunk be
//! attacked again, counted in `summary.json`'s `redone_chunks`, so a reported success is always one of
//! this model. The re-check asks for "still adversarial" (margin > 0), not for margin ≥ κ again: κ is the
//! allowance that keeps a success adversarial under another evaluation's rounding, and the stored margin
//! (≥ κ when it was made) is the one reported.

use super::{attack_batch, random_targets, verify, AttackError, AttackSettings, AttackSpec};
use crate::data::MnistData;
use crate::models::Classifier;
use crate::results::attack::{self as files, AdversarialSet, AttackSummary, ExampleResult};
use crate::results::checkpoint::{Checkpoint, OnOther};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Runs an attack stage on an MNIST split: loads the model and data, attacks, writes the outputs to
/// `out_dir`.
pub fn run_mnist(
    model_path: &Path,
    spec: &AttackSpec,
    out_dir: &Path,
    device: Device,
    mnist_dir: &Path,
) -> Result<AttackSummary> {
    spec.validate()?;
    let model = crate::models::torchscript::load_classifier(model_path, device)?;
    let set = MnistData::load_set(mnist_dir, &spec.split, spec.split_seed)?;
    attack_dataset_of(
        model.as_ref(),
        Some(model_path),
        &set.images,
        &set.labels,
        spec,
        out_dir,
    )
}

/// The examples of a dataset attack, resolved and checked: positions in the set, their labels and
/// targets (None = untargeted).
struct Plan {
    idx: Vec<i64>,
    labels: Vec<i64>,
    targets: Option<Vec<i64>>,
}

/// Which examples: `spec.indices`, else the first `spec.first`, else all `total`.
fn select_examples(spec: &AttackSpec, total: i64) -> Result<Vec<i64>> {
    let idx: Vec<i64> = match (&spec.indices, spec.first) {
        (Some(v), _) => {
            if let Some((i, &bad)) = v.iter().enumerate().find(|(_, &j)| j < 0 || j >= total) {
                return Err(AttackError::IndexOutOfRange {
                    index: bad,
                    entry: i + 1,
                    split: spec.split.clone(),
                    len: total,
                }
                .into());
            }
            v.clone()
        }
        (None, Some(f)) => {
            if f as i64 > total {
                return Err(AttackError::FirstTooLarge {
                    first: f,
                    split: spec.split.clone(),
                    len: total,
                }
                .into());
            }
            (0..f as i64).collect()
        }
        (None, None) => (0..total).collect(),
    };
    if idx.is_empty() {
        return Err(AttackError::Empty.into());
    }
    Ok(idx)
}

/// The targets of the attacked examples: none (untargeted), `spec.targets` checked, or random ≠ label.
fn resolve_targets(
    spec: &AttackSpec,
    idx: &[i64],
    lab: &[i64],
    k: i64,
) -> Result<Option<Vec<i64>>> {
    if !spec.targeted {
        if spec.targets.is_some() {
            return Err(AttackError::TargetsWhenUntargeted.into());
        }
        return Ok(None);
    }
    let Some(t) = &spec.targets else {
        return Ok(Some(random_targets(lab, k, spec.seed)));
    };
    if t.len() != idx.len() {
        return Err(AttackError::TargetCount {
            given: t.len(),
            examples: idx.len(),
        }
        .into());
    }
    for (i, (&tg, &l)) in t.iter().zip(lab.iter()).enumerate() {
        if tg < 0 || tg >= k {
            return Err(AttackError::TargetOutOfRange {
                target: tg,
                entry: i + 1,
                classes: k,
            }
            .into());
        }
        if tg == l {
            return Err(AttackError::TargetIsLabel {
                target: tg,
                entry: i + 1,
                example: idx[i],
            }
            .into());
        }
    }
    Ok(Some(t.clone()))
}

/// Resolves and checks everything about the examples before any work starts.
fn plan(
    model: &dyn Classifier,
    images: &Tensor,
    labels: &Tensor,
    spec: &AttackSpec,
) -> Result<Plan> {
    spec.validate()?;
    crate::models::classifier::check_input(model, images)?;
    let k = model.num_classes();
    let idx = select_examples(spec, images.size()[0])?;
    let idx_t = Tensor::f_from_slice(&idx)?;
    let lab: Vec<i64> = Vec::try_from(&labels.f_index_select(0, &idx_t)?.f_to_kind(Kind::Int64)?)?;
    if let Some(&bad) = lab.iter().find(|&&l| l < 0 || l >= k) {
        return Err(AttackError::LabelOutOfRange {
            label: bad,
            classes: k,
        }
        .into());
    }
    let targets = resolve_targets(spec, &idx, &lab, k)?;
    // Images must be inside the box.
    let (lo, hi) = model.input_bounds();
    let sel = images.f_index_select(0, &idx_t)?;
    let bad = sel
        .f_lt(lo)?
        .f_logical_or(&sel.f_gt(hi)?)?
        .f_logical_or(&sel.f_isnan()?)?;
    if i64::try_from(bad.f_any()?)? != 0 {
        return Err(AttackError::OutsideBox { lo, hi }.into());
    }
    Ok(Plan {
        idx,
        labels: lab,
        targets,
    })
}

/// Opens `out_dir` as the checkpoint of this run (identity `attack.manifest.json`: the model, its
/// weights, the examples, targets, batch and settings): finished chunks of the same run are resumed, a
/// folder holding another run is refused.
fn open_checkpoint(
    model: &dyn Classifier,
    spec: &AttackSpec,
    plan: &Plan,
    out_dir: &Path,
) -> Result<Checkpoint> {
    let manifest = serde_json::json!({
        "model": model.name(),
        "weights": model.fingerprint()?,
        "split": spec.split,
        "indices": crate::fingerprint::of_json(&serde_json::json!(plan.idx)),
        "targets": crate::fingerprint::of_json(&serde_json::json!(plan.targets)),
        "batch": spec.batch,
        "settings": spec.settings,
    });
    Checkpoint::open(
        out_dir,
        "attack.manifest.json",
        &manifest,
        OnOther::Refuse,
        false,
    )
    .map_err(|e| match e {
        Error::Checkpoint(_) => AttackError::OtherRun {
            dir: out_dir.to_path_buf(),
        }
        .into(),
        e => e,
    })
}

/// The files of chunk `ci`: its adversarials and its rows.
fn chunk_files(out_dir: &Path, ci: i64) -> (PathBuf, PathBuf) {
    let stem = out_dir.join("chunks").join(format!("chunk-{ci:05}"));
    (
        stem.with_extension("safetensors"),
        stem.with_extension("json"),
    )
}

/// Reads a finished chunk of `len` examples.
fn load_chunk(st: &Path, js: &Path, len: i64) -> Result<(Tensor, Vec<ExampleResult>)> {
    let res: Vec<ExampleResult> = crate::io::read_json(js)?;
    let adv = crate::io::read_safetensors(st)?
        .into_iter()
        .find(|(k, _)| k == "adversarial")
        .map(|(_, t)| t)
        .ok_or_else(|| Error::format(st, "no `adversarial` tensor"))?;
    if res.len() as i64 != len || adv.size()[0] != len {
        return Err(Error::format(
            js,
            "chunk does not match this run; delete the output folder",
        ));
    }
    Ok((adv, res))
}

/// Attacks the examples `x` [len, ..] (their indices in the attacked set, labels and targets) with
/// [`attack_batch`] and verifies every result with [`verify`]: the rows of `attack.csv` and the
/// adversarials on the model's device, failures carrying the original. A data set's chunks and examples
/// held in memory ([`super::tensors`]) both go through here.
pub(crate) fn attack_examples(
    model: &dyn Classifier,
    x: &Tensor,
    (index, labels, targets): (&[i64], &[i64], Option<&[i64]>),
    settings: &AttackSettings,
) -> Result<(Tensor, Vec<ExampleResult>)> {
    let t0 = Instant::now();
    let len = index.len();
    let l = Tensor::f_from_slice(labels)?;
    let t = targets.map(Tensor::f_from_slice).transpose()?;
    let out = attack_batch(model, x, &l, t.as_ref(), settings)?;
    let ver = verify(
        model,
        x,
        &out.adversarial,
        &l,
        t.as_ref(),
        settings.min_margin,
    )?;
    let secs = t0.elapsed().as_secs_f64();
    let mut res = Vec::with_capacity(len);
    let mut keep = Vec::with_capacity(len);
    for (j, v) in ver.into_iter().enumerate() {
        let success = out.success[j] && v.ok;
        let reason = if success {
            String::new()
        } else {
            out.reason[j]
                .clone()
                .or(v.reason)
                .unwrap_or_else(|| "failed".into())
        };
        keep.push(success);
        res.push(ExampleResult {
            index: index[j],
            label: labels[j],
            target: targets.map_or(-1, |t| t[j]),
            success,
            c: if success { out.c[j] } else { f64::NAN },
            distortion: if success { v.distortion } else { f64::NAN },
            iterations: out.iterations[j],
            evaluations: out.evaluations[j],
            seconds: secs / len as f64,
            reason,
            margin: if success { v.margin } else { f64::NAN },
            already_adversarial: success && out.already_adversarial[j],
        });
    }
    // Failures carry the original image.
    let n = len as i64;
    let dev = out.adversarial.device();
    let keep_t = Tensor::f_from_slice(&keep)?
        .f_view([n, 1])?
        .f_to_device(dev)?;
    let orig = x
        .f_to_device(dev)?
        .f_to_kind(Kind::Float)?
        .f_reshape([n, -1])?;
    let adv = out
        .adversarial
        .f_reshape([n, -1])?
        .f_where_self(&keep_t, &orig)?
        .f_view(x.size().as_slice())?;
    Ok((adv, res))
}

/// Attacks, verifies and saves the chunk of examples `start..start + len` of the plan.
fn attack_chunk(
    model: &dyn Classifier,
    images: &Tensor,
    spec: &AttackSpec,
    plan: &Plan,
    (start, len): (usize, usize),
    (st, js): (&Path, &Path),
) -> Result<(Tensor, Vec<ExampleResult>)> {
    let range = start..start + len;
    let sel = Tensor::f_from_slice(&plan.idx[range.clone()])?;
    let x = images.f_index_select(0, &sel)?; // [len, ..]
    let targets = plan.targets.as_ref().map(|t| &t[range.clone()]);
    let (adv, res) = attack_examples(
        model,
        &x,
        (&plan.idx[range.clone()], &plan.labels[range], targets),
        &spec.settings,
    )?;
    let adv = adv.f_to_device(Device::Cpu)?;
    crate::io::write_safetensors(st, &[("adversarial", &adv)])?;
    crate::io::write_json(js, &res)?;
    Ok((adv, res))
}

/// Verifies a chunk loaded on resume again on the model: is every stored success of examples
/// `start..start + len` still adversarial (inside the box, finite, margin > 0)? Returns the positions in
/// the chunk that are not.
fn recheck_chunk(
    model: &dyn Classifier,
    images: &Tensor,
    plan: &Plan,
    start: usize,
    (adv, res): (&Tensor, &[ExampleResult]),
) -> Result<Vec<usize>> {
    let range = start..start + res.len();
    let x = images.f_index_select(0, &Tensor::f_from_slice(&plan.idx[range.clone()])?)?;
    let l = Tensor::f_from_slice(&plan.labels[range.clone()])?;
    let t = plan
        .targets
        .as_ref()
        .map(|t| Tensor::f_from_slice(&t[range.clone()]))
        .transpose()?;
    let ver = verify(model, &x, adv, &l, t.as_ref(), 0.0)?;
    Ok(res
        .iter()
        .zip(&ver)
        .enumerate()
        .filter(|(_, (r, v))| r.success && !v.ok)
        .map(|(j, _)| j)
        .collect())
}

/// The run's summary from its rows.
fn summarise(
    model: &dyn Classifier,
    (model_path, fingerprint): (Option<&Path>, String),
    spec: &AttackSpec,
    results: &[ExampleResult],
) -> AttackSummary {
    let successes = results.iter().filter(|r| r.success).count();
    let already = results.iter().filter(|r| r.already_adversarial).count();
    let perturbed = || {
        results
            .iter()
            .filter(|r| r.success && !r.already_adversarial)
    };
    let dsum: f64 = perturbed().map(|r| r.distortion).sum();
    let moved = successes - already;
    let evals: usize = results.iter().map(|r| r.evaluations).sum();
    let secs_all: f64 = results.iter().map(|r| r.seconds).sum();
    let smallest_margin = results
        .iter()
        .filter(|r| r.success)
        .map(|r| r.margin)
        .fold(f64::NAN, f64::min);
    AttackSummary {
        model: model.name().to_string(),
        split: spec.split.clone(),
        targeted: spec.targeted,
        examples: results.len(),
        successes,
        success_rate: successes as f64 / results.len() as f64,
        already_adversarial: already,
        mean_distortion: if moved > 0 {
            dsum / moved as f64
        } else {
            f64::NAN
        },
        min_margin: spec.settings.min_margin,
        smallest_margin,
        evaluations_per_image: evals as f64 / results.len() as f64,
        images_per_second: results.len() as f64 / secs_all.max(1e-12),
        seconds: secs_all,
        device: format!("{:?}", model.device()),
        batch: spec.batch,
        settings: serde_json::to_value(spec.settings).unwrap_or_default(),
        model_path: model_path.map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())),
        model_fingerprint: Some(fingerprint),
        redone_chunks: 0,
    }
}

/// Attacks `images` [N, ..] with `labels` [N] (CPU tensors) per `spec` (split name used for the record
/// only), in resumable chunks of `spec.batch`, writing `adversarial.safetensors`, `attack.csv`,
/// `summary.json` and `chunks/` into `out_dir`. The summary records the model's weight fingerprint but
/// no path (see [`attack_dataset_of`]).
pub fn attack_dataset(
    model: &dyn Classifier,
    images: &Tensor,
    labels: &Tensor,
    spec: &AttackSpec,
    out_dir: &Path,
) -> Result<AttackSummary> {
    attack_dataset_of(model, None, images, labels, spec, out_dir)
}

/// [`attack_dataset`] of the model loaded from `model_path`, which `summary.json` records beside the
/// weights' fingerprint (for `blindspot transfer` and `blindspot verify`).
pub fn attack_dataset_of(
    model: &dyn Classifier,
    model_path: Option<&Path>,
    images: &Tensor,
    labels: &Tensor,
    spec: &AttackSpec,
    out_dir: &Path,
) -> Result<AttackSummary> {
    let plan = plan(model, images, labels, spec)?;
    let ckpt = open_checkpoint(model, spec, &plan, out_dir)?;
    let out_dir = ckpt.dir();
    std::fs::create_dir_all(out_dir.join("chunks")).map_err(|e| Error::io(out_dir, e))?;
    let n = plan.idx.len();
    let batch = spec.batch as usize;
    let bar = crate::progress::bar(n as u64, "attack", "images");
    let mut results: Vec<ExampleResult> = Vec::with_capacity(n);
    let mut adv_parts = Vec::new();
    let mut redone = 0;
    for (ci, start) in (0..n).step_by(batch).enumerate() {
        let len = batch.min(n - start);
        let (st, js) = chunk_files(out_dir, ci as i64);
        let mut loaded = None;
        if st.exists() && js.exists() {
            let (adv, res) = load_chunk(&st, &js, len as i64)?;
            let bad = recheck_chunk(model, images, &plan, start, (&adv, &res))?;
            if bad.is_empty() {
                loaded = Some((adv, res));
            } else {
                log::warn!(
                    "{}: {} stored success(es) are not adversarial on this model (first: example {}); attacking the chunk again",
                    js.display(),
                    bad.len(),
                    res[bad[0]].index
                );
                redone += 1;
            }
        }
        let (adv, res) = match loaded {
            Some(c) => c,
            None => attack_chunk(model, images, spec, &plan, (start, len), (&st, &js))?,
        };
        bar.inc(len as u64);
        adv_parts.push(adv);
        results.extend(res);
    }
    bar.finish_and_clear();

    let idx_t = Tensor::f_from_slice(&plan.idx)?;
    let flags =
        |f: fn(&ExampleResult) -> bool| -> Vec<u8> { results.iter().map(|r| f(r) as u8).collect() };
    let set = AdversarialSet {
        adversarial: Tensor::f_cat(&adv_parts, 0)?,
        original: images.f_index_select(0, &idx_t)?.f_to_kind(Kind::Float)?,
        label: Tensor::f_from_slice(&plan.labels)?,
        target: Tensor::f_from_slice(&plan.targets.clone().unwrap_or_else(|| vec![-1; n]))?,
        success: Tensor::f_from_slice(&flags(|r| r.success))?,
        already_adversarial: Tensor::f_from_slice(&flags(|r| r.already_adversarial))?,
        margin: Tensor::f_from_slice(&results.iter().map(|r| r.margin).collect::<Vec<f64>>())?,
    };
    drop(adv_parts);
    set.write(&out_dir.join("adversarial.safetensors"))?;
    files::write_csv(&out_dir.join("attack.csv"), &results)?;
    let mut summary = summarise(model, (model_path, model.fingerprint()?), spec, &results);
    summary.redone_chunks = redone;
    crate::io::write_json(&out_dir.join("summary.json"), &summary)?;
    Ok(summary)
}

// ---- One chunk at a time (a Slurm array task of `blindspot slurm`) ----------------------------------
// Additive: the merge is `run_mnist`/`attack_dataset` above, which loads the chunks these functions wrote.

/// The number of chunks (of `spec.batch` examples) of an attack on a set of `total` examples.
pub fn chunk_count(spec: &AttackSpec, total: i64) -> Result<usize> {
    let n = select_examples(spec, total)?.len();
    Ok(n.div_ceil(spec.batch.max(1) as usize))
}

/// Whether chunk `ci`'s files are in `out_dir`.
pub fn chunk_exists(out_dir: &Path, ci: usize) -> bool {
    let (st, js) = chunk_files(out_dir, ci as i64);
    st.exists() && js.exists()
}

/// Attacks only chunk `ci` of an attack stage on an MNIST split into `out_dir/chunks/` (the same files
/// [`attack_dataset`] writes for it); a chunk already there is left alone. Returns whether it attacked.
pub fn run_mnist_chunk(
    model_path: &Path,
    spec: &AttackSpec,
    out_dir: &Path,
    (device, mnist_dir): (Device, &Path),
    ci: usize,
) -> Result<bool> {
    spec.validate()?;
    let model = crate::models::torchscript::load_classifier(model_path, device)?;
    let set = MnistData::load_set(mnist_dir, &spec.split, spec.split_seed)?;
    let plan = plan(model.as_ref(), &set.images, &set.labels, spec)?;
    let ckpt = open_checkpoint(model.as_ref(), spec, &plan, out_dir)?;
    let out_dir = ckpt.dir();
    std::fs::create_dir_all(out_dir.join("chunks")).map_err(|e| Error::io(out_dir, e))?;
    let (n, batch) = (plan.idx.len(), spec.batch as usize);
    let start = ci * batch;
    if start >= n {
        return Err(Error::Shape {
            what: "chunk index".into(),
            expected: format!("below {}", n.div_ceil(batch)),
            got: vec![ci as i64],
        });
    }
    if chunk_exists(out_dir, ci) {
        return Ok(false);
    }
    let (st, js) = chunk_files(out_dir, ci as i64);
    let len = batch.min(n - start);
    let _written = attack_chunk(
        model.as_ref(),
        &set.images,
        spec,
        &plan,
        (start, len),
        (&st, &js),
    )?;
    Ok(true)
}
