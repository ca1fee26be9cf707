//! Units vs random directions (paper §3, Figs 1-4).
//!
//! The paper compares the images x of a data set that maximise ⟨φ(x), e_i⟩ (a single unit i of a layer φ)
//! with those maximising ⟨φ(x), v⟩ (a random direction v), and finds both equally "semantic" by eye.
//! This module does one streaming pass over the data that keeps, for every direction, the top-T images
//! (memory O(T·K + batch), independent of the data set's size), and then measures, for labelled data, the
//! label purity and label entropy of each direction's top-T set, units vs random directions, with bootstrap
//! confidence intervals, a Mann-Whitney U test and the chance level of random T-subsets.
//!
//! Choices (documented in docs/units.md):
//! - φ(x) is the layer's activation tensor flattened to D numbers; a "unit" is one coordinate of it (for a
//!   conv layer: one channel at one position), exactly the paper's natural basis e_i. With `--units K`
//!   smaller than D, K units are drawn uniformly without replacement (seeded).
//! - Random directions are N(0, I_D) vectors normalised to length 1; `--orthogonal` adds a random
//!   orthonormal set (QR of a Gaussian matrix, signs fixed so it is Haar distributed).
//! - No per-unit standardisation: it would let rarely-active units dominate random projections. No
//!   centring either: ⟨φ(x) − μ, v⟩ = ⟨φ(x), v⟩ − ⟨μ, v⟩ ranks images exactly as ⟨φ(x), v⟩ does.
//! - Ties: the pass keeps the top T+1 scores. A direction whose T-th and (T+1)-th best scores are equal
//!   (typically a ReLU unit active on fewer than T images, whose top-T set is filled by zeros) has a top-T
//!   set decided by ties; such directions are counted and excluded from the metrics. Within a top-T list,
//!   ties are ordered by data index.

use crate::data::images::{ImageFolder, ImageFolderOptions, OnBadImage};
use crate::data::mnist::{self, Mnist, Split};
use crate::models::Classifier;
use crate::report::grid::{image_grid, GridOptions, GridRow};
use crate::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

// ---------------------------------------------------------------------------------------------------------
// Data sources
// ---------------------------------------------------------------------------------------------------------

/// A batch of examples: `images` [b, ..example_shape] on the CPU, their data indices, and undecodable ones.
#[derive(Debug)]
pub struct DataBatch {
    pub images: Tensor,
    pub indices: Vec<usize>,
    pub bad: Vec<(usize, String)>,
}

/// A data set the units pass can stream over: MNIST (in memory) or an image folder (decoded on the fly).
pub trait Dataset {
    /// A short description for reports (e.g. `mnist-test`, a folder path).
    fn describe(&self) -> String;
    /// Number of examples (including any that turn out to be undecodable).
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Shape of one example, e.g. [1, 28, 28].
    fn example_shape(&self) -> Vec<i64>;
    /// Labels by data index, if the data set is labelled.
    fn labels(&self) -> Option<Vec<i64>>;
    /// Class names by label (may be empty).
    fn class_names(&self) -> Vec<String>;
    /// All examples in order, in batches of about `batch`.
    fn batches<'a>(&'a self, batch: usize) -> Box<dyn Iterator<Item = Result<DataBatch>> + 'a>;
    /// The examples at `indices`: [k, ..example_shape] on the CPU (for figures).
    fn fetch(&self, indices: &[usize]) -> Result<Tensor>;
}

/// MNIST (or any in-memory labelled image tensor) as a [`Dataset`].
pub struct TensorData {
    pub name: String,
    pub data: Mnist,
}

impl Dataset for TensorData {
    fn describe(&self) -> String {
        self.name.clone()
    }
    fn len(&self) -> usize {
        self.data.len() as usize
    }
    fn example_shape(&self) -> Vec<i64> {
        self.data.images.size()[1..].to_vec()
    }
    fn labels(&self) -> Option<Vec<i64>> {
        Vec::<i64>::try_from(&self.data.labels.to_kind(Kind::Int64)).ok()
    }
    fn class_names(&self) -> Vec<String> {
        (0..10).map(|d| d.to_string()).collect()
    }
    fn batches<'a>(&'a self, batch: usize) -> Box<dyn Iterator<Item = Result<DataBatch>> + 'a> {
        let n = self.len();
        let b = batch.max(1);
        Box::new((0..n).step_by(b).map(move |s| {
            let len = b.min(n - s);
            Ok(DataBatch {
                images: self.data.images.narrow(0, s as i64, len as i64),
                indices: (s..s + len).collect(),
                bad: Vec::new(),
            })
        }))
    }
    fn fetch(&self, indices: &[usize]) -> Result<Tensor> {
        let idx: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::Invalid(format!(
                "data index {bad} out of range (0..{})",
                self.len()
            )));
        }
        Ok(self.data.images.index_select(0, &Tensor::from_slice(&idx)))
    }
}

impl Dataset for ImageFolder {
    fn describe(&self) -> String {
        self.root().display().to_string()
    }
    fn len(&self) -> usize {
        ImageFolder::len(self)
    }
    fn example_shape(&self) -> Vec<i64> {
        ImageFolder::example_shape(self).to_vec()
    }
    fn labels(&self) -> Option<Vec<i64>> {
        ImageFolder::labels(self)
    }
    fn class_names(&self) -> Vec<String> {
        ImageFolder::class_names(self).to_vec()
    }
    fn batches<'a>(&'a self, batch: usize) -> Box<dyn Iterator<Item = Result<DataBatch>> + 'a> {
        Box::new(ImageFolder::batches(self, batch).map(|r| {
            r.map(|b| DataBatch {
                images: b.images,
                indices: b.indices,
                bad: b.bad,
            })
        }))
    }
    fn fetch(&self, indices: &[usize]) -> Result<Tensor> {
        let mut v = Vec::new();
        for &i in indices {
            v.push(Tensor::from_slice(&self.decode(i)?).view(ImageFolder::example_shape(self)));
        }
        if v.is_empty() {
            let mut s = vec![0i64];
            s.extend(ImageFolder::example_shape(self));
            return Ok(Tensor::zeros(s.as_slice(), (Kind::Float, Device::Cpu)));
        }
        Ok(Tensor::stack(&v, 0))
    }
}

// ---------------------------------------------------------------------------------------------------------
// Directions
// ---------------------------------------------------------------------------------------------------------

