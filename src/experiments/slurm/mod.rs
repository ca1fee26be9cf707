//! `blindspot slurm`: an experiment as Slurm jobs, one sbatch script per stage in `runs/<name>/slurm/`,
//! submitted with `--dependency=afterok:` on the jobs of the stages it reads (models → attacks →
//! transfer, Fig 7; models → units, spectral), then a report job after all. Each job runs `blindspot
//! run <experiment> --stage <label>`, which refuses to start unless the stages it reads are finished with
//! their current inputs, so a job whose dependency Slurm no longer knows (Slurm then runs it) never
//! computes from missing inputs. Every script asks `--kill-on-invalid-dep=yes`: a failed job cancels its
//! dependents instead of leaving them pending forever.
//!
//! An attack stage of at least `slurm.array_min_chunks` chunks becomes a job array, one task per missing
//! chunk (`--stage <label> --chunk $SLURM_ARRAY_TASK_ID`), and a merge job after it (`--stage <label>`),
//! which writes the outputs exactly as one process does ([`super::chunks`] has the rules that let the
//! tasks share the stage folder).
//!
//! Not submitted: stages finished with their current inputs, stages whose job from an earlier submission
//! (`jobs.json`) Slurm still has queued or running (their dependents wait on that job), and stages locked
//! by a live process outside Slurm (with their dependents and the report: run `blindspot slurm` again
//! once it has finished).

mod script;
mod submit;

use super::lock::{is_stale, lock_path, read_owner};
use super::stage::{current_marker, fingerprint, Ctx, RunLog, Stage};
use super::RunError;
use crate::config::slurm::{pattern_matches, Gpus, SlurmConfig};
use crate::config::Experiment;
use crate::data::MnistData;
use crate::{Error, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Options of `blindspot slurm`.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// The experiment file the jobs run (made absolute).
    pub experiment_file: PathBuf,
    /// The blindspot binary the jobs run, unless `slurm.binary` says otherwise.
    pub binary: PathBuf,
    /// Print the scripts and sbatch command lines; write and submit nothing.
    pub dry_run: bool,
}

/// What one job does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// A whole stage.
    Stage,
    /// The array over a stage's chunks (those listed, of `of`).
    Chunks { chunks: Vec<usize>, of: usize },
    /// The stage after its array: merges the chunks into its outputs.
    Merge,
    /// `blindspot report`.
    Report,
}

/// A job this job waits for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Dep {
    /// A job of this submission (its index).
    Planned(usize),
    /// A job already in Slurm: its id and the stage it runs.
    Existing(String, String),
}

/// One job of a submission.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedJob {
    /// The stage label, or `report`.
    pub label: String,
    pub part: Part,
    pub script_path: PathBuf,
    pub script: String,
    /// The sbatch command line; in a dry run the dependencies read `<label>` (`<label>[chunks]` for an
    /// array), the job id each would get.
    pub command: Vec<String>,
    /// The job id Slurm gave it (None in a dry run).
    pub job_id: Option<String>,
    #[serde(skip)]
    after: Vec<Dep>,
}

/// What `blindspot slurm` did.
#[derive(Debug, Clone, Serialize)]
pub struct SlurmSummary {
    /// `runs/<name>/slurm`.
    pub dir: PathBuf,
    pub dry_run: bool,
    pub jobs: Vec<PlannedJob>,
    /// Stages not submitted, and why (done, queued as job N, run by a process outside Slurm, …).
    pub not_submitted: Vec<(String, String)>,
}

/// What becomes of one stage.
enum Decision {
    Done,
    /// Its job (given) is queued or running already.
    Queued(String),
    /// Not submitted, nor its dependents.
    Held,
    /// Submitted: the index of its last job (the stage job or the merge).
    Submit(usize),
}

