//! A trained zoo model (§4.2): architecture + flat parameters + its record, saved as `weights.safetensors`
//! (PyTorch names and layouts) and `model.json`, and used through the [`Classifier`] interface.

use super::arch::{Architecture, ParamEntry};
use super::forward::{forward_all, param_views};
use crate::models::{Classifier, ModelError};
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Version tag written into every `model.json`.
pub const MODEL_FORMAT: &str = "blindspot-model/1";

/// A trained zoo model: architecture, flat parameters [P] and its record (`model.json`).
pub struct ZooModel {
    pub name: String,
    pub arch: Architecture,
    pub layout: Vec<ParamEntry>,
    /// Flat parameters [P], f32, on `device`.
    pub theta: Tensor,
    pub record: serde_json::Value,
    device: Device,
}

impl std::fmt::Debug for ZooModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZooModel")
            .field("name", &self.name)
            .field("arch", &self.arch)
            .finish()
    }
}

impl ZooModel {
    pub fn new(
        name: &str,
        arch: Architecture,
        theta: Tensor,
        record: serde_json::Value,
    ) -> Result<Self> {
        arch.shapes()?;
        let layout = arch.param_layout();
        let p = arch.num_params();
        if theta.size() != [p] {
            return Err(ModelError::ParamCount {
                model: name.to_string(),
                got: theta.size(),
                expected: p,
            }
            .into());
        }
        let device = theta.device();
        Ok(ZooModel {
            name: name.to_string(),
            arch,
            layout,
            theta,
            record,
            device,
        })
    }

    /// Moves the model to `device`.
    pub fn to_device(mut self, device: Device) -> Self {
        self.theta = self.theta.to_device(device);
        self.device = device;
        self
    }

    /// Logits with dropout active or not: `x` [B, ..] → [B, classes].
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        forward_all(&self.arch, &self.layout, &self.theta, x, train, false)
            .pop()
            .expect("at least one layer")
    }

    /// Writes `weights.safetensors` (PyTorch names and layouts) and `model.json` into `dir`, atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let views = param_views(&self.layout, &self.theta.to_device(Device::Cpu));
        let named: Vec<(&str, &Tensor)> = self
            .layout
            .iter()
            .zip(views.iter())
            .map(|(p, t)| (p.name.as_str(), t))
            .collect();
        crate::io::write_safetensors(&dir.join("weights.safetensors"), &named)?;
        let mut record = self.record.clone();
        if let Some(obj) = record.as_object_mut() {
            obj.insert("format".into(), MODEL_FORMAT.into());
            obj.insert("name".into(), self.name.clone().into());
            let arch =
                serde_json::to_value(&self.arch).map_err(|source| ModelError::Serialize {
                    model: self.name.clone(),
                    source,
                })?;
            obj.insert("architecture".into(), arch);
            obj.insert("num_params".into(), self.arch.num_params().into());
        }
        crate::io::write_json(&dir.join("model.json"), &record)
    }

    /// Loads a model folder, checking that `model.json` and the weights agree (names, shapes, no extras).
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let (name, arch, record) = read_record(dir)?;
        let w_path = dir.join("weights.safetensors");
        let tensors = crate::io::read_safetensors(&w_path)?;
        from_tensors(&w_path, (name, arch, record), tensors, device)
    }

    /// A model from a model folder's contents held in memory: `record` is `model.json`'s value and
    /// `tensors` the named parameters of `weights.safetensors` (e.g. a PyTorch module's `state_dict()`),
    /// checked exactly as [`Self::load`] checks the files; `origin` names them in messages.
    pub fn from_parts(
        origin: &Path,
        record: serde_json::Value,
        tensors: Vec<(String, Tensor)>,
        device: Device,
    ) -> Result<Self> {
        let parsed = check_record(&origin.join("model.json"), record)?;
        from_tensors(&origin.join("weights.safetensors"), parsed, tensors, device)
    }
}

/// The model of a checked record and its named parameters, which must be exactly the architecture's,
/// finite, with their shapes (`w_path` names them in messages).
fn from_tensors(
    w_path: &Path,
    (name, arch, record): (String, Architecture, serde_json::Value),
    tensors: Vec<(String, Tensor)>,
    device: Device,
) -> Result<ZooModel> {
    let theta = flat_params(w_path, &arch.param_layout(), tensors)?.to_device(device);
    if theta.isfinite().logical_not().any().int64_value(&[]) != 0 {
        return Err(Error::format(
            w_path,
            "weights contain NaN or infinite values",
        ));
    }
    ZooModel::new(&name, arch, theta, record)
}