/// The kind of a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectionKind {
    /// A natural basis vector e_i of the layer.
    Unit,
    /// A Gaussian random direction, normalised.
    Random,
    /// A member of a random orthonormal set.
    Orthogonal,
}

impl DirectionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DirectionKind::Unit => "unit",
            DirectionKind::Random => "random",
            DirectionKind::Orthogonal => "orthogonal",
        }
    }
}

/// How many units to take from a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    All,
    N(usize),
}

impl std::str::FromStr for Count {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.eq_ignore_ascii_case("all") {
            return Ok(Count::All);
        }
        s.parse::<usize>()
            .map(Count::N)
            .map_err(|_| format!("`{s}`: expected a number or `all`"))
    }
}

/// The directions of one analysis, in the layer's flattened coordinates (dimension D).
#[derive(Debug)]
pub struct Directions {
    /// Shape of the layer's activations for one example (e.g. [4, 12, 12]); D is its product.
    pub layer_shape: Vec<i64>,
    /// Flat indices of the chosen units, sorted [Ku].
    pub units: Vec<i64>,
    /// Random unit-length directions as columns, [D, Kr] f32 on the CPU.
    pub random: Tensor,
    /// Random orthonormal directions as columns, [D, Ko] f32 on the CPU (Ko may be 0).
    pub orthogonal: Tensor,
}

impl Directions {
    pub fn dim(&self) -> i64 {
        self.layer_shape.iter().product()
    }
    /// Number of directions of each kind, in column order: units, random, orthogonal.
    pub fn counts(&self) -> [usize; 3] {
        [
            self.units.len(),
            self.random.size()[1] as usize,
            self.orthogonal.size()[1] as usize,
        ]
    }
    pub fn total(&self) -> usize {
        self.counts().iter().sum()
    }
    /// Kind and index within its kind of column `j` of the score matrix.
    pub fn column(&self, j: usize) -> (DirectionKind, usize) {
        let [u, r, _] = self.counts();
        if j < u {
            (DirectionKind::Unit, j)
        } else if j < u + r {
            (DirectionKind::Random, j - u)
        } else {
            (DirectionKind::Orthogonal, j - u - r)
        }
    }
    /// "c=3 y=5 x=7"-style position of flat unit index `flat` in the layer.
    pub fn unit_position(&self, flat: i64) -> String {
        let mut rem = flat;
        let mut coords = vec![0i64; self.layer_shape.len()];
        for (k, &d) in self.layer_shape.iter().enumerate().rev() {
            coords[k] = rem % d.max(1);
            rem /= d.max(1);
        }
        let names: &[&str] = match self.layer_shape.len() {
            3 => &["c", "y", "x"],
            2 => &["c", "t"],
            _ => &[],
        };
        if names.len() == coords.len() && coords.len() > 1 {
            coords
                .iter()
                .zip(names)
                .map(|(c, n)| format!("{n}={c}"))
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            format!("{flat}")
        }
    }

    /// Saves the directions (`units` i64 [Ku], `random` [D, Kr], `orthogonal` [D, Ko], `layer_shape`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let units = Tensor::from_slice(&self.units);
        let shape = Tensor::from_slice(&self.layer_shape);
        crate::io::write_safetensors(
            path,
            &[
                ("units", &units),
                ("random", &self.random),
                ("orthogonal", &self.orthogonal),
                ("layer_shape", &shape),
            ],
        )
    }
}

/// Standard normal matrix [dim, k] (f64, CPU) from a ChaCha8 stream (Box-Muller): the same numbers on
/// every machine and libtorch version, and libtorch's global generator is left alone.
pub fn gaussian(dim: i64, k: usize, seed: u64) -> Tensor {
    let n = (dim.max(0) as usize) * k;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v = Vec::with_capacity(n + 1);
    while v.len() < n {
        let u1: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]
        let u2: f64 = rng.gen::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        v.push(r * t.cos());
        v.push(r * t.sin());
    }
    v.truncate(n);
    Tensor::from_slice(&v).view([dim, k as i64])
}

/// `k` random unit-length directions in R^dim as columns, [dim, k] f32 (CPU, from `seed`).
pub fn random_directions(dim: i64, k: usize, seed: u64) -> Tensor {
    let _g = tch::no_grad_guard();
    let g = gaussian(dim, k, seed).to_kind(Kind::Float); // [D, k]
    let norms = g.norm_scalaropt_dim(2.0, [0], true).clamp_min(1e-12); // [1, k]
    g / norms
}

/// `k ≤ dim` random orthonormal directions as columns, [dim, k] f32: Q of the QR decomposition of a
/// Gaussian matrix with the signs of diag(R) moved into Q (so that Q is Haar distributed).
pub fn random_orthonormal(dim: i64, k: usize, seed: u64) -> Result<Tensor> {
    if k as i64 > dim {
        return Err(Error::Invalid(format!(
            "cannot draw {k} orthonormal directions in a layer of dimension {dim}"
        )));
    }
    let _g = tch::no_grad_guard();
    let g = gaussian(dim, k, seed); // [D, k] f64
    let (q, r) = Tensor::f_linalg_qr(&g, "reduced")?; // q [D, k], r [k, k]
    let d = r.diagonal(0, 0, 1).sign(); // [k]
    let d = d.where_self(&d.ne(0.0), &d.ones_like());
    Ok((q * d.unsqueeze(0)).to_kind(Kind::Float))
}

/// Chooses units and draws random directions for a layer of shape `layer_shape`.
pub fn make_directions(
    layer_shape: &[i64],
    units: Count,
    random: usize,
    orthogonal: usize,
    seed: u64,
) -> Result<Directions> {
    let dim: i64 = layer_shape.iter().product();
    if dim < 1 {
        return Err(Error::Shape(format!(
            "layer has no units (shape {layer_shape:?})"
        )));
    }
    let units: Vec<i64> = match units {
        Count::All => (0..dim).collect(),
        Count::N(k) if k as i64 >= dim => (0..dim).collect(),
        Count::N(k) => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x756e_6974);
            let mut v: Vec<i64> = rand::seq::index::sample(&mut rng, dim as usize, k)
                .into_iter()
                .map(|i| i as i64)
                .collect();
            v.sort_unstable();
            v
        }
    };
    Ok(Directions {
        layer_shape: layer_shape.to_vec(),
        units,
        random: random_directions(dim, random, seed.wrapping_add(1)),
        orthogonal: random_orthonormal(dim, orthogonal, seed.wrapping_add(2))?,
    })
}

