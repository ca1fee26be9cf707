//! The layer walk of §4.3: a sequential network (conv, linear, pooling, activations) read from a zoo model
//! folder, a TorchScript file with a YAML layer spec, or torchvision's AlexNet layout (no spec needed);
//! shapes are propagated and checked layer by layer, and errors name the layer.

use super::conv::{conv_output_size, dilated_extent, ConvGeom};
use crate::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Kind, Tensor};

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

/// Checks a pooling window (kernel ≥ 1, padding ≤ kernel/2, as torch requires) and returns its output
/// size on an `[h, w]` input.
fn pool_output(
    name: &str,
    [h, w]: [i64; 2],
    kernel: [i64; 2],
    geom: &ConvGeom,
) -> Result<[i64; 2]> {
    geom.validate(name)?;
    if kernel.iter().any(|&k| k < 1) || (0..2).any(|i| 2 * geom.padding[i] > kernel[i]) {
        return Err(Error::Invalid(format!(
            "layer `{name}`: kernel must be ≥ 1 and padding ≤ kernel/2, got kernel {kernel:?} padding {:?}",
            geom.padding
        )));
    }
    conv_output_size([h, w], kernel, geom).ok_or_else(|| {
        Error::Shape(format!(
            "layer `{name}`: input {h}x{w} is smaller than the {}x{} window; use a larger --input-shape",
            kernel[0], kernel[1]
        ))
    })
}

/// A resolved layer with its parameters.
#[derive(Debug)]
pub enum Op {
    Conv {
        weight: Tensor,
        bias: Option<Tensor>,
        geom: ConvGeom,
    },
    Linear {
        weight: Tensor,
        bias: Option<Tensor>,
    },
    MaxPool {
        kernel: [i64; 2],
        stride: [i64; 2],
        padding: [i64; 2],
        dilation: [i64; 2],
    },
    AvgPool {
        kernel: [i64; 2],
        stride: [i64; 2],
        padding: [i64; 2],
    },
    AdaptiveAvgPool {
        output: [i64; 2],
    },
    Relu,
    Sigmoid,
    Tanh,
    /// Local response normalisation across `size` channels: `b_c = a_c (k + α/size Σ a²)^(−β)`.
    Lrn {
        size: i64,
        alpha: f64,
        beta: f64,
        k: f64,
    },
    Dropout,
    Flatten,
}

impl Op {
    /// Short kind name, as in the spec and in `bounds.csv`.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv { .. } => "conv2d",
            Op::Linear { .. } => "linear",
            Op::MaxPool { .. } => "max_pool2d",
            Op::AvgPool { .. } => "avg_pool2d",
            Op::AdaptiveAvgPool { .. } => "adaptive_avg_pool2d",
            Op::Relu => "relu",
            Op::Sigmoid => "sigmoid",
            Op::Tanh => "tanh",
            Op::Lrn { .. } => "local_response_norm",
            Op::Dropout => "dropout",
            Op::Flatten => "flatten",
        }
    }
}

/// One layer of a [`Network`]: its name (parameter prefix or given/derived name), op and shapes.
#[derive(Debug)]
pub struct NetLayer {
    pub name: String,
    pub op: Op,
    /// Per-example input and output shapes (e.g. `[3, 224, 224]` → `[64, 55, 55]`).
    pub input_shape: Vec<i64>,
    pub output_shape: Vec<i64>,
}

/// A sequential network with checked shapes.
#[derive(Debug)]
pub struct Network {
    pub source: String,
    pub input_shape: Vec<i64>,
    pub layers: Vec<NetLayer>,
}

