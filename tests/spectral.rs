//! Tests of the spectral analysis (§4.3, Table 5) against independent references: dense matrices built
//! from basis vectors or index arithmetic, their SVD, scipy values in fixtures, finite checks.

use blindspot::spectral::conv::{self, ConvGeom, ConvOp};
use blindspot::spectral::{dense, power};
use tch::{Kind, Tensor};

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

/// `a ≈ b` relative to `b`, or to `1e-9 · scale` when `b` is (numerically) zero, e.g. a rank-deficient
/// operator whose smallest singular value is rounding noise.
fn close(a: f64, b: f64, scale: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1e-9 * scale)
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

// ---------------------------------------------------------------------------------------------------
// Whole-network tests on TorchScript fixtures from scripts/make_spectral_fixtures.py (scipy references).

use blindspot::spectral::network::{self, Spec};
use blindspot::spectral::{analyse, AnalyseOptions, Mode, SpectralError, SpectralSpec};
use std::path::{Path, PathBuf};

/// The analysis in circular mode with default options.
fn circular(net: &network::Network) -> blindspot::spectral::Analysis {
    analyse(
        net,
        &AnalyseOptions {
            mode: Mode::Circular,
            ..Default::default()
        },
    )
    .unwrap()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/spectral")
        .join(name)
}

fn reference() -> serde_json::Value {
    let s = std::fs::read_to_string(fixture("reference.json")).unwrap();
    serde_json::from_str(&s).unwrap()
}

fn find<'a>(
    a: &'a blindspot::spectral::Analysis,
    layer: &str,
    method: &str,
) -> &'a blindspot::spectral::Row {
    a.rows
        .iter()
        .find(|r| r.layer == layer && r.method == method)
        .unwrap_or_else(|| panic!("no row {layer} {method}"))
}