// ---------------------------------------------------------------------------------------------------------
// The streaming pass
// ---------------------------------------------------------------------------------------------------------

/// Top-T images of one direction and its tie / activity statistics.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopList {
    pub kind: DirectionKind,
    /// Index within its kind.
    pub index: usize,
    /// Flat unit index (units only).
    pub unit: Option<i64>,
    /// Data indices of the top-T images, best first (ties by data index).
    pub data: Vec<usize>,
    pub scores: Vec<f32>,
    /// True when the T-th and (T+1)-th best scores are equal: the top-T set is not unique.
    pub tie_decided: bool,
    /// How many of the top-T scores equal the T-th best score (1 when there is no tie).
    pub boundary_ties: usize,
    /// Number of images with score > 0 (for a ReLU unit: images on which it is active).
    pub positive: i64,
    pub mean: f64,
    pub std: f64,
}

/// Result of [`scan`].
#[derive(Debug)]
pub struct Scan {
    pub lists: Vec<TopList>,
    /// Images scored.
    pub n_images: usize,
    /// Undecodable images skipped (index, message).
    pub skipped: Vec<(usize, String)>,
    pub top: usize,
}

/// Activation shape of `layer` for one example (a probe on a zero input).
pub fn layer_shape(model: &dyn Classifier, layer: &str) -> Result<Vec<i64>> {
    let _g = tch::no_grad_guard();
    let mut s = vec![1i64];
    s.extend(model.input_shape());
    let x = Tensor::zeros(s.as_slice(), (Kind::Float, model.device()));
    Ok(model.layer(&x, layer)?.size()[1..].to_vec())
}

/// Checks that `layer` is one of the model's layers; the error lists them.
pub fn check_layer(model: &dyn Classifier, layer: &str) -> Result<()> {
    let names = model.layer_names();
    if names.iter().any(|n| n == layer) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "unknown layer `{layer}` for model `{}`; available layers: {}",
            model.name(),
            names.join(", ")
        )))
    }
}

/// One streaming pass: scores every example on every direction and keeps the top `top` per direction.
/// Memory O((top + batch) · K) besides the model; runs on the model's device.
pub fn scan(
    model: &dyn Classifier,
    data: &dyn Dataset,
    layer: &str,
    dirs: &Directions,
    top: usize,
    batch: usize,
    progress: bool,
) -> Result<Scan> {
    if top == 0 {
        return Err(Error::Invalid("--top must be at least 1".into()));
    }
    check_layer(model, layer)?;
    if data.example_shape() != model.input_shape() {
        return Err(Error::Shape(format!(
            "data examples are {:?} but model `{}` takes {:?}",
            data.example_shape(),
            model.name(),
            model.input_shape()
        )));
    }
    let _g = tch::no_grad_guard();
    let dev = model.device();
    let k = dirs.total() as i64;
    if k == 0 {
        return Err(Error::Invalid(
            "no directions to scan (--units 0 --random 0)".into(),
        ));
    }
    let dim = dirs.dim();
    let units = Tensor::from_slice(&dirs.units).to_device(dev); // [Ku]
                                                                // Transposed so that the scores come out direction-major, [K, b]: the running top-k then reads
                                                                // contiguous rows instead of striding down columns of a [b, K] matrix.
    let proj_t = Tensor::cat(&[&dirs.random, &dirs.orthogonal], 1)
        .to_device(dev)
        .t_()
        .contiguous(); // [Kr + Ko, D]
    let keep = top as i64 + 1;
    let mut best_s: Option<Tensor> = None; // [K, M], M ≤ T + 1, each row sorted descending
    let mut best_i: Option<Tensor> = None; // [K, M] i64 data indices
    let mut sum = Tensor::zeros([k], (Kind::Double, dev));
    let mut sumsq = Tensor::zeros([k], (Kind::Double, dev));
    let mut positive = Tensor::zeros([k], (Kind::Int64, dev));
    let mut n_images = 0usize;
    let mut skipped = Vec::new();
    let pb = progress.then(|| crate::progress::bar(data.len() as u64, "units", "img"));
    for b in data.batches(batch) {
        let b = b?;
        skipped.extend(b.bad.iter().cloned());
        if let Some(pb) = &pb {
            pb.inc((b.indices.len() + b.bad.len()) as u64);
        }
        if b.indices.is_empty() {
            continue;
        }
        let bn = b.indices.len() as i64;
        let x = b.images.f_to_device(dev)?.f_to_kind(Kind::Float)?; // [b, ..input]
        let phi = model.layer(&x, layer)?.f_to_kind(Kind::Float)?;
        if phi.dim() == 0 || phi.size()[0] != bn {
            return Err(Error::Shape(format!(
                "layer `{layer}` returned {:?} for a batch of {bn}; expected [B, ...]",
                phi.size()
            )));
        }
        let phi = phi.f_reshape([bn, -1])?; // [b, D]
        if phi.size()[1] != dim {
            return Err(Error::Shape(format!(
                "layer `{layer}` gave {} values per example, the directions have {dim}",
                phi.size()[1]
            )));
        }
        let phi_t = phi.f_transpose(0, 1)?; // [D, b] (a view)
        let su = phi_t.f_index_select(0, &units)?; // [Ku, b]
        let sr = proj_t.f_matmul(&phi_t)?; // [Kr + Ko, b]
        let s = Tensor::f_cat(&[su, sr], 0)?; // [K, b]
                                              // Per-batch sums in f32 (≤ batch terms, pairwise), accumulated over batches in f64.
        sum += s
            .f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?
            .to_kind(Kind::Double);
        sumsq += s
            .f_square()?
            .f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?
            .to_kind(Kind::Double);
        positive += s
            .gt(0.0)
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Int64);
        let idx: Vec<i64> = b.indices.iter().map(|&i| i as i64).collect();
        let bi = Tensor::from_slice(&idx)
            .to_device(dev)
            .unsqueeze(0)
            .expand([k, bn], false); // [K, b]
        let (cs, ci) = match (&best_s, &best_i) {
            (Some(ps), Some(pi)) => (Tensor::f_cat(&[ps, &s], 1)?, Tensor::f_cat(&[pi, &bi], 1)?),
            _ => (s, bi.contiguous()),
        };
        let m = keep.min(cs.size()[1]);
        let (vals, pos) = cs.f_topk(m, 1, true, true)?; // [K, m]
        best_i = Some(ci.f_gather(1, &pos, false)?);
        best_s = Some(vals);
        n_images += b.indices.len();
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    if !skipped.is_empty() {
        log::warn!("{} undecodable image(s) skipped", skipped.len());
    }
    let (best_s, best_i) = match (best_s, best_i) {
        (Some(s), Some(i)) => (s, i),
        _ => {
            return Err(Error::Invalid(format!(
                "no examples could be read from {} ({} skipped)",
                data.describe(),
                skipped.len()
            )))
        }
    };
    let m = best_s.size()[1] as usize;
    let bs = Vec::<f32>::try_from(&best_s.to_device(Device::Cpu).contiguous().view([-1]))?; // [K*m]
    let bi = Vec::<i64>::try_from(&best_i.to_device(Device::Cpu).contiguous().view([-1]))?;
    let n = n_images as f64;
    let sum = Vec::<f64>::try_from(&sum.to_device(Device::Cpu))?;
    let sumsq = Vec::<f64>::try_from(&sumsq.to_device(Device::Cpu))?;
    let positive = Vec::<i64>::try_from(&positive.to_device(Device::Cpu))?;
    let k = k as usize;
    let mut lists = Vec::with_capacity(k);
    for j in 0..k {
        let mut col: Vec<(f32, usize)> = (0..m)
            .map(|r| (bs[j * m + r], bi[j * m + r] as usize))
            .collect();
        // Already descending by score; order ties by data index.
        col.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let t = top.min(col.len());
        let tie_decided = col.len() > top && col[top - 1].0 == col[top].0;
        let boundary = col[..t].iter().filter(|c| c.0 == col[t - 1].0).count();
        let (kind, index) = dirs.column(j);
        let mean = sum[j] / n;
        let var = (sumsq[j] / n - mean * mean).max(0.0);
        lists.push(TopList {
            kind,
            index,
            unit: (kind == DirectionKind::Unit).then(|| dirs.units[index]),
            data: col[..t].iter().map(|c| c.1).collect(),
            scores: col[..t].iter().map(|c| c.0).collect(),
            tie_decided,
            boundary_ties: boundary,
            positive: positive[j],
            mean,
            std: var.sqrt(),
        });
    }
    Ok(Scan {
        lists,
        n_images,
        skipped,
        top,
    })
}

