//! Explicit (dense) matrices of the layer operators of §4.3, for references and small layers: the
//! singular values of these matrices are what the FFT and iterative methods must reproduce.

use super::conv::{ConvGeom, ConvOp};
use super::SpectralError;
use crate::Result;
use tch::{Kind, Tensor};

/// Largest operator (rows × cols) that [`zero_conv_matrix`] / [`circular_conv_matrix`] will build.
pub(crate) const MAX_DENSE_ENTRIES: i64 = 64 * 1024 * 1024;

/// Dense matrix of the zero-padded convolution, built by applying `conv2d` to the basis vectors:
/// f64 [F·H'·W', C·H·W].
pub fn zero_conv_matrix(op: &ConvOp) -> Result<Tensor> {
    let (n, m) = (op.n_in(), op.n_out());
    check_size(n, m)?;
    let op64 = op.to_kind(Kind::Double);
    let eye = Tensor::eye(n, (Kind::Double, op.weight.device())).reshape([
        n,
        op.input[0],
        op.input[1],
        op.input[2],
    ]); // [n, C, H, W]
    let y = op64.forward(&eye)?; // [n, F, H', W']
    Ok(y.reshape([n, m]).transpose(0, 1).contiguous()) // [m, n]
}

/// Dense matrix of the *circular* convolution on an `N_h × N_w` torus (multiples of the stride), built by
/// index arithmetic, independently of the FFT: row `(f, i, j)` has `w[f, c, a, b]` at column
/// `(c, (s·i + d·a − p) mod N_h, (s·j + d·b − p) mod N_w)`. f64 [F·(N_h/s)·(N_w/s), C·N_h·N_w].
pub fn circular_conv_matrix(weight: &Tensor, g: &ConvGeom, torus: [i64; 2]) -> Result<Tensor> {
    let ws = weight.size();
    if ws.len() != 4 {
        return Err(SpectralError::WeightShape {
            what: "conv",
            want: "4-D [F, C/groups, kh, kw]",
            shape: ws,
        }
        .into());
    }
    let (f, cg, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    let c = cg * g.groups;
    let (nh, nw) = (torus[0], torus[1]);
    if nh % g.stride[0] != 0 || nw % g.stride[1] != 0 {
        return Err(SpectralError::Torus {
            torus,
            stride: g.stride,
        }
        .into());
    }
    let (mh, mw) = (nh / g.stride[0], nw / g.stride[1]);
    let (rows, cols) = (f * mh * mw, c * nh * nw);
    check_size(cols, rows)?;
    let w: Vec<f64> = Vec::<f64>::try_from(
        weight
            .to_kind(Kind::Double)
            .to_device(tch::Device::Cpu)
            .reshape([-1]),
    )?;
    let mut a = vec![0f64; (rows * cols) as usize];
    let fpg = f / g.groups;
    for fo in 0..f {
        let grp = fo / fpg;
        for i in 0..mh {
            for j in 0..mw {
                let row = (fo * mh + i) * mw + j;
                for cl in 0..cg {
                    let ci = grp * cg + cl;
                    for ka in 0..kh {
                        let r =
                            (g.stride[0] * i + g.dilation[0] * ka - g.padding[0]).rem_euclid(nh);
                        for kb in 0..kw {
                            let q = (g.stride[1] * j + g.dilation[1] * kb - g.padding[1])
                                .rem_euclid(nw);
                            let col = (ci * nh + r) * nw + q;
                            a[(row * cols + col) as usize] +=
                                w[(((fo * cg + cl) * kh + ka) * kw + kb) as usize];
                        }
                    }
                }
            }
        }
    }
    Ok(Tensor::from_slice(&a).reshape([rows, cols]))
}

fn check_size(n: i64, m: i64) -> Result<()> {
    if n.saturating_mul(m) > MAX_DENSE_ENTRIES {
        return Err(SpectralError::DenseTooLarge {
            rows: m,
            cols: n,
            limit: MAX_DENSE_ENTRIES,
        }
        .into());
    }
    Ok(())
}

/// All singular values of a matrix by SVD, descending, f64 [min(m, n)].
pub fn singular_values(a: &Tensor) -> Result<Tensor> {
    let a = a.to_kind(Kind::Double);
    let sz = a.size();
    // Wide matrices are much slower in LAPACK's SVD here; Aᵀ has the same singular values.
    let a = if sz.len() == 2 && sz[0] < sz[1] {
        a.transpose(0, 1).contiguous()
    } else {
        a
    };
    let (_, s, _) = a.f_svd(true, false)?;
    Ok(s)
}

/// Singular values of a linear layer's weight `w` [out, in], descending, and the route used:
/// exact SVD for small matrices, else the eigenvalues of the smaller Gram matrix (`W Wᵀ` or `Wᵀ W`) in f64,
/// e.g. 4096 × 4096 for AlexNet's 9216 → 4096 layer. Relative accuracy of σ_i by the Gram route is about
/// `ε·(σ_max/σ_i)²` with ε = 2⁻⁵³.
pub fn linear_singular_values(w: &Tensor, svd_limit: i64) -> Result<(Tensor, &'static str)> {
    let sz = w.size();
    if sz.len() != 2 {
        return Err(SpectralError::WeightShape {
            what: "linear",
            want: "[out, in]",
            shape: sz,
        }
        .into());
    }
    let w = w.to_kind(Kind::Double);
    let k = sz[0].min(sz[1]);
    if k <= svd_limit {
        return Ok((singular_values(&w)?, "svd"));
    }
    let gram = if sz[0] <= sz[1] {
        w.matmul(&w.transpose(0, 1)) // [out, out]
    } else {
        w.transpose(0, 1).matmul(&w) // [in, in]
    };
    let ev = gram.f_linalg_eigvalsh("L")?; // ascending [k]
    let s = ev.clamp_min(0.0).sqrt().flip([0]);
    Ok((s, "gram-eigh"))
}