/// Writes and submits (or, in a dry run, prints) the jobs of `exp`.
pub fn slurm(exp: &Experiment, opts: &SlurmOptions) -> Result<SlurmSummary> {
    let cfg = exp.slurm.clone().unwrap_or_default();
    let run_dir = exp.run_dir();
    let stages = super::plan(exp);
    super::check_plan(&stages, &run_dir)?;
    check_patterns(&cfg, &stages, &opts.experiment_file)?;
    let sbatch = match opts.dry_run {
        true => None,
        false => Some(submit::which("sbatch").ok_or(RunError::SbatchMissing)?),
    };
    let data = if opts.dry_run {
        MnistData::load(&exp.data.mnist_dir(), exp.data.split_seed)?
    } else {
        super::prepare(exp, &run_dir, &mut RunLog::default())?
    };
    let _submitting = match opts.dry_run {
        true => None,
        false => Some(submit_lock(&run_dir)?),
    };
    // Planning reads files only: the fingerprints hold the experiment's device name, not a device.
    let ctx = Ctx::new(exp, tch::Device::Cpu, &data);
    let dir = run_dir.join("slurm");
    let records = submit::read_records(&dir);
    let mut ids: Vec<String> = records.values().flat_map(|r| r.jobs.clone()).collect();
    ids.extend(
        stages
            .iter()
            .filter_map(|s| live_lock_job(&run_dir, &s.label())),
    );
    let alive = match submit::alive(&ids) {
        Err(_) if opts.dry_run => Default::default(),
        r => r?,
    };
    let mut p = Planner {
        ctx: &ctx,
        cfg: &cfg,
        jobs: Vec::new(),
        not_submitted: Vec::new(),
    };
    let mut decisions: HashMap<String, Decision> = HashMap::new();
    for s in &stages {
        let d = p.decide(s.as_ref(), &decisions, &records, &alive)?;
        decisions.insert(s.label(), d);
    }
    p.report_job(&stages, &decisions, (&records, &alive));
    let mut jobs = p.jobs;
    let fill = Fill {
        exp,
        cfg: &cfg,
        opts,
        dir: &dir,
        decisions: &decisions,
    };
    fill.scripts(&mut jobs, &ctx)?;
    let mut summary = SlurmSummary {
        dir,
        dry_run: opts.dry_run,
        jobs,
        not_submitted: p.not_submitted,
    };
    if let Some(sbatch) = sbatch {
        submit_all(&mut summary, &sbatch, records, &decisions)?;
    }
    Ok(summary)
}

/// Holds `.locks/#slurm.lock` while one `blindspot slurm` submits, so two do not submit one stage twice.
fn submit_lock(run_dir: &Path) -> Result<super::lock::StageLock> {
    use super::lock::{Acquired, StageLock};
    match StageLock::acquire(run_dir, "#slurm")? {
        Acquired::Held(l) => Ok(l),
        Acquired::Busy(o) => Err(RunError::SubmitBusy {
            owner: format!("{} pid {}", o.host, o.pid),
        }
        .into()),
    }
}

/// The Slurm job of a live process holding a stage's lock.
fn live_lock_job(run_dir: &Path, label: &str) -> Option<String> {
    read_owner(&lock_path(run_dir, label))
        .filter(|o| !is_stale(o))
        .and_then(|o| o.slurm_job)
}

