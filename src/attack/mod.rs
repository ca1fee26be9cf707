//! The paper's attack (§4.1, box-constrained L-BFGS with a search over c; see [`lbfgs`]) run over a data
//! set in resumable chunks, every result verified in a fresh forward pass (§4.2: Table 1's "av. min.
//! distortion", Fig 7), plus the Gaussian-noise baselines of Fig 7 ([`noise`]).
//!
//! Outputs of [`run`] in `--out`: `adversarial.safetensors` (`adversarial` [N, ..], `original` [N, ..],
//! `label` [N], `target` [N] (−1 when untargeted), `success` [N] u8), `attack.csv` (one row per example:
//! index, label, target, success, c, distortion, iterations, evaluations, seconds, reason),
//! `summary.json` ([`AttackSummary`]), and `chunks/` (finished chunks; an interrupted run resumes there).

pub mod lbfgs;
pub mod noise;

pub use lbfgs::{attack_batch, AttackSettings, BatchOutcome};

use crate::data::MnistData;
use crate::models::Classifier;
use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// One example's verified result.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ExampleResult {
    /// Index in the attacked set.
    pub index: i64,
    pub label: i64,
    /// −1 when untargeted.
    pub target: i64,
    /// Verified in a fresh forward pass.
    pub success: bool,
    /// c of the returned adversarial (NaN on failure; `null` in JSON).
    #[serde(deserialize_with = "nan_if_null")]
    pub c: f64,
    /// sqrt(Σ(x' − x)²/n), recomputed (NaN on failure; `null` in JSON).
    #[serde(deserialize_with = "nan_if_null")]
    pub distortion: f64,
    pub iterations: usize,
    pub evaluations: usize,
    /// Wall time of the example's chunk divided by the chunk's size.
    pub seconds: f64,
    /// Why it failed (empty on success).
    pub reason: String,
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    use serde::Deserialize;
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Summary of an attack run (`summary.json`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct AttackSummary {
    pub model: String,
    pub split: String,
    pub targeted: bool,
    pub examples: usize,
    pub successes: usize,
    pub success_rate: f64,
    /// Mean distortion over the successful examples.
    pub mean_distortion: f64,
    /// Mean forward+backward evaluations per example.
    pub evaluations_per_image: f64,
    /// Examples per second of attack time (chunks done in this invocation and earlier ones).
    pub images_per_second: f64,
    pub seconds: f64,
    pub device: String,
    pub batch: i64,
    pub settings: AttackSettings,
}

/// The paper's distortion of each example, sqrt(Σ(x′ − x)²/n): `adversarial`, `original` [b, ..] → [b]
/// (f64, on their device).
pub fn distortions(adversarial: &Tensor, original: &Tensor) -> Result<Tensor> {
    let b = adversarial.size()[0];
    Ok(adversarial
        .f_to_kind(Kind::Double)?
        .f_sub(&original.f_to_kind(Kind::Double)?)?
        .f_reshape([b, -1])?
        .f_square()?
        .f_mean_dim([-1i64].as_slice(), false, Kind::Double)?
        .f_sqrt()?)
}

/// The successful examples of an attack's `adversarial.safetensors` (CPU): originals x [M, ..],
/// adversarials x′ [M, ..] (f32), labels and data positions [M] (i64).
pub struct Adversarials {
    pub original: Tensor,
    pub adversarial: Tensor,
    pub labels: Tensor,
    pub positions: Tensor,
}

/// Reads an attack's `adversarial.safetensors`, keeping its successful examples (failures carry the
/// original image); checks that the tensors fit together.
pub fn read_adversarials(file: &Path) -> Result<Adversarials> {
    let mut map: std::collections::HashMap<String, Tensor> =
        crate::io::read_safetensors(file)?.into_iter().collect();
    let mut take = |k: &str| {
        map.remove(k).ok_or_else(|| {
            Error::format(
                file,
                format!("no `{k}` tensor (is this an attack's adversarial.safetensors?)"),
            )
        })
    };
    let (orig, adv, lab, ok) = (
        take("original")?,
        take("adversarial")?,
        take("label")?,
        take("success")?,
    );
    let n = lab.size().first().copied().unwrap_or(-1);
    if orig.size() != adv.size() || orig.size().first() != Some(&n) || ok.size() != [n] {
        return Err(Error::format(
            file,
            format!(
                "inconsistent shapes: original {:?}, adversarial {:?}, label {:?}, success {:?}",
                orig.size(),
                adv.size(),
                lab.size(),
                ok.size()
            ),
        ));
    }
    let keep = ok.f_to_kind(Kind::Bool)?.f_nonzero()?.f_view([-1])?; // [M]
    if keep.size()[0] == 0 {
        return Err(Error::format(
            file,
            "no successful adversarial in this file",
        ));
    }
    Ok(Adversarials {
        original: orig.f_index_select(0, &keep)?.f_to_kind(Kind::Float)?,
        adversarial: adv.f_index_select(0, &keep)?.f_to_kind(Kind::Float)?,
        labels: lab.f_index_select(0, &keep)?.f_to_kind(Kind::Int64)?,
        positions: keep,
    })
}

/// Verify `adversarial` against `original` in a fresh forward pass: inside the model's box exactly,
/// classified as `target` (targeted, target >= 0) or not as `label`, finite outputs. Returns per example
/// `(ok, distortion, reason)`; distortion = sqrt(Σ(x' − x)²/n) in f64.
pub fn verify(
    model: &dyn Classifier,
    original: &Tensor,
    adversarial: &Tensor,
    labels: &Tensor,
    targets: Option<&Tensor>,
) -> Result<Vec<(bool, f64, Option<String>)>> {
    crate::models::classifier::check_input(model, adversarial)?;
    if original.size() != adversarial.size() {
        return Err(Error::Shape(format!(
            "original {:?} and adversarial {:?} differ",
            original.size(),
            adversarial.size()
        )));
    }
    let _g = tch::no_grad_guard();
    let b = adversarial.size()[0];
    let dev = model.device();
    let (lo, hi) = model.input_bounds();
    let adv = adversarial.f_to_device(dev)?.f_to_kind(Kind::Float)?;
    let flat = adv.f_reshape([b, -1])?; // [b, n]
    let inside = flat
        .f_ge(lo)?
        .f_logical_and(&flat.f_le(hi)?)?
        .f_all_dim(-1, false)?; // [b]
    let inside = bools(&inside)?;
    let dist = Vec::<f64>::try_from(
        &distortions(&adv, &original.f_to_device(dev)?)?.f_to_device(Device::Cpu)?,
    )?;
    let logits = model.logits(&adv)?; // [b, K]
    let class = targets.unwrap_or(labels).f_to_device(dev)?;
    let (advs, finite) = lbfgs::adversarial_rows(&logits, &class, targets.is_some())?;
    Ok((0..b as usize)
        .map(|i| {
            if !inside[i] {
                (false, dist[i], Some("outside the input box".to_string()))
            } else if !finite[i] {
                (false, dist[i], Some("model output not finite".to_string()))
            } else if !advs[i] {
                let what = if targets.is_some() {
                    "not classified as the target"
                } else {
                    "still classified as the label"
                };
                (false, dist[i], Some(format!("verification: {what}")))
            } else {
                (true, dist[i], None)
            }
        })
        .collect())
}

fn bools(t: &Tensor) -> Result<Vec<bool>> {
    Ok(
        Vec::<i64>::try_from(&t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Int64)?)?
            .into_iter()
            .map(|v| v != 0)
            .collect(),
    )
}

