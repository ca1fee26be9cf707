//! The optional `slurm:` section of an experiment file: the resources every job of `blindspot slurm` asks
//! for, per-stage overrides (by stage label, `attacks/N100-100-10`, or by kind, `attacks/*`), and when an
//! attack stage becomes a job array over its chunks. Typed, unknown keys refused, every value checked
//! before anything is submitted (a value lands in a `#SBATCH` line, so none may carry a line break).
//! Documented in docs/slurm.md.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The resources of one job: each unset field leaves the cluster's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmResources {
    /// CPU cores (`--cpus-per-task`; also the job's libtorch threads, `OMP_NUM_THREADS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Memory per node (`--mem`), e.g. `8G`, `500M`, `16000` (MB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    /// GPUs (`--gpus`): a count, or `type:count` (`a100:1`). 0 asks for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<Gpus>,
    /// Wall-clock limit (`--time`): `minutes`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// `--partition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Further sbatch options, one per `#SBATCH` line (e.g. `--qos=long`, `--constraint=avx2`). In an
    /// override they are added to the section's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
}

/// A GPU request: `2` or `"a100:2"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Gpus {
    Count(u32),
    Typed(String),
}

impl Gpus {
    /// The `--gpus` value, None for zero.
    pub fn sbatch_value(&self) -> Option<String> {
        match self {
            Gpus::Count(0) => None,
            Gpus::Count(n) => Some(n.to_string()),
            Gpus::Typed(s) => Some(s.clone()),
        }
    }
}

/// The `slurm:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<Gpus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
    /// Shell lines run in every job before blindspot (`module load …`, `source venv/bin/activate`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setup: Vec<String>,
    /// An attack stage of at least this many chunks (`spec.batch` examples each) becomes a job array,
    /// one task per chunk, and a merge job (default 2).
    #[serde(default = "default_array_min_chunks")]
    pub array_min_chunks: usize,
    /// At most this many tasks of one array run at once (`--array=0-K%N`); default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_parallel: Option<u32>,
    /// The blindspot binary the jobs run (default: the one that runs `blindspot slurm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<PathBuf>,
    /// Overrides by stage label (`models/Conv`, `report`) or kind (`attacks/*`); a label's override is
    /// applied after its kind's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stages: BTreeMap<String, SlurmResources>,
}

fn default_array_min_chunks() -> usize {
    2
}

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig {
            cpus: None,
            mem: None,
            gpus: None,
            time: None,
            partition: None,
            account: None,
            extra: Vec::new(),
            setup: Vec::new(),
            array_min_chunks: default_array_min_chunks(),
            array_parallel: None,
            binary: None,
            stages: BTreeMap::new(),
        }
    }
}

/// The kinds of job `blindspot slurm` submits: the stage kinds and the report.
pub const JOB_KINDS: [&str; 7] = [
    "models", "units", "attacks", "fig7", "spectral", "transfer", "report",
];

/// The kind of a stage label: `attacks/x` → `attacks`, `fig7` → `fig7`.
pub fn label_kind(label: &str) -> &str {
    label.split('/').next().unwrap_or(label)
}

/// Whether an override key applies to a job label: the label itself, or `<kind>/*` (or the bare kind).
pub fn pattern_matches(pattern: &str, label: &str) -> bool {
    if pattern == label {
        return true;
    }
    let kind = pattern.strip_suffix("/*").unwrap_or(pattern);
    !kind.contains('/') && JOB_KINDS.contains(&kind) && kind == label_kind(label)
}

impl SlurmConfig {
    /// The section's own resources (before overrides).
    pub fn base(&self) -> SlurmResources {
        SlurmResources {
            cpus: self.cpus,
            mem: self.mem.clone(),
            gpus: self.gpus.clone(),
            time: self.time.clone(),
            partition: self.partition.clone(),
            account: self.account.clone(),
            extra: self.extra.clone(),
        }
    }

    /// The resources of the job `label`: the section's, then its kind's override, then its label's.
    pub fn resources(&self, label: &str) -> SlurmResources {
        let mut r = self.base();
        let kind_first = |(p, _): &(&String, &SlurmResources)| p.as_str() == label;
        let mut matching: Vec<(&String, &SlurmResources)> = self
            .stages
            .iter()
            .filter(|(p, _)| pattern_matches(p, label))
            .collect();
        matching.sort_by_key(kind_first);
        for (_, o) in matching {
            r.apply(o);
        }
        r
    }

    /// Checks every value; `field` prefixes the path in errors (`slurm`).
    pub fn validate(&self, file: &str, field: &str) -> Result<()> {
        self.base().validate(file, field)?;
        for (i, line) in self.setup.iter().enumerate() {
            if line.contains(['\n', '\r', '\0']) {
                return Err(Error::config(
                    file,
                    format!("{field}.setup[{i}]"),
                    "one shell line per entry (no line breaks)",
                ));
            }
        }
        if self.array_min_chunks == 0 {
            return Err(Error::config(
                file,
                format!("{field}.array_min_chunks"),
                "0 is out of range: use 1 or more (1 makes every attack stage an array)",
            ));
        }
        if self.array_parallel == Some(0) {
            return Err(Error::config(
                file,
                format!("{field}.array_parallel"),
                "0 is out of range: use 1 or more, or leave it out for no limit",
            ));
        }
        if let Some(b) = &self.binary {
            if b.as_os_str().is_empty() || b.to_string_lossy().contains(['\n', '\r', '\0']) {
                return Err(Error::config(
                    file,
                    format!("{field}.binary"),
                    "give the path of the blindspot binary the jobs run",
                ));
            }
        }
        for (p, o) in &self.stages {
            let f = format!("{field}.stages.{p}");
            let kind = label_kind(p);
            if !JOB_KINDS.contains(&kind) {
                return Err(Error::config(
                    file,
                    f,
                    format!(
                        "`{p}` names no kind of job: use a stage label (`attacks/N100-100-10`), `<kind>/*` or `report`; kinds: {}",
                        JOB_KINDS.join(", ")
                    ),
                ));
            }
            o.validate(file, &f)?;
        }
        Ok(())
    }
}

