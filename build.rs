//! Embeds an rpath to the libtorch that torch-sys linked against, so the binary and the test executables run
//! with no LD_LIBRARY_PATH (see ../shared/notes/toolchain.md and README "Setup"); and records, for the
//! provenance written into every finished stage, the git commit this build comes from and the libtorch
//! version it links (`BLINDSPOT_COMMIT`, `BLINDSPOT_LIBTORCH`).
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let mut libtorch = "unknown".to_string();
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // Keep libtorch.so (and through it libtorch_cuda.so) as a dependency although no symbol of it
        // is used directly: without it the linker's --as-needed drops libtorch_cuda, libtorch never
        // registers its CUDA backend and `tch::Cuda::device_count()` is 0 on a GPU machine (tch-rs
        // issue 980; tch-rs's own build.rs passes the same flags). A CPU-only libtorch has a libtorch.so too.
        if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-ltorch");
        }
        // torch/lib/../version.py holds `__version__ = '2.11.0+cu130'` in a PyTorch wheel.
        let version = std::path::Path::new(&lib).join("../version.py");
        if let Ok(text) = std::fs::read_to_string(&version) {
            if let Some(v) = text
                .lines()
                .find_map(|l| l.strip_prefix("__version__ = "))
                .map(|v| v.trim_matches(['\'', '"', ' ']).to_string())
            {
                libtorch = v;
            }
        }
    }
    println!("cargo:rustc-env=BLINDSPOT_LIBTORCH={libtorch}");
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c}-dirty")
            } else {
                c
            }
        }
        None => "unknown".into(),
    };
    println!("cargo:rustc-env=BLINDSPOT_COMMIT={commit}");
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
