//! The batched L-BFGS-B engine (src/optim) against scipy's `fmin_l_bfgs_b`: fixtures made by
//! `scripts/ref_lbfgsb.py` (problem data + scipy's minimisers at tight tolerances).

use blindspot::optim::{
    minimize, BatchObjective, Bounds, IterInfo, LbfgsbSettings, Observer, OptimError, Termination,
};
use blindspot::Error;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

fn fixture(name: &str) -> HashMap<String, Tensor> {
    let path = format!(
        "{}/tests/fixtures/optim/{name}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    Tensor::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (run scripts/ref_lbfgsb.py)"))
        .into_iter()
        .collect()
}

fn vec64(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

/// Records every call: which problems were evaluated, and whether any x left the box.
#[derive(Default)]
struct Log {
    calls: Vec<Vec<i64>>,
    outside: f64,
    box_: Option<(Tensor, Tensor)>, // [B, n] each
}

impl Log {
    /// A log that also checks every x against the box (lower, upper) [B, n].
    fn boxed(bounds: (Tensor, Tensor)) -> Self {
        let box_ = Some(bounds);
        Log {
            box_,
            ..Log::default()
        }
    }
    fn check(&mut self, x: &Tensor, idx: &Tensor) {
        let ids = Vec::<i64>::try_from(&idx.to_device(Device::Cpu)).unwrap();
        if let Some((lo, hi)) = &self.box_ {
            let lo = lo.index_select(0, idx).to_kind(x.kind());
            let hi = hi.index_select(0, idx).to_kind(x.kind());
            let below = (&lo - x).clamp_min(0.0).max().double_value(&[]);
            let above = (x - &hi).clamp_min(0.0).max().double_value(&[]);
            self.outside = self.outside.max(below).max(above);
        }
        self.calls.push(ids);
    }
    fn count(&self, i: i64) -> usize {
        self.calls.iter().flatten().filter(|&&j| j == i).count()
    }
}

/// f = 0.5 x'Ax + b'x.
struct Quad {
    a: Tensor, // [B, n, n]
    b: Tensor, // [B, n]
    log: Log,
}

impl BatchObjective for Quad {
    fn eval(&mut self, x: &Tensor, idx: &Tensor) -> blindspot::Result<(Tensor, Tensor)> {
        self.log.check(x, idx);
        let a = self.a.index_select(0, idx).to_kind(x.kind());
        let b = self.b.index_select(0, idx).to_kind(x.kind());
        let ax = a.bmm(&x.unsqueeze(2)).squeeze_dim(2); // [b, n]
        let f = (x * (&ax * 0.5 + &b)).sum_dim_intlist(-1, false, None::<Kind>);
        Ok((f, ax + b))
    }
}

/// Rosenbrock, any n >= 2.
struct Rosen {
    log: Log,
}

impl BatchObjective for Rosen {
    fn eval(&mut self, x: &Tensor, idx: &Tensor) -> blindspot::Result<(Tensor, Tensor)> {
        self.log.check(x, idx);
        let n = x.size()[1];
        let (xa, xb) = (x.narrow(1, 0, n - 1), x.narrow(1, 1, n - 1));
        let t = &xb - xa.square(); // [b, n-1]
        let f =
            (t.square() * 100.0 + (-&xa + 1.0).square()).sum_dim_intlist(-1, false, None::<Kind>);
        let g = x.zeros_like();
        let _ = g
            .narrow(1, 0, n - 1)
            .g_add_(&(&xa * &t * -400.0 - (-&xa + 1.0) * 2.0));
        let _ = g.narrow(1, 1, n - 1).g_add_(&(&t * 200.0));
        Ok((f, g))
    }
}

/// Mean cross-entropy of softmax(X W + b) + lam |W|^2; params [W (d x k row-major), b (k)].
struct LogReg {
    x: Tensor, // [B, N, d]
    y: Tensor, // [B, N]
    lam: f64,
    k: i64,
    log: Log,
}

impl BatchObjective for LogReg {
    fn eval(&mut self, p: &Tensor, idx: &Tensor) -> blindspot::Result<(Tensor, Tensor)> {
        self.log.check(p, idx);
        let (b, d, k) = (p.size()[0], self.x.size()[2], self.k);
        let p = p.detach().set_requires_grad(true);
        let w = p.narrow(1, 0, d * k).view([b, d, k]);
        let bias = p.narrow(1, d * k, k).unsqueeze(1); // [b, 1, k]
        let x = self.x.index_select(0, idx).to_kind(p.kind());
        let y = self.y.index_select(0, idx); // [b, N]
        let z = x.bmm(&w) + bias; // [b, N, k]
        let logp = z.log_softmax(-1, None::<Kind>);
        let nll = -logp
            .gather(2, &y.unsqueeze(2), false)
            .squeeze_dim(2)
            .mean_dim(-1, false, None::<Kind>); // [b]
        let f = nll
            + w.square()
                .sum_dim_intlist([1i64, 2].as_slice(), false, None::<Kind>)
                * self.lam;
        f.sum(None::<Kind>).backward();
        Ok((f.detach(), p.grad().detach()))
    }
}

impl Quad {
    /// The quadratics of a fixture (`A`, `b`), logging calls into `log`.
    fn of(fx: &HashMap<String, Tensor>, log: Log) -> Self {
        let (a, b) = (fx["A"].shallow_clone(), fx["b"].shallow_clone());
        Quad { a, b, log }
    }
}

impl LogReg {
    /// The regression problems of a fixture (`X`, `y`, `lam`; 5 classes), logging calls into `log`.
    fn of(fx: &HashMap<String, Tensor>, log: Log) -> Self {
        let (x, y) = (fx["X"].to_kind(Kind::Double), fx["y"].shallow_clone());
        let lam = fx["lam"].double_value(&[0]);
        LogReg {
            x,
            y,
            lam,
            k: 5,
            log,
        }
    }
}

fn tight() -> LbfgsbSettings {
    LbfgsbSettings {
        pgtol: 1e-10,
        factr: 10.0,
        max_iter: 10000,
        max_evals: 100000,
        ..LbfgsbSettings::default()
    }
}

/// Same minimiser as scipy for every problem: f within 1e-6 relative (of max(|f|, 1)), same active set.
fn assert_matches(
    name: &str,
    fx: &HashMap<String, Tensor>,
    sol: &blindspot::optim::Solution,
    x_tol: f64,
) {
    let f = vec64(&sol.f);
    let f_ref = vec64(&fx["f_ref"]);
    let b = f_ref.len();
    assert_eq!(f.len(), b);
    eprintln!(
        "{name}: iterations {:?}, evaluations {:?}, {:?}",
        sol.iterations, sol.evaluations, sol.termination
    );
    for i in 0..b {
        let rel = (f[i] - f_ref[i]).abs() / f_ref[i].abs().max(1.0);
        assert!(
            rel <= 1e-6,
            "{name}[{i}]: f = {} vs scipy {} (rel {rel:e}), {:?} after {} it",
            f[i],
            f_ref[i],
            sol.termination[i],
            sol.iterations[i]
        );
    }
    if x_tol > 0.0 {
        let dx = (&sol.x.to_kind(Kind::Double) - &fx["x_ref"])
            .abs()
            .max()
            .double_value(&[]);
        assert!(dx <= x_tol, "{name}: max |x - x_scipy| = {dx:e}");
    }
    if let Some(at_lo) = fx.get("at_lower") {
        let (lo, hi) = bounds_of(fx, sol.x.size()[0], sol.x.size()[1]);
        let x = sol.x.to_kind(Kind::Double);
        let ours_lo = x.le_tensor(&(&lo + 1e-10)).to_kind(Kind::Uint8);
        let ours_hi = x.ge_tensor(&(&hi - 1e-10)).to_kind(Kind::Uint8);
        for i in 0..b {
            let a = vec64(&ours_lo.get(i as i64));
            let r = vec64(&at_lo.get(i as i64));
            assert_eq!(a, r, "{name}[{i}]: lower active set differs");
            let a = vec64(&ours_hi.get(i as i64));
            let r = vec64(&fx["at_upper"].get(i as i64));
            assert_eq!(a, r, "{name}[{i}]: upper active set differs");
        }
    }
}

/// [B, n] bounds of a fixture (scalar-box fixtures have none stored).
fn bounds_of(fx: &HashMap<String, Tensor>, b: i64, n: i64) -> (Tensor, Tensor) {
    match (fx.get("lower"), fx.get("upper")) {
        (Some(l), Some(u)) => (
            l.to_kind(Kind::Double).expand([b, n], false).contiguous(),
            u.to_kind(Kind::Double).expand([b, n], false).contiguous(),
        ),
        _ => (
            Tensor::full([b, n], -1.5, (Kind::Double, Device::Cpu)),
            Tensor::full([b, n], 0.8, (Kind::Double, Device::Cpu)),
        ),
    }
}

fn tensor_bounds(fx: &HashMap<String, Tensor>) -> Bounds {
    Bounds::Tensors {
        lower: fx["lower"].shallow_clone(),
        upper: fx["upper"].shallow_clone(),
    }
}

#[test]
fn quadratics_with_many_active_bounds_match_scipy() {
    let fx = fixture("quad");
    let x0 = fx["x0"].shallow_clone();
    let (b, n) = (x0.size()[0], x0.size()[1]);
    let mut obj = Quad::of(&fx, Log::boxed(bounds_of(&fx, b, n)));
    let sol = minimize(&mut obj, &x0, &tensor_bounds(&fx), &tight(), None).unwrap();
    assert_matches("quad", &fx, &sol, 1e-6);
    assert_eq!(obj.log.outside, 0.0, "an iterate left the box");
    // Problems converge at very different iterations, and a finished problem is never evaluated again.
    let its = &sol.iterations;
    assert!(
        its.iter().max().unwrap() >= &(5 * its.iter().min().unwrap().max(&1)),
        "{its:?}"
    );
    for i in 0..b {
        assert_eq!(obj.log.count(i), sol.evaluations[i as usize], "problem {i}");
    }
    // At these tolerances (factr = 10: 2e-15 relative) a line search may fail at the rounding floor.
    assert!(sol.termination.iter().all(|t| matches!(
        t,
        Termination::Pgtol | Termination::Factr | Termination::LineSearchFailed
    )));
}

#[test]
fn quadratics_in_f32_match_scipy_loosely() {
    let fx = fixture("quad");
    let x0 = fx["x0"].to_kind(Kind::Float);
    let mut obj = Quad::of(&fx, Log::default());
    let bounds = Bounds::Tensors {
        lower: fx["lower"].to_kind(Kind::Float),
        upper: fx["upper"].to_kind(Kind::Float),
    };
    let sol = minimize(&mut obj, &x0, &bounds, &LbfgsbSettings::default(), None).unwrap();
    assert_eq!(sol.x.kind(), Kind::Float);
    let f = vec64(&sol.f);
    for (i, fr) in vec64(&fx["f_ref"]).iter().enumerate() {
        assert!(
            (f[i] - fr).abs() <= 1e-4 * fr.abs().max(1.0),
            "[{i}] {} vs {fr}",
            f[i]
        );
    }
}

fn rosen_case(name: &str, bounds: Bounds) {
    let fx = fixture(name);
    let x0 = fx["x0"].shallow_clone();
    let (b, n) = (x0.size()[0], x0.size()[1]);
    let mut obj = Rosen {
        log: Log::boxed(bounds_of(&fx, b, n)),
    };
    let sol = minimize(&mut obj, &x0, &bounds, &tight(), None).unwrap();
    assert_matches(name, &fx, &sol, 1e-4);
    assert_eq!(obj.log.outside, 0.0, "an iterate left the box");
    for i in 0..b {
        assert_eq!(obj.log.count(i), sol.evaluations[i as usize]);
    }
}

#[test]
fn bounded_rosenbrock_matches_scipy() {
    for name in ["rosen2", "rosen5", "rosen10"] {
        let fx = fixture(name);
        rosen_case(name, tensor_bounds(&fx));
    }
    rosen_case(
        "rosen_scalar",
        Bounds::Scalar {
            lower: -1.5,
            upper: 0.8,
        },
    );
}

#[test]
fn bounded_logistic_regression_matches_scipy() {
    let fx = fixture("logreg");
    let x0 = fx["x0"].shallow_clone();
    let (b, n) = (x0.size()[0], x0.size()[1]);
    let mut obj = LogReg::of(&fx, Log::boxed(bounds_of(&fx, b, n)));
    // [n] bounds with ±inf (biases are free).
    let sol = minimize(&mut obj, &x0, &tensor_bounds(&fx), &tight(), None).unwrap();
    assert_matches("logreg", &fx, &sol, 1e-5);
    assert_eq!(obj.log.outside, 0.0);
}

#[test]
fn unbounded_problems_b1_match_scipy() {
    let fx = fixture("unbounded_quad");
    let mut obj = Quad::of(&fx, Log::default());
    let sol = minimize(&mut obj, &fx["x0"], &Bounds::None, &tight(), None).unwrap();
    // cond(A) = 1e3: scipy's own x* (stopped by factr) is only good to ~1e-4.
    assert_matches("unbounded_quad", &fx, &sol, 1e-3);

    let fx = fixture("unbounded_rosen");
    let mut obj = Rosen {
        log: Log::default(),
    };
    let sol = minimize(&mut obj, &fx["x0"], &Bounds::None, &tight(), None).unwrap();
    assert_matches("unbounded_rosen", &fx, &sol, 1e-5);

    let fx = fixture("unbounded_logreg");
    let mut obj = LogReg::of(&fx, Log::default());
    let sol = minimize(&mut obj, &fx["x0"], &Bounds::None, &tight(), None).unwrap();
    assert_matches("unbounded_logreg", &fx, &sol, 1e-5);

    // f32, the training configuration: default tolerances, f within 1e-5 relative.
    let x0 = fx["x0"].to_kind(Kind::Float);
    let sol = minimize(
        &mut obj,
        &x0,
        &Bounds::None,
        &LbfgsbSettings::default(),
        None,
    )
    .unwrap();
    let (f, fr) = (sol.f.double_value(&[0]), fx["f_ref"].double_value(&[0]));
    assert!((f - fr).abs() <= 1e-5 * fr.abs().max(1.0), "{f} vs {fr}");
}

/// Property: iterates and solutions never leave the box (random quadratics, random boxes with infinite
/// and degenerate l = u coordinates, x0 partly outside the box, f32 and f64).
#[test]
fn iterates_never_leave_the_box() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for case in 0..24 {
        let b = rng.gen_range(1..7i64);
        let n = rng.gen_range(1..25i64);
        let kind = if case % 2 == 0 {
            Kind::Double
        } else {
            Kind::Float
        };
        let mut v = |len: i64, lo: f64, hi: f64| -> Vec<f64> {
            (0..len).map(|_| rng.gen_range(lo..hi)).collect()
        };
        let m = Tensor::from_slice(&v(b * n * n, -1.0, 1.0)).view([b, n, n]);
        let a = m.bmm(&m.transpose(1, 2)) + Tensor::eye(n, (Kind::Double, Device::Cpu)) * 0.05;
        let bv = Tensor::from_slice(&v(b * n, -3.0, 3.0)).view([b, n]);
        let mut lo = v(b * n, -1.0, 0.0);
        let mut hi = v(b * n, 0.0, 1.0);
        for i in 0..(b * n) as usize {
            match i % 7 {
                0 => lo[i] = f64::NEG_INFINITY,
                3 => hi[i] = f64::INFINITY,
                5 => hi[i] = lo[i],
                _ => {}
            }
        }
        let lo = Tensor::from_slice(&lo).view([b, n]);
        let hi = Tensor::from_slice(&hi).view([b, n]);
        let x0 = Tensor::from_slice(&v(b * n, -2.0, 2.0))
            .view([b, n])
            .to_kind(kind);
        let mut obj = Quad {
            a,
            b: bv,
            log: Log::boxed((lo.shallow_clone(), hi.shallow_clone())),
        };
        let bounds = Bounds::Tensors {
            lower: lo.shallow_clone(),
            upper: hi.shallow_clone(),
        };
        let settings = LbfgsbSettings {
            history: 1 + case % 6,
            ..LbfgsbSettings::default()
        };
        let sol = minimize(&mut obj, &x0, &bounds, &settings, None).unwrap();
        assert_eq!(obj.log.outside, 0.0, "case {case}: an iterate left the box");
        let x = &sol.x;
        assert!(
            x.ge_tensor(&lo.to_kind(kind)).all().int64_value(&[]) == 1,
            "case {case}"
        );
        assert!(
            x.le_tensor(&hi.to_kind(kind)).all().int64_value(&[]) == 1,
            "case {case}"
        );
        assert!(
            sol.termination
                .iter()
                .all(|t| !matches!(t, Termination::NonFinite | Termination::MaxIter)),
            "case {case}: {:?}",
            sol.termination
        );
    }
}

