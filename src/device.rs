//! Device selection (`cpu`, `cuda`, `cuda:N`, checked before any work starts), seeding, and libtorch's
//! deterministic mode (`BLINDSPOT_DETERMINISTIC=1`; README "CUDA").

use crate::{Error, Result};
use tch::Device;

/// The environment variable that turns libtorch's deterministic mode on for a whole run.
pub const DETERMINISTIC_ENV: &str = "BLINDSPOT_DETERMINISTIC";

/// Parses a device name and checks that it exists on this machine. Every command calls it before any
/// work, so it also applies `BLINDSPOT_DETERMINISTIC` (see [`determinism_from_env`]).
pub fn parse_device(name: &str) -> Result<Device> {
    let dev = device_of(name)?;
    determinism_from_env(dev)?;
    Ok(dev)
}

fn device_of(name: &str) -> Result<Device> {
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
                    "no CUDA device here (libtorch sees 0 GPUs: no GPU, no driver, or a CPU-only libtorch on LD_LIBRARY_PATH); use --device cpu, or run where nvidia-smi lists a GPU".into()
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

/// Seeds libtorch's random generators: the CPU generator and, where CUDA is available, every GPU's.
///
/// Seeding alone makes CPU runs repeatable (libtorch's CPU kernels that blindspot uses are
/// deterministic for a fixed thread count), but not CUDA runs: cuDNN picks convolution algorithms, some
/// of them using atomic adds, and a few CUDA kernels have no deterministic version. For those, see
/// [`set_deterministic`]. CPU and CUDA generators are different streams: the same seed draws different
/// numbers on each, which is why blindspot draws what must agree across devices (initial weights, shuffles,
/// targets, noise, random directions) on the CPU.
pub fn seed_everything(seed: u64) {
    tch::manual_seed(seed as i64);
    if tch::Cuda::is_available() {
        tch::Cuda::manual_seed_all(seed);
    }
}

/// What libtorch's process-wide settings that bear on reproducibility are now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Determinism {
    /// `at::globalContext().deterministicAlgorithms()`: deterministic kernels where libtorch has them.
    pub algorithms: bool,
    /// Operations without a deterministic kernel warn (instead of failing) while `algorithms` is on.
    pub warn_only: bool,
    /// cuDNN restricted to deterministic convolution algorithms.
    pub cudnn_deterministic: bool,
    /// cuDNN benchmark mode (autotuning; off for reproducibility).
    pub cudnn_benchmark: bool,
}

/// libtorch's `at::Context` settings, which tch 0.24 does not wrap, called through the names that
/// libtorch_cpu exports for them (Itanium C++ ABI: a member function takes `this` first; `bool` is one
/// byte). None of these functions throws. Checked against libtorch 2.11.0.
#[cfg(not(target_env = "msvc"))]
mod at_context {
    use std::ffi::c_void;

    extern "C" {
        #[link_name = "_ZN2at13globalContextEv"]
        fn global_context() -> *mut c_void;
        #[link_name = "_ZN2at7Context26setDeterministicAlgorithmsEbb"]
        fn set_deterministic_algorithms(ctx: *mut c_void, on: bool, warn_only: bool);
        #[link_name = "_ZNK2at7Context23deterministicAlgorithmsEv"]
        fn deterministic_algorithms(ctx: *const c_void) -> bool;
        #[link_name = "_ZNK2at7Context31deterministicAlgorithmsWarnOnlyEv"]
        fn deterministic_algorithms_warn_only(ctx: *const c_void) -> bool;
        #[link_name = "_ZN2at7Context21setDeterministicCuDNNEb"]
        fn set_deterministic_cudnn(ctx: *mut c_void, on: bool);
        #[link_name = "_ZNK2at7Context18deterministicCuDNNEv"]
        fn deterministic_cudnn(ctx: *const c_void) -> bool;
        #[link_name = "_ZN2at7Context17setBenchmarkCuDNNEb"]
        fn set_benchmark_cudnn(ctx: *mut c_void, on: bool);
        #[link_name = "_ZNK2at7Context14benchmarkCuDNNEv"]
        fn benchmark_cudnn(ctx: *const c_void) -> bool;
    }

