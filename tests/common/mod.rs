//! Helpers shared by the end-to-end tests that run the `blindspot` binary.
#![allow(dead_code)]

pub mod linear;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary, with progress bars off and the vendored MNIST.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_blindspot"));
    c.env("BLINDSPOT_NO_PROGRESS", "1")
        .env("BLINDSPOT_MNIST", root().join("assets/mnist"));
    c
}

/// Runs `cmd` with `args` in `cwd`.
pub fn run_cmd(mut cmd: Command, args: &[&str], cwd: &Path) -> Output {
    cmd.args(args)
        .current_dir(cwd)
        .output()
        .expect("spawn blindspot")
}

/// Runs the binary with `args` in `cwd`.
pub fn run(args: &[&str], cwd: &Path) -> Output {
    run_cmd(bin(), args, cwd)
}

/// stdout and stderr of a finished process.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
