//! The calls behind `blindspot.attack`, `blindspot.spectral` and `blindspot.units`. Options arrive as
//! JSON objects of the library's own serde types (`AttackSettings`, `SpectralSpec`, `UnitsSpec`, whose
//! unknown fields are refused with the field named); results leave as JSON text and tensors, which
//! python/blindspot/ turns into typed result objects.

use crate::model::ModelSource;
use crate::work::{self, to_py, Interruptible};
use blindspot::attack::{tensors::attack_tensors, AttackSettings};
use blindspot::data::sources::{DataBatch, Dataset};
use blindspot::spectral::SpectralSpec;
use blindspot::units::UnitsSpec;
use blindspot::{Error, Result};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3_tch::PyTensor;
use tch::{Device, Kind, Tensor};

/// Options parsed from JSON; a bad field is a `ValueError` naming it.
fn options<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> PyResult<T> {
    serde_json::from_str(json).map_err(|e| PyValueError::new_err(format!("{what}: {e}")))
}

fn device(name: &str) -> PyResult<Device> {
    blindspot::device::parse_device(name).map_err(to_py)
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::format("<python>", e.to_string()))
}

/// The per-example shape of a batch `[N, ..]`.
fn example_shape(x: &Tensor) -> Vec<i64> {
    x.size().get(1..).unwrap_or_default().to_vec()
}

/// `blindspot.attack`: the verified adversarials [N, ..] (failures carry the original) and the rows of
/// `attack.csv` as JSON.
#[pyfunction]
#[pyo3(signature = (model, x, labels, targets, settings, batch, device_name))]
#[allow(clippy::too_many_arguments)]
pub fn attack(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    x: PyTensor,
    labels: PyTensor,
    targets: Option<PyTensor>,
    settings: &str,
    batch: i64,
    device_name: &str,
) -> PyResult<(PyTensor, String)> {
    let src = ModelSource::from_py(model)?;
    let settings: AttackSettings = options("attack settings", settings)?;
    let dev = device(device_name)?;
    let (x, labels, targets) = (x.0, labels.0, targets.map(|t| t.0));
    let (adv, rows) = work::run(py, move |stop| {
        let inner = src.classifier(dev, Some(example_shape(&x)))?;
        let model = Interruptible { inner, stop };
        let out = attack_tensors(&model, &x, &labels, targets.as_ref(), &settings, batch)?;
        Ok((out.adversarial, to_json(&out.rows)?))
    })?;
    Ok((PyTensor(adv), rows))
}

/// `blindspot.spectral`: the report of `bounds.json` as JSON.
#[pyfunction]
pub fn spectral(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    spec: &str,
    device_name: &str,
) -> PyResult<String> {
    let src = ModelSource::from_py(model)?;
    let spec: SpectralSpec = options("spectral options", spec)?;
    let dev = device(device_name)?;
    work::run(py, move |_| to_json(&src.spectral(spec, dev)?))
}

/// `blindspot.units`: the summary (`summary.json`) and every direction's top list as JSON, the analysed
/// units (flat indices) and the random and orthogonal directions (columns).
#[pyfunction]
#[pyo3(signature = (model, images, labels, spec, device_name))]
pub fn units(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    images: PyTensor,
    labels: Option<PyTensor>,
    spec: &str,
    device_name: &str,
) -> PyResult<(String, String, Vec<i64>, PyTensor, PyTensor)> {
    let src = ModelSource::from_py(model)?;
    let spec: UnitsSpec = options("units options", spec)?;
    let dev = device(device_name)?;
    let (images, labels) = (images.0, labels.map(|l| l.0));
    let (summary, lists, units, random, orthogonal) = work::run(py, move |stop| {
        let labels = labels
            .map(|l| Vec::<i64>::try_from(&l.f_to_device(Device::Cpu)?.f_to_kind(Kind::Int64)?))
            .transpose()?;
        let inner = src.classifier(dev, Some(example_shape(&images)))?;
        let model = Interruptible { inner, stop };
        let data = MemoryData { images, labels };
        let a = blindspot::units::compute(&model, &data, &spec)?;
        Ok((
            to_json(&a.summary)?,
            to_json(&a.scan.lists)?,
            a.directions.units,
            a.directions.random,
            a.directions.orthogonal,
        ))
    })?;
    Ok((
        summary,
        lists,
        units,
        PyTensor(random),
        PyTensor(orthogonal),
    ))
}

/// Images held in memory (`images` [N, ..], optional labels [N]) as a data set to stream over.
struct MemoryData {
    images: Tensor,
    labels: Option<Vec<i64>>,
}

impl Dataset for MemoryData {
    fn describe(&self) -> String {
        format!("tensor {:?}", self.images.size())
    }
    fn len(&self) -> usize {
        self.images.size()[0] as usize
    }
    fn example_shape(&self) -> Vec<i64> {
        example_shape(&self.images)
    }
    fn labels(&self) -> Option<Vec<i64>> {
        self.labels.clone()
    }
    fn class_names(&self) -> Vec<String> {
        Vec::new()
    }
    fn batches<'a>(&'a self, batch: usize) -> Box<dyn Iterator<Item = Result<DataBatch>> + 'a> {
        let (n, b) = (self.len(), batch.max(1));
        Box::new((0..n).step_by(b).map(move |s| {
            let len = b.min(n - s);
            Ok(DataBatch {
                images: self.images.f_narrow(0, s as i64, len as i64)?,
                indices: (s..s + len).collect(),
                bad: Vec::new(),
            })
        }))
    }
    fn fetch(&self, indices: &[usize]) -> Result<Tensor> {
        let idx: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        let idx = Tensor::f_from_slice(&idx)?.f_to_device(self.images.device())?;
        Ok(self
            .images
            .f_index_select(0, &idx)?
            .f_to_device(Device::Cpu)?)
    }
}
