//! The text of one sbatch script: `#SBATCH` lines (name, log, folder, resources, the array), then the
//! one `blindspot` command the job runs. Every value that lands in the script is quoted or checked.

use super::Part;
use crate::config::slurm::{Gpus, SlurmResources};
use crate::experiments::RunError;
use crate::Result;
use std::fmt::Write as _;
use std::path::Path;

/// A label as a job or file name part: ASCII letters, digits, `-`, `_` and `.` kept, `/` becomes `.`,
/// anything else `_`.
pub(super) fn name_part(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| match c {
            '/' => '.',
            c if c.is_ascii_alphanumeric() || "-_.".contains(c) => c,
            _ => '_',
        })
        .collect();
    s.chars().take(100).collect()
}

/// A word for the shell, single-quoted when it needs quotes.
pub(super) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A value of an `#SBATCH` line: double-quoted when it holds a space (sbatch reads those quotes); a
/// line break or a double quote cannot be written there.
fn sbatch_value(what: &str, v: &str) -> Result<String> {
    if v.contains(['\n', '\r', '"', '\0']) {
        return Err(RunError::Slurm {
            command: "blindspot slurm".into(),
            why: format!("{what} `{v}` holds a line break or a double quote, which an #SBATCH line cannot hold; move or rename it"),
        }
        .into());
    }
    Ok(if v.contains(char::is_whitespace) {
        format!("\"{v}\"")
    } else {
        v.to_string()
    })
}

/// Everything one script says.
pub(super) struct ScriptInput<'a> {
    pub exp_name: &'a str,
    pub label: &'a str,
    pub part: &'a Part,
    /// The stage's fingerprint when the script is written (None: its inputs are not finished yet).
    pub fingerprint: Option<&'a str>,
    pub after: &'a [String],
    pub res: &'a SlurmResources,
    pub setup: &'a [String],
    pub array_parallel: Option<u32>,
    pub binary: &'a Path,
    pub experiment: &'a Path,
    pub cwd: &'a Path,
    pub logs: &'a Path,
}

/// The job's name: `bs.<experiment>.<label>` (`.chunks` for an array).
pub(super) fn job_name(exp_name: &str, label: &str, part: &Part) -> String {
    let suffix = if matches!(part, Part::Chunks { .. }) {
        ".chunks"
    } else {
        ""
    };
    format!("bs.{}.{}{suffix}", name_part(exp_name), name_part(label))
}

/// The `--array` value: ranges of the (sorted) chunks, `0-3` or `0-2,5,7-9`; `%N` with a parallel limit.
pub(super) fn array_spec(chunks: &[usize], parallel: Option<u32>) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &c in chunks {
        match ranges.last_mut() {
            Some((_, b)) if *b + 1 == c => *b = c,
            _ => ranges.push((c, c)),
        }
    }
    let mut s = ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    if let Some(p) = parallel {
        let _ = write!(s, "%{p}");
    }
    s
}

fn what_it_does(inp: &ScriptInput) -> String {
    match inp.part {
        Part::Stage => format!("stage {}", inp.label),
        Part::Chunks { chunks, of } => format!(
            "chunks {} of {of} of stage {} (one array task each; the merge job follows)",
            array_spec(chunks, None),
            inp.label
        ),
        Part::Merge => format!(
            "stage {}: merges its chunks (computing any missing) into its outputs",
            inp.label
        ),
        Part::Report => "the report (report.md) once every stage is finished".into(),
    }
}

/// The script's text.
pub(super) fn render(inp: &ScriptInput) -> Result<String> {
    let mut s = String::from("#!/bin/bash\n");
    let _ = writeln!(
        s,
        "# Written by `blindspot slurm` ({}) for experiment `{}`: {}.",
        env!("CARGO_PKG_VERSION"),
        inp.exp_name,
        what_it_does(inp)
    );
    if let Some(fp) = inp.fingerprint {
        let _ = writeln!(s, "# Fingerprint of its inputs when written: {fp}.");
    }
    if !inp.after.is_empty() {
        let _ = writeln!(
            s,
            "# Submitted with --dependency=afterok on: {}.",
            inp.after.join(", ")
        );
    }
    let name = job_name(inp.exp_name, inp.label, inp.part);
    let log = match inp.part {
        Part::Chunks { .. } => inp.logs.join("%x-%A_%a.out"),
        _ => inp.logs.join("%x-%j.out"),
    };
    let mut opts = vec![
        format!("--job-name={name}"),
        format!(
            "--output={}",
            sbatch_value("the log folder", &log.display().to_string())?
        ),
        format!(
            "--chdir={}",
            sbatch_value("the working folder", &inp.cwd.display().to_string())?
        ),
        // A failed dependency cancels this job rather than leaving it pending forever.
        "--kill-on-invalid-dep=yes".to_string(),
    ];
    if let Part::Chunks { chunks, .. } = inp.part {
        opts.push(format!(
            "--array={}",
            array_spec(chunks, inp.array_parallel)
        ));
    }
    let r = inp.res;
    opts.push(format!("--cpus-per-task={}", r.cpus.unwrap_or(1)));
    if let Some(m) = &r.mem {
        opts.push(format!("--mem={m}"));
    }
    if let Some(g) = r.gpus.as_ref().and_then(Gpus::sbatch_value) {
        opts.push(format!("--gpus={g}"));
    }
    for (k, v) in [
        ("time", &r.time),
        ("partition", &r.partition),
        ("account", &r.account),
    ] {
        if let Some(v) = v {
            opts.push(format!("--{k}={v}"));
        }
    }
    opts.extend(r.extra.iter().cloned());
    for o in &opts {
        let _ = writeln!(s, "#SBATCH {o}");
    }
    s.push_str("set -euo pipefail\n");
    s.push_str("# libtorch threads = the CPU cores Slurm gave the job.\n");
    s.push_str("export OMP_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"\n");
    s.push_str("export BLINDSPOT_NO_PROGRESS=1\n");
    for line in inp.setup {
        let _ = writeln!(s, "{line}");
    }
    let bin = shell_quote(&inp.binary.display().to_string());
    let exp = shell_quote(&inp.experiment.display().to_string());
    let stage = shell_quote(inp.label);
    let cmd = match inp.part {
        Part::Stage | Part::Merge => format!("exec {bin} run {exp} --stage {stage}"),
        Part::Chunks { .. } => {
            format!("exec {bin} run {exp} --stage {stage} --chunk \"$SLURM_ARRAY_TASK_ID\"")
        }
        Part::Report => format!("exec {bin} report {exp}"),
    };
    let _ = writeln!(s, "{cmd}");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_names_and_arrays() {
        assert_eq!(shell_quote("attacks/M1'"), r"'attacks/M1'\'''");
        assert_eq!(shell_quote("/a/b-c.yaml"), "/a/b-c.yaml");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(name_part("spectral//x/m.pt"), "spectral..x.m.pt");
        assert_eq!(name_part("models/M1'"), "models.M1_");
        assert_eq!(array_spec(&[0, 1, 2, 3], None), "0-3");
        assert_eq!(array_spec(&[0, 2, 5], Some(4)), "0,2,5%4");
        assert_eq!(array_spec(&[0, 1, 2, 5, 7, 8, 9], None), "0-2,5,7-9");
        assert_eq!(array_spec(&[3], None), "3");
        assert_eq!(sbatch_value("x", "/a b").unwrap(), "\"/a b\"");
        assert!(sbatch_value("x", "/a\"b").is_err());
    }
}
