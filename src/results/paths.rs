//! The names that become paths (experiments, models, attack stages, transfer tables, and the stage folders
//! derived from them) and the rule that every folder a run writes or clears lies strictly inside its run
//! folder. One pattern for every name, documented in the README:
//!
//! `^[A-Za-z0-9][A-Za-z0-9._'+-]{0,127}$` — a letter or digit first, then letters, digits and `. _ ' + -`,
//! at most 128 characters. So `M1'`, `N100-100-10` and `fc1.relu` are names; `.`, `..`, an empty name, a
//! hidden name (`.x`) and anything with a separator are not.

use std::path::{Component, Path, PathBuf};

/// Longest name allowed.
pub const MAX_NAME: usize = 128;

/// Why a name or folder was refused.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("{what} `{name}` is not a valid name: use a letter or digit first, then letters, digits and . _ ' + - (at most {MAX_NAME} characters)")]
    BadName { what: String, name: String },
    #[error("{} is not strictly inside the run folder {}: refusing to write or clear it", dir.display(), run_dir.display())]
    Outside { dir: PathBuf, run_dir: PathBuf },
}

/// Whether `name` follows the pattern of the module docs.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    name.len() <= MAX_NAME && chars.all(|c| c.is_ascii_alphanumeric() || "._'+-".contains(c))
}

/// Checks `name` (`what` says what it names, e.g. "model name").
pub fn check_name(what: &str, name: &str) -> Result<(), PathError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(PathError::BadName {
            what: what.to_string(),
            name: name.to_string(),
        })
    }
}

/// Checks that `dir` is `run_dir` joined with one or more plain components (no `.`, `..`, root or
/// prefix) and that none of the components that exist is a symbolic link, so that writing or clearing
/// `dir` cannot touch anything outside the run folder.
pub fn check_inside(run_dir: &Path, dir: &Path) -> Result<(), PathError> {
    let outside = || PathError::Outside {
        dir: dir.to_path_buf(),
        run_dir: run_dir.to_path_buf(),
    };
    let rel = dir.strip_prefix(run_dir).map_err(|_| outside())?;
    let mut at = run_dir.to_path_buf();
    let mut n = 0;
    for c in rel.components() {
        match c {
            Component::Normal(p) => {
                at.push(p);
                n += 1;
                if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(outside());
                }
            }
            _ => return Err(outside()),
        }
    }
    if n == 0 {
        return Err(outside());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_one_pattern() {
        for ok in ["M1'", "N100-100-10", "fc1.relu", "a+b", "AE400-10", "x_1"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "-x",
            "a/b",
            "a\\b",
            "a b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn only_folders_strictly_inside_pass() {
        let t = tempfile::tempdir().unwrap();
        let run = t.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        assert!(check_inside(&run, &run.join("attacks/x")).is_ok());
        assert!(check_inside(&run, &run).is_err());
        assert!(check_inside(&run, &run.join("..")).is_err());
        assert!(check_inside(&run, &run.join("a/../..")).is_err());
        assert!(check_inside(&run, t.path()).is_err());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(t.path(), run.join("link")).unwrap();
            assert!(check_inside(&run, &run.join("link/x")).is_err());
        }
    }
}
