//! Tests of the spectral analysis (§4.3, Table 5) against independent references: dense matrices built
//! from basis vectors or index arithmetic, their SVD, scipy values in fixtures, finite checks.

use blindspot::spectral::conv::{self, ConvGeom, ConvOp};
use blindspot::spectral::{dense, power};
use tch::{Kind, Tensor};

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

fn max_rel_spectrum(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "spectrum sizes differ");
    let top = b.double_value(&[0]);
    // All singular values, relative to the top one (the small ones are compared in absolute terms).
    ((a - b).abs().max().double_value(&[])) / top
}

struct Case {
    c: i64,
    f: i64,
    k: [i64; 2],
    geom: ConvGeom,
    hw: [i64; 2],
}

fn cases() -> Vec<Case> {
    let g = |s: i64, p: i64, d: i64, gr: i64| ConvGeom::square(s, p, d, gr);
    vec![
        Case {
            c: 2,
            f: 3,
            k: [3, 3],
            geom: g(1, 1, 1, 1),
            hw: [6, 6],
        },
        Case {
            c: 3,
            f: 4,
            k: [3, 3],
            geom: g(2, 1, 1, 1),
            hw: [8, 6],
        },
        Case {
            c: 2,
            f: 5,
            k: [5, 5],
            geom: g(3, 2, 1, 1),
            hw: [9, 12],
        },
        Case {
            c: 3,
            f: 4,
            k: [4, 4],
            geom: g(4, 0, 1, 1),
            hw: [12, 8],
        },
        Case {
            c: 4,
            f: 6,
            k: [3, 3],
            geom: g(1, 2, 2, 2),
            hw: [7, 5],
        },
        Case {
            c: 2,
            f: 2,
            k: [3, 2],
            geom: g(2, 1, 1, 2),
            hw: [10, 6],
        },
        Case {
            c: 6,
            f: 3,
            k: [2, 2],
            geom: g(1, 0, 3, 3),
            hw: [7, 8],
        },
        Case {
            c: 3,
            f: 8,
            k: [11, 11],
            geom: g(4, 2, 1, 1),
            hw: [20, 24],
        },
        // Kernel larger than the torus: taps wrap around.
        Case {
            c: 2,
            f: 3,
            k: [5, 5],
            geom: g(1, 2, 1, 1),
            hw: [3, 4],
        },
    ]
}

fn weight(c: &Case, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randn(
        [c.f, c.c / c.geom.groups, c.k[0], c.k[1]],
        (Kind::Double, tch::Device::Cpu),
    )
}

#[test]
fn fft_circular_equals_dense_svd() {
    for (i, c) in cases().iter().enumerate() {
        let w = weight(c, i as i64);
        let torus = conv::circular_torus(c.hw, &c.geom);
        let fft = conv::fft_singular_values(&w, &c.geom, torus).unwrap();
        let a = dense::circular_conv_matrix(&w, &c.geom, torus).unwrap();
        // The dense matrix has min(rows, cols) singular values, as many as the blocks together.
        let s = dense::singular_values(&a).unwrap();
        let err = max_rel_spectrum(&fft, &s);
        assert!(err < 1e-10, "case {i}: spectrum differs by {err:e}");
        let (lo, up, _) = conv::fft_bounds(&w, &c.geom, torus).unwrap();
        let n = s.size()[0];
        assert!(rel(up, s.double_value(&[0])) < 1e-6, "case {i} upper");
        let lo_ref = s.double_value(&[n - 1]);
        assert!(
            (lo - lo_ref).abs() <= 1e-6 * lo_ref.max(1e-9 * up),
            "case {i} lower {lo} vs {lo_ref}"
        );
    }
}

