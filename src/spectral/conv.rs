//! Conv-layer frame bounds through the Fourier transform of the kernel (paper §4.3, Table 5).
//!
//! A 2-D convolution with stride `s` on a circular `N_h × N_w` grid (`N` a multiple of `s`) is, after the
//! *phase split* `x_{c,α,β}[m, n] = x[c, s·m + α, s·n + β]` (a permutation, hence unitary), a stride-1
//! circular correlation on the `(N_h/s) × (N_w/s)` torus with `C·s²` input channels. Its matrix is block
//! circulant, so the 2-D DFT block-diagonalises it: for each frequency ω the block is the
//! `F × C·s²` matrix `A(ω) = Σ_t K_split[:, :, t] e^{-i⟨ω,t⟩}`. The singular values of the whole operator
//! are exactly the union over ω of the singular values of `A(ω)`; the upper frame bound is
//! `sup_ω ‖A(ω)‖`, the lower one `inf_ω σ_min(A(ω))`. This is the paper's formula with the normalisation
//! corrected (the paper's strided formula uses the unsplit kernel at the `s²` aliased frequencies; the
//! block of the phase-split kernel needs no extra constant). Dilation embeds the kernel in a larger one
//! with zeros; groups make each block block-diagonal (we batch the `g` diagonal blocks separately);
//! padding is a circular shift of the input (unitary, no effect on singular values).
//!
//! Zero padding (what `torch.nn.functional.conv2d` computes) is the circular operator on a torus of size
//! `≥ H + 2p` composed with an isometric embedding and a coordinate projection, so the circular bound on
//! that torus ([`zero_bound_torus`]) is an upper bound for it; the exact value comes from
//! [`super::power`] through [`ConvOp`] (conv2d and its adjoint conv_transpose2d).

use super::SpectralError;
use crate::Result;
use tch::{Kind, Tensor};

/// Geometry of a 2-D convolution, `[h, w]` pairs as in PyTorch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ConvGeom {
    pub stride: [i64; 2],
    pub padding: [i64; 2],
    pub dilation: [i64; 2],
    pub groups: i64,
}

impl ConvGeom {
    /// Square geometry: stride `s`, padding `p`, dilation `d`, `groups`.
    pub fn square(s: i64, p: i64, d: i64, groups: i64) -> Self {
        ConvGeom {
            stride: [s, s],
            padding: [p, p],
            dilation: [d, d],
            groups,
        }
    }

    /// Checks that every number is in range (stride, dilation, groups ≥ 1; padding ≥ 0).
    pub fn validate(&self, layer: &str) -> Result<()> {
        let ok = self.stride.iter().all(|&v| v >= 1)
            && self.dilation.iter().all(|&v| v >= 1)
            && self.padding.iter().all(|&v| v >= 0)
            && self.groups >= 1;
        if ok {
            Ok(())
        } else {
            Err(SpectralError::ConvGeometry {
                layer: layer.to_string(),
                geom: *self,
            }
            .into())
        }
    }
}

/// Extent of the dilated kernel: `d·(k − 1) + 1`.
pub(crate) fn dilated_extent(k: i64, d: i64) -> i64 {
    d * (k - 1) + 1
}

/// Output size of a zero-padded convolution (PyTorch's formula), or `None` if the input is too small.
pub(crate) fn conv_output_size(
    input: [i64; 2],
    kernel: [i64; 2],
    g: &ConvGeom,
) -> Option<[i64; 2]> {
    let mut out = [0; 2];
    for i in 0..2 {
        let span = input[i] + 2 * g.padding[i] - dilated_extent(kernel[i], g.dilation[i]);
        if span < 0 {
            return None;
        }
        out[i] = span / g.stride[i] + 1;
    }
    Some(out)
}

fn round_up(v: i64, m: i64) -> i64 {
    (v + m - 1) / m * m
}

/// Torus of the `circular` mode for an `H × W` input: `H, W` rounded up to multiples of the stride
/// (equal to `H × W` when the stride divides them, as for AlexNet's conv1 at 224 with stride 4).
pub fn circular_torus(input: [i64; 2], g: &ConvGeom) -> [i64; 2] {
    [
        round_up(input[0], g.stride[0]),
        round_up(input[1], g.stride[1]),
    ]
}

/// Smallest torus (multiple of the stride, ≥ `H + 2p`) on which the zero-padded convolution is a
/// restriction of the circular one: the FFT bound on it is an upper bound of the zero-padded norm.
pub fn zero_bound_torus(input: [i64; 2], g: &ConvGeom) -> [i64; 2] {
    [
        round_up(input[0] + 2 * g.padding[0], g.stride[0]),
        round_up(input[1] + 2 * g.padding[1], g.stride[1]),
    ]
}