/// Random targets ≠ label, from `seed` (one draw per example, independent of the chunking): [N] i64.
pub fn random_targets(labels: &[i64], classes: i64, seed: u64) -> Vec<i64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    labels
        .iter()
        .map(|&l| {
            let k = rng.gen_range(1..classes.max(2));
            (l + k).rem_euclid(classes)
        })
        .collect()
}

/// Reads one integer per line (blank lines and `#` comments skipped).
pub fn read_int_file(path: &Path) -> Result<Vec<i64>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (no, line) in text.lines().enumerate() {
        let s = line.split('#').next().unwrap_or("").trim();
        if s.is_empty() {
            continue;
        }
        out.push(s.parse::<i64>().map_err(|e| {
            Error::format(
                path,
                format!("line {}: `{s}` is not an integer ({e})", no + 1),
            )
        })?);
    }
    Ok(out)
}

/// What to attack, as an experiment stage (YAML) or from the CLI.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AttackSpec {
    /// train, test, p1 or p2.
    #[serde(default = "default_split")]
    pub split: String,
    /// Attack the first N examples (None = all, unless `indices`).
    #[serde(default)]
    pub first: Option<usize>,
    /// Explicit indices into the split (overrides `first`).
    #[serde(default)]
    pub indices: Option<Vec<i64>>,
    /// Explicit targets, one per attacked example (targeted only).
    #[serde(default)]
    pub targets: Option<Vec<i64>>,
    #[serde(default = "default_true")]
    pub targeted: bool,
    #[serde(default = "default_batch")]
    pub batch: i64,
    #[serde(default)]
    pub seed: u64,
    /// Seed of the P1/P2 split (only used for p1/p2).
    #[serde(default = "default_split_seed")]
    pub split_seed: u64,
    #[serde(default)]
    pub settings: AttackSettings,
}

