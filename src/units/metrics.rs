//! The measures of §3 made numbers: label purity (share of the most common label) and label entropy of
//! each direction's top-T images, their chance level on random T-subsets, and the summary that compares
//! units with random directions (bootstrap intervals, Mann–Whitney tests, a plain-words conclusion).

use crate::results::units::{
    Chance, Comparison, DirectionKind, DirectionMetrics, Estimate, KindSummary, MannWhitney,
    TopList,
};
use crate::units::scan::Scan;
use crate::units::stats::{bootstrap_diff, bootstrap_mean, mann_whitney, mean, quantile};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Label counts of a set of labels (length `classes`, labels outside 0..classes are grown into).
pub fn label_counts(labels: &[i64]) -> Vec<usize> {
    let max = labels.iter().copied().max().unwrap_or(0).max(0) as usize;
    let mut c = vec![0usize; max + 1];
    for &l in labels {
        if l >= 0 {
            c[l as usize] += 1;
        }
    }
    c
}

/// Label purity: the share of the most common label.
pub fn purity(counts: &[usize]) -> f64 {
    let n: usize = counts.iter().sum();
    if n == 0 {
        return f64::NAN;
    }
    *counts.iter().max().unwrap_or(&0) as f64 / n as f64
}

/// Label entropy in bits: −Σ p log₂ p.
pub fn entropy_bits(counts: &[usize]) -> f64 {
    let n: usize = counts.iter().sum();
    if n == 0 {
        return f64::NAN;
    }
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.log2()
        })
        .sum()
}

/// Chance level by Monte Carlo: `draws` subsets of size `t` drawn without replacement; the interval is the
/// central `level` range of a single subset's value (not of the mean).
pub fn chance_level(
    labels: &[i64],
    t: usize,
    draws: usize,
    level: f64,
    rng: &mut impl Rng,
) -> Option<Chance> {
    if labels.is_empty() || t == 0 {
        return None;
    }
    let t = t.min(labels.len());
    let mut ps = Vec::with_capacity(draws);
    let mut es = Vec::with_capacity(draws);
    for _ in 0..draws.max(1) {
        let pick: Vec<i64> = rand::seq::index::sample(rng, labels.len(), t)
            .into_iter()
            .map(|i| labels[i])
            .collect();
        let c = label_counts(&pick);
        ps.push(purity(&c));
        es.push(entropy_bits(&c));
    }
    let a = (1.0 - level) / 2.0;
    let est = |mut v: Vec<f64>| {
        let m = mean(&v);
        v.sort_by(|x, y| x.total_cmp(y));
        Estimate {
            mean: m,
            lo: quantile(&v, a),
            hi: quantile(&v, 1.0 - a),
        }
    };
    Some(Chance {
        purity: est(ps),
        entropy_bits: est(es),
        draws: draws.max(1),
    })
}

/// Per-direction metrics (labelled data only), in the order of `lists`.
pub fn direction_metrics(lists: &[TopList], labels: &[i64]) -> Vec<DirectionMetrics> {
    lists
        .iter()
        .map(|l| {
            let ls: Vec<i64> = l
                .data
                .iter()
                .map(|&i| labels.get(i).copied().unwrap_or(-1))
                .collect();
            let c = label_counts(&ls);
            let maj = c
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
                .map(|(i, _)| i as i64)
                .unwrap_or(-1);
            DirectionMetrics {
                kind: l.kind,
                index: l.index,
                unit: l.unit,
                purity: purity(&c),
                entropy_bits: entropy_bits(&c),
                majority_label: maj,
                tie_decided: l.tie_decided,
            }
        })
        .collect()
}

/// What [`summarise`] concludes from a scan.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Per kind (only kinds with directions), in column order.
    pub kinds: Vec<KindSummary>,
    /// Chance level (labelled data only).
    pub chance: Option<Chance>,
    /// Units vs each random kind present (labelled data only).
    pub comparisons: Vec<Comparison>,
    /// Plain words.
    pub conclusion: String,
}

fn fmt_est(e: &Option<Estimate>) -> String {
    match e {
        Some(e) => format!("{:.3} [{:.3}, {:.3}]", e.mean, e.lo, e.hi),
        None => "n/a".into(),
    }
}