/// Per-frequency blocks of a convolution on a circular `torus` grid (multiples of the stride):
/// `weight` [F, C/g, kh, kw] → complex128 [M_h·M_w·g, F/g, (C/g)·s_h·s_w], with `M = torus / stride`.
pub(crate) fn frequency_blocks(weight: &Tensor, g: &ConvGeom, torus: [i64; 2]) -> Result<Tensor> {
    let ws = weight.size();
    if ws.len() != 4 {
        return Err(SpectralError::WeightShape {
            what: "conv",
            want: "[F, C/groups, kh, kw]",
            shape: ws,
        }
        .into());
    }
    let (f, cg, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    if f % g.groups != 0 {
        return Err(SpectralError::Groups {
            shape: ws,
            groups: g.groups,
        }
        .into());
    }
    let (sh, sw) = (g.stride[0], g.stride[1]);
    if torus[0] % sh != 0 || torus[1] % sw != 0 || torus[0] <= 0 || torus[1] <= 0 {
        return Err(SpectralError::Torus {
            torus,
            stride: g.stride,
        }
        .into());
    }
    let (mh, mw) = (torus[0] / sh, torus[1] / sw);
    let w = weight.to_kind(Kind::Double);
    // Dilate: [F, Cg, Eh, Ew] with the taps at multiples of the dilation.
    let (eh, ew) = (
        dilated_extent(kh, g.dilation[0]),
        dilated_extent(kw, g.dilation[1]),
    );
    let wd = if g.dilation == [1, 1] {
        w
    } else {
        let dev = w.device();
        let idx_h = Tensor::arange_start_step(0, eh, g.dilation[0], (Kind::Int64, dev));
        let idx_w = Tensor::arange_start_step(0, ew, g.dilation[1], (Kind::Int64, dev));
        // Columns first: [F, Cg, kh, Ew], then rows: [F, Cg, Eh, Ew].
        let cols = Tensor::zeros([f, cg, kh, ew], (Kind::Double, dev)).index_copy(3, &idx_w, &w);
        let z = Tensor::zeros([f, cg, eh, ew], (Kind::Double, dev));
        z.index_copy(2, &idx_h, &cols)
    };
    // Phase split: pad to multiples of the stride, [F, Cg, Th, sh, Tw, sw] → [F, Cg·sh·sw, Th, Tw].
    let (ph, pw) = (round_up(eh, sh), round_up(ew, sw));
    let wp = wd.constant_pad_nd([0, pw - ew, 0, ph - eh]);
    let (th, tw) = (ph / sh, pw / sw);
    let split = wp
        .reshape([f, cg, th, sh, tw, sw])
        .permute([0, 1, 3, 5, 2, 4])
        .reshape([f, cg * sh * sw, th, tw]);
    // Fold taps modulo the torus when the split kernel is larger than it (tiny inputs).
    let split = fold_last(&split, 2, th, mh);
    let split = fold_last(&split, 3, tw, mw);
    let cs = cg * sh * sw;
    // [F, Cs, Mh, Mw] complex → [Mh, Mw, F, Cs] → [Mh·Mw·g, F/g, Cs]
    let spec = split.fft_fft2(Some([mh, mw].as_slice()), [-2, -1], "backward");
    Ok(spec
        .permute([2, 3, 0, 1])
        .reshape([mh * mw * g.groups, f / g.groups, cs]))
}

/// Sums taps `t` and `t + M` (circular wrap) along `dim` when the size `t_len` exceeds `m`.
fn fold_last(t: &Tensor, dim: i64, t_len: i64, m: i64) -> Tensor {
    if t_len <= m {
        return t.shallow_clone();
    }
    let q = (t_len + m - 1) / m;
    let mut pad = vec![0i64; 2 * (4 - dim as usize)];
    // constant_pad_nd pads the last dim first: the pair for `dim` is the last pair in the list.
    let last = pad.len() - 1;
    pad[last] = q * m - t_len;
    let padded = t.constant_pad_nd(pad.as_slice());
    let mut shape = padded.size();
    shape[dim as usize] = m;
    shape.insert(dim as usize, q);
    padded
        .reshape(shape.as_slice())
        .sum_dim_intlist([dim].as_slice(), false, None::<Kind>)
}

/// All singular values of the circular convolution on `torus`, descending: f64 [M_h·M_w·g·min(F/g, Cs)].
pub fn fft_singular_values(weight: &Tensor, g: &ConvGeom, torus: [i64; 2]) -> Result<Tensor> {
    let blocks = frequency_blocks(weight, g, torus)?; // [B, F/g, Cs] complex128
    let sz = blocks.size();
    // Singular values as square roots of the eigenvalues of the smaller Gram matrix (Hermitian, batched
    // eigvalsh: several times faster than LAPACK's batched SVD). In f64 the relative error of σ is about
    // eps·(σ_max/σ)², far below the 1e-6 the tests demand for the layers' conditioning.
    let gram = if sz[1] < sz[2] {
        blocks.matmul(&blocks.transpose(1, 2).conj()) // [B, F/g, F/g]
    } else {
        blocks.transpose(1, 2).conj().matmul(&blocks) // [B, Cs, Cs]
    };
    let s = gram.f_linalg_eigvalsh("L")?.clamp_min(0.0).sqrt(); // [B, min]
    Ok(s.reshape([-1]).sort(0, true).0)
}

/// `(lower, upper)` = (min, max) singular value of the circular convolution on `torus`.
pub fn fft_bounds(weight: &Tensor, g: &ConvGeom, torus: [i64; 2]) -> Result<(f64, f64, Tensor)> {
    let s = fft_singular_values(weight, g, torus)?;
    let n = s.size()[0];
    if n == 0 {
        return Err(SpectralError::Empty {
            what: "the circular convolution",
        }
        .into());
    }
    let upper = s.double_value(&[0]);
    let lower = s.double_value(&[n - 1]);
    Ok((lower, upper, s))
}

/// The zero-padded convolution as a linear operator (no bias) on one `[C, H, W]` input, with its adjoint.
pub struct ConvOp {
    pub weight: Tensor,
    pub geom: ConvGeom,
    pub input: [i64; 3],
    pub output: [i64; 3],
    output_padding: [i64; 2],
}

impl ConvOp {
    /// `weight` [F, C/g, kh, kw], input `[C, H, W]`. Fails if the input is too small or channels disagree.
    pub fn new(weight: &Tensor, geom: ConvGeom, input: [i64; 3]) -> Result<Self> {
        let ws = weight.size();
        if ws.len() != 4 || ws[1] * geom.groups != input[0] {
            return Err(SpectralError::OperatorChannels {
                shape: ws,
                groups: geom.groups,
                channels: input[0],
            }
            .into());
        }
        let out =
            conv_output_size([input[1], input[2]], [ws[2], ws[3]], &geom).ok_or_else(|| {
                SpectralError::OperatorInputTooSmall {
                    input,
                    kernel: [
                        dilated_extent(ws[2], geom.dilation[0]),
                        dilated_extent(ws[3], geom.dilation[1]),
                    ],
                }
            })?;
        let mut op = [0; 2];
        for i in 0..2 {
            let back = (out[i] - 1) * geom.stride[i] - 2 * geom.padding[i]
                + dilated_extent(ws[2 + i], geom.dilation[i]);
            op[i] = input[1 + i] - back;
        }
        Ok(ConvOp {
            weight: weight.shallow_clone(),
            geom,
            input,
            output: [ws[0], out[0], out[1]],
            output_padding: op,
        })
    }

    /// Same operator with the weight in another kind (e.g. f32 for speed).
    pub fn to_kind(&self, kind: Kind) -> Self {
        ConvOp {
            weight: self.weight.to_kind(kind),
            geom: self.geom,
            input: self.input,
            output: self.output,
            output_padding: self.output_padding,
        }
    }

    /// Input dimension `C·H·W`.
    pub fn n_in(&self) -> i64 {
        self.input.iter().product()
    }

    /// Output dimension `F·H'·W'`.
    pub fn n_out(&self) -> i64 {
        self.output.iter().product()
    }

    /// `x` [B, C, H, W] → [B, F, H', W'] (zero padding, no bias).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let g = &self.geom;
        Ok(x.f_conv2d(
            &self.weight,
            None::<Tensor>,
            g.stride,
            g.padding,
            g.dilation,
            g.groups,
        )?)
    }

    /// Adjoint: `y` [B, F, H', W'] → [B, C, H, W] (conv_transpose2d with the matching output padding).
    pub fn adjoint(&self, y: &Tensor) -> Result<Tensor> {
        let g = &self.geom;
        Ok(y.f_conv_transpose2d(
            &self.weight,
            None::<Tensor>,
            g.stride,
            g.padding,
            self.output_padding,
            g.groups,
            g.dilation,
        )?)
    }
}
