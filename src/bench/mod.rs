//! Benchmarks, in one place, with one set of timing helpers. Speed and memory are benchmarks, not timed
//! tests: each compares blindspot with a peer run side by side in the same process tree (ratios, not
//! absolute seconds), and results are recorded with machine, date and load in `docs/benchmarks.md`.
//!
//! - [`fwd_bwd`]: forward+backward of N100-100-10 on 60,000 images, ours vs plain PyTorch.
//! - [`engine`]: the batched L-BFGS-B engine's own cost per iteration vs one MLP forward+backward.
//! - [`units`]: the units pass (§3) against the forward passes alone.

pub mod engine;
pub mod fwd_bwd;
pub mod spectral;
pub mod units;

use std::time::Instant;

/// The median of `v` (the upper median for an even count); NaN when empty.
pub(crate) fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

/// Runs `f` and returns its value and its wall time in seconds.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed().as_secs_f64())
}

/// Waits for the device's queued work (CUDA kernels run asynchronously), so a wall clock read after it
/// covers the work. A no-op on the CPU.
pub(crate) fn synchronize(device: tch::Device) {
    if let tch::Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_is_the_middle_value() {
        assert_eq!(super::median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(&[4.0, 1.0, 3.0, 2.0]), 3.0);
        assert!(super::median(&[]).is_nan());
    }
}
