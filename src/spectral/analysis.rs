//! Per-layer frame bounds of a whole network (§4.3, Table 5), the product bound, and the empirical
//! Lipschitz ratio found by gradient ascent.

use super::conv::{self, ConvOp};
use super::dense;
use super::network::{fmt_shape, Network, Op};
use super::pool;
use super::power::{self, Extremes, IterOptions};
use crate::Result;
use tch::{Kind, Tensor};

/// Which boundary handling the conv bounds use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Circular convolution on the layer's input size: FFT, exact (the paper's method).
    Circular,
    /// Zero padding (what torch computes): exact by Lanczos, with the FFT bound beside it.
    Zero,
    /// Both.
    Both,
}

/// Settings of [`analyse`].
#[derive(Debug, Clone)]
pub struct AnalyseOptions {
    pub mode: Mode,
    /// Lanczos residual tolerance (relative to σ²_max).
    pub tol: f64,
    /// Lanczos steps per conv layer at most.
    pub max_iter: usize,
    /// Also converge the smallest singular value in zero mode (costs more steps on large layers).
    pub zero_lower: bool,
    /// Linear layers with min(out, in) ≤ this use a full SVD, larger ones the Gram eigenvalues.
    pub svd_limit: i64,
    /// Conv operators with more than this many inputs are applied in f32 inside Lanczos (vectors f64).
    pub f32_above: i64,
    pub device: tch::Device,
    pub seed: i64,
}

impl Default for AnalyseOptions {
    fn default() -> Self {
        AnalyseOptions {
            mode: Mode::Both,
            tol: 1e-6,
            max_iter: 300,
            zero_lower: true,
            svd_limit: 1024,
            f32_above: 50_000,
            device: tch::Device::Cpu,
            seed: 0,
        }
    }
}

/// One row of `bounds.csv`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub layer: String,
    pub kind: String,
    pub weight_shape: String,
    pub stride: String,
    pub input_shape: String,
    /// Empty when the method gives no lower bound (an upper bound only, or unconverged).
    pub lower: Option<f64>,
    pub upper: f64,
    pub method: String,
}

/// Sorted (descending) singular values of one layer, subsampled for plotting.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Spectrum {
    pub layer: String,
    pub method: String,
    pub count: i64,
    pub values: Vec<f64>,
}

/// Convergence record of one iterative conv computation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IterRecord {
    pub layer: String,
    pub dimension: i64,
    pub precision: String,
    pub seconds: f64,
    pub extremes: Extremes,
}

/// All results of [`analyse`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Analysis {
    pub rows: Vec<Row>,
    pub spectra: Vec<Spectrum>,
    pub iterative: Vec<IterRecord>,
    /// Product of the per-layer upper bounds, convs by the exact zero-padded norm (when computed).
    pub product_exact: Option<f64>,
    /// Product with convs by the FFT bound on the padded torus: a guaranteed upper bound.
    pub product_fft_bound: f64,
    /// Seconds per layer and method.
    pub timings: Vec<(String, String, f64)>,
}

fn subsample(s: &Tensor, max_points: i64) -> Result<Vec<f64>> {
    let n = s.size()[0];
    let s = s.to_device(tch::Device::Cpu).to_kind(Kind::Double);
    if n <= max_points {
        return Ok(Vec::<f64>::try_from(s)?);
    }
    let idx = Tensor::linspace(
        0.0,
        (n - 1) as f64,
        max_points,
        (Kind::Double, tch::Device::Cpu),
    )
    .round()
    .to_kind(Kind::Int64);
    Ok(Vec::<f64>::try_from(s.index_select(0, &idx))?)
}