/// Summarises a scan: per-kind metrics with bootstrap intervals, tests of units vs each random kind,
/// chance level, and a plain-words conclusion. `level` is the confidence level (e.g. 0.95), `reps` the
/// bootstrap resamples; the resampling stream is seeded from `seed`.
pub fn summarise(
    scan: &Scan,
    labels: Option<&[i64]>,
    reps: usize,
    level: f64,
    seed: u64,
) -> Summary {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x626f_6f74);
    let metrics = labels.map(|l| direction_metrics(&scan.lists, l));
    let values = |k: DirectionKind, pick: fn(&DirectionMetrics) -> f64| -> Vec<f64> {
        metrics
            .as_ref()
            .map(|m| {
                m.iter()
                    .filter(|d| d.kind == k && !d.tie_decided && d.purity.is_finite())
                    .map(pick)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for k in DirectionKind::ALL {
        let ls: Vec<&TopList> = scan.lists.iter().filter(|l| l.kind == k).collect();
        if ls.is_empty() {
            continue;
        }
        let p = values(k, |d| d.purity);
        let e = values(k, |d| d.entropy_bits);
        out.push(KindSummary {
            kind: k,
            directions: ls.len(),
            tie_decided: ls.iter().filter(|l| l.tie_decided).count(),
            positive_at_most_top: ls.iter().filter(|l| l.positive <= scan.top as i64).count(),
            used: ls.iter().filter(|l| !l.tie_decided).count(),
            purity: bootstrap_mean(&p, reps, level, &mut rng),
            entropy_bits: bootstrap_mean(&e, reps, level, &mut rng),
        });
    }
    let chance = labels.and_then(|l| chance_level(l, scan.top, reps.max(200), level, &mut rng));
    let mut comps = Vec::new();
    let mut conclusion = String::new();
    if labels.is_none() {
        conclusion =
            "The data set is unlabelled: no purity / entropy comparison (figures only).".into();
    }
    let pu = values(DirectionKind::Unit, |d| d.purity);
    let eu = values(DirectionKind::Unit, |d| d.entropy_bits);
    for other in [DirectionKind::Random, DirectionKind::Orthogonal] {
        if labels.is_none()
            || !out.iter().any(|s| s.kind == other)
            || !out.iter().any(|s| s.kind == DirectionKind::Unit)
        {
            continue;
        }
        let po = values(other, |d| d.purity);
        let eo = values(other, |d| d.entropy_bits);
        let purity_diff = bootstrap_diff(&pu, &po, reps, level, &mut rng);
        let purity_test = mann_whitney(&pu, &po);
        let entropy_diff = bootstrap_diff(&eu, &eo, reps, level, &mut rng);
        let entropy_test = mann_whitney(&eu, &eo);
        let verdict = verdict(other, scan.top, &purity_diff, &purity_test, 1.0 - level);
        if !conclusion.is_empty() {
            conclusion.push(' ');
        }
        conclusion.push_str(&format!(
            "{}{}.",
            verdict[..1].to_uppercase(),
            &verdict[1..]
        ));
        comps.push(Comparison {
            against: other,
            purity_diff,
            purity_test,
            entropy_diff,
            entropy_test,
            verdict,
        });
    }
    if let (Some(c), false) = (&chance, comps.is_empty()) {
        conclusion.push_str(&format!(
            " Chance level (random {}-subsets): purity {:.3}, entropy {:.3} bits.",
            scan.top, c.purity.mean, c.entropy_bits.mean
        ));
    }
    Summary {
        kinds: out,
        chance,
        comparisons: comps,
        conclusion,
    }
}

/// The plain-words verdict of units vs `other` directions by label purity of the top-`top` images, at
/// significance level `alpha`.
fn verdict(
    other: DirectionKind,
    top: usize,
    purity_diff: &Option<Estimate>,
    purity_test: &Option<MannWhitney>,
    alpha: f64,
) -> String {
    match (purity_diff, purity_test) {
        (Some(d), Some(t)) if t.p_value < alpha && d.mean > 0.0 => format!(
            "units are MORE interpretable than {} directions by label purity of the top-{} images: \
             difference {} (Mann-Whitney p = {:.2e})",
            other.as_str(),
            top,
            fmt_est(purity_diff),
            t.p_value
        ),
        (Some(d), Some(t)) if t.p_value < alpha && d.mean < 0.0 => format!(
            "units are LESS interpretable than {} directions by label purity of the top-{} images: \
             difference {} (Mann-Whitney p = {:.2e})",
            other.as_str(),
            top,
            fmt_est(purity_diff),
            t.p_value
        ),
        (Some(_), Some(t)) => format!(
            "no significant difference between units and {} directions in label purity of the top-{} \
             images: difference {} (Mann-Whitney p = {:.3})",
            other.as_str(),
            top,
            fmt_est(purity_diff),
            t.p_value
        ),
        _ => format!(
            "units vs {}: too few usable directions to compare (tie-decided ones excluded)",
            other.as_str()
        ),
    }
}