/// Reads and checks `dir/model.json`: (name, architecture, the whole record).
fn read_record(dir: &Path) -> Result<(String, Architecture, serde_json::Value)> {
    let json_path = dir.join("model.json");
    if !dir.is_dir() {
        return Err(Error::format(dir, "model folder not found (a model folder holds model.json and weights.safetensors; train one with `blindspot train`)"));
    }
    if !json_path.exists() {
        return Err(Error::format(
            &json_path,
            "missing: every model folder needs model.json",
        ));
    }
    check_record(&json_path, crate::io::read_json(&json_path)?)
}

/// Checks a `model.json` value (read from `json_path`): its format, name and architecture.
fn check_record(
    json_path: &Path,
    record: serde_json::Value,
) -> Result<(String, Architecture, serde_json::Value)> {
    match record.get("format").and_then(|v| v.as_str()) {
        Some(MODEL_FORMAT) => {}
        other => {
            return Err(Error::format(
                json_path,
                format!("field `format` is {other:?}, expected \"{MODEL_FORMAT}\""),
            ))
        }
    }
    let name = record
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or("model")
        .to_string();
    let arch: Architecture =
        serde_json::from_value(record.get("architecture").cloned().unwrap_or_default())
            .map_err(|e| Error::format(json_path, format!("field `architecture`: {e}")))?;
    arch.shapes()
        .map_err(|e| Error::format(json_path, format!("field `architecture`: {e}")))?;
    Ok((name, arch, record))
}

/// The named tensors of `w_path` as one flat f32 vector [P] in `layout` order; every parameter present
/// with its shape, nothing else.
fn flat_params(
    w_path: &Path,
    layout: &[ParamEntry],
    tensors: Vec<(String, Tensor)>,
) -> Result<Tensor> {
    let mut map: HashMap<String, Tensor> = tensors.into_iter().collect();
    let mut parts = Vec::new();
    for p in layout {
        let t = map.remove(&p.name).ok_or_else(|| {
            Error::format(
                w_path,
                format!(
                    "parameter `{}` that model.json's architecture needs is missing",
                    p.name
                ),
            )
        })?;
        if t.size() != p.shape {
            return Err(Error::format(
                w_path,
                format!(
                    "parameter `{}` has shape {:?} but model.json's architecture says {:?}",
                    p.name,
                    t.size(),
                    p.shape
                ),
            ));
        }
        parts.push(t.to_kind(Kind::Float).flatten(0, -1));
    }
    if let Some(extra) = map.keys().next() {
        return Err(Error::format(
            w_path,
            format!("tensor `{extra}` is not a parameter of the architecture in model.json"),
        ));
    }
    Ok(Tensor::cat(&parts, 0))
}

impl Classifier for ZooModel {
    fn name(&self) -> &str {
        &self.name
    }
    fn input_shape(&self) -> Vec<i64> {
        self.arch.input_shape.clone()
    }
    fn num_classes(&self) -> i64 {
        self.arch
            .shapes()
            .ok()
            .and_then(|s| s.last().map(|v| v.iter().product()))
            .unwrap_or(0)
    }
    fn input_bounds(&self) -> (f64, f64) {
        (0.0, 1.0)
    }
    fn device(&self) -> Device {
        self.device
    }
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        crate::models::classifier::check_input(self, x)?;
        Ok(self.forward_t(x, false))
    }
    fn layer_names(&self) -> Vec<String> {
        self.arch.output_names()
    }
    fn fingerprint(&self) -> Result<String> {
        use sha2::{Digest, Sha256};
        // θ [P] f32 → its bytes, plus the architecture (same θ, other layout = other model).
        let v: Vec<f32> = Vec::try_from(&self.theta.f_to_device(Device::Cpu)?)?;
        let mut h = Sha256::new();
        h.update(format!("{:?}", self.arch).as_bytes());
        for x in &v {
            h.update(x.to_le_bytes());
        }
        Ok(format!("{:x}", h.finalize()))
    }
    fn layer(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        crate::models::classifier::check_input(self, x)?;
        let names = self.arch.output_names();
        let Some(i) = names.iter().position(|n| n == name) else {
            return Err(ModelError::UnknownLayer {
                model: self.name.clone(),
                layer: name.to_string(),
                available: names,
            }
            .into());
        };
        let sub = Architecture {
            input_shape: self.arch.input_shape.clone(),
            layers: self.arch.layers[..=i].to_vec(),
        };
        let sub_layout = sub.param_layout();
        let n: i64 = sub_layout.iter().map(|p| p.numel).sum();
        Ok(forward_all(
            &sub,
            &sub_layout,
            &self.theta.narrow(0, 0, n),
            x,
            false,
            false,
        )
        .pop()
        .expect("layer"))
    }
}
