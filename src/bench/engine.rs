//! Benchmark of the batched L-BFGS-B engine (§4.1 attack shape: B problems, n = 784, bounds [0, 1]):
//! engine overhead per iteration (everything but the objective) against the cost of one forward+backward
//! of the paper's 784-100-100-10 sigmoid network on the same batch (what one attack evaluation costs).

use crate::bench::median;
use crate::optim::{minimize, BatchObjective, Bounds, IterInfo, LbfgsbSettings, Observer};
use crate::Result;
use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Numbers measured by [`bench_engine`] (seconds).
#[derive(Clone, Debug, serde::Serialize)]
pub struct EngineBench {
    pub batch: i64,
    pub n: i64,
    pub history: usize,
    pub device: String,
    pub iterations: usize,
    pub evaluations_per_problem: f64,
    /// Wall time of `minimize`, objective included.
    pub total_s: f64,
    /// Time spent inside the objective.
    pub objective_s: f64,
    /// Median over the iterations after the memory is full (iteration > m) of (wall time of the
    /// iteration - objective time in it): the engine's own cost per iteration.
    pub engine_per_iter_s: f64,
    /// Median objective time per iteration (same iterations).
    pub objective_per_iter_s: f64,
    /// One forward+backward (gradient w.r.t. the input) of a 784-100-100-10 sigmoid MLP on [B, 784].
    pub mlp_fwd_bwd_s: f64,
}

/// Chained Rosenbrock in the box [-0.5, 0.8]^n (never converges within a few iterations), timed.
struct TimedRosen {
    secs: Rc<Cell<f64>>,
}

/// Records (wall clock, objective seconds so far) after every iteration.
struct Clock {
    start: Instant,
    obj: Rc<Cell<f64>>,
    marks: Vec<(f64, f64)>,
}

impl Observer for Clock {
    fn observe(&mut self, _info: &IterInfo) -> bool {
        self.marks
            .push((self.start.elapsed().as_secs_f64(), self.obj.get()));
        true
    }
}

impl BatchObjective for TimedRosen {
    fn eval(&mut self, x: &Tensor, _idx: &Tensor) -> Result<(Tensor, Tensor)> {
        let t0 = Instant::now();
        let n = x.size()[1];
        let (xa, xb) = (x.narrow(1, 0, n - 1), x.narrow(1, 1, n - 1)); // [b, n-1]
        let t = &xb - xa.square();
        let one_m = xa.neg() + 1.0;
        let f = (t.square() * 100.0 + one_m.square()).sum_dim_intlist(-1, false, None::<Kind>);
        let g = x.zeros_like(); // [b, n]
        let _ = g
            .narrow(1, 0, n - 1)
            .f_add_(&(&xa * &t * -400.0 - one_m * 2.0))?;
        let _ = g.narrow(1, 1, n - 1).f_add_(&(&t * 200.0))?;
        let _ = f.f_sum(None::<Kind>)?.f_double_value(&[])?; // synchronise
        self.secs.set(self.secs.get() + t0.elapsed().as_secs_f64());
        Ok((f, g))
    }
}

/// Time one fwd+bwd of a 784-100-100-10 sigmoid MLP (cross-entropy, gradient w.r.t. the input).
fn mlp_fwd_bwd(b: i64, kind: Kind, device: Device, reps: usize) -> Result<f64> {
    let opt = (kind, device);
    let w1 = Tensor::f_randn([100, 784], opt)? * 0.05;
    let w2 = Tensor::f_randn([100, 100], opt)? * 0.1;
    let w3 = Tensor::f_randn([10, 100], opt)? * 0.1;
    let (b1, b2, b3) = (
        Tensor::f_zeros([100], opt)?,
        Tensor::f_zeros([100], opt)?,
        Tensor::f_zeros([10], opt)?,
    );
    let x = Tensor::f_rand([b, 784], opt)?;
    let y = Tensor::f_randint(10, [b], (Kind::Int64, device))?;
    let mut best = f64::INFINITY;
    for _ in 0..reps + 1 {
        let t0 = Instant::now();
        let xr = x.f_detach()?.f_set_requires_grad(true)?;
        let h = xr.f_linear(&w1, Some(&b1))?.f_sigmoid()?;
        let h = h.f_linear(&w2, Some(&b2))?.f_sigmoid()?;
        let z = h.f_linear(&w3, Some(&b3))?;
        let loss = z.f_cross_entropy_loss::<Tensor>(&y, None, tch::Reduction::Sum, -100, 0.0)?;
        loss.f_backward()?;
        let _ = xr.f_grad()?.f_sum(None::<Kind>)?.f_double_value(&[])?;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Run `iters` iterations of the engine on `b` problems of size `n` (f32) and compare its overhead per
/// iteration with one MLP fwd+bwd on the same batch.
pub fn bench_engine(
    b: i64,
    n: i64,
    history: usize,
    iters: usize,
    device: Device,
) -> Result<EngineBench> {
    let kind = Kind::Float;
    let x0 = (Tensor::f_rand([b, n], (kind, device))? * 1.3 - 0.5).f_contiguous()?;
    let settings = LbfgsbSettings {
        history,
        max_iter: iters,
        pgtol: 0.0,
        factr: 0.0,
        ..LbfgsbSettings::default()
    };
    let secs = Rc::new(Cell::new(0.0));
    let mut obj = TimedRosen { secs: secs.clone() };
    let bounds = Bounds::Scalar {
        lower: -0.5,
        upper: 0.8,
    };
    let t0 = Instant::now();
    let mut clock = Clock {
        start: t0,
        obj: secs.clone(),
        marks: vec![],
    };
    let sol = minimize(&mut obj, &x0, &bounds, &settings, Some(&mut clock))?;
    let total = t0.elapsed().as_secs_f64();
    let steady: Vec<(f64, f64)> = clock
        .marks
        .windows(2)
        .skip(history)
        .map(|w| (w[1].0 - w[0].0, w[1].1 - w[0].1))
        .collect();
    let engine = median(&steady.iter().map(|(t, o)| t - o).collect::<Vec<_>>());
    let objective = median(&steady.iter().map(|(_, o)| *o).collect::<Vec<_>>());
    let its = sol.iterations.iter().copied().max().unwrap_or(0).max(1);
    let evals = sol.evaluations.iter().sum::<usize>() as f64 / b as f64;
    Ok(EngineBench {
        batch: b,
        n,
        history,
        device: format!("{device:?}"),
        iterations: its,
        evaluations_per_problem: evals,
        total_s: total,
        objective_s: secs.get(),
        engine_per_iter_s: engine,
        objective_per_iter_s: objective,
        mlp_fwd_bwd_s: mlp_fwd_bwd(b, kind, device, 3)?,
    })
}
