//! ℓ₂ Lipschitz factors of the pooling layers of §4.3 (the paper treats max-pooling as contractive; with
//! overlapping windows it is not).
//!
//! **Max-pooling.** For one window, `|max a − max b| ≤ max_i |a_i − b_i| ≤ ‖(a − b)|_window‖₂`, so
//! `‖P(x) − P(y)‖² ≤ Σ_windows ‖(x − y)|_w‖² ≤ c · ‖x − y‖²` with `c` the largest number of windows that
//! cover one input pixel. The bound is attained: put a pixel that every covering window sees as its
//! strict maximum and perturb only that pixel; all `c` outputs move by the same amount. Hence the
//! Lipschitz constant is exactly `√c`. Windows are products of 1-D windows, so `c = c_h · c_w`, counted
//! on the actual input size, padding and dilation. AlexNet's 3×3 stride-2 pools: `c = 2·2`, factor 2.
//!
//! **Average pooling** (with `count_include_pad = true`) and **adaptive average pooling** are linear and
//! separable, `P = P_h ⊗ P_w` per channel, so their singular values are the products of those of the two
//! small 1-D matrices, computed exactly by SVD.

//! **Local response normalisation** `b_c = a_c D_c^(−β)`, `D_c = k + (α/n) Σ_{j∈W(c)} a_j²` (n = `size`,
//! per pixel across channels). Its Jacobian is `J = diag(D^(−β)) − 2β (α/n) diag(a D^(−β−1)) M diag(a)`
//! with `M` the 0/1 window matrix. At `a = 0`, `J = k^(−β) I`, so the Lipschitz constant is at least
//! `k^(−β)`. For an upper bound: `D_c ≥ k`; every `j ∈ W(c)` has `a_j² ≤ (n/α)(D_c − k)`, so each entry
//! of the second term is at most `2β (D_c − k) D_c^(−β−1) ≤ 2β h*`, `h* = max_{D≥k} (D − k) D^(−β−1)
//! = k^(−β) β^β / (β+1)^(β+1)`; a row has at most `n` entries and, by Cauchy–Schwarz on the window,
//! sums to at most `2β √n h*`; a column sums to at most `2β n h*`. Schur's test gives
//! `Lip ≤ k^(−β) + 2β n^(3/4) h*`. (Gradient ascent on ‖J‖ over `a`, `scripts/lrn_lipschitz.py`,
//! finds no value above `k^(−β)`; the proven bound is what enters the product.)

use super::dense::singular_values;
use crate::Result;
use tch::{Kind, Tensor};

/// Largest number of 1-D windows (size `k`, stride `s`, padding `p`, dilation `d`, `out` windows) that
/// cover one of the `len` input positions.
pub(crate) fn max_cover_1d(len: i64, k: i64, s: i64, p: i64, d: i64, out: i64) -> i64 {
    let mut count = vec![0i64; len.max(0) as usize];
    for o in 0..out {
        for t in 0..k {
            let pos = o * s - p + d * t;
            if (0..len).contains(&pos) {
                count[pos as usize] += 1;
            }
        }
    }
    count.into_iter().max().unwrap_or(0)
}

/// ℓ₂ Lipschitz constant of max-pooling on an `input` `[H, W]` grid: `√(c_h · c_w)` (exact, see above).
pub fn max_pool_lipschitz(
    input: [i64; 2],
    kernel: [i64; 2],
    stride: [i64; 2],
    padding: [i64; 2],
    dilation: [i64; 2],
    output: [i64; 2],
) -> (f64, i64) {
    let c: i64 = (0..2)
        .map(|i| {
            max_cover_1d(
                input[i],
                kernel[i],
                stride[i],
                padding[i],
                dilation[i],
                output[i],
            )
        })
        .product();
    ((c as f64).sqrt(), c)
}

/// 1-D average-pooling matrix [out, len] (windows of `k`, stride `s`, padding `p`, divisor `k`).
pub(crate) fn avg_matrix_1d(len: i64, k: i64, s: i64, p: i64, out: i64) -> Tensor {
    let mut a = vec![0f64; (out * len) as usize];
    for o in 0..out {
        for t in 0..k {
            let pos = o * s - p + t;
            if (0..len).contains(&pos) {
                a[(o * len + pos) as usize] += 1.0 / k as f64;
            }
        }
    }
    Tensor::from_slice(&a).reshape([out, len])
}

/// 1-D adaptive-average-pooling matrix [out, len] (PyTorch's bins: `⌊o·len/out⌋ .. ⌈(o+1)·len/out⌉`).
pub(crate) fn adaptive_matrix_1d(len: i64, out: i64) -> Tensor {
    let mut a = vec![0f64; (out * len) as usize];
    for o in 0..out {
        let start = (o * len) / out;
        let end = ((o + 1) * len + out - 1) / out;
        for pos in start..end {
            a[(o * len + pos) as usize] = 1.0 / (end - start) as f64;
        }
    }
    Tensor::from_slice(&a).reshape([out, len])
}

/// `(lower, upper)` singular values of the separable operator `P_h ⊗ P_w`.
pub(crate) fn separable_bounds(ph: &Tensor, pw: &Tensor) -> Result<(f64, f64)> {
    let sh = singular_values(&ph.to_kind(Kind::Double))?;
    let sw = singular_values(&pw.to_kind(Kind::Double))?;
    let (nh, nw) = (sh.size()[0], sw.size()[0]);
    Ok((
        sh.double_value(&[nh - 1]) * sw.double_value(&[nw - 1]),
        sh.double_value(&[0]) * sw.double_value(&[0]),
    ))
}

/// Lower and upper limits of the ℓ₂ Lipschitz constant of local response normalisation (see above):
/// `(k^(−β), k^(−β) + 2β n^(3/4) h*)`.
pub(crate) fn lrn_lipschitz(size: i64, beta: f64, k: f64) -> (f64, f64) {
    let at_zero = k.powf(-beta);
    let h = at_zero * beta.powf(beta) / (beta + 1.0).powf(beta + 1.0);
    (at_zero, at_zero + 2.0 * beta * (size as f64).powf(0.75) * h)
}
