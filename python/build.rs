//! Links the extension against the libtorch of the `torch` package installed next to it: the wheel puts
//! `_blindspot*.so` in `site-packages/blindspot/`, torch's libraries are in `site-packages/torch/lib/`, so
//! the only run path is `$ORIGIN/../torch/lib` (no absolute path of the build machine, nothing bundled).
//! `blindspot/__init__.py` imports torch (and checks its version) before loading the extension, so the
//! libraries are normally already loaded by the time the dynamic loader looks.
//!
//! Also records the version of the libtorch it was built against (`torch/version.py` next to torch-sys's
//! `lib/`) as `BLINDSPOT_PY_LIBTORCH`: the extension reports it, and `__init__.py` compares it with the
//! imported torch.
fn main() {
    println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN/../torch/lib");
    println!("cargo:rerun-if-changed=build.rs");
    let mut version = "unknown".to_string();
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        let file = std::path::Path::new(&lib).join("../version.py");
        if let Ok(text) = std::fs::read_to_string(file) {
            if let Some(v) = text
                .lines()
                .find_map(|l| l.strip_prefix("__version__ = "))
                .map(|v| v.trim_matches(['\'', '"', ' ']).to_string())
            {
                version = v;
            }
        }
    }
    println!("cargo:rustc-env=BLINDSPOT_PY_LIBTORCH={version}");
}
