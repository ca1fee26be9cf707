//! Statistics of the §3 comparison, against scipy (tests/units.rs): the two-sided Mann–Whitney U test
//! (normal approximation, as scipy's `mannwhitneyu(method="asymptotic")`), percentile bootstrap intervals
//! of a mean and of a difference of means, and the complementary error function they need.

use crate::results::units::{Estimate, MannWhitney};
use rand::Rng;

/// Complementary error function (W. J. Cody's rational Chebyshev fit as in Numerical Recipes' `erfcc`,
/// fractional error < 1.2e-7 everywhere).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let ans = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 {
        ans
    } else {
        2.0 - ans
    }
}

/// Two-sided Mann-Whitney U test of `a` vs `b`.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&v| (v, true))
        .chain(b.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let mut r1 = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        for e in &all[i..=j] {
            if e.1 {
                r1 += rank;
            }
        }
        i = j + 1;
    }
    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let u1 = r1 - n1f * (n1f + 1.0) / 2.0;
    let u2 = n1f * n2f - u1;
    let mu = n1f * n2f / 2.0;
    let var = n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
    if var <= 0.0 {
        return Some(MannWhitney {
            u: u1,
            z: 0.0,
            p_value: 1.0,
        });
    }
    let z = (u1.max(u2) - mu - 0.5) / var.sqrt();
    Some(MannWhitney {
        u: u1,
        z,
        p_value: erfc(z / std::f64::consts::SQRT_2).min(1.0),
    })
}

pub(crate) fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Mean of `v` with a `level` (e.g. 0.95) percentile bootstrap interval from `reps` resamples.
pub fn bootstrap_mean(v: &[f64], reps: usize, level: f64, rng: &mut impl Rng) -> Option<Estimate> {
    if v.is_empty() {
        return None;
    }
    let mut ms: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            (0..v.len())
                .map(|_| v[rng.gen_range(0..v.len())])
                .sum::<f64>()
                / v.len() as f64
        })
        .collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let a = (1.0 - level) / 2.0;
    Some(Estimate {
        mean: mean(v),
        lo: quantile(&ms, a),
        hi: quantile(&ms, 1.0 - a),
    })
}

/// Difference of means mean(a) − mean(b) with a bootstrap interval (each sample resampled on its own).
pub fn bootstrap_diff(
    a: &[f64],
    b: &[f64],
    reps: usize,
    level: f64,
    rng: &mut impl Rng,
) -> Option<Estimate> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut ds: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let ma = (0..a.len())
                .map(|_| a[rng.gen_range(0..a.len())])
                .sum::<f64>()
                / a.len() as f64;
            let mb = (0..b.len())
                .map(|_| b[rng.gen_range(0..b.len())])
                .sum::<f64>()
                / b.len() as f64;
            ma - mb
        })
        .collect();
    ds.sort_by(|x, y| x.total_cmp(y));
    let al = (1.0 - level) / 2.0;
    Some(Estimate {
        mean: mean(a) - mean(b),
        lo: quantile(&ds, al),
        hi: quantile(&ds, 1.0 - al),
    })
}
