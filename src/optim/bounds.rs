//! Box constraints l <= x <= u of the paper's attack (§4.1: x + r ∈ [0, 1]^m): the public [`Bounds`],
//! their checked, on-device form [`Boxes`], the projection P onto the box and the binding set.

use super::ops::is_float;
use super::OptimError;
use crate::Result;
use tch::{Kind, Tensor};

/// Box constraints l <= x <= u.
#[derive(Debug)]
pub enum Bounds {
    /// Unconstrained (plain L-BFGS).
    None,
    /// The same interval for every coordinate of every problem (±inf allowed).
    Scalar { lower: f64, upper: f64 },
    /// Per coordinate ([n]) or per problem and coordinate ([B, n]); ±inf allowed.
    Tensors { lower: Tensor, upper: Tensor },
}

/// Resolved bounds on the device, in x's dtype.
pub(crate) enum Boxes {
    Free,
    Scalar(f64, f64),
    /// [1, n] (shared) or [b, n] (per problem; compacted with the state).
    Rows {
        lo: Tensor,
        hi: Tensor,
        per_problem: bool,
    },
}

impl Boxes {
    /// Checks `bounds` against x0 [B, n] = [`bsz`, `n`] and puts them on x0's device in its dtype.
    pub(crate) fn resolve(bounds: &Bounds, x0: &Tensor, bsz: i64, n: i64) -> Result<Boxes> {
        match bounds {
            Bounds::None => Ok(Boxes::Free),
            Bounds::Scalar { lower, upper } => {
                if lower.is_nan() || upper.is_nan() || lower > upper {
                    return Err(OptimError::ScalarBounds {
                        lower: *lower,
                        upper: *upper,
                    }
                    .into());
                }
                if *lower == f64::NEG_INFINITY && *upper == f64::INFINITY {
                    Ok(Boxes::Free)
                } else {
                    Ok(Boxes::Scalar(*lower, *upper))
                }
            }
            Bounds::Tensors { lower, upper } => Self::resolve_tensors(lower, upper, x0, bsz, n),
        }
    }

    fn resolve_tensors(
        lower: &Tensor,
        upper: &Tensor,
        x0: &Tensor,
        bsz: i64,
        n: i64,
    ) -> Result<Boxes> {
        let (kind, device) = (x0.kind(), x0.device());
        let (ls, us) = (lower.size(), upper.size());
        if ls != us {
            return Err(OptimError::BoundsShapesDiffer {
                lower: ls,
                upper: us,
            }
            .into());
        }
        let per_problem = match ls.as_slice() {
            [k] if *k == n => false,
            [b, k] if *b == bsz && *k == n => true,
            _ => return Err(OptimError::BoundsShape { got: ls, b: bsz, n }.into()),
        };
        if !is_float(lower.kind()) || !is_float(upper.kind()) {
            return Err(OptimError::BoundsKind {
                lower: lower.kind(),
                upper: upper.kind(),
            }
            .into());
        }
        let lo = lower.f_to_device(device)?.f_to_kind(kind)?;
        let hi = upper.f_to_device(device)?.f_to_kind(kind)?;
        let crossed = lo
            .f_isnan()?
            .f_logical_or(&hi.f_isnan()?)?
            .f_logical_or(&lo.f_gt_tensor(&hi)?)?; // [n] or [B, n]
        if i64::try_from(crossed.f_any()?)? != 0 {
            let count = i64::try_from(crossed.f_sum(Kind::Int64)?)?;
            return Err(OptimError::BoundsCrossed { count }.into());
        }
        let (lo, hi) = if per_problem {
            (lo, hi)
        } else {
            (lo.f_view([1, n])?, hi.f_view([1, n])?)
        };
        Ok(Boxes::Rows {
            lo,
            hi,
            per_problem,
        })
    }

    pub(crate) fn is_free(&self) -> bool {
        matches!(self, Boxes::Free)
    }

