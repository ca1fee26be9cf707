//! Iterative extreme singular values of large operators (§4.3, exact zero-padded conv norms): Lanczos with
//! full reorthogonalisation on the Gram operator `G = AᵀA` (or `AAᵀ`, the smaller side), and plain power
//! iteration for comparison. Convergence is a *residual* test, `‖G v − θ v‖ ≤ tol · θ_max`, never
//! "θ changed little": conv spectra are nearly flat at the top, so plain power iteration creeps for
//! thousands of steps while θ changes by 1e-7 per step.
//!
//! For a Ritz pair (θ, y) of the Lanczos tridiagonal `T_k`, the residual is `β_k |y_k|` exactly (in exact
//! arithmetic, and up to rounding with full reorthogonalisation), and some eigenvalue λ of `G` satisfies
//! `|λ − θ| ≤ residual`; so `tol` bounds the relative error of σ² = λ by `tol` and of σ by `tol / 2`.

use super::SpectralError;
use crate::Result;
use tch::{Kind, Tensor};

/// A Gram operator on flat f64 vectors.
pub(crate) type GramOp<'a> = Box<dyn Fn(&Tensor) -> Result<Tensor> + 'a>;

/// Settings of [`lanczos_extremes`] and [`power_iteration`].
#[derive(Debug, Clone, Copy)]
pub struct IterOptions {
    /// Residual tolerance relative to the largest Ritz value.
    pub tol: f64,
    /// Maximum number of operator applications.
    pub max_iter: usize,
    /// Seed of the random start vector.
    pub seed: i64,
    /// Also converge the smallest eigenvalue (else stop when the largest has converged).
    pub want_min: bool,
    /// Device of the vectors (that of the operator).
    pub device: tch::Device,
}

impl Default for IterOptions {
    fn default() -> Self {
        IterOptions {
            tol: 1e-6,
            max_iter: 400,
            seed: 0,
            want_min: true,
            device: tch::Device::Cpu,
        }
    }
}

/// Extreme singular values with their convergence record (a result type, written to `bounds.json`).
pub use crate::results::spectral::Extremes;

/// Lanczos on a symmetric positive semi-definite operator `gram` of dimension `n` (vectors f64 `[n]`).
pub fn lanczos_extremes(
    n: i64,
    gram: &dyn Fn(&Tensor) -> Result<Tensor>,
    opts: &IterOptions,
) -> Result<Extremes> {
    if n <= 0 {
        return Err(SpectralError::Empty {
            what: "the Gram operator",
        }
        .into());
    }
    let max_k = opts.max_iter.min(n as usize).max(1);
    let dev = opts.device;
    tch::manual_seed(opts.seed);
    let mut v = Tensor::randn([n], (Kind::Double, dev));
    v = &v / v.norm().double_value(&[]);
    // Basis rows [max_k, n], filled as we go.
    let basis = Tensor::zeros([max_k as i64, n], (Kind::Double, dev));
    let mut alpha: Vec<f64> = Vec::with_capacity(max_k);
    let mut beta: Vec<f64> = Vec::with_capacity(max_k);
    let mut last = None;
    for k in 0..max_k {
        basis.get(k as i64).copy_(&v);
        let mut w = gram(&v)?; // [n]
        let a = w.dot(&v).double_value(&[]);
        alpha.push(a);
        // Full reorthogonalisation, twice (classical Gram-Schmidt against all previous basis vectors).
        let vk = basis.narrow(0, 0, k as i64 + 1); // [k+1, n]
        for _ in 0..2 {
            let h = vk.mv(&w); // [k+1]
            w = &w - vk.transpose(0, 1).mv(&h);
        }
        let b = w.norm().double_value(&[]);
        beta.push(b);
        let check = k + 1 == max_k || k % 4 == 3 || k < 4;
        let (theta, y) = tridiag_eigh(&alpha, &beta[..k])?;
        let kk = alpha.len();
        let tmax = theta[kk - 1].max(f64::MIN_POSITIVE);
        let res_max = b * y[(kk - 1) * kk + (kk - 1)].abs() / tmax; // last component of top vector
        let res_min = b * y[(kk - 1) * kk].abs() / tmax; // last component of bottom vector
        let breakdown = b <= 1e-13 * tmax;
        let conv_max = res_max <= opts.tol || breakdown || kk as i64 == n;
        let min_floor = opts.tol * theta[0].max(0.0) / tmax + 1e-12;
        let conv_min = res_min <= min_floor || breakdown || kk as i64 == n;
        last = Some(Extremes {
            sigma_max: tmax.max(0.0).sqrt(),
            sigma_min: theta[0].max(0.0).sqrt(),
            rel_residual_max: res_max,
            rel_residual_min: res_min,
            converged_max: conv_max,
            converged_min: conv_min,
            iterations: kk,
        });
        if (check || breakdown) && conv_max && (conv_min || !opts.want_min) {
            break;
        }
        if breakdown {
            break;
        }
        v = &w / b;
    }
    // max_k ≥ 1, so the loop ran at least once.
    Ok(last.expect("Lanczos makes at least one step"))
}