struct StopAfter(usize, Vec<usize>);
impl Observer for StopAfter {
    fn observe(&mut self, info: &IterInfo) -> bool {
        assert_eq!(info.f.size(), info.pg_norm.size());
        self.1.push(info.active);
        info.iter < self.0
    }
}

#[test]
fn observer_can_stop_all_problems() {
    let fx = fixture("rosen10");
    let mut obj = Rosen {
        log: Log::default(),
    };
    let mut obs = StopAfter(3, vec![]);
    let sol = minimize(
        &mut obj,
        &fx["x0"],
        &tensor_bounds(&fx),
        &tight(),
        Some(&mut obs),
    )
    .unwrap();
    assert_eq!(obs.1.len(), 3);
    assert!(sol.termination.iter().all(|t| *t == Termination::Stopped));
    assert!(sol.iterations.iter().all(|&i| i <= 3));
}

/// A problem whose objective turns NaN ends as NonFinite; its neighbours still converge.
struct NanFor(Quad, i64);
impl BatchObjective for NanFor {
    fn eval(&mut self, x: &Tensor, idx: &Tensor) -> blindspot::Result<(Tensor, Tensor)> {
        let (f, g) = self.0.eval(x, idx)?;
        let bad = idx.eq(self.1).unsqueeze(1);
        let g = g.where_self(&bad.logical_not(), &g.full_like(f64::NAN));
        Ok((f, g))
    }
}

