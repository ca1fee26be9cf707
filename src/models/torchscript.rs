//! TorchScript classifiers (AlexNet and users' own models) behind the `Classifier` interface (paper §3
//! Figs 3-4, §4.2 Fig 5).
//!
//! ## The layer protocol
//! A scripted model is a plain `torch.jit.script`-ed module whose `forward(x)` maps images in **pixel space
//! [0, 1]** (`x` [B, C, H, W]) to logits [B, classes]; any normalisation (ImageNet mean/std) is applied
//! *inside* the model, so attacks and analyses see [0, 1] images. Optional exported methods make more of it
//! reachable (`scripts/export_torchvision.py` writes all three):
//! - `layer_names() -> List[str]`: the names of the layers, input side first (e.g. `features.0`, ...,
//!   `classifier.6`);
//! - `layer(x, name: str) -> Tensor`: the activations of layer `name` for the batch `x`;
//! - `input_shape() -> List[int]`: the shape of one example, e.g. `[3, 224, 224]`.
//!
//! Without them the model still works: its only layer is `logits`, and the input shape is the one given
//! to [`TorchScriptClassifier::load_with_shape`] (default `[3, 224, 224]`). The number of classes is read
//! from one forward pass on a zero image, which also checks that the output is [1, classes].

use super::{Classifier, ModelError};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use tch::{CModule, Device, IValue, Kind, Tensor};

/// The layer name that every TorchScript classifier has: the logits (`forward`).
pub const LOGITS: &str = "logits";
/// The input shape assumed for models that do not export `input_shape()`.
pub const DEFAULT_INPUT_SHAPE: [i64; 3] = [3, 224, 224];

/// A TorchScript model loaded with libtorch, in eval mode, on one device.
pub struct TorchScriptClassifier {
    module: CModule,
    path: PathBuf,
    name: String,
    input_shape: Vec<i64>,
    num_classes: i64,
    device: Device,
    /// Layer names exported by the model (without the implicit `logits` if the model lists it itself).
    layers: Vec<String>,
    has_layer_method: bool,
    /// SHA-256 of the module's bytes when it was loaded from memory ([`Self::from_bytes`]); a file's is
    /// computed from the file when asked.
    fingerprint: Option<String>,
}

impl std::fmt::Debug for TorchScriptClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchScriptClassifier")
            .field("path", &self.path)
            .field("input_shape", &self.input_shape)
            .field("num_classes", &self.num_classes)
            .field("device", &self.device)
            .field("layers", &self.layers)
            .finish()
    }
}

