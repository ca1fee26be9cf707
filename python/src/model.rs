//! The model a Python call names, as the Python package hands it over (`blindspot/_models.py`):
//!
//! - `("path", path)`: a zoo folder or a TorchScript file, loaded as the CLI loads it;
//! - `("script", bytes, name)`: a `torch.jit.ScriptModule` (scripted or traced in the caller's
//!   process), as the bytes `torch.jit.save` writes;
//! - `("zoo", model_json, [(name, tensor)], origin)`: a zoo model from `blindspot.load_model` — its
//!   `model.json` and its parameters (the module's `state_dict()`, shared with torch, not copied), checked
//!   as a zoo folder's files are.

use blindspot::models::torchscript::{load_classifier, TorchScriptClassifier};
use blindspot::models::zoo::ZooModel;
use blindspot::models::Classifier;
use blindspot::spectral::{self, SpectralReport, SpectralSpec};
use blindspot::{Error, Result};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3_tch::PyTensor;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// A model handed over from Python, owned (it moves to the worker thread).
pub enum ModelSource {
    Path(PathBuf),
    Script {
        bytes: Vec<u8>,
        name: String,
    },
    Zoo {
        record: String,
        params: Vec<(String, Tensor)>,
        origin: PathBuf,
    },
}

impl ModelSource {
    /// Reads the tuple the Python package builds (see the module doc).
    pub fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let kind: String = obj.get_item(0)?.extract()?;
        match kind.as_str() {
            "path" => Ok(ModelSource::Path(obj.get_item(1)?.extract()?)),
            "script" => Ok(ModelSource::Script {
                bytes: obj.get_item(1)?.downcast::<PyBytes>()?.as_bytes().to_vec(),
                name: obj.get_item(2)?.extract()?,
            }),
            "zoo" => {
                let params: Vec<(String, PyTensor)> = obj.get_item(2)?.extract()?;
                Ok(ModelSource::Zoo {
                    record: obj.get_item(1)?.extract()?,
                    params: params.into_iter().map(|(n, t)| (n, t.0)).collect(),
                    origin: obj.get_item(3)?.extract()?,
                })
            }
            other => Err(PyTypeError::new_err(format!(
                "unknown model kind {other:?} (expected path, script or zoo)"
            ))),
        }
    }

    /// The classifier on `device`. `input_shape` (one example's) is given to TorchScript models (a file's
    /// or a module's) in place of their own `input_shape()`; zoo models have theirs.
    pub fn classifier(
        self,
        device: Device,
        input_shape: Option<Vec<i64>>,
    ) -> Result<Box<dyn Classifier>> {
        match self {
            ModelSource::Path(p) if p.is_file() && input_shape.is_some() => Ok(Box::new(
                TorchScriptClassifier::load_with_shape(&p, device, input_shape)?,
            )),
            ModelSource::Path(p) => load_classifier(&p, device),
            ModelSource::Script { bytes, name } => Ok(Box::new(TorchScriptClassifier::from_bytes(
                &bytes,
                &name,
                device,
                input_shape,
            )?)),
            ModelSource::Zoo {
                record,
                params,
                origin,
            } => Ok(Box::new(zoo(&origin, &record, params, device)?)),
        }
    }

    /// The spectral analysis of `spec` (whose `model` only names the model when it is not a path).
    pub fn spectral(self, mut spec: SpectralSpec, device: Device) -> Result<SpectralReport> {
        let t0 = std::time::Instant::now();
        match self {
            ModelSource::Path(p) => {
                spec.model = p;
                spectral::analyse_spec(&spec, device)
            }
            ModelSource::Script { bytes, name } => {
                let path = Path::new(&name);
                let mut m =
                    tch::CModule::load_data_on_device(&mut std::io::Cursor::new(&bytes), device)
                        .map_err(|e| {
                            Error::format(path, format!("not a loadable TorchScript module: {e}"))
                        })?;
                m.set_eval();
                let net = spectral::network::from_module(
                    &m,
                    path,
                    spec.layer_spec.as_deref(),
                    spec.input_shape.as_deref(),
                    device,
                )?;
                spectral::analyse_network(&net, Some(&m), &spec, device, t0)
            }
            ModelSource::Zoo {
                record,
                params,
                origin,
            } => {
                let z = zoo(&origin, &record, params, device)?;
                let net = spectral::network::from_zoo(
                    &z,
                    spec.layer_spec.as_deref(),
                    spec.input_shape.as_deref(),
                    &origin.display().to_string(),
                    device,
                )?;
                spectral::analyse_network(&net, None, &spec, device, t0)
            }
        }
    }
}

/// A zoo model from its `model.json` text and named parameters (`origin` names them in messages).
fn zoo(
    origin: &Path,
    record: &str,
    params: Vec<(String, Tensor)>,
    device: Device,
) -> Result<ZooModel> {
    let value: serde_json::Value = serde_json::from_str(record)
        .map_err(|e| Error::format(origin.join("model.json"), e.to_string()))?;
    // The parameters are the caller's (shared with torch); the model concatenates them into its own θ.
    let params = params.into_iter().map(|(n, t)| (n, t.detach())).collect();
    ZooModel::from_parts(origin, value, params, device)
}

/// `blindspot.load_model`'s reading of a zoo folder, checked exactly as the CLI checks it: its
/// `model.json` (as text) and its parameters by name, as CPU tensors.
#[pyfunction]
pub fn read_zoo(path: PathBuf) -> PyResult<(String, Vec<(String, PyTensor)>)> {
    let z = ZooModel::load(&path, Device::Cpu).map_err(crate::work::to_py)?;
    let record = serde_json::to_string(&z.record)
        .map_err(|e| crate::work::to_py(Error::format(&path, e.to_string())))?;
    let views = blindspot::models::zoo::param_views(&z.layout, &z.theta);
    let params = z
        .layout
        .iter()
        .zip(views)
        .map(|(p, v)| (p.name.clone(), PyTensor(v.copy())))
        .collect();
    Ok((record, params))
}

/// The defaults of `blindspot attack`'s settings (`AttackSettings::default()`) as JSON.
#[pyfunction]
pub fn attack_defaults() -> String {
    serde_json::to_string(&blindspot::attack::AttackSettings::default()).unwrap_or_default()
}
