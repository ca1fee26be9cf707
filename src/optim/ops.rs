//! Small tensor helpers of the engine: row-wise dot products, host transfers, dtype facts.

use crate::Result;
use tch::{Device, Kind, Tensor};

/// Floating-point dtypes the engine runs in.
pub(crate) fn is_float(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
    )
}

/// Machine epsilon of a floating-point dtype (f32's for anything else).
pub(crate) fn dtype_eps(kind: Kind) -> f64 {
    match kind {
        Kind::Double => f64::EPSILON,
        Kind::Half => 9.765625e-4,
        Kind::BFloat16 => 7.8125e-3,
        _ => f32::EPSILON as f64,
    }
}

/// gᵀd < 0 (false for NaN).
pub(crate) fn is_descent(gtd: f64) -> bool {
    gtd < 0.0
}

/// Row-wise dot products of [b, n] tensors → [b].
/// (`linalg_vecdot`: one pass, no [b, n] temporary; measured 20% faster than mul + sum at [10000, 784].)
pub(crate) fn bdot(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(Tensor::f_linalg_vecdot(a, b, -1)?)
}

/// A tensor's values on the host, as f64.
pub(crate) fn to_vec(t: &Tensor) -> Result<Vec<f64>> {
    Ok(Vec::<f64>::try_from(
        &t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?,
    )?)
}

/// Several per-row tensors' values on the host in ONE device → host copy (each flattened, packed as f64,
/// copied, split): on a GPU every copy is a blocking round trip, so the engine packs what it reads together.
pub(crate) fn to_vecs<const K: usize>(ts: [&Tensor; K]) -> Result<[Vec<f64>; K]> {
    let parts = ts
        .iter()
        .map(|t| t.f_detach()?.f_reshape([-1])?.f_to_kind(Kind::Double))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let lens: Vec<usize> = parts.iter().map(|t| t.size()[0] as usize).collect();
    let all = to_vec(&Tensor::f_cat(&parts, 0)?)?;
    let mut at = 0;
    Ok(std::array::from_fn(|k| {
        let v = all[at..at + lens[k]].to_vec();
        at += lens[k];
        v
    }))
}

/// Row indices as an i64 tensor on `device`.
pub(crate) fn idx_tensor(v: &[i64], device: Device) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(v)?.f_to_device(device)?)
}

/// Per-row values (`v` [b], host) as a [b, 1] column in `kind` on `device`, to scale rows of [b, n].
pub(crate) fn column(v: &[f64], kind: Kind, device: Device) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(v)?
        .f_to_kind(kind)?
        .f_to_device(device)?
        .f_unsqueeze(1)?)
}

/// A per-row flag (`v` [b], host) as a [b, 1] bool column on `device`, to select rows of [b, n].
pub(crate) fn mask_column(v: &[bool], device: Device) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(v)?
        .f_to_device(device)?
        .f_unsqueeze(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_dots_and_columns() {
        let a = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0]).view([2, 2]);
        let b = Tensor::from_slice(&[1.0f64, 1.0, 0.5, -1.0]).view([2, 2]);
        assert_eq!(to_vec(&bdot(&a, &b).unwrap()).unwrap(), [3.0, -2.5]);
        let [x, y] = to_vecs([&a, &b.narrow(0, 0, 1).to_kind(Kind::Float)]).unwrap();
        assert_eq!((x, y), (vec![1.0, 2.0, 3.0, 4.0], vec![1.0, 1.0]));
        let c = column(&[2.0, 3.0], Kind::Float, Device::Cpu).unwrap();
        assert_eq!((c.size(), c.kind()), (vec![2, 1], Kind::Float));
        let m = mask_column(&[true, false], Device::Cpu).unwrap();
        assert_eq!((m.size(), m.kind()), (vec![2, 1], Kind::Bool));
        assert!(is_descent(-1.0) && !is_descent(0.0) && !is_descent(f64::NAN));
        assert_eq!(dtype_eps(Kind::Float), f32::EPSILON as f64);
        assert!(is_float(Kind::Half) && !is_float(Kind::Int64));
    }
}