// ---------------------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------------------

/// Label counts of a set of labels (length `classes`, labels outside 0..classes are grown into).
pub fn label_counts(labels: &[i64]) -> Vec<usize> {
    let max = labels.iter().copied().max().unwrap_or(0).max(0) as usize;
    let mut c = vec![0usize; max + 1];
    for &l in labels {
        if l >= 0 {
            c[l as usize] += 1;
        }
    }
    c
}

/// Label purity: the share of the most common label.
pub fn purity(counts: &[usize]) -> f64 {
    let n: usize = counts.iter().sum();
    if n == 0 {
        return f64::NAN;
    }
    *counts.iter().max().unwrap_or(&0) as f64 / n as f64
}

/// Label entropy in bits: −Σ p log₂ p.
pub fn entropy_bits(counts: &[usize]) -> f64 {
    let n: usize = counts.iter().sum();
    if n == 0 {
        return f64::NAN;
    }
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.log2()
        })
        .sum()
}

/// Complementary error function (W. J. Cody's rational Chebyshev fit as in Numerical Recipes' `erfcc`,
/// fractional error < 1.2e-7 everywhere).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let ans = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 {
        ans
    } else {
        2.0 - ans
    }
}

/// Result of a two-sided Mann-Whitney U test (normal approximation with tie and continuity correction,
/// as scipy's `mannwhitneyu(a, b, method="asymptotic")`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct MannWhitney {
    /// U statistic of the first sample.
    pub u: f64,
    pub z: f64,
    pub p_value: f64,
}

/// Two-sided Mann-Whitney U test of `a` vs `b`.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&v| (v, true))
        .chain(b.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let mut r1 = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        for e in &all[i..=j] {
            if e.1 {
                r1 += rank;
            }
        }
        i = j + 1;
    }
    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let u1 = r1 - n1f * (n1f + 1.0) / 2.0;
    let u2 = n1f * n2f - u1;
    let mu = n1f * n2f / 2.0;
    let var = n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
    if var <= 0.0 {
        return Some(MannWhitney {
            u: u1,
            z: 0.0,
            p_value: 1.0,
        });
    }
    let z = (u1.max(u2) - mu - 0.5) / var.sqrt();
    Some(MannWhitney {
        u: u1,
        z,
        p_value: erfc(z / std::f64::consts::SQRT_2).min(1.0),
    })
}

/// A mean with its percentile bootstrap confidence interval.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Estimate {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Mean of `v` with a `level` (e.g. 0.95) percentile bootstrap interval from `reps` resamples.
pub fn bootstrap_mean(v: &[f64], reps: usize, level: f64, rng: &mut impl Rng) -> Option<Estimate> {
    if v.is_empty() {
        return None;
    }
    let mut ms: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            (0..v.len())
                .map(|_| v[rng.gen_range(0..v.len())])
                .sum::<f64>()
                / v.len() as f64
        })
        .collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let a = (1.0 - level) / 2.0;
    Some(Estimate {
        mean: mean(v),
        lo: quantile(&ms, a),
        hi: quantile(&ms, 1.0 - a),
    })
}

/// Difference of means mean(a) − mean(b) with a bootstrap interval (each sample resampled on its own).
pub fn bootstrap_diff(
    a: &[f64],
    b: &[f64],
    reps: usize,
    level: f64,
    rng: &mut impl Rng,
) -> Option<Estimate> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut ds: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let ma = (0..a.len())
                .map(|_| a[rng.gen_range(0..a.len())])
                .sum::<f64>()
                / a.len() as f64;
            let mb = (0..b.len())
                .map(|_| b[rng.gen_range(0..b.len())])
                .sum::<f64>()
                / b.len() as f64;
            ma - mb
        })
        .collect();
    ds.sort_by(|x, y| x.total_cmp(y));
    let al = (1.0 - level) / 2.0;
    Some(Estimate {
        mean: mean(a) - mean(b),
        lo: quantile(&ds, al),
        hi: quantile(&ds, 1.0 - al),
    })
}

/// Purity and entropy of random T-subsets of the labelled data: the chance level.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Chance {
    pub purity: Estimate,
    pub entropy_bits: Estimate,
    pub draws: usize,
}

