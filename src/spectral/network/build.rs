//! Resolving a layer spec against a model's named parameters (§4.3's layer walk): one builder per layer
//! kind, each checking its weight against the spec and the incoming shape and returning the layer's op and
//! output shape. Errors name the layer.

use super::spec::{Pair, Spec, SpecLayer};
use super::{NetLayer, Network, Op};
use crate::spectral::conv::{conv_output_size, dilated_extent, ConvGeom};
use crate::spectral::SpectralError;
use crate::Result;
use std::collections::BTreeMap;
use tch::Tensor;

/// The named parameters a spec is resolved against, and the device the layers' tensors go to.
struct Params<'a> {
    map: &'a BTreeMap<String, Tensor>,
    /// The model, as named in errors.
    source: &'a str,
    device: tch::Device,
}

impl Params<'_> {
    /// `<layer>.weight` on the device, or an error listing the weights the model has.
    fn weight(&self, layer: &str) -> Result<Tensor> {
        let full = format!("{layer}.weight");
        match self.map.get(&full) {
            Some(t) => Ok(t.to_device(self.device).detach()),
            None => {
                let found: Vec<&str> = self
                    .map
                    .keys()
                    .filter(|k| k.ends_with(".weight"))
                    .map(|k| k.as_str())
                    .take(40)
                    .collect();
                Err(SpectralError::MissingParam {
                    layer: layer.to_string(),
                    param: full,
                    model: self.source.to_string(),
                    found: found.join(", "),
                }
                .into())
            }
        }
    }

    /// `<layer>.bias` on the device, if the model has one.
    fn bias(&self, layer: &str) -> Option<Tensor> {
        self.map
            .get(&format!("{layer}.bias"))
            .map(|b| b.to_device(self.device).detach())
    }
}

/// A built layer: its name, op and per-example output shape.
type Built = (String, Op, Vec<i64>);

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
            return Err(SpectralError::InputShape {
                shape: input_shape.to_vec(),
            }
            .into());
        }
        let params = Params {
            map: params,
            source,
            device,
        };
        let mut shape = input_shape.to_vec();
        let mut layers = Vec::new();
        for (i, l) in spec.layers.iter().enumerate() {
            let input = shape.clone();
            let (name, op, out) = build_layer(l, i, &input, &params)?;
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
}

/// Builds layer `i` of a spec on a per-example `input` shape.
fn build_layer(l: &SpecLayer, i: usize, input: &[i64], params: &Params) -> Result<Built> {
    let named = |n: &Option<String>, k: &str| n.clone().unwrap_or_else(|| format!("{k}#{i}"));
    match l {
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
            let checks = ConvChecks {
                in_channels: *in_channels,
                out_channels: *out_channels,
                kernel_size: *kernel_size,
            };
            conv2d(param, geom, &checks, input, params)
        }
        SpecLayer::Linear {
            param,
            in_features,
            out_features,
        } => linear(param, *in_features, *out_features, input, params),
        SpecLayer::MaxPool2d {
            name,
            kernel_size,
            stride,
            padding,
            dilation,
        } => {
            let geom = ConvGeom {
                stride: stride.unwrap_or(*kernel_size).hw(),
                padding: padding.hw(),
                dilation: dilation.hw(),
                groups: 1,
            };
            max_pool2d(named(name, "max_pool2d"), kernel_size.hw(), geom, input)
        }
        SpecLayer::AvgPool2d {
            name,
            kernel_size,
            stride,
            padding,
        } => {
            let geom = ConvGeom {
                stride: stride.unwrap_or(*kernel_size).hw(),
                padding: padding.hw(),
                dilation: [1, 1],
                groups: 1,
            };
            avg_pool2d(named(name, "avg_pool2d"), kernel_size.hw(), geom, input)
        }
        SpecLayer::AdaptiveAvgPool2d { name, output_size } => {
            adaptive_avg_pool2d(named(name, "adaptive_avg_pool2d"), output_size.hw(), input)
        }
        SpecLayer::Relu { name } => Ok((named(name, "relu"), Op::Relu, input.to_vec())),
        SpecLayer::Sigmoid { name } => Ok((named(name, "sigmoid"), Op::Sigmoid, input.to_vec())),
        SpecLayer::Tanh { name } => Ok((named(name, "tanh"), Op::Tanh, input.to_vec())),
        SpecLayer::LocalResponseNorm {
            name,
            size,
            alpha,
            beta,
            k,
        } => local_response_norm(
            named(name, "local_response_norm"),
            (*size, *alpha, *beta, *k),
            input,
        ),
        SpecLayer::Dropout { name, .. } => {
            Ok((named(name, "dropout"), Op::Dropout, input.to_vec()))
        }
        SpecLayer::Flatten { name } => Ok((
            named(name, "flatten"),
            Op::Flatten,
            vec![input.iter().product()],
        )),
    }
}

