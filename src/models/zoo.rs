//! The paper's MNIST model zoo (§4.2, Tables 1 and 3) as sequential architectures over one flat parameter
//! vector, so that full-batch L-BFGS optimises the model directly; saved as `weights.safetensors` with
//! PyTorch names and layouts (`fc1.weight` [out, in], `fc1.bias` [out], `conv1.weight` [out, in, kh, kw])
//! plus `model.json` (architecture, training record, errors, data checksums).

use serde::{Deserialize, Serialize};

/// One layer of a sequential network. Parameterised layers carry a `name`, used as the prefix of their
/// parameters (`<name>.weight`, `<name>.bias`), exactly as in a PyTorch module with the same attribute names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Layer {
    /// y = x Wᵀ + b, W [out_features, in_features]. Flattens its input first.
    Linear {
        name: String,
        in_features: i64,
        out_features: i64,
    },
    /// 2-D convolution, weight [out_channels, in_channels, kernel_size, kernel_size], zero padding.
    Conv2d {
        name: String,
        in_channels: i64,
        out_channels: i64,
        kernel_size: i64,
        #[serde(default = "one")]
        stride: i64,
        #[serde(default)]
        padding: i64,
    },
    Sigmoid,
    Relu,
    MaxPool2d {
        kernel_size: i64,
        stride: i64,
    },
    Flatten,
    /// Dropout with drop probability `p` (only while training).
    Dropout {
        p: f64,
    },
}

fn one() -> i64 {
    1
}

/// A sequential architecture and the shape of one input example (e.g. `[1, 28, 28]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    pub input_shape: Vec<i64>,
    pub layers: Vec<Layer>,
}

use crate::models::Classifier;
use crate::{Error, Result};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Version tag written into every `model.json`.
pub const MODEL_FORMAT: &str = "blindspot-model/1";

/// One parameter tensor inside the flat vector.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamEntry {
    pub name: String,
    pub shape: Vec<i64>,
    pub offset: i64,
    pub numel: i64,
    /// Index of the parameterised layer it belongs to (0-based, input side first).
    pub layer: usize,
    pub is_weight: bool,
}

impl Layer {
    /// Name of a parameterised layer.
    pub fn param_name(&self) -> Option<&str> {
        match self {
            Layer::Linear { name, .. } | Layer::Conv2d { name, .. } => Some(name),
            _ => None,
        }
    }
    /// Number of units of a parameterised layer (k in the paper's λ·Σw²/k): its outputs / output channels.
    pub fn units(&self) -> Option<i64> {
        match self {
            Layer::Linear { out_features, .. } => Some(*out_features),
            Layer::Conv2d { out_channels, .. } => Some(*out_channels),
            _ => None,
        }
    }
    fn kind_name(&self) -> &'static str {
        match self {
            Layer::Linear { .. } => "linear",
            Layer::Conv2d { .. } => "conv2d",
            Layer::Sigmoid => "sigmoid",
            Layer::Relu => "relu",
            Layer::MaxPool2d { .. } => "pool",
            Layer::Flatten => "flatten",
            Layer::Dropout { .. } => "dropout",
        }
    }
}

impl Architecture {
    /// Parameter layout in order: for each parameterised layer, `<name>.weight` then `<name>.bias`.
    pub fn param_layout(&self) -> Vec<ParamEntry> {
        let mut out = Vec::new();
        let mut offset = 0;
        let mut li = 0;
        for layer in &self.layers {
            let (name, wshape, bshape) = match layer {
                Layer::Linear {
                    name,
                    in_features,
                    out_features,
                } => (name, vec![*out_features, *in_features], vec![*out_features]),
                Layer::Conv2d {
                    name,
                    in_channels,
                    out_channels,
                    kernel_size,
                    ..
                } => (
                    name,
                    vec![*out_channels, *in_channels, *kernel_size, *kernel_size],
                    vec![*out_channels],
                ),
                _ => continue,
            };
            for (suffix, shape, is_weight) in [("weight", wshape, true), ("bias", bshape, false)] {
                let numel = shape.iter().product();
                out.push(ParamEntry {
                    name: format!("{name}.{suffix}"),
                    shape,
                    offset,
                    numel,
                    layer: li,
                    is_weight,
                });
                offset += numel;
            }
            li += 1;
        }
        out
    }

