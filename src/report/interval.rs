//! 95% Wilson score intervals for the rates the report shows (errors, success rates, transfer cells,
//! accuracies): `k` of `n` examples.

/// The 95% Wilson interval of a proportion with `k` successes in `n` trials (z = 1.96); (0, 0) for
/// n = 0.
pub fn wilson(k: f64, n: f64) -> (f64, f64) {
    if n <= 0.0 {
        return (0.0, 0.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let p = k / n;
    let z2n = z * z / n;
    let centre = (p + z2n / 2.0) / (1.0 + z2n);
    let half = z * (p * (1.0 - p) / n + z2n / (4.0 * n)).sqrt() / (1.0 + z2n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// A rate `p` (a fraction of `n` examples) as `7.35% [6.85, 7.88]`: percentages, the interval at 95%.
pub fn pct_ci(p: f64, n: usize) -> String {
    let k = (p * n as f64).round();
    let (lo, hi) = wilson(k, n as f64);
    format!("{:.2}% [{:.2}, {:.2}]", 100.0 * p, 100.0 * lo, 100.0 * hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_the_closed_form_at_known_points() {
        // k = 0: lower 0, upper z²/(n + z²).
        let (lo, hi) = wilson(0.0, 100.0);
        let z2 = 1.959_963_984_540_054_f64.powi(2);
        assert!(lo.abs() < 1e-15 && (hi - z2 / (100.0 + z2)).abs() < 1e-12);
        // scipy.stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson") (scipy 1.17)
        for (k, n, want_lo, want_hi) in [
            (
                50.0,
                100.0,
                0.403_831_530_365_995_6,
                0.596_168_469_634_004_4,
            ),
            (
                735.0,
                10_000.0,
                0.068_547_502_501_841_12,
                0.078_780_048_108_346,
            ),
            (
                1.0,
                500.0,
                0.000_353_136_394_559_274_6,
                0.011_240_706_705_146_757,
            ),
        ] {
            let (lo, hi) = wilson(k, n);
            assert!(
                (lo - want_lo).abs() < 1e-12 && (hi - want_hi).abs() < 1e-12,
                "{k}/{n}"
            );
        }
        assert_eq!(pct_ci(0.5, 100), "50.00% [40.38, 59.62]");
    }
}