fn shape_str(s: &[i64]) -> String {
    s.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

impl Network {
    /// Resolves `spec` against named parameters and propagates `input_shape`, checking every layer.
    pub fn build(
        spec: &Spec,
        params: &BTreeMap<String, Tensor>,
        input_shape: &[i64],
        source: &str,
        device: tch::Device,
    ) -> Result<Network> {
        if input_shape.is_empty() || input_shape.iter().any(|&v| v <= 0) {
            return Err(Error::Invalid(format!(
                "input shape {input_shape:?} must be positive, e.g. 3,224,224"
            )));
        }
        let get = |layer: &str, key: &str| -> Result<Tensor> {
            let full = format!("{layer}.{key}");
            params
                .get(&full)
                .map(|t| t.to_device(device).detach())
                .ok_or_else(|| {
                    let similar: Vec<&str> = params
                        .keys()
                        .filter(|k| k.ends_with(".weight"))
                        .map(|k| k.as_str())
                        .take(40)
                        .collect();
                    Error::Invalid(format!(
                        "layer `{layer}`: {source} has no parameter `{full}` (weights found: {})",
                        similar.join(", ")
                    ))
                })
        };
        let mut shape = input_shape.to_vec();
        let mut layers = Vec::new();
        for (i, l) in spec.layers.iter().enumerate() {
            let input = shape.clone();
            let named =
                |n: &Option<String>, k: &str| n.clone().unwrap_or_else(|| format!("{k}#{i}"));
            let spatial = |name: &str| -> Result<[i64; 3]> {
                if input.len() != 3 {
                    return Err(Error::Shape(format!(
                        "layer `{name}`: expects a [C, H, W] input, gets {input:?}"
                    )));
                }
                Ok([input[0], input[1], input[2]])
            };
            let (name, op, out) = match l {
                SpecLayer::Conv2d {
                    param,
                    stride,
                    padding,
                    dilation,
                    groups,
                    in_channels,
                    out_channels,
                    kernel_size,
                } => {
                    let geom = ConvGeom {
                        stride: stride.hw(),
                        padding: padding.hw(),
                        dilation: dilation.hw(),
                        groups: *groups,
                    };
                    geom.validate(param)?;
                    let w = get(param, "weight")?;
                    let ws = w.size();
                    if ws.len() != 4 {
                        return Err(Error::Shape(format!(
                            "layer `{param}`: spec says conv2d but `{param}.weight` has shape {ws:?} (want [F, C/groups, kh, kw])"
                        )));
                    }
                    let [c, h, wd] = spatial(param)?;
                    let contradict = |what: &str, spec_v: String, got: String| {
                        Error::Shape(format!(
                            "layer `{param}`: spec says {what} = {spec_v} but `{param}.weight` {ws:?} means {got}"
                        ))
                    };
                    if let Some(ic) = in_channels {
                        if *ic != ws[1] * groups {
                            return Err(contradict(
                                "in_channels",
                                ic.to_string(),
                                (ws[1] * groups).to_string(),
                            ));
                        }
                    }
                    if let Some(oc) = out_channels {
                        if *oc != ws[0] {
                            return Err(contradict(
                                "out_channels",
                                oc.to_string(),
                                ws[0].to_string(),
                            ));
                        }
                    }
                    if let Some(k) = kernel_size {
                        if k.hw() != [ws[2], ws[3]] {
                            return Err(contradict(
                                "kernel_size",
                                format!("{:?}", k.hw()),
                                format!("{:?}", [ws[2], ws[3]]),
                            ));
                        }
                    }
                    if ws[1] * groups != c || ws[0] % groups != 0 {
                        return Err(Error::Shape(format!(
                            "layer `{param}`: weight {ws:?} with groups = {groups} takes {} input channels, but the input is {input:?}",
                            ws[1] * groups
                        )));
                    }
                    let o = conv_output_size([h, wd], [ws[2], ws[3]], &geom).ok_or_else(|| {
                        Error::Shape(format!(
                            "layer `{param}`: input {h}x{wd} (+ padding {:?}) is smaller than the dilated kernel {}x{}; use a larger --input-shape",
                            geom.padding,
                            dilated_extent(ws[2], geom.dilation[0]),
                            dilated_extent(ws[3], geom.dilation[1])
                        ))
                    })?;
                    let bias = params
                        .get(&format!("{param}.bias"))
                        .map(|b| b.to_device(device).detach());
                    (
                        param.clone(),
                        Op::Conv {
                            weight: w,
                            bias,
                            geom,
                        },
                        vec![ws[0], o[0], o[1]],
                    )
                }
                SpecLayer::Linear {
                    param,
                    in_features,
                    out_features,
                } => {
                    let w = get(param, "weight")?;
                    let ws = w.size();
                    if ws.len() != 2 {
                        return Err(Error::Shape(format!(
                            "layer `{param}`: spec says linear but `{param}.weight` has shape {ws:?} (want [out, in])"
                        )));
                    }
                    if let Some(v) = in_features {
                        if *v != ws[1] {
                            return Err(Error::Shape(format!("layer `{param}`: spec says in_features = {v} but `{param}.weight` {ws:?} has {}", ws[1])));
                        }
                    }
                    if let Some(v) = out_features {
                        if *v != ws[0] {
                            return Err(Error::Shape(format!("layer `{param}`: spec says out_features = {v} but `{param}.weight` {ws:?} has {}", ws[0])));
                        }
                    }
                    let n: i64 = input.iter().product();
                    if n != ws[1] {
                        return Err(Error::Shape(format!(
                            "layer `{param}`: weight {ws:?} takes {} features but the input {input:?} has {n}",
                            ws[1]
                        )));
                    }
                    let bias = params
                        .get(&format!("{param}.bias"))
                        .map(|b| b.to_device(device).detach());
                    (param.clone(), Op::Linear { weight: w, bias }, vec![ws[0]])
                }
                SpecLayer::MaxPool2d {
                    name,
                    kernel_size,
                    stride,
                    padding,
                    dilation,
                } => {
                    let name = named(name, "max_pool2d");
                    let [c, h, w] = spatial(&name)?;
                    let kernel = kernel_size.hw();
                    let stride = stride.unwrap_or(*kernel_size).hw();
                    let geom = ConvGeom {
                        stride,
                        padding: padding.hw(),
                        dilation: dilation.hw(),
                        groups: 1,
                    };
                    let o = pool_output(&name, [h, w], kernel, &geom)?;
                    (
                        name,
                        Op::MaxPool {
                            kernel,
                            stride,
                            padding: geom.padding,
                            dilation: geom.dilation,
                        },
                        vec![c, o[0], o[1]],
                    )
                }
                SpecLayer::AvgPool2d {
                    name,
                    kernel_size,
                    stride,
                    padding,
                } => {
                    let name = named(name, "avg_pool2d");
                    let [c, h, w] = spatial(&name)?;
                    let kernel = kernel_size.hw();
                    let stride = stride.unwrap_or(*kernel_size).hw();
                    let geom = ConvGeom {
                        stride,
                        padding: padding.hw(),
                        dilation: [1, 1],
                        groups: 1,
                    };
                    let o = pool_output(&name, [h, w], kernel, &geom)?;
                    (
                        name,
                        Op::AvgPool {
                            kernel,
                            stride,
                            padding: geom.padding,
                        },
                        vec![c, o[0], o[1]],
                    )
                }
                SpecLayer::AdaptiveAvgPool2d { name, output_size } => {
                    let name = named(name, "adaptive_avg_pool2d");
                    let [c, _, _] = spatial(&name)?;
                    let o = output_size.hw();
                    if o.iter().any(|&v| v < 1) {
                        return Err(Error::Invalid(format!(
                            "layer `{name}`: output_size must be ≥ 1"
                        )));
                    }
                    (name, Op::AdaptiveAvgPool { output: o }, vec![c, o[0], o[1]])
                }
                SpecLayer::Relu { name } => (named(name, "relu"), Op::Relu, input.clone()),
                SpecLayer::Sigmoid { name } => (named(name, "sigmoid"), Op::Sigmoid, input.clone()),
                SpecLayer::Tanh { name } => (named(name, "tanh"), Op::Tanh, input.clone()),
                SpecLayer::LocalResponseNorm {
                    name,
                    size,
                    alpha,
                    beta,
                    k,
                } => {
                    let name = named(name, "local_response_norm");
                    spatial(&name)?;
                    if *size < 1
                        || !(alpha.is_finite() && *alpha >= 0.0)
                        || !(beta.is_finite() && *beta >= 0.0)
                        || !(k.is_finite() && *k > 0.0)
                    {
                        return Err(Error::Invalid(format!(
                            "layer `{name}`: local_response_norm needs size ≥ 1, alpha ≥ 0, beta ≥ 0 and k > 0 (got size {size}, alpha {alpha}, beta {beta}, k {k})"
                        )));
                    }
                    (
                        name,
                        Op::Lrn {
                            size: *size,
                            alpha: *alpha,
                            beta: *beta,
                            k: *k,
                        },
                        input.clone(),
                    )
                }
                SpecLayer::Dropout { name, .. } => {
                    (named(name, "dropout"), Op::Dropout, input.clone())
                }
                SpecLayer::Flatten { name } => (
                    named(name, "flatten"),
                    Op::Flatten,
                    vec![input.iter().product()],
                ),
            };
            shape = out.clone();
            layers.push(NetLayer {
                name,
                op,
                input_shape: input,
                output_shape: out,
            });
        }
        Ok(Network {
            source: source.to_string(),
            input_shape: input_shape.to_vec(),
            layers,
        })
    }

    /// Forward pass in evaluation mode (dropout = identity): `x` [B, ..input_shape] → [B, ..output].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.shallow_clone();
        for l in &self.layers {
            h = match &l.op {
                Op::Conv { weight, bias, geom } => h.f_conv2d(
                    &weight.to_kind(h.kind()),
                    bias.as_ref().map(|b| b.to_kind(h.kind())),
                    geom.stride,
                    geom.padding,
                    geom.dilation,
                    geom.groups,
                )?,
                Op::Linear { weight, bias } => {
                    let f = h.f_flatten(1, -1)?;
                    let y = f.f_matmul(&weight.to_kind(h.kind()).transpose(0, 1))?;
                    match bias {
                        Some(b) => y + b.to_kind(h.kind()),
                        None => y,
                    }
                }
                Op::MaxPool {
                    kernel,
                    stride,
                    padding,
                    dilation,
                } => h.f_max_pool2d(kernel, stride, padding, dilation, false)?,
                Op::AvgPool {
                    kernel,
                    stride,
                    padding,
                } => h.f_avg_pool2d(kernel, stride, padding, false, true, None::<i64>)?,
                Op::AdaptiveAvgPool { output } => h.f_adaptive_avg_pool2d(output)?,
                Op::Relu => h.relu(),
                Op::Sigmoid => h.sigmoid(),
                Op::Tanh => h.tanh(),
                Op::Lrn {
                    size,
                    alpha,
                    beta,
                    k,
                } => {
                    // As torch.nn.functional.local_response_norm: the mean of a² over a window of `size`
                    // channels, zero-padded by size/2 before and (size−1)/2 after.
                    let sq = (&h * &h).f_unsqueeze(1)?; // [B, 1, C, H, W]
                    let sq = sq.f_constant_pad_nd([0, 0, 0, 0, size / 2, (size - 1) / 2])?;
                    let mean = sq
                        .f_avg_pool3d(
                            [*size, 1, 1],
                            [1, 1, 1],
                            [0, 0, 0],
                            false,
                            true,
                            None::<i64>,
                        )?
                        .f_squeeze_dim(1)?; // [B, C, H, W]
                    let div = (mean * *alpha + *k).f_pow_tensor_scalar(*beta)?;
                    h.f_div(&div)?
                }
                Op::Dropout => h,
                Op::Flatten => h.f_flatten(1, -1)?,
            };
        }
        Ok(h)
    }
}