/// Chance level by Monte Carlo: `draws` subsets of size `t` drawn without replacement; the interval is the
/// central `level` range of a single subset's value (not of the mean).
pub fn chance_level(
    labels: &[i64],
    t: usize,
    draws: usize,
    level: f64,
    rng: &mut impl Rng,
) -> Option<Chance> {
    if labels.is_empty() || t == 0 {
        return None;
    }
    let t = t.min(labels.len());
    let mut ps = Vec::with_capacity(draws);
    let mut es = Vec::with_capacity(draws);
    for _ in 0..draws.max(1) {
        let pick: Vec<i64> = rand::seq::index::sample(rng, labels.len(), t)
            .into_iter()
            .map(|i| labels[i])
            .collect();
        let c = label_counts(&pick);
        ps.push(purity(&c));
        es.push(entropy_bits(&c));
    }
    let a = (1.0 - level) / 2.0;
    let est = |mut v: Vec<f64>| {
        let m = mean(&v);
        v.sort_by(|x, y| x.total_cmp(y));
        Estimate {
            mean: m,
            lo: quantile(&v, a),
            hi: quantile(&v, 1.0 - a),
        }
    };
    Some(Chance {
        purity: est(ps),
        entropy_bits: est(es),
        draws: draws.max(1),
    })
}

// ---------------------------------------------------------------------------------------------------------
// Metrics and summary
// ---------------------------------------------------------------------------------------------------------

/// Per-direction label metrics of the top-T set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectionMetrics {
    pub kind: DirectionKind,
    pub index: usize,
    pub unit: Option<i64>,
    pub purity: f64,
    pub entropy_bits: f64,
    pub majority_label: i64,
    pub tie_decided: bool,
}

/// Summary of one kind of direction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KindSummary {
    pub kind: DirectionKind,
    pub directions: usize,
    /// Directions whose top-T set is decided by ties (excluded from the metrics).
    pub tie_decided: usize,
    /// Directions with at most T images scoring > 0 (for units: active on ≤ T images).
    pub positive_at_most_top: usize,
    pub used: usize,
    pub purity: Option<Estimate>,
    pub entropy_bits: Option<Estimate>,
}

/// A comparison of units with one kind of random direction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub against: DirectionKind,
    /// mean purity(units) − mean purity(other), bootstrap interval.
    pub purity_diff: Option<Estimate>,
    pub purity_test: Option<MannWhitney>,
    /// mean entropy(units) − mean entropy(other).
    pub entropy_diff: Option<Estimate>,
    pub entropy_test: Option<MannWhitney>,
    pub verdict: String,
}

/// Everything `summary.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitsSummary {
    pub model: String,
    pub layer: String,
    pub layer_shape: Vec<i64>,
    pub data: String,
    pub n_images: usize,
    pub skipped_images: usize,
    pub top: usize,
    pub seed: u64,
    pub confidence_level: f64,
    pub bootstrap_reps: usize,
    pub kinds: Vec<KindSummary>,
    pub chance: Option<Chance>,
    pub comparisons: Vec<Comparison>,
    pub conclusion: String,
}

/// Per-direction metrics (labelled data only).
pub fn direction_metrics(scan: &Scan, labels: &[i64]) -> Vec<DirectionMetrics> {
    scan.lists
        .iter()
        .map(|l| {
            let ls: Vec<i64> = l
                .data
                .iter()
                .map(|&i| labels.get(i).copied().unwrap_or(-1))
                .collect();
            let c = label_counts(&ls);
            let maj = c
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
                .map(|(i, _)| i as i64)
                .unwrap_or(-1);
            DirectionMetrics {
                kind: l.kind,
                index: l.index,
                unit: l.unit,
                purity: purity(&c),
                entropy_bits: entropy_bits(&c),
                majority_label: maj,
                tie_decided: l.tie_decided,
            }
        })
        .collect()
}

fn fmt_est(e: &Option<Estimate>) -> String {
    match e {
        Some(e) => format!("{:.3} [{:.3}, {:.3}]", e.mean, e.lo, e.hi),
        None => "n/a".into(),
    }
}