fn default_split() -> String {
    "train".into()
}
fn default_true() -> bool {
    true
}
fn default_batch() -> i64 {
    10_000
}
fn default_split_seed() -> u64 {
    2014
}

impl AttackSpec {
    /// Checks the batch size and the attack settings (before any model or data is loaded).
    pub fn validate(&self) -> Result<()> {
        if self.batch <= 0 {
            return Err(Error::Invalid(format!(
                "batch (--batch) must be >= 1, got {}",
                self.batch
            )));
        }
        self.settings.validate()
    }
}

impl Default for AttackSpec {
    fn default() -> Self {
        AttackSpec {
            split: default_split(),
            first: None,
            indices: None,
            targets: None,
            targeted: true,
            batch: default_batch(),
            seed: 0,
            split_seed: default_split_seed(),
            settings: AttackSettings::default(),
        }
    }
}

/// `blindspot attack`: the paper's L-BFGS attack on a zoo model over an MNIST set.
#[derive(clap::Args, Debug, Clone)]
pub struct AttackArgs {
    /// Model: a zoo folder (model.json + weights.safetensors) or a TorchScript file (.pt, inputs in [0, 1]).
    #[arg(long)]
    pub model: PathBuf,
    /// MNIST split: train, test, p1 or p2 (ignored with --data).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Attack the images of this folder instead of MNIST (class sub-folders or flat; resized and
    /// centre-cropped to the model's input like torchvision). The label of each image is the model's own
    /// prediction on it (a folder's class order need not match the model's classes); select images with
    /// --first.
    #[arg(long, conflicts_with = "indices")]
    pub data: Option<PathBuf>,
    /// File of indices into the split, one per line.
    #[arg(long, conflicts_with = "first")]
    pub indices: Option<PathBuf>,
    /// Attack the first N examples of the split (default: all).
    #[arg(long)]
    pub first: Option<usize>,
    /// File of targets, one per line (the i-th target for the i-th attacked example).
    #[arg(long, conflicts_with = "untargeted")]
    pub targets: Option<PathBuf>,
    /// Any wrong class will do (default: a random target ≠ label per example, from --seed).
    #[arg(long)]
    pub untargeted: bool,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Examples per chunk (peak memory is proportional to it).
    #[arg(long, default_value_t = 10_000)]
    pub batch: i64,
    /// Seed of the random targets.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// MNIST folder (default: the vendored assets/mnist).
    #[arg(long)]
    pub mnist_dir: Option<PathBuf>,
    /// libtorch intra-op threads (default: libtorch's choice).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Bisection stops when c_hi/c_lo <= 1 + this.
    #[arg(long, default_value_t = AttackSettings::default().c_rel_tol)]
    pub c_rel_tol: f64,
    /// L-BFGS-B memory m.
    #[arg(long, default_value_t = AttackSettings::default().history)]
    pub history: usize,
    /// Iterations per L-BFGS-B solve (one solve per value of c).
    #[arg(long, default_value_t = AttackSettings::default().max_iter)]
    pub max_iter: usize,
    /// A solve stops when the projected gradient's ∞-norm is below this (absolute: models whose input
    /// gradients are tiny, e.g. 224×224 inputs, may need a smaller value).
    #[arg(long, default_value_t = AttackSettings::default().pgtol)]
    pub pgtol: f64,
    /// A solve stops when the objective's relative reduction is below factr·ε (scipy's factr; 0 = off).
    #[arg(long, default_value_t = AttackSettings::default().factr)]
    pub factr: f64,
}

