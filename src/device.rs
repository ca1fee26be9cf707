//! Device selection: `cpu`, `cuda`, `cuda:N`, checked before any work starts.

use crate::{Error, Result};
use tch::Device;

/// Parses a device name and checks that it exists on this machine.
pub fn parse_device(name: &str) -> Result<Device> {
    let name = name.trim().to_ascii_lowercase();
    let dev = match name.as_str() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => Device::Cuda(0),
        s if s.starts_with("cuda:") => {
            let idx: usize = s[5..].parse().map_err(|_| Error::Device {
                requested: name.clone(),
                why: "expected cpu, cuda or cuda:N with N a number".into(),
            })?;
            Device::Cuda(idx)
        }
        _ => {
            return Err(Error::Device {
                requested: name.clone(),
                why: "unknown device: use cpu, cuda or cuda:N".into(),
            })
        }
    };
    let n = tch::Cuda::device_count() as usize;
    if let Device::Cuda(i) = dev {
        if i >= n {
            return Err(Error::Device {
                requested: name.clone(),
                why: if n == 0 {
                    "no CUDA device is available on this machine (libtorch sees 0 GPUs); use --device cpu".into()
                } else {
                    format!(
                        "only {n} CUDA device(s) exist (cuda:0..cuda:{}); pick one of those",
                        n - 1
                    )
                },
            });
        }
    }
    Ok(dev)
}

/// Makes libtorch deterministic for a run: fixed seed, deterministic algorithms where libtorch has them.
pub fn seed_everything(seed: u64) {
    tch::manual_seed(seed as i64);
    if tch::Cuda::is_available() {
        tch::Cuda::manual_seed_all(seed);
    }
}
