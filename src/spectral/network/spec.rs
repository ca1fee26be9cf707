//! The YAML layer spec of §4.3's layer walk (`docs/spectral.md`): one entry per layer in forward order,
//! unknown keys and kinds rejected with the layer named; torchvision's AlexNet layout and the zoo
//! architectures as built-in specs.

use crate::{Error, Result};
use serde::Deserialize;

/// An integer or an `[h, w]` pair, as PyTorch accepts for kernel sizes, strides and paddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Pair {
    One(i64),
    Two([i64; 2]),
}

impl Pair {
    pub fn hw(&self) -> [i64; 2] {
        match *self {
            Pair::One(v) => [v, v],
            Pair::Two(p) => p,
        }
    }
}

fn p0() -> Pair {
    Pair::One(0)
}
fn p1() -> Pair {
    Pair::One(1)
}
fn one() -> i64 {
    1
}
fn lrn_alpha() -> f64 {
    1e-4
}
fn lrn_beta() -> f64 {
    0.75
}
fn lrn_k() -> f64 {
    1.0
}

/// One layer of a YAML layer spec (see `docs/spectral.md`). Unknown keys and kinds are rejected.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SpecLayer {
    /// `<param>.weight` [F, C/groups, kh, kw], optional `<param>.bias`; zero padding.
    Conv2d {
        param: String,
        #[serde(default = "p1")]
        stride: Pair,
        #[serde(default = "p0")]
        padding: Pair,
        #[serde(default = "p1")]
        dilation: Pair,
        #[serde(default = "one")]
        groups: i64,
        /// Optional checks against the weight's shape.
        #[serde(default)]
        in_channels: Option<i64>,
        #[serde(default)]
        out_channels: Option<i64>,
        #[serde(default)]
        kernel_size: Option<Pair>,
    },
    /// `<param>.weight` [out, in]; flattens its input.
    Linear {
        param: String,
        #[serde(default)]
        in_features: Option<i64>,
        #[serde(default)]
        out_features: Option<i64>,
    },
    MaxPool2d {
        #[serde(default)]
        name: Option<String>,
        kernel_size: Pair,
        /// Defaults to `kernel_size`, as in PyTorch.
        #[serde(default)]
        stride: Option<Pair>,
        #[serde(default = "p0")]
        padding: Pair,
        #[serde(default = "p1")]
        dilation: Pair,
    },
    /// Average pooling with `count_include_pad = true` (PyTorch's default).
    AvgPool2d {
        #[serde(default)]
        name: Option<String>,
        kernel_size: Pair,
        #[serde(default)]
        stride: Option<Pair>,
        #[serde(default = "p0")]
        padding: Pair,
    },
    AdaptiveAvgPool2d {
        #[serde(default)]
        name: Option<String>,
        output_size: Pair,
    },
    Relu {
        #[serde(default)]
        name: Option<String>,
    },
    Sigmoid {
        #[serde(default)]
        name: Option<String>,
    },
    Tanh {
        #[serde(default)]
        name: Option<String>,
    },
    /// `nn.LocalResponseNorm(size, alpha, beta, k)` across channels (PyTorch's defaults).
    LocalResponseNorm {
        #[serde(default)]
        name: Option<String>,
        size: i64,
        #[serde(default = "lrn_alpha")]
        alpha: f64,
        #[serde(default = "lrn_beta")]
        beta: f64,
        #[serde(default = "lrn_k")]
        k: f64,
    },
    /// Identity at evaluation time.
    Dropout {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        p: Option<f64>,
    },
    Flatten {
        #[serde(default)]
        name: Option<String>,
    },
}

/// The largest size, stride, padding or dilation a spec may give (2³¹ − 1): shape arithmetic stays far
/// from overflow.
const MAX_NUMBER: i64 = i32::MAX as i64;