/// Every override of `slurm.stages` must name a job of this experiment.
fn check_patterns(cfg: &SlurmConfig, stages: &[Box<dyn Stage + '_>], file: &Path) -> Result<()> {
    let mut labels: Vec<String> = stages.iter().map(|s| s.label()).collect();
    labels.push("report".into());
    for p in cfg.stages.keys() {
        if !labels.iter().any(|l| pattern_matches(p, l)) {
            return Err(Error::config(
                file.display().to_string(),
                format!("slurm.stages.{p}"),
                format!(
                    "matches no job of this experiment; its jobs are: {}",
                    labels.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

struct Planner<'a> {
    ctx: &'a Ctx<'a>,
    cfg: &'a SlurmConfig,
    jobs: Vec<PlannedJob>,
    not_submitted: Vec<(String, String)>,
}

impl Planner<'_> {
    fn push(&mut self, label: &str, part: Part, after: Vec<Dep>) -> usize {
        self.jobs.push(PlannedJob {
            label: label.to_string(),
            part,
            script_path: PathBuf::new(),
            script: String::new(),
            command: Vec::new(),
            job_id: None,
            after,
        });
        self.jobs.len() - 1
    }

    fn decide(
        &mut self,
        s: &dyn Stage,
        decisions: &HashMap<String, Decision>,
        records: &submit::Records,
        alive: &std::collections::HashSet<String>,
    ) -> Result<Decision> {
        let label = s.label();
        let needs = s.needs(self.ctx.exp);
        let mut needs_done = true;
        let mut after = Vec::new();
        for n in &needs {
            match decisions.get(n) {
                Some(Decision::Held) => {
                    let why = format!("waits for {n}, which is not submitted");
                    self.not_submitted.push((label, why));
                    return Ok(Decision::Held);
                }
                Some(Decision::Submit(i)) => after.push(Dep::Planned(*i)),
                Some(Decision::Queued(id)) => after.push(Dep::Existing(id.clone(), n.clone())),
                Some(Decision::Done) | None => continue,
            }
            needs_done = false;
        }
        if needs_done && current_marker(s, self.ctx)?.is_some() {
            self.not_submitted
                .push((label, "done (finished with its current inputs)".into()));
            return Ok(Decision::Done);
        }
        let earlier = records.get(&label).and_then(|r| r.jobs.last());
        if let Some(id) = earlier.filter(|id| alive.contains(submit::master_id(id))) {
            self.not_submitted.push((
                label,
                format!("queued or running as Slurm job {id} (an earlier submission)"),
            ));
            return Ok(Decision::Queued(id.clone()));
        }
        let run_dir = &self.ctx.run_dir;
        if let Some(o) = read_owner(&lock_path(run_dir, &label)).filter(|o| !is_stale(o)) {
            let who = format!("{} pid {}", o.host, o.pid);
            if let Some(j) = o.slurm_job.filter(|j| alive.contains(submit::master_id(j))) {
                self.not_submitted
                    .push((label, format!("running as Slurm job {j} ({who})")));
                return Ok(Decision::Queued(j));
            }
            let why = format!("being run by {who} outside Slurm: not submitted (nor what reads it); run `blindspot slurm` again when it has finished");
            self.not_submitted.push((label, why));
            return Ok(Decision::Held);
        }
        let mut seen = std::collections::HashSet::new();
        after.retain(|d| seen.insert(d.clone()));
        let chunks = s
            .chunks(self.ctx)?
            .filter(|k| *k >= self.cfg.array_min_chunks);
        let last = match chunks {
            None => self.push(&label, Part::Stage, after),
            Some(k) => {
                let missing = missing_chunks(s, self.ctx, k, needs_done)?;
                if missing.is_empty() {
                    self.push(&label, Part::Merge, after)
                } else {
                    let a = self.push(
                        &label,
                        Part::Chunks {
                            chunks: missing,
                            of: k,
                        },
                        after,
                    );
                    self.push(&label, Part::Merge, vec![Dep::Planned(a)])
                }
            }
        };
        Ok(Decision::Submit(last))
    }

    /// The report job after every stage job (none if a stage is held back or every stage is done).
    fn report_job(
        &mut self,
        stages: &[Box<dyn Stage + '_>],
        decisions: &HashMap<String, Decision>,
        (records, alive): (&submit::Records, &std::collections::HashSet<String>),
    ) {
        let mut after = Vec::new();
        for s in stages {
            match &decisions[&s.label()] {
                Decision::Held => {
                    self.not_submitted.push((
                        "report".into(),
                        "not submitted: some stages are not submitted".into(),
                    ));
                    return;
                }
                Decision::Submit(i) => after.push(Dep::Planned(*i)),
                Decision::Queued(id) => after.push(Dep::Existing(id.clone(), s.label())),
                Decision::Done => {}
            }
        }
        if after.is_empty() {
            self.not_submitted.push((
                "report".into(),
                "not submitted: every stage is done (`blindspot report` rewrites the report)"
                    .into(),
            ));
            return;
        }
        let new_stage = after.iter().any(|d| matches!(d, Dep::Planned(_)));
        let earlier = records.get("report").and_then(|r| r.jobs.last());
        if let Some(id) = earlier.filter(|id| !new_stage && alive.contains(submit::master_id(id))) {
            self.not_submitted.push((
                "report".into(),
                format!("queued as Slurm job {id} (an earlier submission)"),
            ));
            return;
        }
        self.push("report", Part::Report, after);
    }
}

/// The chunks of stage `s` without files: all of them unless the folder holds work of its current
/// fingerprint (which can be known only once its needs are finished).
fn missing_chunks(s: &dyn Stage, ctx: &Ctx, k: usize, needs_done: bool) -> Result<Vec<usize>> {
    if !needs_done {
        return Ok((0..k).collect());
    }
    let (fp, _) = fingerprint(s, ctx)?;
    let dir = s.dir(&ctx.run_dir);
    let identity = serde_json::json!({"stage": s.label(), "fingerprint": fp});
    let same = crate::io::read_json::<serde_json::Value>(&dir.join(".started.json")).ok()
        == Some(identity);
    Ok((0..k)
        .filter(|i| !(same && s.chunk_done(&dir, *i)))
        .collect())
}

/// What the scripts need besides the jobs.
struct Fill<'a> {
    exp: &'a Experiment,
    cfg: &'a SlurmConfig,
    opts: &'a SlurmOptions,
    dir: &'a Path,
    decisions: &'a HashMap<String, Decision>,
}

impl Fill<'_> {
    /// Names, script texts and (dry-run) command lines of every job.
    fn scripts(&self, jobs: &mut [PlannedJob], ctx: &Ctx) -> Result<()> {
        let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                cwd.join(p)
            }
        };
        let experiment = abs(&self.opts.experiment_file);
        let binary = abs(self.cfg.binary.as_ref().unwrap_or(&self.opts.binary));
        let logs = abs(&self.dir.join("logs"));
        let names: Vec<String> = jobs.iter().map(placeholder).collect();
        let fps = self.fingerprints(jobs, ctx)?;
        for (i, j) in jobs.iter_mut().enumerate() {
            let after: Vec<String> = j
                .after
                .iter()
                .map(|d| match d {
                    Dep::Planned(k) => names[*k].clone(),
                    Dep::Existing(id, label) => format!("{id} ({label})"),
                })
                .collect();
            let mut res = self.cfg.resources(&j.label);
            if res.gpus.is_none() && self.exp.device.starts_with("cuda") {
                res.gpus = Some(Gpus::Count(1));
            }
            j.script = script::render(&script::ScriptInput {
                exp_name: &self.exp.name,
                label: &j.label,
                part: &j.part,
                fingerprint: fps[i].as_deref(),
                after: &after,
                res: &res,
                setup: &self.cfg.setup,
                array_parallel: self.cfg.array_parallel,
                binary: &binary,
                experiment: &experiment,
                cwd: &cwd,
                logs: &logs,
            })?;
            let stem = script::job_name(&self.exp.name, &j.label, &j.part);
            let stem = stem.trim_start_matches("bs.");
            j.script_path = abs(&self.dir.join(format!("{i:02}-{stem}.sbatch")));
            j.command = command(&j.script_path, &dependency(&j.after, &names));
        }
        Ok(())
    }

    /// The fingerprint of each job's stage, where its needs are done.
    fn fingerprints(&self, jobs: &[PlannedJob], ctx: &Ctx) -> Result<Vec<Option<String>>> {
        let stages = super::plan(self.exp);
        jobs.iter()
            .map(|j| {
                let Some(s) = stages.iter().find(|s| s.label() == j.label) else {
                    return Ok(None);
                };
                let ready = s
                    .needs(self.exp)
                    .iter()
                    .all(|n| matches!(self.decisions.get(n), Some(Decision::Done) | None));
                Ok(if ready {
                    Some(fingerprint(s.as_ref(), ctx)?.0)
                } else {
                    None
                })
            })
            .collect()
    }
}

/// How a dry run names a job's id: `<label>`, `<label>[chunks]`.
fn placeholder(j: &PlannedJob) -> String {
    match j.part {
        Part::Chunks { .. } => format!("<{}[chunks]>", j.label),
        _ => format!("<{}>", j.label),
    }
}

/// The `afterok:` list: ids of existing jobs, and of planned jobs as given in `ids`.
fn dependency(after: &[Dep], ids: &[String]) -> Option<String> {
    if after.is_empty() {
        return None;
    }
    let list: Vec<&str> = after
        .iter()
        .map(|d| match d {
            Dep::Planned(k) => ids[*k].as_str(),
            Dep::Existing(id, _) => id.as_str(),
        })
        .collect();
    Some(format!("afterok:{}", list.join(":")))
}

fn command(script: &Path, dependency: &Option<String>) -> Vec<String> {
    let mut c = vec!["sbatch".to_string(), "--parsable".to_string()];
    if let Some(d) = dependency {
        c.push(format!("--dependency={d}"));
    }
    c.push(script.display().to_string());
    c
}

/// Writes the scripts (replacing those of an earlier submission) and submits them in order, recording
/// each job in `jobs.json` as soon as it is queued.
fn submit_all(
    s: &mut SlurmSummary,
    sbatch: &Path,
    old: submit::Records,
    decisions: &HashMap<String, Decision>,
) -> Result<()> {
    let logs = s.dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| Error::io(&logs, e))?;
    if let Ok(entries) = std::fs::read_dir(&s.dir) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "sbatch") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    for j in &s.jobs {
        crate::io::write_atomic(&j.script_path, j.script.as_bytes())?;
    }
    // Records of stages whose earlier jobs are still queued stay; the rest are replaced.
    let report_queued = !s.jobs.iter().any(|j| j.part == Part::Report);
    let mut records: submit::Records = old
        .into_iter()
        .filter(|(l, _)| {
            matches!(decisions.get(l), Some(Decision::Queued(_)))
                || (l == "report" && report_queued)
        })
        .collect();
    let mut ids: Vec<String> = Vec::new();
    for i in 0..s.jobs.len() {
        let dep = dependency(&s.jobs[i].after, &ids);
        let cmd = command(&s.jobs[i].script_path, &dep);
        let id = submit::sbatch(sbatch, &cmd[1..]).map_err(|e| {
            let done: Vec<String> = s.jobs[..i]
                .iter()
                .map(|j| format!("{} {}", placeholder(j), j.job_id.as_deref().unwrap_or("?")))
                .collect();
            match e {
                Error::Run(RunError::Slurm { command, why }) if !done.is_empty() => {
                    Error::Run(RunError::Slurm {
                        command,
                        why: format!("{why}; submitted before it: {} (recorded in {}, so `blindspot slurm` again does not submit them twice)", done.join(", "), s.dir.join(submit::RECORDS).display()),
                    })
                }
                e => e,
            }
        })?;
        let j = &mut s.jobs[i];
        j.command = cmd;
        j.job_id = Some(id.clone());
        let r = records
            .entry(j.label.clone())
            .or_insert_with(|| submit::Record {
                jobs: Vec::new(),
                submitted_unix: super::lock::now_unix(),
            });
        if !matches!(j.part, Part::Merge) {
            r.jobs.clear();
        }
        r.jobs.push(id.clone());
        r.submitted_unix = super::lock::now_unix();
        submit::write_records(&s.dir, &records)?;
        ids.push(id);
    }
    Ok(())
}