    /// Bounds for the rows `sub` (None = all rows).
    fn rows(&self, sub: Option<&Tensor>) -> Result<Option<(Tensor, Tensor)>> {
        Ok(match self {
            Boxes::Rows {
                lo,
                hi,
                per_problem: true,
            } => match sub {
                Some(s) => Some((lo.f_index_select(0, s)?, hi.f_index_select(0, s)?)),
                None => Some((lo.shallow_clone(), hi.shallow_clone())),
            },
            Boxes::Rows { lo, hi, .. } => Some((lo.shallow_clone(), hi.shallow_clone())),
            _ => None,
        })
    }

    /// P(x) for rows `sub` of the state (x has those rows).
    pub(crate) fn project(&self, x: &Tensor, sub: Option<&Tensor>) -> Result<Tensor> {
        Ok(match self {
            Boxes::Free => x.shallow_clone(),
            Boxes::Scalar(l, u) => x.f_clamp(*l, *u)?,
            Boxes::Rows { .. } => {
                let (lo, hi) = self.rows(sub)?.expect("rows");
                x.f_clamp_tensor(Some(&lo), Some(&hi))?
            }
        })
    }

    /// ‖P(x - g) - x‖_∞ per row [b], and the free mask F [b, n] in x's dtype (None when
    /// unconstrained). A coordinate is binding iff P(x - g)_i = x_i and g_i != 0 (on a bound with the
    /// gradient pushing outward); every other coordinate is free.
    pub(crate) fn pg_and_free(&self, x: &Tensor, g: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        if self.is_free() {
            return Ok((g.f_abs()?.f_amax([-1i64].as_slice(), false)?, None));
        }
        let p = self.project(&x.f_sub(g)?, None)?.f_sub(x)?; // [b, n]
        let free = p
            .f_ne(0.0)?
            .f_logical_or(&g.f_eq(0.0)?)?
            .f_to_kind(x.kind())?;
        Ok((p.f_abs()?.f_amax([-1i64].as_slice(), false)?, Some(free)))
    }