/// Runs `blindspot attack`.
pub fn run(args: &AttackArgs) -> Result<AttackSummary> {
    if let Some(t) = args.threads {
        tch::set_num_threads(t);
    }
    let device = crate::device::parse_device(&args.device)?;
    let indices = args.indices.as_deref().map(read_int_file).transpose()?;
    let targets = args.targets.as_deref().map(read_int_file).transpose()?;
    let spec = AttackSpec {
        split: args.split.clone(),
        first: args.first,
        indices,
        targets,
        targeted: !args.untargeted,
        batch: args.batch,
        seed: args.seed,
        settings: AttackSettings {
            c_rel_tol: args.c_rel_tol,
            history: args.history,
            max_iter: args.max_iter,
            pgtol: args.pgtol,
            factr: args.factr,
            ..AttackSettings::default()
        },
        ..AttackSpec::default()
    };
    if let Some(dir) = &args.data {
        return attack_folder(&args.model, dir, spec, &args.out, device);
    }
    let mnist = args
        .mnist_dir
        .clone()
        .unwrap_or_else(crate::data::mnist::default_dir);
    run_stage(&args.model, &spec, &args.out, device, &mnist)
}

/// Attacks the first `spec.first` images (default all) of an image folder, labelled by the model's own
/// predictions; writes `images.txt` (the file behind each attacked index) and Fig 5's triplets
/// (`fig5.png`, `fig5.json`) beside the usual outputs.
pub fn attack_folder(
    model_path: &Path,
    dir: &Path,
    mut spec: AttackSpec,
    out_dir: &Path,
    device: Device,
) -> Result<AttackSummary> {
    spec.validate()?;
    let model = crate::models::torchscript::load_classifier(model_path, device)?;
    let mut opts = crate::data::images::ImageFolderOptions::for_input(&model.input_shape())?;
    opts.on_bad = crate::data::images::OnBadImage::Fail;
    let folder = crate::data::images::ImageFolder::open(dir, opts)?;
    let n = spec.first.unwrap_or(folder.len());
    if n == 0 || n > folder.len() {
        return Err(Error::Invalid(format!(
            "--first {n}: {} holds {} images",
            dir.display(),
            folder.len()
        )));
    }
    let idx: Vec<usize> = (0..n).collect();
    let batch = folder.load(&idx)?; // images [n, C, S, S] in [0, 1]
    let labels = crate::models::classifier::predict(model.as_ref(), &batch.images, spec.batch)?; // [n]
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let list: String = folder.entries()[..n]
        .iter()
        .enumerate()
        .map(|(i, e)| format!("{i}\t{}\n", e.path.display()))
        .collect();
    crate::io::write_atomic(&out_dir.join("images.txt"), list.as_bytes())?;
    spec.split = format!("{} (labels: the model's predictions)", dir.display());
    spec.first = None;
    let summary = attack_dataset(model.as_ref(), &batch.images, &labels, &spec, out_dir)?;
    if summary.successes > 0 {
        // Fig 5: the first (up to) 8 successes as original / difference ×10 / adversarial triplets.
        let f = crate::report::fig5::fig5(
            &out_dir.join("adversarial.safetensors"),
            &out_dir.join("fig5.png"),
            8,
        )?;
        crate::io::write_json(&out_dir.join("fig5.json"), &f)?;
    }
    Ok(summary)
}