/// Eigen-decomposition of the symmetric tridiagonal matrix (diag `a`, off-diagonal `b`): ascending
/// eigenvalues and the row-major eigenvector matrix (column j = eigenvector j).
fn tridiag_eigh(a: &[f64], b: &[f64]) -> Result<(Vec<f64>, Vec<f64>)> {
    let k = a.len();
    let mut t = vec![0f64; k * k];
    for i in 0..k {
        t[i * k + i] = a[i];
        if i + 1 < k {
            t[i * k + i + 1] = b[i];
            t[(i + 1) * k + i] = b[i];
        }
    }
    let tt = Tensor::from_slice(&t).reshape([k as i64, k as i64]);
    let (ev, vecs) = tt.f_linalg_eigh("L")?;
    Ok((
        Vec::<f64>::try_from(ev)?,
        Vec::<f64>::try_from(vecs.contiguous().reshape([-1]))?,
    ))
}

/// Plain power iteration on `gram` with the same residual test (`‖G v − θ v‖ ≤ tol · θ`); the top only.
pub fn power_iteration(
    n: i64,
    gram: &dyn Fn(&Tensor) -> Result<Tensor>,
    opts: &IterOptions,
) -> Result<Extremes> {
    tch::manual_seed(opts.seed);
    let mut v = Tensor::randn([n], (Kind::Double, opts.device));
    v = &v / v.norm().double_value(&[]);
    let mut theta = 0.0;
    let mut res = f64::INFINITY;
    let mut it = 0;
    while it < opts.max_iter {
        let w = gram(&v)?;
        it += 1;
        theta = w.dot(&v).double_value(&[]);
        res = (&w - &v * theta).norm().double_value(&[]) / theta.max(f64::MIN_POSITIVE);
        if res <= opts.tol {
            break;
        }
        let nw = w.norm().double_value(&[]);
        if nw == 0.0 {
            break;
        }
        v = &w / nw;
    }
    Ok(Extremes {
        sigma_max: theta.max(0.0).sqrt(),
        sigma_min: f64::NAN,
        rel_residual_max: res,
        rel_residual_min: f64::NAN,
        converged_max: res <= opts.tol,
        converged_min: false,
        iterations: it,
    })
}

/// The Gram operator of a conv layer on its smaller side, as a closure on flat f64 vectors, with `kind`
/// the precision of the convolutions themselves (f32 is ~4× faster on CPU; the Lanczos vectors stay f64).
/// Returns (dimension, closure).
pub fn conv_gram(op: &super::conv::ConvOp, kind: Kind) -> (i64, GramOp<'_>) {
    let op = op.to_kind(kind);
    let (n_in, n_out) = (op.n_in(), op.n_out());
    let inp = op.input;
    let out = op.output;
    if n_in <= n_out {
        (
            n_in,
            Box::new(move |v: &Tensor| {
                let x = v.to_kind(kind).reshape([1, inp[0], inp[1], inp[2]]);
                let y = op.forward(&x)?;
                Ok(op.adjoint(&y)?.reshape([-1]).to_kind(Kind::Double))
            }),
        )
    } else {
        (
            n_out,
            Box::new(move |u: &Tensor| {
                let y = u.to_kind(kind).reshape([1, out[0], out[1], out[2]]);
                let x = op.adjoint(&y)?;
                Ok(op.forward(&x)?.reshape([-1]).to_kind(Kind::Double))
            }),
        )
    }
}