fn ivalue_strings(v: IValue) -> Option<Vec<String>> {
    match v {
        IValue::StringList(s) => Some(s),
        IValue::GenericList(items) => items
            .into_iter()
            .map(|i| match i {
                IValue::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn ivalue_ints(v: IValue) -> Option<Vec<i64>> {
    match v {
        IValue::IntList(s) => Some(s),
        IValue::GenericList(items) => items
            .into_iter()
            .map(|i| match i {
                IValue::Int(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

impl TorchScriptClassifier {
    /// Loads a TorchScript file on `device`, using its `input_shape()` method or `[3, 224, 224]`.
    pub fn load(path: &Path, device: Device) -> Result<Self> {
        Self::load_with_shape(path, device, None)
    }

    /// Loads a TorchScript file; `input_shape` overrides the model's own (needed for models without the
    /// `input_shape()` method that do not take [3, 224, 224]).
    pub fn load_with_shape(
        path: &Path,
        device: Device,
        input_shape: Option<Vec<i64>>,
    ) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::format(path, "TorchScript model file not found"));
        }
        let module = CModule::load_on_device(path, device).map_err(|e| {
            Error::format(
                path,
                format!(
                    "cannot load as a TorchScript model (save it with torch.jit.script(m).save(path), \
                     e.g. scripts/export_torchvision.py): {}",
                    first_line(&e.to_string())
                ),
            )
        })?;
        Self::from_module(module, path, device, input_shape)
    }

    /// A TorchScript model held in memory: the bytes `torch.jit.save` writes (the Python package passes
    /// scripted or traced modules this way). `name` stands for the file in messages and reports; the
    /// fingerprint is the SHA-256 of `bytes`. Otherwise exactly [`Self::load_with_shape`].
    pub fn from_bytes(
        bytes: &[u8],
        name: &str,
        device: Device,
        input_shape: Option<Vec<i64>>,
    ) -> Result<Self> {
        let path = Path::new(name);
        let module =
            CModule::load_data_on_device(&mut std::io::Cursor::new(bytes), device).map_err(|e| {
                Error::format(
                    path,
                    format!(
                        "cannot load as a TorchScript model (script or trace it: torch.jit.script(m)): {}",
                        first_line(&e.to_string())
                    ),
                )
            })?;
        let mut me = Self::from_module(module, path, device, input_shape)?;
        me.fingerprint = Some(crate::fingerprint::sha256_bytes(bytes));
        Ok(me)
    }

    /// The classifier of a loaded module (`path` names it in messages): eval mode, the layer protocol,
    /// the input shape and, from one forward pass, the number of classes.
    fn from_module(
        mut module: CModule,
        path: &Path,
        device: Device,
        input_shape: Option<Vec<i64>>,
    ) -> Result<Self> {
        module
            .f_set_eval()
            .map_err(|e| Error::format(path, format!("cannot switch to eval mode: {e}")))?;
        let declared_shape = module
            .method_is::<IValue>("input_shape", &[])
            .ok()
            .and_then(ivalue_ints);
        let input_shape = input_shape
            .or(declared_shape)
            .unwrap_or_else(|| DEFAULT_INPUT_SHAPE.to_vec());
        let values = input_shape
            .iter()
            .try_fold(1i64, |acc, &d| acc.checked_mul(d));
        if input_shape.is_empty()
            || input_shape.iter().any(|&d| d <= 0)
            || values.is_none_or(|v| v > crate::models::zoo::MAX_SIZE)
        {
            return Err(Error::format(
                path,
                format!(
                    "invalid input shape {input_shape:?}: expected positive sizes whose product is at most {}, e.g. [3, 224, 224]",
                    crate::models::zoo::MAX_SIZE
                ),
            ));
        }
        let layers = match module.method_is::<IValue>("layer_names", &[]) {
            Ok(v) => ivalue_strings(v).ok_or_else(|| {
                Error::format(
                    path,
                    "method layer_names() must return a list of strings (List[str])",
                )
            })?,
            Err(_) => Vec::new(),
        };
        let has_layer_method = !layers.is_empty();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "torchscript".into());
        let mut me = TorchScriptClassifier {
            module,
            path: path.to_path_buf(),
            name,
            input_shape,
            num_classes: 0,
            device,
            layers,
            has_layer_method,
            fingerprint: None,
        };
        me.num_classes = me.read_num_classes()?;
        Ok(me)
    }

    /// One forward pass on a zero image: the number of classes, and a check that the output is logits.
    fn read_num_classes(&self) -> Result<i64> {
        let _g = tch::no_grad_guard();
        let mut shape = vec![1i64];
        shape.extend(&self.input_shape);
        let x = Tensor::zeros(shape.as_slice(), (Kind::Float, self.device));
        let out = self.run_forward(&x)?; // [1, classes]
        let s = out.size();
        if s.len() != 2 || s[0] != 1 || s[1] < 1 {
            return Err(ModelError::NotLogits {
                path: self.path.clone(),
                input: shape,
                got: s,
            }
            .into());
        }
        Ok(s[1])
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the model exports the layer protocol (`layer_names()` and `layer(x, name)`).
    pub fn has_layer_protocol(&self) -> bool {
        self.has_layer_method
    }

    fn run_forward(&self, x: &Tensor) -> Result<Tensor> {
        self.module.forward_ts(&[x]).map_err(|e| {
            ModelError::Forward {
                path: self.path.clone(),
                input: x.size(),
                msg: first_line(&e.to_string()),
            }
            .into()
        })
    }

    fn unknown_layer(&self, name: &str) -> Error {
        ModelError::UnknownLayer {
            model: self.path.display().to_string(),
            layer: name.to_string(),
            available: self.layer_names(),
        }
        .into()
    }
}

fn first_line(s: &str) -> String {
    // libtorch errors carry long C++ backtraces; the first lines say what went wrong.
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .take(3)
        .collect::<Vec<_>>()
        .join(" | ")
}

impl Classifier for TorchScriptClassifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn input_shape(&self) -> Vec<i64> {
        self.input_shape.clone()
    }
    fn num_classes(&self) -> i64 {
        self.num_classes
    }
    fn input_bounds(&self) -> (f64, f64) {
        (0.0, 1.0)
    }
    fn device(&self) -> Device {
        self.device
    }
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        super::classifier::check_input(self, x)?;
        let out = self.run_forward(x)?; // [B, classes]
        let s = out.size();
        if s.len() != 2 || s[0] != x.size()[0] || s[1] != self.num_classes {
            return Err(ModelError::LogitsShape {
                path: self.path.clone(),
                input: x.size(),
                got: s,
                expected: vec![x.size()[0], self.num_classes],
            }
            .into());
        }
        Ok(out)
    }
    fn fingerprint(&self) -> Result<String> {
        match &self.fingerprint {
            Some(f) => Ok(f.clone()),
            None => crate::fingerprint::sha256_file(&self.path),
        }
    }
    fn layer_names(&self) -> Vec<String> {
        let mut v = self.layers.clone();
        if !v.iter().any(|n| n == LOGITS) {
            v.push(LOGITS.to_string());
        }
        v
    }
    fn layer(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        if name == LOGITS && !self.layers.iter().any(|n| n == LOGITS) {
            return self.logits(x);
        }
        if !self.layers.iter().any(|n| n == name) {
            return Err(self.unknown_layer(name));
        }
        super::classifier::check_input(self, x)?;
        let out = self
            .module
            .method_is(
                "layer",
                &[
                    IValue::Tensor(x.shallow_clone()),
                    IValue::String(name.into()),
                ],
            )
            .map_err(|e| ModelError::LayerCall {
                path: self.path.clone(),
                layer: name.to_string(),
                msg: first_line(&e.to_string()),
            })?;
        let batch = x.size()[0];
        let bad = |got: String| -> Error {
            ModelError::LayerOutput {
                path: self.path.clone(),
                layer: name.to_string(),
                got,
                batch,
            }
            .into()
        };
        match out {
            IValue::Tensor(t) if t.dim() == 0 || t.size()[0] != batch => {
                Err(bad(format!("{:?}", t.size())))
            }
            IValue::Tensor(t) => Ok(t),
            _ => Err(bad("a value that is not a Tensor".into())),
        }
    }
}

/// Loads a zoo model folder (model.json + weights.safetensors) as a classifier.
fn load_zoo(dir: &Path, device: Device) -> Result<Box<dyn Classifier>> {
    Ok(Box::new(crate::models::zoo::ZooModel::load(dir, device)?))
}

/// Loads a classifier: a `.pt`/`.pth`/`.ts` TorchScript file, or a zoo model folder (`crate::models::zoo::ZooModel::load`).
pub fn load_classifier(path: &Path, device: Device) -> Result<Box<dyn Classifier>> {
    if path.is_dir() {
        return load_zoo(path, device);
    }
    if !path.exists() {
        return Err(Error::format(
            path,
            "model not found: give a zoo model folder or a TorchScript file (.pt)",
        ));
    }
    Ok(Box::new(TorchScriptClassifier::load(path, device)?))
}
