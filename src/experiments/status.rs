//! `blindspot status`: every stage of an experiment as done, stale (and why: which inputs changed since
//! it finished), running (by whom), waiting (for which stage), partial (interrupted, will resume) or not
//! started, with its fingerprint. Reads only; runs nothing.

use super::lock::{is_stale, lock_path, read_owner};
use super::stage::{fingerprint, Ctx, Stage};
use super::{plan, RunError};
use crate::config::Experiment;
use crate::data::MnistData;
use crate::results::checkpoint::done_marker;
use crate::Result;
use serde_json::Value;
use std::collections::HashMap;

/// The state of one stage.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Done,
    Stale,
    Running,
    Waiting,
    Partial,
    NotStarted,
}

/// One line of `blindspot status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageStatus {
    pub label: String,
    pub state: State,
    /// The stage's current fingerprint (None while it waits: its inputs do not exist yet).
    pub fingerprint: Option<String>,
    /// Why it is stale, who runs it, what it waits for.
    pub detail: String,
}

/// The keys (paths like `model.weights`) whose values differ between two input records.
fn changed_keys(old: &Value, new: &Value, prefix: &str, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => changed_keys(x, y, &p, out),
                    _ => out.push(p),
                }
            }
        }
        (a, b) if a != b => out.push(if prefix.is_empty() {
            "(all inputs)".into()
        } else {
            prefix.to_string()
        }),
        _ => {}
    }
}

fn stage_status(s: &dyn Stage, ctx: &Ctx, done: &HashMap<String, bool>) -> Result<StageStatus> {
    let label = s.label();
    let lock = read_owner(&lock_path(&ctx.run_dir, &label)).filter(|o| !is_stale(o));
    let waiting = s
        .needs(ctx.exp)
        .into_iter()
        .find(|n| !done.get(n).copied().unwrap_or(false));
    let status = |state, fingerprint, detail: String| StageStatus {
        label: label.clone(),
        state,
        fingerprint,
        detail,
    };
    if let Some(o) = lock {
        let job = o
            .slurm_job
            .map(|j| format!(", Slurm job {j}"))
            .unwrap_or_default();
        return Ok(status(
            State::Running,
            None,
            format!("{} pid {}{job}", o.host, o.pid),
        ));
    }
    if let Some(n) = waiting {
        return Ok(status(State::Waiting, None, format!("needs {n}")));
    }
    let (fp, inputs) = fingerprint(s, ctx)?;
    let dir = s.dir(&ctx.run_dir);
    Ok(match done_marker(&dir) {
        Some(m) if m.fingerprint == fp => status(State::Done, Some(fp), String::new()),
        Some(m) => {
            let mut keys = Vec::new();
            changed_keys(&m.inputs, &inputs, "", &mut keys);
            status(
                State::Stale,
                Some(fp),
                format!("changed since it finished: {}", keys.join(", ")),
            )
        }
        None if dir.join(".started.json").exists() => status(
            State::Partial,
            Some(fp),
            "interrupted; the next run resumes it".into(),
        ),
        None => status(State::NotStarted, Some(fp), String::new()),
    })
}

/// The status of every stage of `exp`, in plan order.
pub fn status(exp: &Experiment) -> Result<Vec<StageStatus>> {
    let device = crate::device::parse_device(&exp.device)?;
    let stages = plan(exp);
    super::check_plan(&stages, &exp.run_dir())?;
    if !exp.run_dir().exists() {
        return Err(RunError::NotReady {
            label: "status".into(),
            missing: format!("{} (run the experiment first)", exp.run_dir().display()),
        }
        .into());
    }
    let data = MnistData::load(&exp.data.mnist_dir(), exp.data.split_seed)?;
    let ctx = Ctx::new(exp, device, &data);
    let mut done = HashMap::new();
    let mut out = Vec::new();
    for s in &stages {
        let st = stage_status(s.as_ref(), &ctx, &done)?;
        done.insert(st.label.clone(), st.state == State::Done);
        out.push(st);
    }
    Ok(out)
}