    pub fn num_params(&self) -> i64 {
        self.param_layout().iter().map(|p| p.numel).sum()
    }

    /// Number of parameterised layers.
    pub fn num_param_layers(&self) -> usize {
        self.layers
            .iter()
            .filter(|l| l.param_name().is_some())
            .count()
    }

    /// Units per parameterised layer.
    pub fn layer_units(&self) -> Vec<i64> {
        self.layers.iter().filter_map(|l| l.units()).collect()
    }

    /// Names of every layer's output, as [`Classifier::layer`] accepts them: parameterised layers by
    /// name (pre-activation), others as `<previous parameterised layer>.<kind>` (e.g. `fc1.sigmoid`).
    pub fn output_names(&self) -> Vec<String> {
        let mut last = "input".to_string();
        let mut names: Vec<String> = Vec::new();
        for l in &self.layers {
            let n = match l.param_name() {
                Some(p) => {
                    last = p.to_string();
                    p.to_string()
                }
                None => format!("{last}.{}", l.kind_name()),
            };
            names.push(n);
        }
        names
    }

    /// Checks that shapes chain: returns the output shape of every layer for one example, or a Shape error
    /// naming the layer.
    pub fn shapes(&self) -> Result<Vec<Vec<i64>>> {
        let mut s = self.input_shape.clone();
        let mut out = Vec::new();
        for (l, name) in self.layers.iter().zip(self.output_names()) {
            s = match l {
                Layer::Linear {
                    in_features,
                    out_features,
                    ..
                } => {
                    let n: i64 = s.iter().product();
                    if n != *in_features {
                        return Err(Error::Shape(format!(
                            "layer `{name}` expects {in_features} inputs but receives {s:?} ({n} values)"
                        )));
                    }
                    vec![*out_features]
                }
                Layer::Conv2d {
                    in_channels,
                    out_channels,
                    kernel_size,
                    stride,
                    padding,
                    ..
                } => {
                    if s.len() != 3 || s[0] != *in_channels {
                        return Err(Error::Shape(format!(
                            "layer `{name}` expects [{in_channels}, H, W] inputs, receives {s:?}"
                        )));
                    }
                    let h = (s[1] + 2 * padding - kernel_size) / stride + 1;
                    let w = (s[2] + 2 * padding - kernel_size) / stride + 1;
                    if h < 1 || w < 1 || *stride < 1 {
                        return Err(Error::Shape(format!(
                            "layer `{name}`: input {s:?} too small for kernel {kernel_size}"
                        )));
                    }
                    vec![*out_channels, h, w]
                }
                Layer::MaxPool2d {
                    kernel_size,
                    stride,
                } => {
                    if s.len() != 3 || s[1] < *kernel_size || s[2] < *kernel_size || *stride < 1 {
                        return Err(Error::Shape(format!(
                            "layer `{name}`: cannot pool {s:?} with kernel {kernel_size}"
                        )));
                    }
                    vec![
                        s[0],
                        (s[1] - kernel_size) / stride + 1,
                        (s[2] - kernel_size) / stride + 1,
                    ]
                }
                Layer::Flatten => vec![s.iter().product()],
                Layer::Sigmoid | Layer::Relu | Layer::Dropout { .. } => s,
            };
            out.push(s.clone());
        }
        Ok(out)
    }
}

/// Views of the flat parameter vector, one (weight, bias) pair per parameterised layer. The views share
/// storage (and autograd history) with `theta` [P].
pub fn param_views(layout: &[ParamEntry], theta: &Tensor) -> Vec<Tensor> {
    layout
        .iter()
        .map(|p| theta.narrow(0, p.offset, p.numel).view(p.shape.as_slice()))
        .collect()
}