    pub(super) fn set(on: bool) {
        // SAFETY: `globalContext()` returns a reference to libtorch's static context (never null); the
        // setters store flags, the getters read them.
        unsafe {
            let ctx = global_context();
            set_deterministic_algorithms(ctx, on, true);
            set_deterministic_cudnn(ctx, on);
            set_benchmark_cudnn(ctx, false);
        }
    }

    pub(super) fn get() -> super::Determinism {
        // SAFETY: as in `set`.
        unsafe {
            let ctx = global_context();
            super::Determinism {
                algorithms: deterministic_algorithms(ctx),
                warn_only: deterministic_algorithms_warn_only(ctx),
                cudnn_deterministic: deterministic_cudnn(ctx),
                cudnn_benchmark: benchmark_cudnn(ctx),
            }
        }
    }
}

#[cfg(target_env = "msvc")]
mod at_context {
    pub(super) fn set(_on: bool) {}
    pub(super) fn get() -> super::Determinism {
        super::Determinism {
            algorithms: false,
            warn_only: false,
            cudnn_deterministic: false,
            cudnn_benchmark: false,
        }
    }
}

/// Turns libtorch's deterministic mode on or off for the whole process (PyTorch's
/// `torch.use_deterministic_algorithms(on, warn_only=True)` plus `cudnn.deterministic = on`,
/// `cudnn.benchmark = False`), and returns the settings read back from libtorch.
///
/// On: operations that have a deterministic kernel use it (convolutions through cuDNN's deterministic
/// algorithms, `index_add`/`scatter_add`/`index_select` backward, `gather` backward on CUDA, …);
/// operations that have none run anyway and libtorch prints a warning naming them (`warn_only`: a run is
/// never stopped for it); uninitialised memory is filled (NaN for floats) so it cannot leak into results.
/// On CUDA, cuBLAS also needs `CUBLAS_WORKSPACE_CONFIG=:4096:8` in the environment before its first use:
/// set it when starting the process (scripts do); if it is missing here and CUDA is available, it is set,
/// which only helps when no cuBLAS call has happened yet. What it costs: README "CUDA".
///
/// An error on platforms where libtorch's context cannot be reached (Windows: not supported).
pub fn set_deterministic(on: bool) -> Result<Determinism> {
    if cfg!(target_env = "msvc") {
        return Err(Error::Device {
            requested: format!("{DETERMINISTIC_ENV}={}", u8::from(on)),
            why: "libtorch's deterministic mode is not reachable on this platform".into(),
        });
    }
    if on && tch::Cuda::is_available() && std::env::var_os("CUBLAS_WORKSPACE_CONFIG").is_none() {
        std::env::set_var("CUBLAS_WORKSPACE_CONFIG", ":4096:8");
    }
    at_context::set(on);
    Ok(at_context::get())
}

/// libtorch's current settings (see [`set_deterministic`]).
pub fn determinism() -> Determinism {
    at_context::get()
}

/// Applies `BLINDSPOT_DETERMINISTIC` (`1`/`true`/`on` or `0`/`false`/`off`; unset or empty: leave
/// libtorch's defaults) and says whether deterministic mode is on. `device` only shapes the log line.
pub fn determinism_from_env(device: Device) -> Result<bool> {
    let Some(v) = std::env::var_os(DETERMINISTIC_ENV) else {
        return Ok(determinism().algorithms);
    };
    let v = v.to_string_lossy().trim().to_ascii_lowercase();
    let on = match v.as_str() {
        "" => return Ok(determinism().algorithms),
        "1" | "true" | "on" | "yes" => true,
        "0" | "false" | "off" | "no" => false,
        _ => {
            return Err(Error::Device {
                requested: format!("{DETERMINISTIC_ENV}={v}"),
                why: "expected 1/true/on or 0/false/off".into(),
            })
        }
    };
    let d = set_deterministic(on)?;
    log::info!("libtorch deterministic mode on {device:?}: {d:?}");
    Ok(d.algorithms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_and_missing_gpus_are_refused() {
        assert_eq!(device_of("CPU ").unwrap(), Device::Cpu);
        let e = device_of("gpu").unwrap_err().to_string();
        assert!(e.contains("unknown device"), "{e}");
        let e = device_of("cuda:x").unwrap_err().to_string();
        assert!(e.contains("cuda:N"), "{e}");
        let n = tch::Cuda::device_count();
        let e = device_of(&format!("cuda:{n}")).unwrap_err().to_string();
        assert!(e.contains("CUDA device"), "{e}");
    }
}
