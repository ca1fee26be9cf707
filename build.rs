//! Embeds an rpath to the libtorch that torch-sys linked against, so the binary and the test executables run
//! with no LD_LIBRARY_PATH (see ../shared/notes/toolchain.md and README "Setup").
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