#[test]
fn non_finite_problem_is_flagged_and_others_converge() {
    let fx = fixture("quad");
    let quad = Quad::of(&fx, Log::default());
    let mut obj = NanFor(quad, 2);
    let sol = minimize(&mut obj, &fx["x0"], &tensor_bounds(&fx), &tight(), None).unwrap();
    assert_eq!(sol.termination[2], Termination::NonFinite);
    assert_eq!(vec64(&sol.x.get(2)), vec64(&fx["x0"].get(2)));
    let f = vec64(&sol.f);
    for (i, fr) in vec64(&fx["f_ref"]).iter().enumerate() {
        if i != 2 {
            assert!((f[i] - fr).abs() <= 1e-6 * fr.abs().max(1.0));
        }
    }
}

/// The optimiser error of a result (panics on success or another error).
fn optim_err<T>(r: blindspot::Result<T>) -> OptimError {
    match r {
        Err(Error::Optim(e)) => e,
        Err(e) => panic!("expected an optimiser error, got {e}"),
        Ok(_) => panic!("expected an optimiser error, got a result"),
    }
}

#[test]
fn bad_input_is_an_error() {
    let x0 = Tensor::zeros([2, 3], (Kind::Double, Device::Cpu));
    let s = LbfgsbSettings::default();
    let run = |x: &Tensor, b: &Bounds, set: &LbfgsbSettings| {
        let mut obj = Rosen {
            log: Log::default(),
        };
        optim_err(minimize(&mut obj, x, b, set, None))
    };
    let setting = |e: OptimError| match e {
        OptimError::Setting { name, .. } => name,
        e => panic!("{e}"),
    };
    assert_eq!(setting(optim_err(s.with_history(0))), "history");
    assert_eq!(setting(optim_err(s.with_pgtol(-1.0))), "pgtol");
    assert_eq!(setting(optim_err(s.with_factr(f64::NAN))), "factr");
    let e = optim_err(s.with_history(0)).to_string();
    assert!(e.contains("`history` = 0") && e.contains(">= 1"), "{e}");
    let bad = LbfgsbSettings { history: 0, ..s };
    assert_eq!(setting(run(&x0, &Bounds::None, &bad)), "history");
    let (lower, upper) = (1.0, 0.0);
    let e = run(&x0, &Bounds::Scalar { lower, upper }, &s);
    assert!(matches!(e, OptimError::ScalarBounds { .. }), "{e}");
    let ones = |k: i64| Tensor::ones([k], (Kind::Double, Device::Cpu));
    let zeros = |k: i64| Tensor::zeros([k], (Kind::Double, Device::Cpu));
    let crossed = Bounds::Tensors {
        lower: ones(3),
        upper: zeros(3),
    };
    let e = run(&x0, &crossed, &s);
    assert!(matches!(e, OptimError::BoundsCrossed { count: 3 }), "{e}");
    let wrong = Bounds::Tensors {
        lower: zeros(4),
        upper: ones(4),
    };
    let e = run(&x0, &wrong, &s);
    assert!(
        matches!(e, OptimError::BoundsShape { b: 2, n: 3, .. }),
        "{e}"
    );
    assert!(
        e.to_string().contains("[n] = [3] or [B, n] = [2, 3]"),
        "{e}"
    );
    let e = run(&x0.full_like(f64::NAN), &Bounds::None, &s);
    assert!(matches!(e, OptimError::StartNonFinite { count: 6 }), "{e}");
    let e = run(&x0.to_kind(Kind::Int64), &Bounds::None, &s);
    assert!(
        matches!(e, OptimError::StartKind { kind: Kind::Int64 }),
        "{e}"
    );
    let e = run(&zeros(3), &Bounds::None, &s);
    assert!(matches!(e, OptimError::StartShape { .. }), "{e}");
    // An objective returning the wrong shape.
    struct Wrong;
    impl BatchObjective for Wrong {
        fn eval(&mut self, x: &Tensor, _: &Tensor) -> blindspot::Result<(Tensor, Tensor)> {
            Ok((x.sum(None::<Kind>), x.shallow_clone()))
        }
    }
    let e = optim_err(minimize(&mut Wrong, &x0, &Bounds::None, &s, None));
    let scalar_f = matches!(&e, OptimError::ObjectiveShape { f, rows: 2, .. } if f.is_empty());
    assert!(scalar_f, "{e}");
}

