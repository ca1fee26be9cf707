//! The streaming pass of §3: every image of the data set is scored on every direction, ⟨φ(x), e_i⟩ for
//! units and ⟨φ(x), v⟩ for random directions, and the top T+1 scores of each direction are kept. Memory
//! O((T + batch) · K) besides the model, whatever the size of the data set; runs on the model's device.

use crate::data::sources::Dataset;
use crate::models::Classifier;
use crate::results::units::{DirectionKind, TopList};
use crate::units::{Directions, UnitsError};
use crate::Result;
use tch::{Device, Kind, Tensor};

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
        Err(UnitsError::UnknownLayer {
            layer: layer.to_string(),
            model: model.name().to_string(),
            available: names,
        }
        .into())
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
        return Err(UnitsError::ZeroTop { top }.into());
    }
    check_layer(model, layer)?;
    if data.example_shape() != model.input_shape() {
        return Err(UnitsError::DataShape {
            model: model.name().to_string(),
            data_shape: data.example_shape(),
            input_shape: model.input_shape(),
        }
        .into());
    }
    let _g = tch::no_grad_guard();
    if dirs.total() == 0 {
        return Err(UnitsError::NoDirections.into());
    }
    let mut running = RunningTop::new(dirs, top, model.device());
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
        let x = b.images.f_to_device(running.dev)?.f_to_kind(Kind::Float)?; // [b, ..input]
        let phi = model.layer(&x, layer)?.f_to_kind(Kind::Float)?; // [b, ..layer]
        running.update(layer, &phi, &b.indices)?;
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    if !skipped.is_empty() {
        log::warn!("{} undecodable image(s) skipped", skipped.len());
    }
    let n_images = running.n_images;
    let lists = running
        .finish(dirs, top)?
        .ok_or_else(|| UnitsError::NoExamples {
            data: data.describe(),
            skipped: skipped.len(),
        })?;
    Ok(Scan {
        lists,
        n_images,
        skipped,
        top,
    })
}

/// The running state of the pass: the best T+1 scores per direction and the score sums.
struct RunningTop {
    dev: Device,
    /// Number of directions K.
    k: i64,
    dim: i64,
    /// Flat unit indices [Ku] on the device.
    units: Tensor,
    /// Random and orthogonal directions as rows, [Kr + Ko, D] on the device.
    proj_t: Tensor,
    /// T + 1.
    keep: i64,
    best_s: Option<Tensor>, // [K, M], M ≤ T + 1, each row sorted descending
    best_i: Option<Tensor>, // [K, M] i64 positions in `scored` (made on the device, no copy per batch)
    /// The data index of every example scored, in scoring order (host).
    scored: Vec<usize>,
    sum: Tensor,      // [K] f64
    sumsq: Tensor,    // [K] f64
    positive: Tensor, // [K] i64
    n_images: usize,
}

impl RunningTop {
    fn new(dirs: &Directions, top: usize, dev: Device) -> Self {
        let k = dirs.total() as i64;
        // Transposed so that the scores come out direction-major, [K, b]: the running top-k then reads
        // contiguous rows instead of striding down columns of a [b, K] matrix.
        let proj_t = Tensor::cat(&[&dirs.random, &dirs.orthogonal], 1)
            .to_device(dev)
            .t_()
            .contiguous(); // [Kr + Ko, D]
        RunningTop {
            dev,
            k,
            dim: dirs.dim(),
            units: Tensor::from_slice(&dirs.units).to_device(dev), // [Ku]
            proj_t,
            keep: top as i64 + 1,
            best_s: None,
            best_i: None,
            scored: Vec::new(),
            sum: Tensor::zeros([k], (Kind::Double, dev)),
            sumsq: Tensor::zeros([k], (Kind::Double, dev)),
            positive: Tensor::zeros([k], (Kind::Int64, dev)),
            n_images: 0,
        }
    }