    /// Keep the rows `keep` of per-problem bounds (finished problems leave the state).
    pub(crate) fn compact(&mut self, keep: &Tensor) -> Result<()> {
        if let Boxes::Rows {
            lo,
            hi,
            per_problem: true,
        } = self
        {
            *lo = lo.f_index_select(0, keep)?;
            *hi = hi.f_index_select(0, keep)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use tch::Device;

    fn t(v: &[f64], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).view(shape)
    }

    fn vals(x: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(&x.flatten(0, -1)).unwrap()
    }

    fn x0() -> Tensor {
        Tensor::zeros([2, 3], (Kind::Double, Device::Cpu))
    }

    #[test]
    fn projection_clamps_per_problem_rows_and_subsets() {
        let bounds = Bounds::Tensors {
            lower: t(&[0.0, 0.0, f64::NEG_INFINITY, -1.0, -1.0, -1.0], &[2, 3]),
            upper: t(&[1.0, 1.0, 1.0, 0.0, f64::INFINITY, 0.5], &[2, 3]),
        };
        let boxes = Boxes::resolve(&bounds, &x0(), 2, 3).unwrap();
        let x = t(&[2.0, -2.0, -5.0, 2.0, 2.0, -2.0], &[2, 3]);
        let p = boxes.project(&x, None).unwrap();
        assert_eq!(vals(&p), [1.0, 0.0, -5.0, 0.0, 2.0, -1.0]);
        // Row 1 alone, as during a line-search round where only problem 1 still searches.
        let sub = Tensor::from_slice(&[1i64]);
        let p1 = boxes.project(&x.get(1).unsqueeze(0), Some(&sub)).unwrap();
        assert_eq!(vals(&p1), [0.0, 2.0, -1.0]);
    }

    #[test]
    fn shared_and_scalar_bounds() {
        let shared = Bounds::Tensors {
            lower: t(&[0.0, 0.0, 0.0], &[3]),
            upper: t(&[1.0, 2.0, 3.0], &[3]),
        };
        let boxes = Boxes::resolve(&shared, &x0(), 2, 3).unwrap();
        let x = t(&[5.0, 5.0, 5.0, -1.0, 1.5, 2.5], &[2, 3]);
        assert_eq!(
            vals(&boxes.project(&x, None).unwrap()),
            [1.0, 2.0, 3.0, 0.0, 1.5, 2.5]
        );
        let inf = Bounds::Scalar {
            lower: f64::NEG_INFINITY,
            upper: f64::INFINITY,
        };
        assert!(Boxes::resolve(&inf, &x0(), 2, 3).unwrap().is_free());
        let unit = Bounds::Scalar {
            lower: 0.0,
            upper: 1.0,
        };
        let boxes = Boxes::resolve(&unit, &x0(), 2, 3).unwrap();
        assert_eq!(
            vals(&boxes.project(&x, None).unwrap()),
            [1.0, 1.0, 1.0, 0.0, 1.0, 1.0]
        );
    }

    #[test]
    fn binding_set_is_bound_with_outward_gradient() {
        let unit = Bounds::Scalar {
            lower: 0.0,
            upper: 1.0,
        };
        let boxes = Boxes::resolve(&unit, &x0(), 1, 5).unwrap();
        // at l, g > 0: binding | at l, g < 0: free | at u, g < 0: binding | inside: free | at u, g = 0: free
        let x = t(&[0.0, 0.0, 1.0, 0.5, 1.0], &[1, 5]);
        let g = t(&[2.0, -0.25, -3.0, 0.1, 0.0], &[1, 5]);
        let (pg, free) = boxes.pg_and_free(&x, &g).unwrap();
        assert_eq!(vals(&free.unwrap()), [0.0, 1.0, 0.0, 1.0, 1.0]);
        // P(x - g) - x = [0, 0.25, 0, -0.1, 0]
        assert_eq!(vals(&pg), [0.25]);
        let (pg, free) = Boxes::Free.pg_and_free(&x, &g).unwrap();
        assert!(free.is_none());
        assert_eq!(vals(&pg), [3.0]);
    }

    #[test]
    fn compaction_keeps_per_problem_rows() {
        let bounds = Bounds::Tensors {
            lower: t(&[0.0, 1.0, 2.0], &[3, 1]),
            upper: t(&[10.0, 11.0, 12.0], &[3, 1]),
        };
        let x = Tensor::zeros([3, 1], (Kind::Double, Device::Cpu));
        let mut boxes = Boxes::resolve(&bounds, &x, 3, 1).unwrap();
        boxes.compact(&Tensor::from_slice(&[0i64, 2])).unwrap();
        let p = boxes.project(&t(&[-5.0, -5.0], &[2, 1]), None).unwrap();
        assert_eq!(vals(&p), [0.0, 2.0]);
    }

    #[test]
    fn bad_bounds_are_specific_errors() {
        let err = |b: Bounds| match Boxes::resolve(&b, &x0(), 2, 3) {
            Err(Error::Optim(e)) => e,
            Err(e) => panic!("not an optimiser error: {e}"),
            Ok(_) => panic!("accepted"),
        };
        let e = err(Bounds::Scalar {
            lower: 1.0,
            upper: 0.0,
        });
        assert!(matches!(e, OptimError::ScalarBounds { .. }), "{e}");
        let e = err(Bounds::Tensors {
            lower: t(&[0.0; 4], &[4]),
            upper: t(&[1.0; 4], &[4]),
        });
        assert!(
            matches!(e, OptimError::BoundsShape { b: 2, n: 3, .. }),
            "{e}"
        );
        let e = err(Bounds::Tensors {
            lower: t(&[0.0; 3], &[3]),
            upper: t(&[1.0; 6], &[2, 3]),
        });
        assert!(matches!(e, OptimError::BoundsShapesDiffer { .. }), "{e}");
        let e = err(Bounds::Tensors {
            lower: Tensor::zeros([3], (Kind::Int64, Device::Cpu)),
            upper: Tensor::ones([3], (Kind::Int64, Device::Cpu)),
        });
        assert!(matches!(e, OptimError::BoundsKind { .. }), "{e}");
        let e = err(Bounds::Tensors {
            lower: t(&[0.0, 2.0, f64::NAN], &[3]),
            upper: t(&[1.0, 1.0, 1.0], &[3]),
        });
        assert!(matches!(e, OptimError::BoundsCrossed { count: 2 }), "{e}");
    }
}