#[test]
fn adjoint_conv_transpose() {
    for (i, c) in cases().iter().enumerate() {
        let w = weight(c, 100 + i as i64);
        let op = ConvOp::new(&w, c.geom, [c.c, c.hw[0], c.hw[1]]).unwrap();
        let x = Tensor::randn([2, c.c, c.hw[0], c.hw[1]], (Kind::Double, tch::Device::Cpu));
        let y = Tensor::randn(
            [2, op.output[0], op.output[1], op.output[2]],
            (Kind::Double, tch::Device::Cpu),
        );
        let ax = op.forward(&x).unwrap();
        let aty = op.adjoint(&y).unwrap();
        assert_eq!(aty.size(), x.size(), "case {i}: adjoint shape");
        let lhs = (&ax * &y).sum(Kind::Double).double_value(&[]);
        let rhs = (&x * &aty).sum(Kind::Double).double_value(&[]);
        assert!(
            rel(lhs, rhs) < 1e-12,
            "case {i}: <Ax,y> = {lhs} vs <x,Aᵀy> = {rhs}"
        );
    }
}

#[test]
fn zero_mode_iterative_equals_dense_svd() {
    for (i, c) in cases().iter().enumerate() {
        let w = weight(c, 200 + i as i64);
        let op = ConvOp::new(&w, c.geom, [c.c, c.hw[0], c.hw[1]]).unwrap();
        let a = dense::zero_conv_matrix(&op).unwrap();
        let s = dense::singular_values(&a).unwrap();
        let n = s.size()[0];
        let (smax, smin) = (s.double_value(&[0]), s.double_value(&[n - 1]));
        let (dim, gram) = power::conv_gram(&op, Kind::Double);
        let opts = power::IterOptions {
            tol: 1e-9,
            max_iter: 5000,
            ..Default::default()
        };
        let e = power::lanczos_extremes(dim, &*gram, &opts).unwrap();
        assert!(
            e.converged_max && e.converged_min,
            "case {i}: not converged {e:?}"
        );
        assert!(
            rel(e.sigma_max, smax) < 1e-4,
            "case {i}: σmax {} vs {smax}",
            e.sigma_max
        );
        assert!(
            (e.sigma_min - smin).abs() <= 1e-4 * smin.max(1e-6 * smax),
            "case {i}: σmin {} vs {smin}",
            e.sigma_min
        );
        // The FFT value on the padded torus bounds the zero-padded norm from above.
        let (_, up, _) =
            conv::fft_bounds(&w, &c.geom, conv::zero_bound_torus(c.hw, &c.geom)).unwrap();
        assert!(
            up >= smax * (1.0 - 1e-9),
            "case {i}: FFT bound {up} < exact {smax}"
        );
    }
}

#[test]
fn lanczos_beats_power_iteration_on_flat_top() {
    // A diagonal operator with a nearly flat top: power iteration needs many steps, Lanczos few.
    let n = 2000;
    let d = Tensor::linspace(0.0, 1.0, n, (Kind::Double, tch::Device::Cpu)).pow_tensor_scalar(0.1);
    let g = |v: &Tensor| -> blindspot::Result<Tensor> { Ok(v * &d) };
    let opts = power::IterOptions {
        tol: 1e-7,
        max_iter: 20000,
        want_min: false,
        ..Default::default()
    };
    let l = power::lanczos_extremes(n, &g, &opts).unwrap();
    let p = power::power_iteration(n, &g, &opts).unwrap();
    assert!(l.converged_max && rel(l.sigma_max, 1.0) < 1e-6, "{l:?}");
    assert!(
        l.iterations * 5 < p.iterations,
        "lanczos {} vs power {}",
        l.iterations,
        p.iterations
    );
}

#[test]
fn linear_layers_vs_reference_svd() {
    tch::manual_seed(7);
    for (o, i) in [(10, 30), (40, 12), (25, 25)] {
        let w = Tensor::randn([o, i], (Kind::Double, tch::Device::Cpu));
        let s_ref = dense::singular_values(&w).unwrap();
        for limit in [0, 10_000] {
            let (s, _) = dense::linear_singular_values(&w, limit).unwrap();
            let err = max_rel_spectrum(&s, &s_ref);
            assert!(err < 1e-10, "{o}x{i} limit {limit}: {err:e}");
        }
    }
}