/// Summarises a scan: per-kind metrics with bootstrap intervals, tests of units vs each random kind,
/// chance level, and a plain-words conclusion.
pub fn summarise(
    scan: &Scan,
    labels: Option<&[i64]>,
    reps: usize,
    level: f64,
    seed: u64,
) -> (Vec<KindSummary>, Option<Chance>, Vec<Comparison>, String) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x626f_6f74);
    let metrics = labels.map(|l| direction_metrics(scan, l));
    let kinds = [
        DirectionKind::Unit,
        DirectionKind::Random,
        DirectionKind::Orthogonal,
    ];
    let values = |k: DirectionKind, pick: fn(&DirectionMetrics) -> f64| -> Vec<f64> {
        metrics
            .as_ref()
            .map(|m| {
                m.iter()
                    .filter(|d| d.kind == k && !d.tie_decided && d.purity.is_finite())
                    .map(pick)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for k in kinds {
        let ls: Vec<&TopList> = scan.lists.iter().filter(|l| l.kind == k).collect();
        if ls.is_empty() {
            continue;
        }
        let p = values(k, |d| d.purity);
        let e = values(k, |d| d.entropy_bits);
        out.push(KindSummary {
            kind: k,
            directions: ls.len(),
            tie_decided: ls.iter().filter(|l| l.tie_decided).count(),
            positive_at_most_top: ls.iter().filter(|l| l.positive <= scan.top as i64).count(),
            used: ls.iter().filter(|l| !l.tie_decided).count(),
            purity: bootstrap_mean(&p, reps, level, &mut rng),
            entropy_bits: bootstrap_mean(&e, reps, level, &mut rng),
        });
    }
    let chance = labels.and_then(|l| chance_level(l, scan.top, reps.max(200), level, &mut rng));
    let mut comps = Vec::new();
    let mut conclusion = String::new();
    if labels.is_none() {
        conclusion =
            "The data set is unlabelled: no purity / entropy comparison (figures only).".into();
    }
    let pu = values(DirectionKind::Unit, |d| d.purity);
    let eu = values(DirectionKind::Unit, |d| d.entropy_bits);
    for other in [DirectionKind::Random, DirectionKind::Orthogonal] {
        if labels.is_none()
            || !out.iter().any(|s| s.kind == other)
            || !out.iter().any(|s| s.kind == DirectionKind::Unit)
        {
            continue;
        }
        let po = values(other, |d| d.purity);
        let eo = values(other, |d| d.entropy_bits);
        let purity_diff = bootstrap_diff(&pu, &po, reps, level, &mut rng);
        let purity_test = mann_whitney(&pu, &po);
        let entropy_diff = bootstrap_diff(&eu, &eo, reps, level, &mut rng);
        let entropy_test = mann_whitney(&eu, &eo);
        let alpha = 1.0 - level;
        let verdict = match (&purity_diff, &purity_test) {
            (Some(d), Some(t)) if t.p_value < alpha && d.mean > 0.0 => format!(
                "units are MORE interpretable than {} directions by label purity of the top-{} images: \
                 difference {} (Mann-Whitney p = {:.2e})",
                other.as_str(),
                scan.top,
                fmt_est(&purity_diff),
                t.p_value
            ),
            (Some(d), Some(t)) if t.p_value < alpha && d.mean < 0.0 => format!(
                "units are LESS interpretable than {} directions by label purity of the top-{} images: \
                 difference {} (Mann-Whitney p = {:.2e})",
                other.as_str(),
                scan.top,
                fmt_est(&purity_diff),
                t.p_value
            ),
            (Some(_), Some(t)) => format!(
                "no significant difference between units and {} directions in label purity of the top-{} \
                 images: difference {} (Mann-Whitney p = {:.3})",
                other.as_str(),
                scan.top,
                fmt_est(&purity_diff),
                t.p_value
            ),
            _ => format!(
                "units vs {}: too few usable directions to compare (tie-decided ones excluded)",
                other.as_str()
            ),
        };
        if !conclusion.is_empty() {
            conclusion.push(' ');
        }
        conclusion.push_str(&format!(
            "{}{}.",
            verdict[..1].to_uppercase(),
            &verdict[1..]
        ));
        comps.push(Comparison {
            against: other,
            purity_diff,
            purity_test,
            entropy_diff,
            entropy_test,
            verdict,
        });
    }
    if let (Some(c), false) = (&chance, comps.is_empty()) {
        conclusion.push_str(&format!(
            " Chance level (random {}-subsets): purity {:.3}, entropy {:.3} bits.",
            scan.top, c.purity.mean, c.entropy_bits.mean
        ));
    }
    (out, chance, comps, conclusion)
}

// ---------------------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------------------

fn csv_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Other(format!("writing {}: {e}", path.display()))
}

/// Writes `topk.csv`: kind, direction, unit, rank, data_index, score, label.
pub fn write_topk_csv(path: &Path, scan: &Scan, labels: Option<&[i64]>) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "kind",
        "direction",
        "unit",
        "rank",
        "data_index",
        "score",
        "label",
    ])
    .map_err(|e| csv_err(path, e))?;
    for l in &scan.lists {
        for (r, (&i, &s)) in l.data.iter().zip(&l.scores).enumerate() {
            let label = labels
                .and_then(|ls| ls.get(i))
                .map(|v| v.to_string())
                .unwrap_or_default();
            w.write_record([
                l.kind.as_str().to_string(),
                l.index.to_string(),
                l.unit.map(|u| u.to_string()).unwrap_or_default(),
                r.to_string(),
                i.to_string(),
                format!("{s:e}"),
                label,
            ])
            .map_err(|e| csv_err(path, e))?;
        }
    }
    let bytes = w.into_inner().map_err(|e| csv_err(path, e))?;
    crate::io::write_atomic(path, &bytes)
}

/// Writes `metrics.csv`: one line per direction.
pub fn write_metrics_csv(path: &Path, scan: &Scan, labels: Option<&[i64]>) -> Result<()> {
    let metrics = labels.map(|l| direction_metrics(scan, l));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "kind",
        "direction",
        "unit",
        "purity",
        "entropy_bits",
        "majority_label",
        "tie_decided",
        "boundary_ties",
        "positive_count",
        "mean_score",
        "std_score",
    ])
    .map_err(|e| csv_err(path, e))?;
    for (j, l) in scan.lists.iter().enumerate() {
        let m = metrics.as_ref().map(|m| &m[j]);
        w.write_record([
            l.kind.as_str().to_string(),
            l.index.to_string(),
            l.unit.map(|u| u.to_string()).unwrap_or_default(),
            m.map(|m| format!("{:.6}", m.purity)).unwrap_or_default(),
            m.map(|m| format!("{:.6}", m.entropy_bits))
                .unwrap_or_default(),
            m.map(|m| m.majority_label.to_string()).unwrap_or_default(),
            l.tie_decided.to_string(),
            l.boundary_ties.to_string(),
            l.positive.to_string(),
            format!("{:e}", l.mean),
            format!("{:e}", l.std),
        ])
        .map_err(|e| csv_err(path, e))?;
    }
    let bytes = w.into_inner().map_err(|e| csv_err(path, e))?;
    crate::io::write_atomic(path, &bytes)
}

/// Draws one figure per kind (Figs 1-4): a row per direction (the first `rows` whose top set is not
/// decided by ties) with its top `cols` images.
pub fn draw_figures(
    out: &Path,
    scan: &Scan,
    dirs: &Directions,
    data: &dyn Dataset,
    title: &str,
    rows: usize,
    cols: usize,
) -> Result<Vec<PathBuf>> {
    let labels = data.labels();
    let names = data.class_names();
    let mut written = Vec::new();
    for kind in [
        DirectionKind::Unit,
        DirectionKind::Random,
        DirectionKind::Orthogonal,
    ] {
        let chosen: Vec<&TopList> = scan
            .lists
            .iter()
            .filter(|l| l.kind == kind && !l.tie_decided)
            .take(rows)
            .collect();
        if chosen.is_empty() {
            continue;
        }
        let mut grid = Vec::new();
        for l in chosen {
            let idx: Vec<usize> = l.data.iter().take(cols).copied().collect();
            let imgs = data.fetch(&idx)?; // [k, C, H, W]
            let images: Vec<Tensor> = (0..idx.len() as i64).map(|i| imgs.get(i)).collect();
            let mut label = match l.unit {
                Some(u) if dirs.layer_shape.len() > 1 => {
                    format!("unit {u}\n{}", dirs.unit_position(u))
                }
                Some(u) => format!("unit {u}"),
                None => format!("{} {}", kind.as_str(), l.index),
            };
            if let Some(ls) = &labels {
                let tl: Vec<i64> = l
                    .data
                    .iter()
                    .map(|&i| ls.get(i).copied().unwrap_or(-1))
                    .collect();
                let c = label_counts(&tl);
                let maj = c
                    .iter()
                    .enumerate()
                    .max_by_key(|x| x.1)
                    .map(|x| x.0)
                    .unwrap_or(0);
                let mname = names.get(maj).cloned().unwrap_or_else(|| maj.to_string());
                label.push_str(&format!("\npurity {:.2} ({mname})", purity(&c)));
            }
            grid.push(GridRow::new(label, images));
        }
        let path = out.join(format!("{}.png", kind.as_str()));
        let opts = GridOptions {
            title: Some(format!("{title}: top images per {}", kind.as_str())),
            scale: if data.example_shape().get(1).copied().unwrap_or(28) <= 64 {
                2
            } else {
                1
            },
            cell: if data.example_shape().get(1).copied().unwrap_or(28) > 128 {
                Some(112)
            } else {
                None
            },
            ..GridOptions::default()
        };
        image_grid(&path, &grid, &opts)?;
        written.push(path);
    }
    Ok(written)
}

