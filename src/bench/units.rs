//! The units pass (paper §3) timed: one full streaming [`scan`](crate::units::scan()) over a data set
//! against the forward passes alone over as many images (`cargo bench --bench units`).

use crate::bench::{synchronize, timed};
use crate::data::sources::Dataset;
use crate::models::Classifier;
use crate::units::{layer_shape, make_directions, scan, UnitsError, UnitsSpec};
use crate::Result;
use serde::Serialize;
use std::path::Path;
use tch::{Device, Kind};

/// Timing of one streaming pass.
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

/// Times one full scan of `spec.layer` (units, random directions, top, batch, seed of `spec`; no
/// orthogonal set, no figures) and the forward passes alone.
pub fn bench(model: &dyn Classifier, data: &dyn Dataset, spec: &UnitsSpec) -> Result<BenchResult> {
    spec.validate()?;
    let (layer, batch, device) = (spec.layer.as_str(), spec.batch, model.device());
    let shape = layer_shape(model, layer)?;
    let dirs = make_directions(&shape, spec.units, spec.random, 0, spec.seed)?;
    let (s, seconds) = timed(|| {
        let s = scan(model, data, layer, &dirs, spec.top, batch, false);
        synchronize(device);
        s
    });
    let s = s?;
    // Forward only: the first batch, repeated to cover as many images.
    let first = data
        .batches(batch)
        .next()
        .ok_or_else(|| UnitsError::NoExamples {
            data: data.describe(),
            skipped: 0,
        })??;
    let x = first.images.to_device(device).to_kind(Kind::Float); // [b, ..input]
    let per = x.size()[0].max(1) as usize;
    let _g = tch::no_grad_guard();
    let (done, fwd) = timed(|| -> Result<usize> {
        let mut done = 0;
        while done < s.n_images {
            let _ = model.layer(&x, layer)?;
            done += per;
        }
        synchronize(device);
        Ok(done)
    });
    let done = done?;
    Ok(BenchResult {
        model: model.name().to_string(),
        layer: layer.to_string(),
        data: data.describe(),
        images: s.n_images,
        directions: dirs.total(),
        batch,
        seconds,
        images_per_s: s.n_images as f64 / seconds,
        forward_only_seconds: fwd * (s.n_images as f64 / done.max(1) as f64),
    })
}

/// [`bench`] on a model file or folder (zoo or TorchScript) loaded on `device` and the data set
/// `spec.data` (`mnist-test`, `mnist-train` or an image folder): `blindspot bench units`.
pub fn bench_path(model: &Path, spec: &UnitsSpec, device: Device) -> Result<BenchResult> {
    let m = crate::models::torchscript::load_classifier(model, device)?;
    let data = crate::data::sources::open(&spec.data, &m.input_shape(), &spec.folder)?;
    bench(m.as_ref(), data.as_ref(), spec)
}
