//! The architecture's dependency rules (docs/architecture.md), checked on the source: a module's
//! `crate::…` paths (in `use` lines and inline) must not reach the modules it may not depend on; clap
//! lives only in the binary's `cli`; plotters (drawing) only in `report`. Also the size rules: no file in
//! src/ over 600 lines (functions over 150 lines are refused by clippy's `too_many_lines`, clippy.toml).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// (module, modules it must not import, why).
const RULES: &[(&str, &[&str], &str)] = &[
    (
        "report",
        &[
            "attack",
            "units",
            "spectral",
            "experiments",
            "train",
            "optim",
        ],
        "the report draws from result files only",
    ),
    (
        "results",
        &[
            "attack",
            "units",
            "spectral",
            "experiments",
            "train",
            "report",
            "models",
            "optim",
        ],
        "result schemas are read by the report, which imports no analysis module",
    ),
    (
        "attack",
        &["experiments", "cli"],
        "analyses do not know how they are run",
    ),
    (
        "units",
        &["experiments", "cli"],
        "analyses do not know how they are run",
    ),
    (
        "spectral",
        &["experiments", "cli"],
        "analyses do not know how they are run",
    ),
    (
        "train",
        &["experiments", "cli"],
        "analyses do not know how they are run",
    ),
    (
        "optim",
        &["models", "attack", "experiments", "cli"],
        "the engine knows tensors and closures",
    ),
    (
        "models",
        &["attack", "experiments", "cli"],
        "models know nothing of attacks",
    ),
    (
        "data",
        &["models", "attack", "experiments", "cli"],
        "data knows nothing of models",
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a source file belongs to (`src/attack/lbfgs.rs` → `attack`, `src/io.rs` → `io`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The top-level modules a file reaches through `crate::x` paths (comments and doc lines skipped).
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
            rest = after;
        }
        // `use crate::{a, b::c}` groups
        if let Some(i) = code.find("crate::{") {
            for part in code[i + "crate::{".len()..].split([',', '}']) {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

fn src_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn modules_respect_the_dependency_rules() {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut broken = Vec::new();
    for f in &files {
        let module = module_of(&src, f);
        let text = std::fs::read_to_string(f).unwrap();
        let used = crate_paths(&text);
        for (m, forbidden, why) in RULES {
            if *m != module {
                continue;
            }
            for bad in used.iter().filter(|u| forbidden.contains(&u.as_str())) {
                broken.push(format!("{} imports crate::{bad} ({why})", f.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "dependency rules broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn clap_only_in_the_cli_and_plotters_only_in_the_report() {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut broken = Vec::new();
    for f in &files {
        let module = module_of(&src, f);
        let text = std::fs::read_to_string(f).unwrap();
        let code: String = text
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        if code.contains("clap::") && module != "cli" && module != "main" {
            broken.push(format!("{} uses clap (only src/cli may)", f.display()));
        }
        if code.contains("plotters::") && module != "report" {
            broken.push(format!(
                "{} uses plotters (only src/report draws figures)",
                f.display()
            ));
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn no_source_file_is_over_600_lines() {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let big: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > 600).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(big.is_empty(), "files over 600 lines: {}", big.join(", "));
}

#[test]
fn the_path_scanner_sees_use_groups_and_inline_paths() {
    let t = "use crate::{attack, results::Table};\nlet x = crate::units::run();\n// crate::spectral in a comment\n";
    let got: Vec<String> = crate_paths(t).into_iter().collect();
    assert_eq!(got, ["attack", "results", "units"]);
}
