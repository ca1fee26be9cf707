//! Loading the network of §4.3's layer walk: a zoo model folder (through `ZooModel::load`) or a TorchScript
//! file with a layer spec (torchvision's AlexNet layout needs none), and the cross-check of our forward
//! pass against the TorchScript module.

use super::{Network, Spec};
use crate::models::zoo::{param_views, ZooModel};
use crate::spectral::SpectralError;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// Where the model comes from.
pub enum Source {
    /// A zoo model folder: `model.json` + `weights.safetensors` (the zoo format, `ZooModel::load`).
    Zoo(std::path::PathBuf),
    /// A TorchScript file (`.pt`), with the module kept for a forward cross-check.
    TorchScript(std::path::PathBuf, tch::CModule),
}

/// Loads a network from a zoo folder or a TorchScript file (+ optional spec; AlexNet layout needs none).
pub fn load(
    model: &Path,
    spec_path: Option<&Path>,
    input_shape: Option<&[i64]>,
    device: tch::Device,
) -> Result<(Network, Source)> {
    if model.is_dir() {
        load_zoo(model, spec_path, input_shape, device)
    } else {
        load_torchscript(model, spec_path, input_shape, device)
    }
}

/// A zoo model folder through `ZooModel::load` (format, names and shapes checked there); its own
/// architecture is the spec unless one is given, its input shape the default.
fn load_zoo(
    model: &Path,
    spec_path: Option<&Path>,
    input_shape: Option<&[i64]>,
    device: tch::Device,
) -> Result<(Network, Source)> {
    let zoo = ZooModel::load(model, device)?;
    let net = from_zoo(
        &zoo,
        spec_path,
        input_shape,
        &model.display().to_string(),
        device,
    )?;
    Ok((net, Source::Zoo(model.to_path_buf())))
}

/// The network of a loaded zoo model (`source` names it): its own architecture is the spec unless one
/// is given, its input shape the default.
pub fn from_zoo(
    zoo: &ZooModel,
    spec_path: Option<&Path>,
    input_shape: Option<&[i64]>,
    source: &str,
    device: tch::Device,
) -> Result<Network> {
    let spec = match spec_path {
        Some(p) => read_spec(p)?,
        None => Spec::from_zoo(&zoo.arch),
    };
    // Each parameter in its own storage (a copy of its view of the flat vector [P]), as read from the file.
    let params: BTreeMap<String, Tensor> = zoo
        .layout
        .iter()
        .zip(param_views(&zoo.layout, &zoo.theta))
        .map(|(p, view)| (p.name.clone(), view.detach().copy()))
        .collect();
    let shape = input_shape
        .map(|s| s.to_vec())
        .unwrap_or(zoo.arch.input_shape.clone());
    Network::build(&spec, &params, &shape, source, device)
}

/// A TorchScript file: parameters by name, the spec given or torchvision's AlexNet layout.
fn load_torchscript(
    model: &Path,
    spec_path: Option<&Path>,
    input_shape: Option<&[i64]>,
    device: tch::Device,
) -> Result<(Network, Source)> {
    if !model.exists() {
        return Err(Error::format(model, "no such file or folder"));
    }
    let mut m = tch::CModule::load_on_device(model, device)
        .map_err(|e| Error::format(model, format!("not a loadable TorchScript file: {e}")))?;
    m.set_eval();
    let net = from_module(&m, model, spec_path, input_shape, device)?;
    Ok((net, Source::TorchScript(model.to_path_buf(), m)))
}

/// The network of a loaded TorchScript module (`model` names it in messages and as the source):
/// parameters by name, the spec given or torchvision's AlexNet layout.
pub fn from_module(
    m: &tch::CModule,
    model: &Path,
    spec_path: Option<&Path>,
    input_shape: Option<&[i64]>,
    device: tch::Device,
) -> Result<Network> {
    let params: BTreeMap<String, Tensor> = m
        .named_parameters()
        .map_err(|e| Error::format(model, format!("cannot read parameters: {e}")))?
        .into_iter()
        .collect();
    let shape = input_shape.ok_or_else(|| SpectralError::MissingInputShape {
        model: model.to_path_buf(),
    })?;
    let spec = match spec_path {
        Some(p) => read_spec(p)?,
        None if is_alexnet_layout(&params) => Spec::alexnet(),
        None => {
            return Err(SpectralError::NoLayerSpec {
                model: model.to_path_buf(),
                found: params.keys().take(30).cloned().collect(),
            }
            .into())
        }
    };
    Network::build(&spec, &params, shape, &model.display().to_string(), device)
}

/// Reads and parses a YAML layer spec file.
pub fn read_spec(p: &Path) -> Result<Spec> {
    let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
    Spec::parse(&text, &p.display().to_string())
}

/// True when the parameters are exactly those of torchvision's AlexNet (any channel widths).
pub(crate) fn is_alexnet_layout(params: &BTreeMap<String, Tensor>) -> bool {
    let want = [
        "features.0",
        "features.3",
        "features.6",
        "features.8",
        "features.10",
        "classifier.1",
        "classifier.4",
        "classifier.6",
    ];
    let mut expect: Vec<String> = want
        .iter()
        .flat_map(|p| [format!("{p}.weight"), format!("{p}.bias")])
        .collect();
    expect.sort();
    let have: Vec<String> = params.keys().cloned().collect();
    have == expect
}

/// Cross-check of our forward pass against the TorchScript module on one random input:
/// max |ours − theirs| / max |theirs|.
pub fn forward_mismatch(net: &Network, module: &tch::CModule, device: tch::Device) -> Result<f64> {
    let _g = tch::no_grad_guard();
    tch::manual_seed(1234);
    let mut shape = vec![2];
    shape.extend_from_slice(&net.input_shape);
    let x = Tensor::rand(shape.as_slice(), (Kind::Float, device));
    let ours = net.forward(&x)?;
    let theirs = module.forward_ts(&[&x])?;
    if ours.size() != theirs.size() {
        return Ok(f64::INFINITY);
    }
    let scale = theirs.abs().max().double_value(&[]).max(1e-30);
    Ok((ours - &theirs).abs().max().double_value(&[]) / scale)
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Zoo(p) => write!(f, "Zoo({})", p.display()),
            Source::TorchScript(p, _) => write!(f, "TorchScript({})", p.display()),
        }
    }
}