// ---------------------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------------------

/// `blindspot units`: top images per unit vs random directions of a layer (paper §3, Figs 1-4).
#[derive(Debug, Clone, clap::Args)]
pub struct UnitsArgs {
    /// A zoo model folder or a TorchScript file (.pt).
    #[arg(long)]
    pub model: PathBuf,
    /// The layer to analyse (see --list-layers), or `all`: every layer but the logits, each in its own
    /// sub-folder of --out, with a `layers.csv` overview.
    #[arg(long)]
    pub layer: Option<String>,
    /// mnist-test, mnist-train, or an image folder (class sub-folders or flat).
    #[arg(long, default_value = "mnist-test")]
    pub data: String,
    /// Number of units (natural basis directions), drawn at random from the layer, or `all`.
    #[arg(long, default_value = "10")]
    pub units: Count,
    /// Number of random (Gaussian, normalised) directions.
    #[arg(long, default_value_t = 10)]
    pub random: usize,
    /// Also draw a random orthonormal set of as many directions as --random (kind `orthogonal`).
    #[arg(long)]
    pub orthogonal: bool,
    /// Images kept per direction.
    #[arg(long, default_value_t = 8)]
    pub top: usize,
    /// Output folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the model's layer names, one a line, and exit.
    #[arg(long)]
    pub list_layers: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// What to do with an image file that cannot be decoded.
    #[arg(long, value_enum, default_value_t = OnBadImage::Skip)]
    pub on_bad_image: OnBadImage,
    /// Label file for a flat image folder (`<file> <label>` lines, or one label a line in file order).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Image-folder preprocessing: resize the shorter side to this (default: input size · 256/224).
    #[arg(long)]
    pub resize: Option<u32>,
    /// Rows (directions) per figure.
    #[arg(long, default_value_t = 10)]
    pub fig_rows: usize,
    /// Images per figure row.
    #[arg(long, default_value_t = 10)]
    pub fig_cols: usize,
    /// Bootstrap resamples for confidence intervals.
    #[arg(long, default_value_t = 2000)]
    pub bootstrap: usize,
    /// Skip drawing figures.
    #[arg(long)]
    pub no_figures: bool,
}

/// What `run` did.
#[derive(Debug)]
pub enum UnitsOutcome {
    /// `--list-layers`: the layer names (also printed); `--layer all`: the layers analysed.
    Layers(Vec<String>),
    /// The analysis; its files are in the output folder.
    Done(Box<UnitsSummary>),
}

/// Opens `--data`: `mnist-test`, `mnist-train` (from `mnist::default_dir()`), or an image folder.
pub fn open_data(spec: &str, model: &dyn Classifier, args: &UnitsArgs) -> Result<Box<dyn Dataset>> {
    match spec {
        "mnist-test" | "mnist-train" => {
            let split = if spec == "mnist-test" {
                Split::Test
            } else {
                Split::Train
            };
            let m = mnist::load(&mnist::default_dir(), split)?;
            Ok(Box::new(TensorData {
                name: spec.to_string(),
                data: m,
            }))
        }
        path => {
            let p = Path::new(path);
            if !p.is_dir() {
                return Err(Error::Invalid(format!(
                    "--data `{path}`: expected mnist-test, mnist-train or an existing image folder"
                )));
            }
            let mut opts = ImageFolderOptions::for_input(&model.input_shape())?;
            opts.on_bad = args.on_bad_image;
            opts.labels_file = args.labels.clone();
            if let Some(r) = args.resize {
                opts.resize = r;
            }
            Ok(Box::new(ImageFolder::open(p, opts)?))
        }
    }
}

/// Runs the analysis for a loaded model and data set, writing everything into `out`.
#[allow(clippy::too_many_arguments)]
pub fn analyse(
    model: &dyn Classifier,
    data: &dyn Dataset,
    layer: &str,
    units: Count,
    random: usize,
    orthogonal: usize,
    top: usize,
    batch: usize,
    seed: u64,
    bootstrap: usize,
    out: &Path,
    figures: Option<(usize, usize)>,
) -> Result<UnitsSummary> {
    check_layer(model, layer)?;
    let shape = layer_shape(model, layer)?;
    let dirs = make_directions(&shape, units, random, orthogonal, seed)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    dirs.save(&out.join("directions.safetensors"))?;
    let scan = scan(model, data, layer, &dirs, top, batch, true)?;
    if scan.n_images <= top {
        log::warn!(
            "only {} images for --top {top}: every top list is the whole data set",
            scan.n_images
        );
    }
    let labels = data.labels();
    let level = 0.95;
    let (kinds, chance, comparisons, conclusion) =
        summarise(&scan, labels.as_deref(), bootstrap, level, seed);
    write_topk_csv(&out.join("topk.csv"), &scan, labels.as_deref())?;
    write_metrics_csv(&out.join("metrics.csv"), &scan, labels.as_deref())?;
    let summary = UnitsSummary {
        model: model.name().to_string(),
        layer: layer.to_string(),
        layer_shape: shape,
        data: data.describe(),
        n_images: scan.n_images,
        skipped_images: scan.skipped.len(),
        top,
        seed,
        confidence_level: level,
        bootstrap_reps: bootstrap,
        kinds,
        chance,
        comparisons,
        conclusion,
    };
    crate::io::write_json(&out.join("summary.json"), &summary)?;
    if let Some((rows, cols)) = figures {
        let title = format!("{} / {}", model.name(), layer);
        draw_figures(out, &scan, &dirs, data, &title, rows, cols)?;
    }
    Ok(summary)
}