/// Benchmark, run by hand: `cargo test --test optim bench -- --ignored --nocapture`
/// (BENCH_THREADS=k sets libtorch's intra-op threads; default 1).
#[test]
#[ignore]
fn bench_engine_overhead() {
    let threads = std::env::var("BENCH_THREADS").map_or(1, |t| t.parse().unwrap());
    tch::set_num_threads(threads);
    for (b, m) in [(1000, 10), (10_000, 10), (10_000, 5)] {
        let r = blindspot::bench::engine::bench_engine(b, 784, m, m + 12, Device::Cpu).unwrap();
        println!("{}", serde_json::to_string(&r).unwrap());
    }
}

/// Stops when every problem's f is at or below `target`; records the evaluations used.
struct StopAtF(f64, usize);
impl Observer for StopAtF {
    fn observe(&mut self, info: &IterInfo) -> bool {
        self.1 = info.evals_total;
        info.f.max().double_value(&[]) > self.0
    }
}

/// Training path (B = 1, unbounded): no more evaluations than torch.optim.LBFGS(strong_wolfe) needs for
/// the same objective value (reference run by scripts/ref_lbfgsb.py, f64, to convergence).
#[test]
fn unbounded_needs_no_more_evaluations_than_torch_lbfgs() {
    let fx = fixture("unbounded_logreg");
    let (torch_f, torch_evals) = (
        fx["torch_f"].double_value(&[0]),
        fx["torch_evals"].double_value(&[0]) as usize,
    );
    let mut obj = LogReg::of(&fx, Log::default());
    let mut obs = StopAtF(torch_f, 0);
    let sol = minimize(&mut obj, &fx["x0"], &Bounds::None, &tight(), Some(&mut obs)).unwrap();
    assert!(sol.f.double_value(&[0]) <= torch_f, "{:?}", sol.termination);
    eprintln!("evaluations: ours {} vs torch {torch_evals}", obs.1);
    assert!(
        obs.1 <= torch_evals,
        "ours {} vs torch {torch_evals}",
        obs.1
    );
}