fn check_against_reference(net_key: &str, model: &str, spec: Option<&str>) {
    let r = reference();
    let r = &r[net_key];
    let shape: Vec<i64> = r["input_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let spec_path = spec.map(fixture);
    let (net, src) = network::load(
        &fixture(model),
        spec_path.as_deref(),
        Some(&shape),
        tch::Device::Cpu,
    )
    .unwrap();
    if let network::Source::TorchScript(_, m) = &src {
        let d = network::forward_mismatch(&net, m, tch::Device::Cpu).unwrap();
        assert!(
            d < 1e-5,
            "{model}: our forward differs from TorchScript by {d:e}"
        );
    }
    let opts = AnalyseOptions {
        tol: 1e-9,
        max_iter: 3000,
        ..Default::default()
    };
    let a = analyse(&net, &opts).unwrap();
    for (layer, v) in r["layers"].as_object().unwrap() {
        let f = |k: &str| v[k].as_f64().unwrap();
        if v["kind"] == "conv2d" {
            let c = find(&a, layer, "fft-circular");
            assert!(
                rel(c.upper, f("circular_upper")) < 1e-6,
                "{layer} circ upper {} vs {}",
                c.upper,
                f("circular_upper")
            );
            assert!(
                close(
                    c.lower.unwrap(),
                    f("circular_lower"),
                    f("circular_upper"),
                    1e-6
                ),
                "{layer} circ lower {:?} vs {}",
                c.lower,
                f("circular_lower")
            );
            let z = find(&a, layer, "iterative-zero");
            assert!(
                rel(z.upper, f("zero_upper")) < 1e-4,
                "{layer} zero upper {} vs {}",
                z.upper,
                f("zero_upper")
            );
            let zl = z.lower.expect("zero lower converged");
            assert!(
                close(zl, f("zero_lower"), f("zero_upper"), 1e-4),
                "{layer} zero lower {zl} vs {}",
                f("zero_lower")
            );
            assert!(find(&a, layer, "fft-zero-bound").upper >= f("zero_upper") * (1.0 - 1e-9));
        } else {
            let row = a.rows.iter().find(|x| &x.layer == layer).unwrap();
            assert!(
                rel(row.upper, f("upper")) < 1e-8 && rel(row.lower.unwrap(), f("lower")) < 1e-6,
                "{layer}"
            );
        }
    }
}

#[test]
fn mini_alexnet_no_spec_matches_scipy() {
    check_against_reference("mini_alexnet", "mini_alexnet.pt", None);
    // Max-pool 3×3 stride 2 on 15×15: factor 2 (brute force in the fixture), not 1.
    let r = reference();
    let (net, _) = network::load(
        &fixture("mini_alexnet.pt"),
        None,
        Some(&[3, 63, 63]),
        tch::Device::Cpu,
    )
    .unwrap();
    let a = circular(&net);
    let p = find(&a, "features.2", "window-cover");
    assert!(
        rel(
            p.upper,
            r["mini_alexnet"]["maxpool_factor_features.2"]
                .as_f64()
                .unwrap()
        ) < 1e-9
    );
    assert!(rel(p.upper, 2.0) < 1e-12);
    // Adaptive average pooling 1×1 → 6×6 copies each value 36 times: factor 6.
    let ap = a.rows.iter().find(|r| r.layer == "avgpool").unwrap();
    assert!(rel(ap.upper, 6.0) < 1e-12, "{}", ap.upper);
}

#[test]
fn custom_net_with_spec_matches_scipy() {
    check_against_reference("custom", "custom.pt", Some("custom.yaml"));
    let r = reference();
    let (net, _) = network::load(
        &fixture("custom.pt"),
        Some(&fixture("custom.yaml")),
        Some(&[4, 23, 19]),
        tch::Device::Cpu,
    )
    .unwrap();
    let a = circular(&net);
    let p = find(&a, "pool_a", "window-cover");
    assert!(
        rel(
            p.upper,
            r["custom"]["maxpool_factor_pool_a"].as_f64().unwrap()
        ) < 1e-9,
        "{}",
        p.upper
    );
    // Our forward from the spec reproduces the module's logits.
    let x = Tensor::zeros([1, 4, 23, 19], (Kind::Float, tch::Device::Cpu));
    let y =
        Vec::<f64>::try_from(net.forward(&x).unwrap().to_kind(Kind::Double).reshape([-1])).unwrap();
    let want: Vec<f64> = r["custom"]["logits_zero_input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (a, b) in y.iter().zip(&want) {
        assert!((a - b).abs() < 1e-5);
    }
}

#[test]
fn local_response_norm_forward_and_bound() {
    let r = reference();
    let (net, source) = network::load(
        &fixture("lrn.pt"),
        Some(&fixture("lrn.yaml")),
        Some(&[3, 8, 8]),
        tch::Device::Cpu,
    )
    .unwrap();
    let network::Source::TorchScript(_, module) = source else {
        panic!("expected a TorchScript source")
    };
    // Our LRN (from the spec) reproduces nn.LocalResponseNorm inside the module.
    let d = network::forward_mismatch(&net, &module, tch::Device::Cpu).unwrap();
    assert!(d < 1e-5, "forward mismatch {d}");
    let a = circular(&net);
    let l = find(&a, "lrn", "analytic-bound");
    let sup = r["lrn"]["sup_jacobian"].as_f64().unwrap();
    // The proven bound is never below the largest Jacobian norm gradient ascent finds (k^-β at a = 0)…
    assert!(l.upper >= sup * (1.0 - 1e-9), "{} < {sup}", l.upper);
    // … and not uselessly loose.
    assert!(l.upper <= 3.0 * sup, "{} vs {sup}", l.upper);
    // It enters the whole-network product.
    let linear: f64 = a
        .rows
        .iter()
        .filter(|r| r.kind != "local_response_norm") // one row per layer in circular mode
        .map(|r| r.upper)
        .product();
    assert!(rel(a.product_fft_bound, linear * l.upper) < 1e-9);
}

fn write_zoo(dir: &Path) {
    tch::manual_seed(3);
    let w1 = Tensor::randn([4, 1, 3, 3], (Kind::Float, tch::Device::Cpu)) * 0.3;
    let b1 = Tensor::zeros([4], (Kind::Float, tch::Device::Cpu));
    let w2 = Tensor::randn([10, 144], (Kind::Float, tch::Device::Cpu)) * 0.1;
    let b2 = Tensor::zeros([10], (Kind::Float, tch::Device::Cpu));
    blindspot::io::write_safetensors(
        &dir.join("weights.safetensors"),
        &[
            ("conv1.weight", &w1),
            ("conv1.bias", &b1),
            ("fc1.weight", &w2),
            ("fc1.bias", &b2),
        ],
    )
    .unwrap();
    let model = serde_json::json!({
        "format": "blindspot-model/1",
        "name": "conv-test",
        "architecture": {
            "input_shape": [1, 12, 12],
            "layers": [
                {"kind": "conv2d", "name": "conv1", "in_channels": 1, "out_channels": 4, "kernel_size": 3, "stride": 1, "padding": 1},
                {"kind": "relu"},
                {"kind": "max_pool2d", "kernel_size": 2, "stride": 2},
                {"kind": "flatten"},
                {"kind": "linear", "name": "fc1", "in_features": 144, "out_features": 10}
            ]
        },
        "training": {"whatever": 1}
    });
    blindspot::io::write_json(&dir.join("model.json"), &model).unwrap();
}

#[test]
fn zoo_folder_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("zoo");
    write_zoo(&model);
    let out = tmp.path().join("out");
    let spec = SpectralSpec {
        tol: 1e-8,
        max_iter: 1000,
        ascent_steps: 30,
        ascent_starts: 3,
        ..SpectralSpec::new(&model)
    };
    let rep = blindspot::spectral::run(&spec, &out, tch::Device::Cpu).unwrap();
    // The analysis writes the result files; the report draws from them alone.
    assert!(out.join("bounds.json").exists() && !out.join("table5.md").exists());
    // Read back from bounds.json: the same rows (serde_json's default float parser may be 1 ulp off).
    let back = blindspot::results::spectral::read(&out).unwrap();
    assert_eq!(back.analysis.rows.len(), rep.analysis.rows.len());
    for (b, r) in back.analysis.rows.iter().zip(&rep.analysis.rows) {
        assert_eq!(
            (&b.layer, &b.method, b.lower.is_some()),
            (&r.layer, &r.method, r.lower.is_some())
        );
        assert!(
            (b.upper - r.upper).abs() <= 4.0 * f64::EPSILON * r.upper.abs(),
            "{b:?} vs {r:?}"
        );
    }
    assert_eq!(back.layers, rep.layers);
    blindspot::report::spectral::render(&out).unwrap();
    for f in ["bounds.csv", "bounds.json", "table5.md", "spectrum.png"] {
        assert!(out.join(f).exists(), "missing {f}");
    }
    let md = std::fs::read_to_string(out.join("table5.md")).unwrap();
    assert!(md.contains("| conv1 | 4x1x3x3 | 1 | 1x12x12 |"), "{md}");
    assert_eq!(
        rep.layers
            .iter()
            .map(|l| l.kind.as_str())
            .collect::<Vec<_>>(),
        ["conv2d", "relu", "max_pool2d", "flatten", "linear"]
    );
    let csv = std::fs::read_to_string(out.join("bounds.csv")).unwrap();
    assert_eq!(
        csv.lines().next().unwrap(),
        "layer,kind,weight_shape,stride,input_shape,lower,upper,method"
    );
    assert!(csv.contains("conv1,conv2d,4x1x3x3,1,1x12x12,"));
    // Reference: dense matrix of the zero-padded conv and SVD of the linear weight.
    let params: std::collections::BTreeMap<String, Tensor> =
        blindspot::io::read_safetensors(&model.join("weights.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let op = ConvOp::new(
        &params["conv1.weight"],
        ConvGeom::square(1, 1, 1, 1),
        [1, 12, 12],
    )
    .unwrap();
    let s = dense::singular_values(&dense::zero_conv_matrix(&op).unwrap()).unwrap();
    let z = find(&rep.analysis, "conv1", "iterative-zero");
    assert!(rel(z.upper, s.double_value(&[0])) < 1e-4);
    let sl = dense::singular_values(&params["fc1.weight"]).unwrap();
    let lin = find(&rep.analysis, "fc1", "svd");
    assert!(rel(lin.upper, sl.double_value(&[0])) < 1e-6);
    // Product bound = conv (zero, exact) × max-pool 1 (non-overlapping) × linear; the empirical ratio is below it.
    let prod = rep.analysis.product_exact.unwrap();
    assert!(rel(prod, z.upper * lin.upper) < 1e-9);
    let e = rep.empirical.unwrap().ratio;
    assert!(
        e > 0.0 && e <= prod * (1.0 + 1e-6),
        "empirical {e} vs bound {prod}"
    );
    assert!(e <= rep.analysis.product_fft_bound * (1.0 + 1e-6));
}

fn spec_err(yaml: &str, shape: &[i64]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("s.yaml");
    std::fs::write(&p, yaml).unwrap();
    match network::load(
        &fixture("custom.pt"),
        Some(&p),
        Some(shape),
        tch::Device::Cpu,
    ) {
        Ok(_) => panic!("spec accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_inputs_name_the_layer() {
    let yaml = std::fs::read_to_string(fixture("custom.yaml")).unwrap();
    // Missing parameter.
    let e = spec_err(&yaml.replace("head.fc", "head.fc9"), &[4, 23, 19]);
    assert!(e.contains("head.fc9") && e.contains("no parameter"), "{e}");
    // Weight shape contradicting the spec.
    let e = spec_err(
        &yaml.replace("in_channels: 4", "in_channels: 8"),
        &[4, 23, 19],
    );
    assert!(
        e.contains("body.conv_a") && e.contains("in_channels"),
        "{e}"
    );
    let e = spec_err(
        &yaml.replace(
            "{param: head.fc, kind: linear",
            "{param: body.conv_b, kind: linear",
        ),
        &[4, 23, 19],
    );
    assert!(e.contains("body.conv_b") && e.contains("linear"), "{e}");
    // Input too small.
    let e = spec_err(&yaml, &[4, 4, 4]);
    assert!(e.contains("avg_pool2d#5") && e.contains("smaller"), "{e}");
    // Unsupported kind.
    let e = spec_err(
        &yaml.replace("{kind: sigmoid}", "{kind: batch_norm2d, name: bn1}"),
        &[4, 23, 19],
    );
    assert!(e.contains("bn1") && e.contains("batch_norm2d"), "{e}");
    // Unknown key.
    let e = spec_err(
        &yaml.replace("groups: 2,", "groups: 2, bias_init: 3,"),
        &[4, 23, 19],
    );
    assert!(e.contains("body.conv_a") && e.contains("bias_init"), "{e}");
    // Wrong channel count of the input.
    let e = spec_err(&yaml, &[3, 23, 19]);
    assert!(e.contains("body.conv_a"), "{e}");
    // AlexNet input too small names the layer.
    let e = network::load(
        &fixture("mini_alexnet.pt"),
        None,
        Some(&[3, 20, 20]),
        tch::Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("features."), "{e}");
    // No spec for a non-AlexNet TorchScript model.
    let e = network::load(
        &fixture("custom.pt"),
        None,
        Some(&[4, 23, 19]),
        tch::Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("spec"), "{e}");
    assert!(Spec::parse("layers: []", "x").is_err());
}

#[test]
fn spec_numbers_out_of_range_are_refused_when_read() {
    let yaml = std::fs::read_to_string(fixture("custom.yaml")).unwrap();
    let conv_a = "stride: 2, padding: 2, dilation: 2, groups: 2";
    let cases = [
        (
            conv_a,
            "stride: 0, padding: 2, dilation: 2, groups: 2",
            "layers[0].stride",
            "conv2d layer (`body.conv_a`) has stride 0; it must be an integer from 1 to 2147483647",
        ),
        (
            conv_a,
            "stride: [2, -1], padding: 2, dilation: 2, groups: 2",
            "layers[0].stride",
            "has stride [2, -1]",
        ),
        (
            conv_a,
            "stride: 2, padding: -1, dilation: 2, groups: 2",
            "layers[0].padding",
            "has padding -1; it must be an integer from 0",
        ),
        (
            conv_a,
            "stride: 2, padding: 1099511627776, dilation: 2, groups: 2",
            "layers[0].padding",
            "has padding 1099511627776",
        ),
        (
            conv_a,
            "stride: 2, padding: 2, dilation: 0, groups: 2",
            "layers[0].dilation",
            "has dilation 0",
        ),
        (
            conv_a,
            "stride: 2, padding: 2, dilation: 2, groups: 0",
            "layers[0].groups",
            "has groups 0",
        ),
        (
            "kernel_size: 3, stride: 2, padding: 1",
            "kernel_size: 3, stride: 0, padding: 1",
            "layers[2].stride",
            "max_pool2d layer (`pool_a`) has stride 0",
        ),
        (
            "kernel_size: 3, stride: 2, padding: 1",
            "kernel_size: 0, stride: 2, padding: 1",
            "layers[2].kernel_size",
            "has kernel_size 0",
        ),
        (
            "{kind: avg_pool2d, kernel_size: 2}",
            "{kind: avg_pool2d, kernel_size: 2, stride: 0}",
            "layers[5].stride",
            "avg_pool2d layer has stride 0",
        ),
        (
            "{kind: avg_pool2d, kernel_size: 2}",
            "{kind: avg_pool2d, kernel_size: [2, 0]}",
            "layers[5].kernel_size",
            "has kernel_size [2, 0]",
        ),
        (
            "out_features: 7",
            "out_features: 0",
            "layers[7].out_features",
            "linear layer (`head.fc`) has out_features 0",
        ),
        (
            "{kind: sigmoid}",
            "{kind: dropout, p: 1.5}",
            "layers[4].p",
            "has p 1.5; it must be a probability from 0 to 1",
        ),
        (
            "{kind: sigmoid}",
            "{kind: adaptive_avg_pool2d, output_size: 0}",
            "layers[4].output_size",
            "has output_size 0",
        ),
        (
            "{kind: sigmoid}",
            "{kind: local_response_norm, size: 0}",
            "layers[4].size",
            "has size 0",
        ),
    ];
    for (from, to, field, want) in cases {
        let bad = yaml.replace(from, to);
        assert_ne!(bad, yaml, "{from}");
        let e = spec_err(&bad, &[4, 23, 19]);
        assert!(
            e.starts_with("configuration error in ")
                && e.contains(&format!("s.yaml: field `{field}`: "))
                && e.contains(want),
            "{to}: {e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
    }
}

#[test]
fn errors_are_specific_variants_with_context() {
    let yaml = std::fs::read_to_string(fixture("custom.yaml")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("s.yaml");
    std::fs::write(&p, yaml.replace("head.fc", "head.fc9")).unwrap();
    let e = network::load(
        &fixture("custom.pt"),
        Some(&p),
        Some(&[4, 23, 19]),
        tch::Device::Cpu,
    )
    .unwrap_err();
    match e {
        blindspot::Error::Spectral(SpectralError::MissingParam { layer, param, .. }) => {
            assert_eq!(
                (layer.as_str(), param.as_str()),
                ("head.fc9", "head.fc9.weight")
            );
        }
        e => panic!("expected MissingParam, got {e:?}"),
    }
    std::fs::write(&p, yaml.replace("in_channels: 4", "in_channels: 8")).unwrap();
    let e = network::load(
        &fixture("custom.pt"),
        Some(&p),
        Some(&[4, 23, 19]),
        tch::Device::Cpu,
    )
    .unwrap_err();
    assert!(
        matches!(
            &e,
            blindspot::Error::Spectral(SpectralError::SpecContradicts { field: "in_channels", spec_value, .. })
                if spec_value == "8"
        ),
        "{e:?}"
    );
    let e = blindspot::spectral::parse_shape("3,x,4").unwrap_err();
    assert!(
        matches!(&e, blindspot::Error::Spectral(SpectralError::InputShapeText { text }) if text == "3,x,4"),
        "{e:?}"
    );
    // A zoo folder is read through ZooModel::load: a model.json without the format tag is refused.
    let model = tmp.path().join("zoo");
    write_zoo(&model);
    let mut json: serde_json::Value = blindspot::io::read_json(&model.join("model.json")).unwrap();
    json.as_object_mut().unwrap().remove("format");
    blindspot::io::write_json(&model.join("model.json"), &json).unwrap();
    let e = network::load(&model, None, None, tch::Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("format"), "{e}");
}

#[test]
fn max_pool_factor_brute_force() {
    use blindspot::spectral::pool::max_pool_lipschitz;
    // Non-overlapping windows: 1; 3×3 stride 2: 2; 3×3 stride 1: 3.
    assert_eq!(
        max_pool_lipschitz([8, 8], [2, 2], [2, 2], [0, 0], [1, 1], [4, 4]).0,
        1.0
    );
    assert_eq!(
        max_pool_lipschitz([13, 13], [3, 3], [2, 2], [0, 0], [1, 1], [6, 6]).0,
        2.0
    );
    assert_eq!(
        max_pool_lipschitz([9, 9], [3, 3], [1, 1], [0, 0], [1, 1], [7, 7]).0,
        3.0
    );
    // The factor is attained: a single-pixel bump seen by 4 windows moves 4 outputs.
    let x = Tensor::zeros([1, 1, 13, 13], (Kind::Double, tch::Device::Cpu));
    let mut y = x.copy();
    let _ = y.get(0).get(0).get(2).get(2).fill_(1.0);
    let d = (y.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false)
        - x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false))
    .norm();
    assert!((d.double_value(&[]) - 2.0).abs() < 1e-12);
    let _ = &mut y;
}

/// Benchmark, not a test (`cargo test --test spectral -- --ignored bench_alexnet --nocapture`): needs
/// `BLINDSPOT_ALEXNET=/tmp/alexnet.pt` from `scripts/export_alexnet.py`. Prints timings; asserts only values.
#[test]
#[ignore]
fn bench_alexnet() {
    let Some(p) = std::env::var_os("BLINDSPOT_ALEXNET") else {
        eprintln!("set BLINDSPOT_ALEXNET to a TorchScript AlexNet");
        return;
    };
    let cap: usize = std::env::var("BLINDSPOT_POWER_CAP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let r = blindspot::bench::spectral::bench(Path::new(&p), &[3, 224, 224], 1e-6, cap).unwrap();
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
}