/// Where the model comes from.
pub enum Source {
    /// A zoo model folder: `model.json` (field `architecture`) + `weights.safetensors`.
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
        let mj = model.join("model.json");
        let v: serde_json::Value = crate::io::read_json(&mj)?;
        let arch: crate::models::zoo::Architecture = serde_json::from_value(
            v.get("architecture")
                .cloned()
                .ok_or_else(|| Error::format(&mj, "no field `architecture`"))?,
        )
        .map_err(|e| Error::format(&mj, format!("field `architecture`: {e}")))?;
        let spec = match spec_path {
            Some(p) => read_spec(p)?,
            None => Spec::from_zoo(&arch),
        };
        let params: BTreeMap<String, Tensor> =
            crate::io::read_safetensors(&model.join("weights.safetensors"))?
                .into_iter()
                .collect();
        let shape = input_shape
            .map(|s| s.to_vec())
            .unwrap_or(arch.input_shape.clone());
        let net = Network::build(&spec, &params, &shape, &model.display().to_string(), device)?;
        Ok((net, Source::Zoo(model.to_path_buf())))
    } else {
        if !model.exists() {
            return Err(Error::format(model, "no such file or folder"));
        }
        let mut m = tch::CModule::load_on_device(model, device)
            .map_err(|e| Error::format(model, format!("not a loadable TorchScript file: {e}")))?;
        m.set_eval();
        let params: BTreeMap<String, Tensor> = m
            .named_parameters()
            .map_err(|e| Error::format(model, format!("cannot read parameters: {e}")))?
            .into_iter()
            .collect();
        let shape = input_shape.ok_or_else(|| {
            Error::Invalid(format!(
                "{}: a TorchScript model needs --input-shape C,H,W (e.g. 3,224,224)",
                model.display()
            ))
        })?;
        let spec = match spec_path {
            Some(p) => read_spec(p)?,
            None => {
                if is_alexnet_layout(&params) {
                    Spec::alexnet()
                } else {
                    let names: Vec<&String> = params.keys().take(30).collect();
                    return Err(Error::Invalid(format!(
                        "{}: no --spec given and the parameters are not torchvision's AlexNet layout (found {names:?}); describe the layers in a YAML spec (docs/spectral.md)",
                        model.display()
                    )));
                }
            }
        };
        let net = Network::build(&spec, &params, shape, &model.display().to_string(), device)?;
        Ok((net, Source::TorchScript(model.to_path_buf(), m)))
    }
}

/// Reads and parses a YAML layer spec file.
pub fn read_spec(p: &Path) -> Result<Spec> {
    let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
    Spec::parse(&text, &p.display().to_string())
}

/// True when the parameters are exactly those of torchvision's AlexNet (any channel widths).
pub fn is_alexnet_layout(params: &BTreeMap<String, Tensor>) -> bool {
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

/// Shape as `CxHxW`.
pub fn fmt_shape(s: &[i64]) -> String {
    shape_str(s)
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Zoo(p) => write!(f, "Zoo({})", p.display()),
            Source::TorchScript(p, _) => write!(f, "TorchScript({})", p.display()),
        }
    }
}