/// Frame bounds of every layer of `net`.
pub fn analyse(net: &Network, opts: &AnalyseOptions) -> Result<Analysis> {
    let _g = tch::no_grad_guard();
    let mut rows = Vec::new();
    let mut spectra = Vec::new();
    let mut iterative = Vec::new();
    let mut timings = Vec::new();
    let mut prod_exact = 1.0f64;
    let mut exact_ok = true;
    let mut prod_fft = 1.0f64;
    let pb = crate::progress::bar(net.layers.len() as u64, "spectral", "layer");
    for l in &net.layers {
        let input = fmt_shape(&l.input_shape);
        let row = |kind: &str,
                   ws: String,
                   stride: String,
                   lower: Option<f64>,
                   upper: f64,
                   method: &str| Row {
            layer: l.name.clone(),
            kind: kind.to_string(),
            weight_shape: ws,
            stride,
            input_shape: input.clone(),
            lower,
            upper,
            method: method.to_string(),
        };
        match &l.op {
            Op::Conv { weight, geom, .. } => {
                let ws = fmt_shape(&weight.size());
                let st = if geom.stride[0] == geom.stride[1] {
                    geom.stride[0].to_string()
                } else {
                    format!("{}x{}", geom.stride[0], geom.stride[1])
                };
                let hw = [l.input_shape[1], l.input_shape[2]];
                let t0 = std::time::Instant::now();
                let (bl, bu, _) = conv::fft_bounds(weight, geom, conv::zero_bound_torus(hw, geom))?;
                let _ = bl;
                prod_fft *= bu;
                if opts.mode != Mode::Zero {
                    let (lo, up, s) =
                        conv::fft_bounds(weight, geom, conv::circular_torus(hw, geom))?;
                    timings.push((
                        l.name.clone(),
                        "fft-circular".into(),
                        t0.elapsed().as_secs_f64(),
                    ));
                    rows.push(row(
                        "conv2d",
                        ws.clone(),
                        st.clone(),
                        Some(lo),
                        up,
                        "fft-circular",
                    ));
                    spectra.push(Spectrum {
                        layer: l.name.clone(),
                        method: "fft-circular".into(),
                        count: s.size()[0],
                        values: subsample(&s, 2000)?,
                    });
                }
                if opts.mode != Mode::Circular {
                    let t1 = std::time::Instant::now();
                    let op = ConvOp::new(weight, *geom, [l.input_shape[0], hw[0], hw[1]])?;
                    let kind = if op.n_in().min(op.n_out()) > opts.f32_above {
                        Kind::Float
                    } else {
                        Kind::Double
                    };
                    let (dim, gram) = power::conv_gram(&op, kind);
                    let it = IterOptions {
                        tol: opts.tol,
                        max_iter: opts.max_iter,
                        seed: opts.seed,
                        want_min: opts.zero_lower,
                        device: opts.device,
                    };
                    let e = power::lanczos_extremes(dim, &*gram, &it)?;
                    let secs = t1.elapsed().as_secs_f64();
                    timings.push((l.name.clone(), "iterative-zero".into(), secs));
                    let lower = (opts.zero_lower && e.converged_min).then_some(e.sigma_min);
                    rows.push(row(
                        "conv2d",
                        ws.clone(),
                        st.clone(),
                        lower,
                        e.sigma_max,
                        "iterative-zero",
                    ));
                    rows.push(row("conv2d", ws, st, None, bu, "fft-zero-bound"));
                    if e.converged_max {
                        prod_exact *= e.sigma_max;
                    } else {
                        exact_ok = false;
                    }
                    iterative.push(IterRecord {
                        layer: l.name.clone(),
                        dimension: dim,
                        precision: format!("{kind:?}"),
                        seconds: secs,
                        extremes: e,
                    });
                } else {
                    exact_ok = false;
                }
            }
            Op::Linear { weight, .. } => {
                let t0 = std::time::Instant::now();
                let (s, method) = dense::linear_singular_values(weight, opts.svd_limit)?;
                timings.push((l.name.clone(), method.into(), t0.elapsed().as_secs_f64()));
                let n = s.size()[0];
                let (lo, up) = (s.double_value(&[n - 1]), s.double_value(&[0]));
                prod_exact *= up;
                prod_fft *= up;
                rows.push(row(
                    "linear",
                    fmt_shape(&weight.size()),
                    "".into(),
                    Some(lo),
                    up,
                    method,
                ));
                spectra.push(Spectrum {
                    layer: l.name.clone(),
                    method: method.into(),
                    count: n,
                    values: subsample(&s, 2000)?,
                });
            }
            Op::MaxPool {
                kernel,
                stride,
                padding,
                dilation,
            } => {
                let (f, c) = pool::max_pool_lipschitz(
                    [l.input_shape[1], l.input_shape[2]],
                    *kernel,
                    *stride,
                    *padding,
                    *dilation,
                    [l.output_shape[1], l.output_shape[2]],
                );
                prod_exact *= f;
                prod_fft *= f;
                let st = format!("{}", stride[0]);
                let ws = format!("window {}x{} (max cover {c})", kernel[0], kernel[1]);
                rows.push(row("max_pool2d", ws, st, Some(0.0), f, "window-cover"));
            }
            Op::AvgPool {
                kernel,
                stride,
                padding,
            } => {
                let ph = pool::avg_matrix_1d(
                    l.input_shape[1],
                    kernel[0],
                    stride[0],
                    padding[0],
                    l.output_shape[1],
                );
                let pw = pool::avg_matrix_1d(
                    l.input_shape[2],
                    kernel[1],
                    stride[1],
                    padding[1],
                    l.output_shape[2],
                );
                let (lo, up) = pool::separable_bounds(&ph, &pw)?;
                prod_exact *= up;
                prod_fft *= up;
                rows.push(row(
                    "avg_pool2d",
                    format!("window {}x{}", kernel[0], kernel[1]),
                    stride[0].to_string(),
                    Some(lo),
                    up,
                    "separable-svd",
                ));
            }
            Op::AdaptiveAvgPool { output } => {
                let ph = pool::adaptive_matrix_1d(l.input_shape[1], output[0]);
                let pw = pool::adaptive_matrix_1d(l.input_shape[2], output[1]);
                let (lo, up) = pool::separable_bounds(&ph, &pw)?;
                prod_exact *= up;
                prod_fft *= up;
                rows.push(row(
                    "adaptive_avg_pool2d",
                    format!("output {}x{}", output[0], output[1]),
                    "".into(),
                    Some(lo),
                    up,
                    "separable-svd",
                ));
            }
            Op::Relu => rows.push(row(
                "relu",
                "".into(),
                "".into(),
                Some(0.0),
                1.0,
                "analytic",
            )),
            Op::Sigmoid => {
                prod_exact *= 0.25;
                prod_fft *= 0.25;
                rows.push(row(
                    "sigmoid",
                    "".into(),
                    "".into(),
                    Some(0.0),
                    0.25,
                    "analytic",
                ))
            }
            Op::Tanh => rows.push(row(
                "tanh",
                "".into(),
                "".into(),
                Some(0.0),
                1.0,
                "analytic",
            )),
            Op::Lrn {
                size,
                alpha,
                beta,
                k,
            } => {
                let (_, up) = pool::lrn_lipschitz(*size, *beta, *k);
                prod_exact *= up;
                prod_fft *= up;
                rows.push(row(
                    "local_response_norm",
                    format!("size {size}, alpha {alpha}, beta {beta}, k {k}"),
                    "".into(),
                    Some(0.0),
                    up,
                    "analytic-bound",
                ))
            }
            Op::Dropout | Op::Flatten => {}
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(Analysis {
        rows,
        spectra,
        iterative,
        product_exact: exact_ok.then_some(prod_exact),
        product_fft_bound: prod_fft,
        timings,
    })
}

/// The largest ratio `‖φ(x + r) − φ(x)‖ / ‖r‖` found by gradient ascent (Adam) over `x` and the
/// direction of `r` (radius fixed at RMS 0.01 per coordinate), from `starts` random `x ∈ [0, 1]ⁿ`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Empirical {
    pub ratio: f64,
    pub radius: f64,
    pub steps: usize,
    pub starts: i64,
}

/// Gradient ascent on the Lipschitz ratio of the whole network (φ = logits, eval mode).
pub fn empirical_ratio(
    net: &Network,
    steps: usize,
    starts: i64,
    seed: i64,
    device: tch::Device,
) -> Result<Empirical> {
    tch::manual_seed(seed);
    let mut shape = vec![starts];
    shape.extend_from_slice(&net.input_shape);
    let n: i64 = net.input_shape.iter().product();
    let radius = 0.01 * (n as f64).sqrt();
    let opts = (Kind::Float, device);
    let x = Tensor::rand(shape.as_slice(), opts).set_requires_grad(true);
    let u = Tensor::randn(shape.as_slice(), opts).set_requires_grad(true);
    let vars = [&x, &u];
    let mut m: Vec<Tensor> = vars.iter().map(|v| v.zeros_like()).collect();
    let mut v2: Vec<Tensor> = vars.iter().map(|v| v.zeros_like()).collect();
    let (b1, b2, lr, eps) = (0.9f64, 0.999f64, 0.01f64, 1e-8f64);
    let mut best = 0.0f64;
    let dims: Vec<i64> = (1..shape.len() as i64).collect();
    for t in 1..=steps.max(1) {
        for v in vars {
            let mut g = v.grad();
            if g.defined() {
                let _ = g.f_zero_()?;
            }
        }
        let un = u.norm_scalaropt_dim(2, dims.as_slice(), true); // [B, 1, ..]
        let r = &u / &un * radius;
        let d = net.forward(&(&x + &r))? - net.forward(&x)?; // [B, classes]
        let ratio = d
            .flatten(1, -1)
            .norm_scalaropt_dim(2, [1].as_slice(), false)
            / radius; // [B]
        best = best.max(ratio.max().double_value(&[]));
        if steps == 0 {
            break;
        }
        let loss = -(ratio + 1e-30).log().sum(Kind::Float);
        loss.backward();
        tch::no_grad(|| {
            for (i, v) in vars.iter().enumerate() {
                let g = v.grad();
                m[i] = &m[i] * b1 + &g * (1.0 - b1);
                v2[i] = &v2[i] * b2 + g.square() * (1.0 - b2);
                let mh = &m[i] / (1.0 - b1.powi(t as i32));
                let vh = &v2[i] / (1.0 - b2.powi(t as i32));
                let step = mh / (vh.sqrt() + eps) * lr;
                let mut vv = (*v).shallow_clone();
                let _ = vv.f_sub_(&step);
            }
        });
    }
    Ok(Empirical {
        ratio: best,
        radius,
        steps,
        starts,
    })
}