/// Runs the architecture on `x` [B, ..input_shape] with parameters `theta` [P]. Returns the output of
/// every layer when `keep` is true (else only the last, in a one-element vector).
pub fn forward_all(
    arch: &Architecture,
    layout: &[ParamEntry],
    theta: &Tensor,
    x: &Tensor,
    train: bool,
    keep: bool,
) -> Vec<Tensor> {
    let views = param_views(layout, theta);
    let mut h = x.shallow_clone();
    let mut outs = Vec::new();
    let mut pi = 0;
    for l in &arch.layers {
        h = match l {
            Layer::Linear { .. } => {
                let (w, b) = (&views[pi], &views[pi + 1]);
                pi += 2;
                h.flatten(1, -1).linear(w, Some(b)) // [B, out]
            }
            Layer::Conv2d {
                stride, padding, ..
            } => {
                let (w, b) = (&views[pi], &views[pi + 1]);
                pi += 2;
                h.conv2d(
                    w,
                    Some(b),
                    [*stride, *stride],
                    [*padding, *padding],
                    [1, 1],
                    1,
                ) // [B, C, H, W]
            }
            Layer::Sigmoid => h.sigmoid(),
            Layer::Relu => h.relu(),
            Layer::MaxPool2d {
                kernel_size,
                stride,
            } => h.max_pool2d(
                [*kernel_size, *kernel_size],
                [*stride, *stride],
                [0, 0],
                [1, 1],
                false,
            ),
            Layer::Flatten => h.flatten(1, -1),
            Layer::Dropout { p } => h.dropout(*p, train),
        };
        if keep {
            outs.push(h.shallow_clone());
        }
    }
    if !keep {
        outs.push(h);
    }
    outs
}