/// An integer field (or pair) as given, with its minimum: (field, value(s), minimum).
type IntField = (&'static str, Vec<i64>, i64);

/// A field out of range: (field, its value, what it must be).
type BadNumber = (&'static str, String, String);

/// Checks an integer field (or each of a pair) against `min..=MAX_NUMBER`.
fn in_range(field: &'static str, v: &[i64], min: i64) -> Result<(), BadNumber> {
    if v.iter().all(|&x| (min..=MAX_NUMBER).contains(&x)) {
        return Ok(());
    }
    let value = match v {
        [x] => x.to_string(),
        _ => format!("{v:?}"),
    };
    Err((
        field,
        value,
        format!("an integer from {min} to {MAX_NUMBER} (or a pair of them)"),
    ))
}

impl SpecLayer {
    /// Checks every number of the layer as soon as it is read, before any shape arithmetic divides by a
    /// stride or allocates: strides, dilations, kernels, groups, sizes ≥ 1, paddings ≥ 0, probabilities in
    /// [0, 1]. Returns the first field out of range.
    pub fn check_numbers(&self) -> Result<(), BadNumber> {
        let opt = |v: &Option<i64>| v.map(|x| vec![x]).unwrap_or_default();
        // As written: one number or a pair.
        let given = |p: &Pair| match *p {
            Pair::One(v) => vec![v],
            Pair::Two(p) => p.to_vec(),
        };
        let pair = |p: &Option<Pair>| p.as_ref().map(given).unwrap_or_default();
        let (ints, p): (Vec<IntField>, Option<f64>) = match self {
            SpecLayer::Conv2d {
                stride,
                padding,
                dilation,
                groups,
                in_channels,
                out_channels,
                kernel_size,
                ..
            } => (
                vec![
                    ("stride", given(stride), 1),
                    ("padding", given(padding), 0),
                    ("dilation", given(dilation), 1),
                    ("groups", vec![*groups], 1),
                    ("in_channels", opt(in_channels), 1),
                    ("out_channels", opt(out_channels), 1),
                    ("kernel_size", pair(kernel_size), 1),
                ],
                None,
            ),
            SpecLayer::Linear {
                in_features,
                out_features,
                ..
            } => (
                vec![
                    ("in_features", opt(in_features), 1),
                    ("out_features", opt(out_features), 1),
                ],
                None,
            ),
            SpecLayer::MaxPool2d {
                kernel_size,
                stride,
                padding,
                dilation,
                ..
            } => (
                vec![
                    ("kernel_size", given(kernel_size), 1),
                    ("stride", pair(stride), 1),
                    ("padding", given(padding), 0),
                    ("dilation", given(dilation), 1),
                ],
                None,
            ),
            SpecLayer::AvgPool2d {
                kernel_size,
                stride,
                padding,
                ..
            } => (
                vec![
                    ("kernel_size", given(kernel_size), 1),
                    ("stride", pair(stride), 1),
                    ("padding", given(padding), 0),
                ],
                None,
            ),
            SpecLayer::AdaptiveAvgPool2d { output_size, .. } => {
                (vec![("output_size", given(output_size), 1)], None)
            }
            SpecLayer::LocalResponseNorm { size, .. } => (vec![("size", vec![*size], 1)], None),
            SpecLayer::Dropout { p, .. } => (Vec::new(), *p),
            SpecLayer::Relu { .. }
            | SpecLayer::Sigmoid { .. }
            | SpecLayer::Tanh { .. }
            | SpecLayer::Flatten { .. } => (Vec::new(), None),
        };
        for (field, v, min) in ints {
            in_range(field, &v, min)?;
        }
        match p {
            Some(p) if !(p.is_finite() && (0.0..=1.0).contains(&p)) => {
                Err(("p", p.to_string(), "a probability from 0 to 1".into()))
            }
            _ => Ok(()),
        }
    }
}

/// A YAML layer spec: `layers:` in forward order.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub layers: Vec<SpecLayer>,
}

impl Spec {
    /// Parses a spec, naming the layer (index, `param` or `name`, `kind`) in every error.
    pub fn parse(text: &str, file: &str) -> Result<Spec> {
        let v: serde_norway::Value = serde_norway::from_str(text)
            .map_err(|e| Error::config(file, "(document)", format!("not valid YAML: {e}")))?;
        let map = v.as_mapping().ok_or_else(|| {
            Error::config(
                file,
                "(document)",
                "expected a mapping with the key `layers`",
            )
        })?;
        for k in map.keys() {
            if k.as_str() != Some("layers") {
                return Err(Error::config(
                    file,
                    format!("{k:?}"),
                    "unknown key; the only top-level key is `layers`",
                ));
            }
        }
        let layers = map
            .get("layers")
            .and_then(|l| l.as_sequence())
            .ok_or_else(|| Error::config(file, "layers", "missing or not a list"))?;
        let mut out = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            let label = |k: &str| -> String {
                l.get(k)
                    .and_then(|v| v.as_str())
                    .map(|s| format!(" (`{s}`)"))
                    .unwrap_or_default()
            };
            let who = format!("layers[{i}]{}{}", label("param"), label("name"));
            let kind = l
                .get("kind")
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_string();
            let layer: SpecLayer = serde_norway::from_value(l.clone())
                .map_err(|e| Error::config(file, who.clone(), format!("kind `{kind}`: {e}")))?;
            if let Err((field, value, want)) = layer.check_numbers() {
                return Err(Error::config(
                    file,
                    format!("layers[{i}].{field}"),
                    format!(
                        "{kind} layer{}{} has {field} {value}; it must be {want}",
                        label("param"),
                        label("name")
                    ),
                ));
            }
            out.push(layer);
        }
        if out.is_empty() {
            return Err(Error::config(file, "layers", "the list is empty"));
        }
        Ok(Spec { layers: out })
    }

    /// torchvision's AlexNet (`features.0` … `classifier.6`): strides 4/1/1/1/1, paddings 2/2/1/1/1,
    /// 3×3 stride-2 max-pools, ReLUs, adaptive average pooling to 6×6, dropout.
    pub fn alexnet() -> Spec {
        use SpecLayer::*;
        let conv = |p: &str, s: i64, pad: i64| Conv2d {
            param: p.into(),
            stride: Pair::One(s),
            padding: Pair::One(pad),
            dilation: Pair::One(1),
            groups: 1,
            in_channels: None,
            out_channels: None,
            kernel_size: None,
        };
        let relu = |n: &str| Relu {
            name: Some(n.into()),
        };
        let pool = |n: &str| MaxPool2d {
            name: Some(n.into()),
            kernel_size: Pair::One(3),
            stride: Some(Pair::One(2)),
            padding: Pair::One(0),
            dilation: Pair::One(1),
        };
        let lin = |p: &str| Linear {
            param: p.into(),
            in_features: None,
            out_features: None,
        };
        let drop = |n: &str| Dropout {
            name: Some(n.into()),
            p: Some(0.5),
        };
        Spec {
            layers: vec![
                conv("features.0", 4, 2),
                relu("features.1"),
                pool("features.2"),
                conv("features.3", 1, 2),
                relu("features.4"),
                pool("features.5"),
                conv("features.6", 1, 1),
                relu("features.7"),
                conv("features.8", 1, 1),
                relu("features.9"),
                conv("features.10", 1, 1),
                relu("features.11"),
                pool("features.12"),
                AdaptiveAvgPool2d {
                    name: Some("avgpool".into()),
                    output_size: Pair::One(6),
                },
                Flatten {
                    name: Some("flatten".into()),
                },
                drop("classifier.0"),
                lin("classifier.1"),
                relu("classifier.2"),
                drop("classifier.3"),
                lin("classifier.4"),
                relu("classifier.5"),
                lin("classifier.6"),
            ],
        }
    }

    /// The spec of a zoo architecture (`crate::models::zoo::Architecture`).
    pub fn from_zoo(arch: &crate::models::zoo::Architecture) -> Spec {
        use crate::models::zoo::Layer as Z;
        let layers = arch
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| match l {
                Z::Linear {
                    name,
                    in_features,
                    out_features,
                } => SpecLayer::Linear {
                    param: name.clone(),
                    in_features: Some(*in_features),
                    out_features: Some(*out_features),
                },
                Z::Conv2d {
                    name,
                    in_channels,
                    out_channels,
                    kernel_size,
                    stride,
                    padding,
                } => SpecLayer::Conv2d {
                    param: name.clone(),
                    stride: Pair::One(*stride),
                    padding: Pair::One(*padding),
                    dilation: Pair::One(1),
                    groups: 1,
                    in_channels: Some(*in_channels),
                    out_channels: Some(*out_channels),
                    kernel_size: Some(Pair::One(*kernel_size)),
                },
                Z::Sigmoid => SpecLayer::Sigmoid {
                    name: Some(format!("sigmoid#{i}")),
                },
                Z::Relu => SpecLayer::Relu {
                    name: Some(format!("relu#{i}")),
                },
                Z::MaxPool2d {
                    kernel_size,
                    stride,
                } => SpecLayer::MaxPool2d {
                    name: Some(format!("max_pool2d#{i}")),
                    kernel_size: Pair::One(*kernel_size),
                    stride: Some(Pair::One(*stride)),
                    padding: Pair::One(0),
                    dilation: Pair::One(1),
                },
                Z::Flatten => SpecLayer::Flatten {
                    name: Some(format!("flatten#{i}")),
                },
                Z::Dropout { p } => SpecLayer::Dropout {
                    name: Some(format!("dropout#{i}")),
                    p: Some(*p),
                },
            })
            .collect();
        Spec { layers }
    }
}
