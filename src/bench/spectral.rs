//! Benchmark of the spectral analysis (§4.3, Table 5) on AlexNet at 224×224: the speed targets
//! (≤ 30 s for all bounds, ≤ 60 s for the exact zero-padded conv norms) and Lanczos against plain power
//! iteration at the same residual tolerance. Results go to `docs/benchmarks.md`.

use crate::bench::timed;
use crate::spectral::network::{self, Network, Op};
use crate::spectral::power::{self, IterOptions};
use crate::spectral::{analyse, conv, AnalyseOptions, Analysis, Mode};
use crate::Result;

/// One conv layer: (name, Lanczos steps, Lanczos s, power steps, power s, power converged).
pub type LanczosVsPower = (String, usize, f64, usize, f64, bool);

/// Timings of [`bench()`] (seconds) on one model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub load_s: f64,
    /// All layers, both bounds: FFT (circular) for convs, SVD/Gram eigenvalues for linear layers.
    pub fast_all_layers_s: f64,
    /// Exact zero-padded conv norms (Lanczos, upper only), all conv layers.
    pub zero_upper_s: f64,
    /// Exact zero-padded conv bounds, upper and lower (Lanczos, `max_iter` steps at most).
    pub zero_both_s: f64,
    /// Per conv layer: (name, Lanczos steps, Lanczos s, power steps, power s, power converged).
    pub lanczos_vs_power: Vec<LanczosVsPower>,
    pub per_layer: Vec<(String, String, f64)>,
}

/// Seconds of an analysis spent outside the Lanczos conv computations (linear layers, pooling).
fn non_iterative_s(a: &Analysis) -> f64 {
    a.timings
        .iter()
        .filter(|x| x.1 != "iterative-zero")
        .map(|x| x.2)
        .sum()
}

/// Benchmark of the speed targets on `model` (TorchScript AlexNet or any loadable model) at `input_shape`,
/// with Lanczos at residual tolerance `tol` against power iteration capped at `power_cap` steps.
pub fn bench(
    model: &std::path::Path,
    input_shape: &[i64],
    tol: f64,
    power_cap: usize,
) -> Result<BenchReport> {
    let (loaded, load_s) =
        timed(|| network::load(model, None, Some(input_shape), tch::Device::Cpu));
    let (net, _) = loaded?;
    let base = AnalyseOptions {
        tol,
        ..Default::default()
    };
    let circular = AnalyseOptions {
        mode: Mode::Circular,
        ..base.clone()
    };
    let (fast, fast_all_layers_s) = timed(|| analyse(&net, &circular));
    let fast = fast?;
    eprintln!(
        "bench: all layers, FFT + SVD/Gram: {fast_all_layers_s:.1} s; per layer {:?}",
        fast.timings
    );
    let zero_upper = AnalyseOptions {
        mode: Mode::Zero,
        zero_lower: false,
        ..base.clone()
    };
    let (zero, secs) = timed(|| analyse(&net, &zero_upper));
    let zero = zero?;
    let zero_upper_s = secs - non_iterative_s(&zero);
    eprintln!(
        "bench: zero-padded conv norms (Lanczos): {zero_upper_s:.1} s; {:?}",
        zero.iterative
            .iter()
            .map(|r| (
                &r.layer,
                r.extremes.iterations,
                r.seconds,
                r.extremes.sigma_max
            ))
            .collect::<Vec<_>>()
    );
    let zero_both = AnalyseOptions {
        mode: Mode::Zero,
        zero_lower: true,
        ..base
    };
    let (both, secs) = timed(|| analyse(&net, &zero_both));
    let both = both?;
    let zero_both_s = secs - non_iterative_s(&both);
    eprintln!(
        "bench: zero-padded upper+lower: {zero_both_s:.1} s; {:?}",
        both.iterative
            .iter()
            .map(|r| (&r.layer, r.extremes.iterations, r.extremes.converged_min))
            .collect::<Vec<_>>()
    );
    let lanczos_vs_power = lanczos_vs_power(&net, &zero, tol, power_cap)?;
    let mut per_layer = fast.timings.clone();
    per_layer.extend(
        zero.timings
            .iter()
            .filter(|x| x.1 == "iterative-zero")
            .cloned(),
    );
    Ok(BenchReport {
        load_s,
        fast_all_layers_s,
        zero_upper_s,
        zero_both_s,
        lanczos_vs_power,
        per_layer,
    })
}

/// Plain power iteration on each conv layer's Gram operator (same precision and tolerance as the
/// Lanczos runs recorded in `zero`), beside the Lanczos steps and seconds.
fn lanczos_vs_power(
    net: &Network,
    zero: &Analysis,
    tol: f64,
    power_cap: usize,
) -> Result<Vec<LanczosVsPower>> {
    let mut lvp = Vec::new();
    let _g = tch::no_grad_guard();
    for (l, rec) in net
        .layers
        .iter()
        .filter(|l| l.op.kind() == "conv2d")
        .zip(&zero.iterative)
    {
        let Op::Conv { weight, geom, .. } = &l.op else {
            continue;
        };
        let input = [l.input_shape[0], l.input_shape[1], l.input_shape[2]];
        let op = conv::ConvOp::new(weight, *geom, input)?;
        let kind = if rec.precision == "Float" {
            tch::Kind::Float
        } else {
            tch::Kind::Double
        };
        let (dim, gram) = power::conv_gram(&op, kind);
        let opts = IterOptions {
            tol,
            max_iter: power_cap,
            want_min: false,
            ..Default::default()
        };
        let (p, secs) = timed(|| power::power_iteration(dim, &*gram, &opts));
        let p = p?;
        eprintln!(
            "bench: {} power {} steps {secs:.1} s (converged {}) vs Lanczos {} steps {:.1} s",
            l.name, p.iterations, p.converged_max, rec.extremes.iterations, rec.seconds
        );
        lvp.push((
            l.name.clone(),
            rec.extremes.iterations,
            rec.seconds,
            p.iterations,
            secs,
            p.converged_max,
        ));
    }
    Ok(lvp)
}
