//! Per-layer frame bounds of a whole network (§4.3, Table 5) and the product bound: a walk over the layers,
//! one step per layer kind (conv by FFT and/or Lanczos, linear by SVD/Gram eigenvalues, pooling and
//! activations by their exact or proven ℓ₂ Lipschitz factors), each adding its rows to `bounds.csv`.

use super::conv::{self, ConvGeom, ConvOp};
use super::dense;
use super::network::{fmt_shape, NetLayer, Network, Op};
use super::pool;
use super::power::{self, IterOptions};
use crate::results::spectral::{Analysis, IterRecord, Mode, Row, Spectrum};
use crate::Result;
use std::time::Instant;
use tch::{Kind, Tensor};

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

/// Points of each spectrum kept for `spectrum.png`.
const SPECTRUM_POINTS: i64 = 2000;

/// At most `max_points` values of the descending spectrum `s` [n], evenly spaced by index.
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

/// The state of the layer walk: what is collected so far and the two running products.
struct Walk {
    rows: Vec<Row>,
    spectra: Vec<Spectrum>,
    iterative: Vec<IterRecord>,
    timings: Vec<(String, String, f64)>,
    /// Product with convs by their exact zero-padded norm; `exact_ok` false when one is missing.
    prod_exact: f64,
    exact_ok: bool,
    /// Product with convs by the FFT bound on the padded torus.
    prod_fft: f64,
}

impl Walk {
    /// A layer whose upper bound enters both products.
    fn factor(&mut self, upper: f64) {
        self.prod_exact *= upper;
        self.prod_fft *= upper;
    }

    /// Adds a row of layer `l`.
    fn row(
        &mut self,
        l: &NetLayer,
        kind: &str,
        (weight_shape, stride): (String, String),
        (lower, upper): (Option<f64>, f64),
        method: &str,
    ) {
        self.rows.push(Row {
            layer: l.name.clone(),
            kind: kind.to_string(),
            weight_shape,
            stride,
            input_shape: fmt_shape(&l.input_shape),
            lower,
            upper,
            method: method.to_string(),
        });
    }

    /// Keeps a subsample of layer `l`'s spectrum `s` (descending) for the plot.
    fn spectrum(&mut self, l: &NetLayer, method: &str, s: &Tensor) -> Result<()> {
        self.spectra.push(Spectrum {
            layer: l.name.clone(),
            method: method.into(),
            count: s.size()[0],
            values: subsample(s, SPECTRUM_POINTS)?,
        });
        Ok(())
    }
}

/// Frame bounds of every layer of `net`.
pub fn analyse(net: &Network, opts: &AnalyseOptions) -> Result<Analysis> {
    let _g = tch::no_grad_guard();
    let mut w = Walk {
        rows: Vec::new(),
        spectra: Vec::new(),
        iterative: Vec::new(),
        timings: Vec::new(),
        prod_exact: 1.0,
        exact_ok: true,
        prod_fft: 1.0,
    };
    let pb = crate::progress::bar(net.layers.len() as u64, "spectral", "layer");
    for l in &net.layers {
        layer_step(&mut w, l, opts)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(Analysis {
        rows: w.rows,
        spectra: w.spectra,
        iterative: w.iterative,
        product_exact: w.exact_ok.then_some(w.prod_exact),
        product_fft_bound: w.prod_fft,
        timings: w.timings,
    })
}

/// One layer of the walk: its rows and its factor in the products.
fn layer_step(w: &mut Walk, l: &NetLayer, opts: &AnalyseOptions) -> Result<()> {
    let none = || (String::new(), String::new());
    match &l.op {
        Op::Conv { weight, geom, .. } => conv_step(w, l, weight, geom, opts)?,
        Op::Linear { weight, .. } => linear_step(w, l, weight, opts)?,
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
            w.factor(f);
            let ws = format!("window {}x{} (max cover {c})", kernel[0], kernel[1]);
            let st = format!("{}", stride[0]);
            w.row(l, "max_pool2d", (ws, st), (Some(0.0), f), "window-cover");
        }
        Op::AvgPool {
            kernel,
            stride,
            padding,
        } => avg_pool_step(w, l, *kernel, *stride, *padding)?,
        Op::AdaptiveAvgPool { output } => {
            let ph = pool::adaptive_matrix_1d(l.input_shape[1], output[0]);
            let pw = pool::adaptive_matrix_1d(l.input_shape[2], output[1]);
            let (lo, up) = pool::separable_bounds(&ph, &pw)?;
            w.factor(up);
            let ws = format!("output {}x{}", output[0], output[1]);
            let kind = "adaptive_avg_pool2d";
            w.row(
                l,
                kind,
                (ws, String::new()),
                (Some(lo), up),
                "separable-svd",
            );
        }
        Op::Relu => w.row(l, "relu", none(), (Some(0.0), 1.0), "analytic"),
        Op::Sigmoid => {
            w.factor(0.25);
            w.row(l, "sigmoid", none(), (Some(0.0), 0.25), "analytic");
        }
        Op::Tanh => w.row(l, "tanh", none(), (Some(0.0), 1.0), "analytic"),
        Op::Lrn {
            size,
            alpha,
            beta,
            k,
        } => {
            let (_, up) = pool::lrn_lipschitz(*size, *beta, *k);
            w.factor(up);
            let ws = format!("size {size}, alpha {alpha}, beta {beta}, k {k}");
            let kind = "local_response_norm";
            w.row(
                l,
                kind,
                (ws, String::new()),
                (Some(0.0), up),
                "analytic-bound",
            );
        }
        Op::Dropout | Op::Flatten => {}
    }
    Ok(())
}

