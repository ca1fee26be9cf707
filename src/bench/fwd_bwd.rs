//! Speed benchmarks run side by side with their peers in one process tree (ratios, not absolute seconds:
//! the machine is shared and noisy). Results are recorded by hand in docs/benchmarks.md.

use crate::bench::median;
use crate::config::ArchSpec;
use crate::data::MnistData;
use crate::models::zoo::init_params;
use crate::train::{decay_vector, Problem};
use crate::{Error, Result};
use std::path::Path;
use std::time::Instant;

/// Forward+backward of N100-100-10 on the 60,000 training images: ours vs `scripts/bench_fwd_bwd.py`
/// (plain PyTorch), alternating `rounds` times, `reps` timed repetitions each. Returns a text summary.
pub fn fwd_bwd(reps: usize, rounds: usize, python: &Path) -> Result<String> {
    let data = MnistData::load(&crate::data::mnist::default_dir(), 2014)?;
    let arch = ArchSpec::Mlp {
        hidden: vec![100, 100],
        activation: crate::config::Activation::Sigmoid,
        dropout: None,
        input_dropout: None,
    }
    .architecture();
    let layout = arch.param_layout();
    let decay = decay_vector(&arch, &[1e-5, 1e-5, 1e-6], tch::Device::Cpu);
    crate::device::seed_everything(0);
    let theta = init_params(&arch, tch::Device::Cpu);
    let problem = Problem {
        arch: &arch,
        layout: &layout,
        x: &data.train.images,
        y: &data.train.labels,
        decay: &decay,
    };
    let _ = problem.loss_and_grad(&theta); // warm-up
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for _ in 0..reps {
            let t = Instant::now();
            let (f, _g) = problem.loss_and_grad(&theta);
            let _ = f.double_value(&[]);
            ours.push(t.elapsed().as_secs_f64());
        }
        let out = std::process::Command::new(python)
            .args([
                "scripts/bench_fwd_bwd.py",
                "--reps",
                &reps.to_string(),
                "--mnist",
            ])
            .arg(crate::data::mnist::default_dir())
            .output()
            .map_err(|e| Error::io(python, e))?;
        if !out.status.success() {
            return Err(Error::Peer {
                program: "scripts/bench_fwd_bwd.py".into(),
                msg: format!("failed: {}", String::from_utf8_lossy(&out.stderr)),
            });
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| Error::Peer {
                program: "scripts/bench_fwd_bwd.py".into(),
                msg: format!("its output is not JSON: {e}"),
            })?;
        peer.extend(
            v["seconds"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_f64()),
        );
    }
    let (mo, mp) = (median(&ours), median(&peer));
    Ok(format!(
        "fwd+bwd N100-100-10, 60000 images, {} libtorch threads: ours median {:.4} s, PyTorch median {:.4} s, ratio ours/PyTorch {:.3} ({} + {} samples)",
        tch::get_num_threads(),
        mo,
        mp,
        mo / mp,
        ours.len(),
        peer.len()
    ))
}
