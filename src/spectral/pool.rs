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

use super::dense::singular_values;
use crate::Result;
use tch::{Kind, Tensor};

/// Largest number of 1-D windows (size `k`, stride `s`, padding `p`, dilation `d`, `out` windows) that
/// cover one of the `len` input positions.
pub fn max_cover_1d(len: i64, k: i64, s: i64, p: i64, d: i64, out: i64) -> i64 {
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
pub fn avg_matrix_1d(len: i64, k: i64, s: i64, p: i64, out: i64) -> Tensor {
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
pub fn adaptive_matrix_1d(len: i64, out: i64) -> Tensor {
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
pub fn separable_bounds(ph: &Tensor, pw: &Tensor) -> Result<(f64, f64)> {
    let sh = singular_values(&ph.to_kind(Kind::Double))?;
    let sw = singular_values(&pw.to_kind(Kind::Double))?;
    let (nh, nw) = (sh.size()[0], sw.size()[0]);
    Ok((
        sh.double_value(&[nh - 1]) * sw.double_value(&[nw - 1]),
        sh.double_value(&[0]) * sw.double_value(&[0]),
    ))
}