/// Runs an attack stage: loads the model and data, attacks, writes the outputs to `out_dir`.
pub fn run_stage(
    model_dir: &Path,
    spec: &AttackSpec,
    out_dir: &Path,
    device: Device,
    mnist_dir: &Path,
) -> Result<AttackSummary> {
    spec.validate()?;
    let model = crate::models::torchscript::load_classifier(model_dir, device)?;
    let data = MnistData::load(mnist_dir, spec.split_seed)?;
    let set = data.set(&spec.split)?;
    attack_dataset(model.as_ref(), &set.images, &set.labels, spec, out_dir)
}

#[allow(clippy::needless_range_loop)]
/// Attacks `images` [N, ..] with `labels` [N] (CPU tensors) per `spec` (split name used for the record
/// only), in resumable chunks of `spec.batch`, writing the outputs described in the module docs.
pub fn attack_dataset(
    model: &dyn Classifier,
    images: &Tensor,
    labels: &Tensor,
    spec: &AttackSpec,
    out_dir: &Path,
) -> Result<AttackSummary> {
    spec.validate()?;
    crate::models::classifier::check_input(model, images)?;
    let total = images.size()[0];
    let k = model.num_classes();
    // Which examples.
    let idx: Vec<i64> = match (&spec.indices, spec.first) {
        (Some(v), _) => {
            if let Some((i, bad)) = v.iter().enumerate().find(|(_, &j)| j < 0 || j >= total) {
                return Err(Error::Invalid(format!(
                    "index {bad} (entry {}) is out of range: split `{}` has {total} examples",
                    i + 1,
                    spec.split
                )));
            }
            v.clone()
        }
        (None, Some(f)) => {
            if f as i64 > total {
                return Err(Error::Invalid(format!(
                    "--first {f} but split `{}` has only {total} examples",
                    spec.split
                )));
            }
            (0..f as i64).collect()
        }
        (None, None) => (0..total).collect(),
    };
    if idx.is_empty() {
        return Err(Error::Invalid("nothing to attack (0 examples)".into()));
    }
    let idx_t = Tensor::f_from_slice(&idx)?;
    let lab: Vec<i64> = Vec::try_from(&labels.f_index_select(0, &idx_t)?.f_to_kind(Kind::Int64)?)?;
    if let Some(bad) = lab.iter().find(|&&l| l < 0 || l >= k) {
        return Err(Error::Invalid(format!(
            "label {bad} is outside the model's {k} classes"
        )));
    }
    let targets: Option<Vec<i64>> = if !spec.targeted {
        if spec.targets.is_some() {
            return Err(Error::Invalid(
                "targets given for an untargeted attack".into(),
            ));
        }
        None
    } else if let Some(t) = &spec.targets {
        if t.len() != idx.len() {
            return Err(Error::Invalid(format!(
                "{} targets for {} attacked examples (one target per example)",
                t.len(),
                idx.len()
            )));
        }
        for (i, (&tg, &l)) in t.iter().zip(lab.iter()).enumerate() {
            if tg < 0 || tg >= k {
                return Err(Error::Invalid(format!(
                    "target {tg} (entry {}) is out of range: the model has {k} classes",
                    i + 1
                )));
            }
            if tg == l {
                return Err(Error::Invalid(format!(
                    "target {tg} (entry {}, example {}) equals the label: a targeted attack needs target ≠ label",
                    i + 1,
                    idx[i]
                )));
            }
        }
        Some(t.clone())
    } else {
        Some(random_targets(&lab, k, spec.seed))
    };
    // Images must be inside the box.
    let (lo, hi) = model.input_bounds();
    {
        let sel = images.f_index_select(0, &idx_t)?;
        let bad = sel
            .f_lt(lo)?
            .f_logical_or(&sel.f_gt(hi)?)?
            .f_logical_or(&sel.f_isnan()?)?;
        if i64::try_from(bad.f_any()?)? != 0 {
            return Err(Error::Invalid(format!(
                "some images lie outside the model's input box [{lo}, {hi}] (or are NaN)"
            )));
        }
    }

    std::fs::create_dir_all(out_dir.join("chunks")).map_err(|e| Error::io(out_dir, e))?;
    // Manifest: an existing output folder must hold the same run.
    let manifest = serde_json::json!({
        "model": model.name(),
        "weights": model.fingerprint()?,
        "split": spec.split,
        "indices": crate::fingerprint::of_json(&serde_json::json!(idx)),
        "targets": crate::fingerprint::of_json(&serde_json::json!(targets)),
        "batch": spec.batch,
        "settings": spec.settings,
    });
    let mpath = out_dir.join("attack.manifest.json");
    if mpath.exists() {
        let old: serde_json::Value = crate::io::read_json(&mpath)?;
        if old != manifest {
            return Err(Error::Invalid(format!(
                "{} holds a different attack run (model, its weights, examples, targets, batch or settings differ); use another --out or delete it",
                out_dir.display()
            )));
        }
    } else {
        crate::io::write_json(&mpath, &manifest)?;
    }

    let n = idx.len() as i64;
    let chunks = (n + spec.batch - 1) / spec.batch;
    let bar = crate::progress::bar(n as u64, "attack", "images");
    let mut results: Vec<ExampleResult> = Vec::with_capacity(idx.len());
    let mut adv_parts = Vec::new();
    let mut attack_secs = 0.0;
    for ci in 0..chunks {
        let start = ci * spec.batch;
        let len = spec.batch.min(n - start);
        let stem = out_dir.join("chunks").join(format!("chunk-{ci:05}"));
        let (st, js) = (
            stem.with_extension("safetensors"),
            stem.with_extension("json"),
        );
        let (adv, res): (Tensor, Vec<ExampleResult>) = if st.exists() && js.exists() {
            let res: Vec<ExampleResult> = crate::io::read_json(&js)?;
            let t = crate::io::read_safetensors(&st)?;
            let adv = t
                .into_iter()
                .find(|(k, _)| k == "adversarial")
                .map(|(_, t)| t)
                .ok_or_else(|| Error::format(&st, "no `adversarial` tensor"))?;
            if res.len() as i64 != len || adv.size()[0] != len {
                return Err(Error::format(
                    &js,
                    "chunk does not match this run; delete the output folder",
                ));
            }
            (adv, res)
        } else {
            let t0 = Instant::now();
            let sel = Tensor::f_from_slice(&idx[start as usize..(start + len) as usize])?;
            let x = images.f_index_select(0, &sel)?; // [len, ..]
            let l = Tensor::f_from_slice(&lab[start as usize..(start + len) as usize])?;
            let t = targets
                .as_ref()
                .map(|t| Tensor::f_from_slice(&t[start as usize..(start + len) as usize]))
                .transpose()?;
            let out = attack_batch(model, &x, &l, t.as_ref(), &spec.settings)?;
            let ver = verify(model, &x, &out.adversarial, &l, t.as_ref())?;
            let secs = t0.elapsed().as_secs_f64();
            attack_secs += secs;
            let mut res = Vec::with_capacity(len as usize);
            let mut keep = Vec::with_capacity(len as usize);
            for j in 0..len as usize {
                let g = start as usize + j;
                let (ok, dist, why) = &ver[j];
                let success = out.success[j] && *ok;
                let reason = if success {
                    String::new()
                } else {
                    out.reason[j]
                        .clone()
                        .or(why.clone())
                        .unwrap_or_else(|| "failed".into())
                };
                keep.push(success);
                res.push(ExampleResult {
                    index: idx[g],
                    label: lab[g],
                    target: targets.as_ref().map_or(-1, |t| t[g]),
                    success,
                    c: if success { out.c[j] } else { f64::NAN },
                    distortion: if success { *dist } else { f64::NAN },
                    iterations: out.iterations[j],
                    evaluations: out.evaluations[j],
                    seconds: secs / len as f64,
                    reason,
                });
            }
            // Failures carry the original image.
            let keep_t = Tensor::f_from_slice(&keep)?
                .f_view([len, 1])?
                .f_to_device(out.adversarial.device())?;
            let adv = out
                .adversarial
                .f_reshape([len, -1])?
                .f_where_self(
                    &keep_t,
                    &x.f_to_device(out.adversarial.device())?
                        .f_to_kind(Kind::Float)?
                        .f_reshape([len, -1])?,
                )?
                .f_view(x.size().as_slice())?
                .f_to_device(Device::Cpu)?;
            crate::io::write_safetensors(&st, &[("adversarial", &adv)])?;
            crate::io::write_json(&js, &res)?;
            (adv, res)
        };
        bar.inc(len as u64);
        adv_parts.push(adv);
        results.extend(res);
    }
    bar.finish_and_clear();

    // Final outputs.
    let adversarial = Tensor::f_cat(&adv_parts, 0)?;
    drop(adv_parts);
    let original = images.f_index_select(0, &idx_t)?.f_to_kind(Kind::Float)?;
    let label_t = Tensor::f_from_slice(&lab)?;
    let target_t = Tensor::f_from_slice(&targets.clone().unwrap_or_else(|| vec![-1; idx.len()]))?;
    let succ: Vec<u8> = results.iter().map(|r| r.success as u8).collect();
    let succ_t = Tensor::f_from_slice(&succ)?;
    crate::io::write_safetensors(
        &out_dir.join("adversarial.safetensors"),
        &[
            ("adversarial", &adversarial),
            ("original", &original),
            ("label", &label_t),
            ("target", &target_t),
            ("success", &succ_t),
        ],
    )?;
    write_csv(&out_dir.join("attack.csv"), &results)?;
    let successes = results.iter().filter(|r| r.success).count();
    let dsum: f64 = results
        .iter()
        .filter(|r| r.success)
        .map(|r| r.distortion)
        .sum();
    let evals: usize = results.iter().map(|r| r.evaluations).sum();
    let secs_all: f64 = results.iter().map(|r| r.seconds).sum();
    let summary = AttackSummary {
        model: model.name().to_string(),
        split: spec.split.clone(),
        targeted: spec.targeted,
        examples: results.len(),
        successes,
        success_rate: successes as f64 / results.len() as f64,
        mean_distortion: if successes > 0 {
            dsum / successes as f64
        } else {
            f64::NAN
        },
        evaluations_per_image: evals as f64 / results.len() as f64,
        images_per_second: results.len() as f64 / secs_all.max(1e-12),
        seconds: secs_all,
        device: format!("{:?}", model.device()),
        batch: spec.batch,
        settings: spec.settings,
    };
    let _ = attack_secs;
    crate::io::write_json(&out_dir.join("summary.json"), &summary)?;
    Ok(summary)
}

/// Writes the per-example CSV atomically.
pub fn write_csv(path: &Path, rows: &[ExampleResult]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "index",
        "label",
        "target",
        "success",
        "c",
        "distortion",
        "iterations",
        "evaluations",
        "seconds",
        "reason",
    ])
    .map_err(|e| Error::Other(e.to_string()))?;
    for r in rows {
        w.write_record([
            r.index.to_string(),
            r.label.to_string(),
            r.target.to_string(),
            (r.success as u8).to_string(),
            format!("{:e}", r.c),
            format!("{:.6}", r.distortion),
            r.iterations.to_string(),
            r.evaluations.to_string(),
            format!("{:.6}", r.seconds),
            r.reason.clone(),
        ])
        .map_err(|e| Error::Other(e.to_string()))?;
    }
    let bytes = w.into_inner().map_err(|e| Error::Other(e.to_string()))?;
    crate::io::write_atomic(path, &bytes)
}