/// Initial parameters as PyTorch initialises `nn.Linear` / `nn.Conv2d`: U(−1/√fan_in, 1/√fan_in) for
/// weights and biases, drawn from libtorch's generator (seed it first).
pub fn init_params(arch: &Architecture, device: Device) -> Tensor {
    let layout = arch.param_layout();
    let parts: Vec<Tensor> = layout
        .iter()
        .map(|p| {
            let fan_in: i64 = if p.is_weight {
                p.shape[1..].iter().product()
            } else {
                // bias: fan_in of the matching weight (the previous entry)
                layout
                    .iter()
                    .find(|q| q.layer == p.layer && q.is_weight)
                    .map(|q| q.shape[1..].iter().product())
                    .unwrap_or(1)
            };
            let bound = 1.0 / (fan_in as f64).sqrt();
            Tensor::empty([p.numel], (Kind::Float, device)).uniform_(-bound, bound)
        })
        .collect();
    Tensor::cat(&parts, 0)
}

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
            return Err(Error::Shape(format!(
                "model `{name}`: parameter vector has shape {:?}, architecture needs [{p}]",
                theta.size()
            )));
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
            obj.insert(
                "architecture".into(),
                serde_json::to_value(&self.arch).map_err(|e| Error::Other(e.to_string()))?,
            );
            obj.insert("num_params".into(), self.arch.num_params().into());
        }
        crate::io::write_json(&dir.join("model.json"), &record)
    }

    /// Loads a model folder, checking that `model.json` and the weights agree (names, shapes, no extras).
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let json_path = dir.join("model.json");
        let w_path = dir.join("weights.safetensors");
        if !dir.is_dir() {
            return Err(Error::format(dir, "model folder not found (a model folder holds model.json and weights.safetensors; train one with `blindspot train`)"));
        }
        if !json_path.exists() {
            return Err(Error::format(
                &json_path,
                "missing: every model folder needs model.json",
            ));
        }
        let record: serde_json::Value = crate::io::read_json(&json_path)?;
        match record.get("format").and_then(|v| v.as_str()) {
            Some(MODEL_FORMAT) => {}
            other => {
                return Err(Error::format(
                    &json_path,
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
                .map_err(|e| Error::format(&json_path, format!("field `architecture`: {e}")))?;
        arch.shapes()
            .map_err(|e| Error::format(&json_path, e.to_string()))?;
        let tensors = crate::io::read_safetensors(&w_path)?;
        let layout = arch.param_layout();
        let mut map: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
        let mut parts = Vec::new();
        for p in &layout {
            let t = map.remove(&p.name).ok_or_else(|| {
                Error::format(
                    &w_path,
                    format!(
                        "parameter `{}` that model.json's architecture needs is missing",
                        p.name
                    ),
                )
            })?;
            if t.size() != p.shape {
                return Err(Error::format(
                    &w_path,
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
                &w_path,
                format!("tensor `{extra}` is not a parameter of the architecture in model.json"),
            ));
        }
        let theta = Tensor::cat(&parts, 0).to_device(device);
        if theta.isfinite().logical_not().any().int64_value(&[]) != 0 {
            return Err(Error::format(
                &w_path,
                "weights contain NaN or infinite values",
            ));
        }
        ZooModel::new(&name, arch, theta, record)
    }
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
            return Err(Error::Invalid(format!(
                "model `{}` has no layer `{name}`; its layers are: {}",
                self.name,
                names.join(", ")
            )));
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

/// The paper's models as architectures (MNIST input [1, 28, 28], 10 classes).
pub mod presets {
    use super::{Architecture, Layer};

    fn linear(name: &str, i: i64, o: i64) -> Layer {
        Layer::Linear {
            name: name.into(),
            in_features: i,
            out_features: o,
        }
    }

    /// Fully connected net 784 → hidden… → 10 with `act` after each hidden layer (softmax on top is in
    /// the loss). `hidden = []` is the linear softmax classifier (softmax1–3).
    pub fn mlp(hidden: &[i64], act: Layer) -> Architecture {
        let mut layers = vec![Layer::Flatten];
        let mut prev = 784;
        for (i, &h) in hidden.iter().enumerate() {
            layers.push(linear(&format!("fc{}", i + 1), prev, h));
            layers.push(act.clone());
            prev = h;
        }
        layers.push(linear(&format!("fc{}", hidden.len() + 1), prev, 10));
        Architecture {
            input_shape: vec![1, 28, 28],
            layers,
        }
    }

    /// The Conv net: for each entry of `channels`, conv(k×k, that many channels, ReLU) → max-pool 2×2
    /// (`conv1`, `conv2`, …); then FC(`hidden`, ReLU) → dropout → FC(10) (`fc1`, `fc2`).
    pub fn conv(channels: &[i64], kernel: i64, hidden: i64, dropout: f64) -> Architecture {
        let mut layers = Vec::new();
        let (mut c, mut side) = (1, 28);
        for (i, &ch) in channels.iter().enumerate() {
            layers.push(Layer::Conv2d {
                name: format!("conv{}", i + 1),
                in_channels: c,
                out_channels: ch,
                kernel_size: kernel,
                stride: 1,
                padding: 0,
            });
            layers.push(Layer::Relu);
            layers.push(Layer::MaxPool2d {
                kernel_size: 2,
                stride: 2,
            });
            c = ch;
            side = (side - kernel + 1) / 2;
        }
        layers.extend([
            Layer::Flatten,
            linear("fc1", c * side * side, hidden),
            Layer::Relu,
            Layer::Dropout { p: dropout },
            linear("fc2", hidden, 10),
        ]);
        Architecture {
            input_shape: vec![1, 28, 28],
            layers,
        }
    }

    /// AE400-10 as a classifier: the autoencoder's sigmoid encoder `enc` (784 → `code`) and a softmax
    /// layer `fc` on the code.
    pub fn ae_classifier(code: i64) -> Architecture {
        Architecture {
            input_shape: vec![1, 28, 28],
            layers: vec![
                Layer::Flatten,
                linear("enc", 784, code),
                Layer::Sigmoid,
                linear("fc", code, 10),
            ],
        }
    }

    /// The autoencoder itself: encoder `enc` 784 → `code` (sigmoid), decoder `dec` → 784 (sigmoid).
    pub fn autoencoder(code: i64) -> Architecture {
        Architecture {
            input_shape: vec![1, 28, 28],
            layers: vec![
                Layer::Flatten,
                linear("enc", 784, code),
                Layer::Sigmoid,
                linear("dec", code, 784),
                Layer::Sigmoid,
            ],
        }
    }
}