    /// Scores one batch of activations `phi` [b, ..layer] of the examples `indices` [b].
    fn update(&mut self, layer: &str, phi: &Tensor, indices: &[usize]) -> Result<()> {
        let (k, bn) = (self.k, indices.len() as i64);
        if phi.dim() == 0 || phi.size()[0] != bn {
            return Err(UnitsError::LayerOutput {
                layer: layer.to_string(),
                shape: phi.size(),
                batch: bn,
            }
            .into());
        }
        let phi = phi.f_reshape([bn, -1])?; // [b, D]
        if phi.size()[1] != self.dim {
            return Err(UnitsError::LayerWidth {
                layer: layer.to_string(),
                got: phi.size()[1],
                dim: self.dim,
            }
            .into());
        }
        let phi_t = phi.f_transpose(0, 1)?; // [D, b] (a view)
        let su = phi_t.f_index_select(0, &self.units)?; // [Ku, b]
        let sr = self.proj_t.f_matmul(&phi_t)?; // [Kr + Ko, b]
        let s = Tensor::f_cat(&[su, sr], 0)?; // [K, b]
                                              // Per-batch sums in f32 (≤ batch terms, pairwise), accumulated over batches in f64.
        self.sum += s
            .f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?
            .to_kind(Kind::Double);
        self.sumsq += s
            .f_square()?
            .f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?
            .to_kind(Kind::Double);
        self.positive += s
            .gt(0.0)
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Int64);
        // Positions of this batch's examples in `scored`, made on the device: no host → device copy.
        let first = self.scored.len() as i64;
        let bi = Tensor::arange_start(first, first + bn, (Kind::Int64, self.dev))
            .unsqueeze(0)
            .expand([k, bn], false); // [K, b]
        self.scored.extend_from_slice(indices);
        let (cs, ci) = match (&self.best_s, &self.best_i) {
            (Some(ps), Some(pi)) => (Tensor::f_cat(&[ps, &s], 1)?, Tensor::f_cat(&[pi, &bi], 1)?),
            _ => (s, bi.contiguous()),
        };
        let m = self.keep.min(cs.size()[1]);
        let (vals, pos) = cs.f_topk(m, 1, true, true)?; // [K, m]
        self.best_i = Some(ci.f_gather(1, &pos, false)?);
        self.best_s = Some(vals);
        self.n_images += indices.len();
        Ok(())
    }

    /// The top lists, or `None` when no example was scored.
    fn finish(self, dirs: &Directions, top: usize) -> Result<Option<Vec<TopList>>> {
        let (Some(best_s), Some(best_i)) = (self.best_s, self.best_i) else {
            return Ok(None);
        };
        let m = best_s.size()[1] as usize;
        let bs = Vec::<f32>::try_from(&best_s.to_device(Device::Cpu).contiguous().view([-1]))?; // [K*m]
        let bi = Vec::<i64>::try_from(&best_i.to_device(Device::Cpu).contiguous().view([-1]))?;
        let n = self.n_images as f64;
        let sum = Vec::<f64>::try_from(&self.sum.to_device(Device::Cpu))?;
        let sumsq = Vec::<f64>::try_from(&self.sumsq.to_device(Device::Cpu))?;
        let positive = Vec::<i64>::try_from(&self.positive.to_device(Device::Cpu))?;
        let lists = (0..self.k as usize)
            .map(|j| {
                let col: Vec<(f32, usize)> = (0..m)
                    .map(|r| (bs[j * m + r], self.scored[bi[j * m + r] as usize]))
                    .collect();
                let mean = sum[j] / n;
                let var = (sumsq[j] / n - mean * mean).max(0.0);
                top_list(dirs, j, col, top, positive[j], mean, var.sqrt())
            })
            .collect();
        Ok(Some(lists))
    }
}

/// The top list of column `j` from its best `col` (score, data index) pairs.
fn top_list(
    dirs: &Directions,
    j: usize,
    mut col: Vec<(f32, usize)>,
    top: usize,
    positive: i64,
    mean: f64,
    std: f64,
) -> TopList {
    // Already descending by score; order ties by data index.
    col.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let t = top.min(col.len());
    let tie_decided = col.len() > top && col[top - 1].0 == col[top].0;
    let boundary = col[..t].iter().filter(|c| c.0 == col[t - 1].0).count();
    let (kind, index) = dirs.column(j);
    TopList {
        kind,
        index,
        unit: (kind == DirectionKind::Unit).then(|| dirs.units[index]),
        data: col[..t].iter().map(|c| c.1).collect(),
        scores: col[..t].iter().map(|c| c.0).collect(),
        tie_decided,
        boundary_ties: boundary,
        positive,
        mean,
        std,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{make_directions, Count};

    #[test]
    fn top_list_orders_ties_by_index_and_flags_a_tied_boundary() {
        let dirs = make_directions(&[3], Count::All, 0, 0, 0).unwrap();
        // Best T+1 = 4 of a unit active on two images: the third and fourth place are tied zeros.
        let col = vec![(2.0, 9), (1.0, 4), (0.0, 7), (0.0, 1)];
        let l = top_list(&dirs, 1, col, 3, 2, 0.5, 0.1);
        assert_eq!((l.kind, l.index, l.unit), (DirectionKind::Unit, 1, Some(1)));
        assert_eq!(l.data, vec![9, 4, 1]);
        assert!(l.tie_decided);
        assert_eq!(l.boundary_ties, 1);
        let col = vec![(2.0, 9), (1.0, 5), (1.0, 4), (0.5, 7)];
        let l = top_list(&dirs, 0, col, 3, 4, 0.0, 0.0);
        assert_eq!(l.data, vec![9, 4, 5]);
        assert!(!l.tie_decided);
        assert_eq!(l.boundary_ties, 2); // 4 and 5 share the T-th score
                                        // Fewer images than T: the whole data set, no tie.
        let l = top_list(&dirs, 0, vec![(1.0, 0), (1.0, 1)], 3, 2, 1.0, 0.0);
        assert_eq!(
            (l.data.len(), l.tie_decided, l.boundary_ties),
            (2, false, 2)
        );
    }
}