/// The `units` subcommand.
pub fn run(args: &UnitsArgs) -> Result<UnitsOutcome> {
    let device = crate::device::parse_device(&args.device)?;
    let model = crate::models::torchscript::load_classifier(&args.model, device)?;
    if args.list_layers {
        let names = model.layer_names();
        for n in &names {
            println!("{n}");
        }
        return Ok(UnitsOutcome::Layers(names));
    }
    let layer = args.layer.as_deref().ok_or_else(|| {
        Error::Invalid(format!(
            "--layer is required; available layers: {}",
            model.layer_names().join(", ")
        ))
    })?;
    let out = args
        .out
        .as_deref()
        .ok_or_else(|| Error::Invalid("--out <folder> is required".into()))?;
    let data = open_data(&args.data, model.as_ref(), args)?;
    let ortho = if args.orthogonal { args.random } else { 0 };
    let layers: Vec<String> = if layer == "all" {
        model
            .layer_names()
            .into_iter()
            .filter(|n| n != "logits")
            .collect()
    } else {
        vec![layer.to_string()]
    };
    let mut summaries = Vec::new();
    for l in &layers {
        let dir = if layers.len() > 1 {
            out.join(sanitize(l))
        } else {
            out.to_path_buf()
        };
        let summary = analyse(
            model.as_ref(),
            data.as_ref(),
            l,
            args.units,
            args.random,
            ortho,
            args.top,
            args.batch,
            args.seed,
            args.bootstrap,
            &dir,
            (!args.no_figures).then_some((args.fig_rows, args.fig_cols)),
        )?;
        println!("[{l}] {}", summary.conclusion);
        summaries.push(summary);
    }
    if layers.len() > 1 {
        write_layers_csv(&out.join("layers.csv"), &summaries)?;
    }
    match summaries.len() {
        1 => Ok(UnitsOutcome::Done(Box::new(summaries.remove(0)))),
        _ => Ok(UnitsOutcome::Layers(layers)),
    }
}

/// A layer name as a folder name (`features.0` stays, `/` and other odd characters become `_`).
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes `layers.csv` (`--layer all`): one line per layer and kind, with the units-vs-kind test.
pub fn write_layers_csv(path: &Path, summaries: &[UnitsSummary]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "layer",
        "kind",
        "directions",
        "tie_decided",
        "used",
        "purity",
        "purity_lo",
        "purity_hi",
        "entropy_bits",
        "entropy_lo",
        "entropy_hi",
        "purity_diff_vs_units",
        "mannwhitney_p_purity",
        "chance_purity",
        "chance_entropy_bits",
    ])
    .map_err(|e| csv_err(path, e))?;
    let f = |x: Option<f64>| x.map(|v| format!("{v:.6}")).unwrap_or_default();
    for s in summaries {
        for k in &s.kinds {
            let comp = s.comparisons.iter().find(|c| c.against == k.kind);
            w.write_record([
                s.layer.clone(),
                k.kind.as_str().to_string(),
                k.directions.to_string(),
                k.tie_decided.to_string(),
                k.used.to_string(),
                f(k.purity.map(|e| e.mean)),
                f(k.purity.map(|e| e.lo)),
                f(k.purity.map(|e| e.hi)),
                f(k.entropy_bits.map(|e| e.mean)),
                f(k.entropy_bits.map(|e| e.lo)),
                f(k.entropy_bits.map(|e| e.hi)),
                f(comp.and_then(|c| c.purity_diff.map(|e| e.mean))),
                f(comp.and_then(|c| c.purity_test.map(|t| t.p_value))),
                f(s.chance.map(|c| c.purity.mean)),
                f(s.chance.map(|c| c.entropy_bits.mean)),
            ])
            .map_err(|e| csv_err(path, e))?;
        }
    }
    let bytes = w.into_inner().map_err(|e| csv_err(path, e))?;
    crate::io::write_atomic(path, &bytes)
}

// ---------------------------------------------------------------------------------------------------------
// Benchmark
// ---------------------------------------------------------------------------------------------------------

/// Timing of one streaming pass (see `benches/units.rs`).
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub model: String,
    pub layer: String,
    pub data: String,
    pub images: usize,
    pub directions: usize,
    pub batch: usize,
    /// Whole pass: loading/decoding, forward to the layer, projections, top-k.
    pub seconds: f64,
    pub images_per_s: f64,
    /// Forward passes alone (to the layer) over the same number of images, on one cached batch.
    pub forward_only_seconds: f64,
}

/// Times one full [`scan`] and the forward passes alone.
#[allow(clippy::too_many_arguments)]
pub fn bench(
    model: &dyn Classifier,
    data: &dyn Dataset,
    layer: &str,
    units: Count,
    random: usize,
    top: usize,
    batch: usize,
    seed: u64,
) -> Result<BenchResult> {
    let shape = layer_shape(model, layer)?;
    let dirs = make_directions(&shape, units, random, 0, seed)?;
    let t0 = std::time::Instant::now();
    let s = scan(model, data, layer, &dirs, top, batch, false)?;
    if model.device().is_cuda() {
        tch::Cuda::synchronize(0);
    }
    let seconds = t0.elapsed().as_secs_f64();
    // Forward only: the first batch, repeated to cover as many images.
    let first = data
        .batches(batch)
        .next()
        .ok_or_else(|| Error::Invalid("empty data set".into()))??;
    let x = first.images.to_device(model.device()).to_kind(Kind::Float);
    let per = x.size()[0].max(1) as usize;
    let _g = tch::no_grad_guard();
    let t1 = std::time::Instant::now();
    let mut done = 0;
    while done < s.n_images {
        let _ = model.layer(&x, layer)?;
        done += per;
    }
    if model.device().is_cuda() {
        tch::Cuda::synchronize(0);
    }
    let fwd = t1.elapsed().as_secs_f64() * (s.n_images as f64 / done.max(1) as f64);
    Ok(BenchResult {
        model: model.name().to_string(),
        layer: layer.to_string(),
        data: data.describe(),
        images: s.n_images,
        directions: dirs.total(),
        batch,
        seconds,
        images_per_s: s.n_images as f64 / seconds,
        forward_only_seconds: fwd,
    })
}