/// A conv layer: the FFT bound on the padded torus (product), the circular bounds by FFT (unless `zero`
/// mode) and the exact zero-padded bounds by Lanczos (unless `circular` mode).
fn conv_step(
    w: &mut Walk,
    l: &NetLayer,
    weight: &Tensor,
    geom: &ConvGeom,
    opts: &AnalyseOptions,
) -> Result<()> {
    let ws = fmt_shape(&weight.size());
    let st = if geom.stride[0] == geom.stride[1] {
        geom.stride[0].to_string()
    } else {
        format!("{}x{}", geom.stride[0], geom.stride[1])
    };
    let hw = [l.input_shape[1], l.input_shape[2]];
    let t0 = Instant::now();
    let (_, bound, _) = conv::fft_bounds(weight, geom, conv::zero_bound_torus(hw, geom))?;
    w.prod_fft *= bound;
    if opts.mode != Mode::Zero {
        let (lo, up, s) = conv::fft_bounds(weight, geom, conv::circular_torus(hw, geom))?;
        let secs = t0.elapsed().as_secs_f64();
        w.timings
            .push((l.name.clone(), "fft-circular".into(), secs));
        let shape = (ws.clone(), st.clone());
        w.row(l, "conv2d", shape, (Some(lo), up), "fft-circular");
        w.spectrum(l, "fft-circular", &s)?;
    }
    if opts.mode != Mode::Circular {
        zero_padded_step(w, l, weight, geom, opts, (ws, st, bound))?;
    } else {
        w.exact_ok = false;
    }
    Ok(())
}

/// The zero-padded conv (what torch applies) by Lanczos on its Gram operator, and the FFT bound row;
/// `shape` is (weight shape, stride, FFT bound on the padded torus).
fn zero_padded_step(
    w: &mut Walk,
    l: &NetLayer,
    weight: &Tensor,
    geom: &ConvGeom,
    opts: &AnalyseOptions,
    (ws, st, bound): (String, String, f64),
) -> Result<()> {
    let t1 = Instant::now();
    let input = [l.input_shape[0], l.input_shape[1], l.input_shape[2]];
    let op = ConvOp::new(weight, *geom, input)?;
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
    w.timings
        .push((l.name.clone(), "iterative-zero".into(), secs));
    let lower = (opts.zero_lower && e.converged_min).then_some(e.sigma_min);
    let shape = (ws.clone(), st.clone());
    w.row(l, "conv2d", shape, (lower, e.sigma_max), "iterative-zero");
    w.row(l, "conv2d", (ws, st), (None, bound), "fft-zero-bound");
    if e.converged_max {
        w.prod_exact *= e.sigma_max;
    } else {
        w.exact_ok = false;
    }
    w.iterative.push(IterRecord {
        layer: l.name.clone(),
        dimension: dim,
        precision: format!("{kind:?}"),
        seconds: secs,
        extremes: e,
    });
    Ok(())
}

/// A linear layer: all singular values of its weight (SVD or Gram eigenvalues).
fn linear_step(w: &mut Walk, l: &NetLayer, weight: &Tensor, opts: &AnalyseOptions) -> Result<()> {
    let t0 = Instant::now();
    let (s, method) = dense::linear_singular_values(weight, opts.svd_limit)?;
    let secs = t0.elapsed().as_secs_f64();
    w.timings.push((l.name.clone(), method.into(), secs));
    let n = s.size()[0];
    let (lo, up) = (s.double_value(&[n - 1]), s.double_value(&[0]));
    w.factor(up);
    let shape = (fmt_shape(&weight.size()), String::new());
    w.row(l, "linear", shape, (Some(lo), up), method);
    w.spectrum(l, method, &s)
}

/// Average pooling (`count_include_pad`): exact bounds of the separable operator `P_h ⊗ P_w`.
fn avg_pool_step(
    w: &mut Walk,
    l: &NetLayer,
    kernel: [i64; 2],
    stride: [i64; 2],
    padding: [i64; 2],
) -> Result<()> {
    let (input, output) = (&l.input_shape, &l.output_shape);
    let ph = pool::avg_matrix_1d(input[1], kernel[0], stride[0], padding[0], output[1]);
    let pw = pool::avg_matrix_1d(input[2], kernel[1], stride[1], padding[1], output[2]);
    let (lo, up) = pool::separable_bounds(&ph, &pw)?;
    w.factor(up);
    let shape = (
        format!("window {}x{}", kernel[0], kernel[1]),
        stride[0].to_string(),
    );
    w.row(l, "avg_pool2d", shape, (Some(lo), up), "separable-svd");
    Ok(())
}