/// `[C, H, W]` of a layer that needs a spatial input.
fn spatial(name: &str, input: &[i64]) -> Result<[i64; 3]> {
    if input.len() != 3 {
        return Err(SpectralError::NotSpatial {
            layer: name.to_string(),
            input: input.to_vec(),
        }
        .into());
    }
    Ok([input[0], input[1], input[2]])
}

/// The optional checks of a conv layer's spec against its weight.
struct ConvChecks {
    in_channels: Option<i64>,
    out_channels: Option<i64>,
    kernel_size: Option<Pair>,
}

/// `<param>.weight` [F, C/groups, kh, kw] (+ bias) on `[C, H, W]` → `[F, H', W']`, zero padding.
fn conv2d(
    param: &str,
    geom: ConvGeom,
    checks: &ConvChecks,
    input: &[i64],
    params: &Params,
) -> Result<Built> {
    geom.validate(param)?;
    let w = params.weight(param)?;
    let ws = w.size();
    if ws.len() != 4 {
        return Err(SpectralError::WeightRank {
            layer: param.to_string(),
            kind: "conv2d",
            shape: ws,
            want: "[F, C/groups, kh, kw]",
        }
        .into());
    }
    let [c, h, wd] = spatial(param, input)?;
    let groups = geom.groups;
    let contradict = |field: &'static str, spec_value: String, actual: String| {
        Err(SpectralError::SpecContradicts {
            layer: param.to_string(),
            field,
            spec_value,
            shape: ws.clone(),
            actual,
        }
        .into())
    };
    if let Some(ic) = checks.in_channels {
        if ic != ws[1] * groups {
            return contradict("in_channels", ic.to_string(), (ws[1] * groups).to_string());
        }
    }
    if let Some(oc) = checks.out_channels {
        if oc != ws[0] {
            return contradict("out_channels", oc.to_string(), ws[0].to_string());
        }
    }
    if let Some(k) = checks.kernel_size {
        if k.hw() != [ws[2], ws[3]] {
            return contradict(
                "kernel_size",
                format!("{:?}", k.hw()),
                format!("{:?}", [ws[2], ws[3]]),
            );
        }
    }
    if ws[1] * groups != c || ws[0] % groups != 0 {
        return Err(SpectralError::InputChannels {
            layer: param.to_string(),
            takes: ws[1] * groups,
            shape: ws,
            groups,
            input: input.to_vec(),
        }
        .into());
    }
    let o = conv_output_size([h, wd], [ws[2], ws[3]], &geom).ok_or_else(|| {
        SpectralError::ConvInputTooSmall {
            layer: param.to_string(),
            input: [h, wd],
            padding: geom.padding,
            kernel: [
                dilated_extent(ws[2], geom.dilation[0]),
                dilated_extent(ws[3], geom.dilation[1]),
            ],
        }
    })?;
    let op = Op::Conv {
        weight: w,
        bias: params.bias(param),
        geom,
    };
    Ok((param.to_string(), op, vec![ws[0], o[0], o[1]]))
}