impl SlurmResources {
    /// Fields set in `o` replace these; its `extra` lines are added.
    fn apply(&mut self, o: &SlurmResources) {
        self.cpus = o.cpus.or(self.cpus);
        self.mem = o.mem.clone().or(self.mem.take());
        self.gpus = o.gpus.clone().or(self.gpus.take());
        self.time = o.time.clone().or(self.time.take());
        self.partition = o.partition.clone().or(self.partition.take());
        self.account = o.account.clone().or(self.account.take());
        self.extra.extend(o.extra.iter().cloned());
    }

    /// Checks every value (`field`: the path of this block in errors).
    pub fn validate(&self, file: &str, field: &str) -> Result<()> {
        let bad = |k: &str, msg: String| Err(Error::config(file, format!("{field}.{k}"), msg));
        if let Some(c) = self.cpus {
            if !(1..=4096).contains(&c) {
                return bad("cpus", format!("{c} is out of range: use 1..=4096"));
            }
        }
        if let Some(m) = &self.mem {
            if !valid_mem(m) {
                return bad(
                    "mem",
                    format!("`{m}` is not a memory size: use a number with an optional unit K, M, G or T (`8G`, `500M`)"),
                );
            }
        }
        if let Some(Gpus::Typed(g)) = &self.gpus {
            if !valid_gpus(g) {
                return bad(
                    "gpus",
                    format!(
                        "`{g}` is not a GPU request: use a count (`1`) or `type:count` (`a100:1`)"
                    ),
                );
            }
        }
        if let Some(t) = &self.time {
            if !valid_time(t) {
                return bad(
                    "time",
                    format!("`{t}` is not a Slurm time: use minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"),
                );
            }
        }
        for (k, v) in [("partition", &self.partition), ("account", &self.account)] {
            if let Some(v) = v {
                if !valid_word(v) {
                    return bad(
                        k,
                        format!("`{v}` is not a Slurm name: use letters, digits and . _ - , (no spaces)"),
                    );
                }
            }
        }
        for (i, e) in self.extra.iter().enumerate() {
            if !e.starts_with('-') || e.contains(['\n', '\r', '\0']) {
                return bad(
                    &format!("extra[{i}]"),
                    format!("`{e}` is not an sbatch option: one option per entry, starting with - (`--qos=long`)"),
                );
            }
        }
        Ok(())
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn valid_mem(m: &str) -> bool {
    let digits = m.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    m.len() - digits.len() <= 1 && all_digits(digits)
}

fn valid_gpus(g: &str) -> bool {
    match g.rsplit_once(':') {
        Some((kind, n)) => valid_word(kind) && all_digits(n),
        None => all_digits(g),
    }
}

fn valid_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-,".contains(c))
}

/// Slurm's `--time` formats.
fn valid_time(t: &str) -> bool {
    let rest = match t.split_once('-') {
        Some((d, r)) if all_digits(d) => r,
        Some(_) => return false,
        None => t,
    };
    let parts: Vec<&str> = rest.split(':').collect();
    if !parts.iter().all(|p| all_digits(p)) {
        return false;
    }
    (1..=3).contains(&parts.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_overrides() {
        for t in ["30", "10:00", "02:00:00", "1-12", "1-12:30", "2-00:00:00"] {
            assert!(valid_time(t), "{t}");
        }
        for t in ["", "1h", "1-", "a:b", "1:2:3:4", "10 00"] {
            assert!(!valid_time(t), "{t}");
        }
        for m in ["8G", "500M", "16000", "1t"] {
            assert!(valid_mem(m), "{m}");
        }
        for m in ["", "G", "8GB", "8 G", "-1G"] {
            assert!(!valid_mem(m), "{m}");
        }
        assert!(
            valid_gpus("a100:2") && valid_gpus("1") && !valid_gpus("a100:") && !valid_gpus("x y:1")
        );
        assert!(pattern_matches("attacks/*", "attacks/N100"));
        assert!(pattern_matches("attacks", "attacks/N100"));
        assert!(pattern_matches("attacks/N100", "attacks/N100"));
        assert!(!pattern_matches("attacks/*", "models/N100"));
        assert!(!pattern_matches("attacks/N1", "attacks/N100"));
        assert!(pattern_matches("report", "report") && pattern_matches("fig7", "fig7"));
        let c = SlurmConfig {
            cpus: Some(2),
            time: Some("10".into()),
            extra: vec!["--qos=a".into()],
            stages: [
                (
                    "attacks/x".to_string(),
                    SlurmResources {
                        cpus: Some(8),
                        ..Default::default()
                    },
                ),
                (
                    "attacks/*".to_string(),
                    SlurmResources {
                        cpus: Some(4),
                        time: Some("60".into()),
                        extra: vec!["--constraint=b".into()],
                        ..Default::default()
                    },
                ),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let r = c.resources("attacks/x");
        assert_eq!((r.cpus, r.time.as_deref()), (Some(8), Some("60")));
        assert_eq!(r.extra, ["--qos=a", "--constraint=b"]);
        assert_eq!(c.resources("attacks/y").cpus, Some(4));
        assert_eq!(c.resources("models/m").cpus, Some(2));
    }
}