/// `<param>.weight` [out, in] (+ bias): flattens its input, → `[out]`.
fn linear(
    param: &str,
    in_features: Option<i64>,
    out_features: Option<i64>,
    input: &[i64],
    params: &Params,
) -> Result<Built> {
    let w = params.weight(param)?;
    let ws = w.size();
    if ws.len() != 2 {
        return Err(SpectralError::WeightRank {
            layer: param.to_string(),
            kind: "linear",
            shape: ws,
            want: "[out, in]",
        }
        .into());
    }
    for (field, spec_v, actual) in [
        ("in_features", in_features, ws[1]),
        ("out_features", out_features, ws[0]),
    ] {
        if let Some(v) = spec_v {
            if v != actual {
                return Err(SpectralError::SpecContradicts {
                    layer: param.to_string(),
                    field,
                    spec_value: v.to_string(),
                    shape: ws,
                    actual: actual.to_string(),
                }
                .into());
            }
        }
    }
    let n: i64 = input.iter().product();
    if n != ws[1] {
        return Err(SpectralError::LinearFeatures {
            layer: param.to_string(),
            takes: ws[1],
            shape: ws,
            input: input.to_vec(),
            has: n,
        }
        .into());
    }
    let op = Op::Linear {
        weight: w,
        bias: params.bias(param),
    };
    Ok((param.to_string(), op, vec![ws[0]]))
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
        return Err(SpectralError::PoolWindow {
            layer: name.to_string(),
            kernel,
            padding: geom.padding,
        }
        .into());
    }
    conv_output_size([h, w], kernel, geom).ok_or_else(|| {
        SpectralError::PoolInputTooSmall {
            layer: name.to_string(),
            input: [h, w],
            window: kernel,
        }
        .into()
    })
}

/// Max-pooling `[C, H, W]` → `[C, H', W']` (`geom.groups` unused).
fn max_pool2d(name: String, kernel: [i64; 2], geom: ConvGeom, input: &[i64]) -> Result<Built> {
    let [c, h, w] = spatial(&name, input)?;
    let o = pool_output(&name, [h, w], kernel, &geom)?;
    let op = Op::MaxPool {
        kernel,
        stride: geom.stride,
        padding: geom.padding,
        dilation: geom.dilation,
    };
    Ok((name, op, vec![c, o[0], o[1]]))
}

/// Average pooling (`count_include_pad`) `[C, H, W]` → `[C, H', W']`.
fn avg_pool2d(name: String, kernel: [i64; 2], geom: ConvGeom, input: &[i64]) -> Result<Built> {
    let [c, h, w] = spatial(&name, input)?;
    let o = pool_output(&name, [h, w], kernel, &geom)?;
    let op = Op::AvgPool {
        kernel,
        stride: geom.stride,
        padding: geom.padding,
    };
    Ok((name, op, vec![c, o[0], o[1]]))
}

/// Adaptive average pooling `[C, H, W]` → `[C, oh, ow]`.
fn adaptive_avg_pool2d(name: String, output: [i64; 2], input: &[i64]) -> Result<Built> {
    let [c, _, _] = spatial(&name, input)?;
    if output.iter().any(|&v| v < 1) {
        return Err(SpectralError::AdaptiveOutput {
            layer: name,
            output,
        }
        .into());
    }
    Ok((
        name,
        Op::AdaptiveAvgPool { output },
        vec![c, output[0], output[1]],
    ))
}

/// Local response normalisation (shape-preserving), `(size, alpha, beta, k)` checked.
fn local_response_norm(name: String, lrn: (i64, f64, f64, f64), input: &[i64]) -> Result<Built> {
    spatial(&name, input)?;
    let (size, alpha, beta, k) = lrn;
    if size < 1
        || !(alpha.is_finite() && alpha >= 0.0)
        || !(beta.is_finite() && beta >= 0.0)
        || !(k.is_finite() && k > 0.0)
    {
        return Err(SpectralError::LrnParams {
            layer: name,
            size,
            alpha,
            beta,
            k,
        }
        .into());
    }
    let op = Op::Lrn {
        size,
        alpha,
        beta,
        k,
    };
    Ok((name, op, input.to_vec()))
}
