//! Runs a validated runbook: resolves parameters, then each step in order — condition,
//! confirmation, interpolation, the action with timeout and retries — saving the journal and
//! appending to the audit log after every step. Failure routing: `abort` runs only `always`
//! steps afterwards, `continue` carries on, a list of ids runs those steps (and `always` ones).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;

use super::actions::{self, ActionCtx, ActionError, Interaction};
use super::format::{ConfirmMode, FailureMode, OnFailure, ParamType, StepSpec};
use super::interp::{self, Ref};
use super::journal::{self, AuditEvent, RunJournal, RunStatus, StepRecord, StepStatus};
use super::{validate, Runbook, RunbookError};
use crate::config::Config;
use crate::error::{Classify, ErrorClass};
use crate::report::Reporter;

/// How to run a runbook.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// `--param k=v` pairs.
    pub params: Vec<(String, String)>,
    pub dry_run: bool,
    /// Continue the run with this id after its last successful step.
    pub resume: Option<String>,
    /// Start at this step (earlier ones are skipped).
    pub from: Option<String>,
    pub assume_yes: bool,
    /// Manual steps acknowledged up front (`--ack STEP`).
    pub acks: Vec<String>,
}

/// Live notifications for the terminal display.
pub trait RunObserver: Send + Sync {
    fn step_started(&self, _index: usize, _total: usize, _step: &StepRecord) {}
    fn step_finished(&self, _index: usize, _total: usize, _step: &StepRecord) {}
}

/// A finished (or stopped) run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub journal: RunJournal,
    /// The class of the failure that decided the run's outcome, if it failed.
    pub failure: Option<ErrorClass>,
}

/// Parameter values: all of them for interpolation; the journal keeps the non-secret ones.
struct Params {
    all: BTreeMap<String, Value>,
    recorded: BTreeMap<String, Value>,
}

fn resolve_params(
    rb: &Runbook,
    req: &RunRequest,
    previous: Option<&RunJournal>,
    interaction: &dyn Interaction,
) -> Result<Params, RunbookError> {
    let mut given: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in &req.params {
        if !rb.file.params.contains_key(k) {
            return Err(RunbookError::UndeclaredParam {
                name: k.clone(),
                path: rb.path.clone(),
                declared: rb.file.params.keys().cloned().collect(),
            });
        }
        given.insert(k, v);
    }
    let mut params = Params { all: BTreeMap::new(), recorded: BTreeMap::new() };
    for (name, spec) in &rb.file.params {
        let env_name = format!("OPSBOOK_PARAM_{}", name.to_ascii_uppercase().replace('-', "_"));
        let raw: Option<String> = given
            .get(name.as_str())
            .map(|v| v.to_string())
            .or_else(|| std::env::var(&env_name).ok())
            .or_else(|| previous.and_then(|p| p.params.get(name)).map(interp::as_text))
            .or_else(|| {
                spec.default.as_ref().map(|d| match d {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            })
            .or_else(|| {
                let secret = spec.kind == ParamType::Secret;
                let prompt = spec.description.clone().unwrap_or_else(|| name.clone());
                (interaction.can_prompt() && (spec.required || secret))
                    .then(|| interaction.ask(&format!("{prompt} ({name})"), secret))
                    .flatten()
            });
        let Some(raw) = raw else {
            if spec.required || spec.kind == ParamType::Secret {
                return Err(RunbookError::MissingParam { name: name.clone(), env: env_name });
            }
            // An optional parameter without a value is empty: false in `when`, null in inputs.
            params.all.insert(name.clone(), Value::Null);
            continue;
        };
        let value =
            validate::convert(spec, &raw).map_err(|error| RunbookError::ParamValue { name: name.clone(), error })?;
        // Registered before the first write (the audit line, the journal): a URL password in a
        // parameter of any type is a secret.
        crate::redact::register_urls_in(&raw);
        if spec.kind == ParamType::Secret {
            crate::redact::register(&raw);
        } else {
            params.recorded.insert(name.clone(), value.clone());
        }
        params.all.insert(name.clone(), value);
    }
    Ok(params)
}

fn new_run_id() -> String {
    format!("{}-{:08x}", Utc::now().format("%Y%m%dT%H%M%S"), rand::random::<u32>())
}

fn lookup<'a>(params: &'a Params, journal: &'a RunJournal) -> impl Fn(&Ref) -> Option<Value> + 'a {
    move |r| match r {
        Ref::Param(n) => params.all.get(n).cloned(),
        Ref::Env(n) => std::env::var(n).ok().map(Value::from),
        Ref::StepOutput { step, key } => {
            let found = journal.steps.iter().find(|s| &s.id == step);
            // A value masked in a resumed journal is never interpolated (`run_again` re-runs its
            // step when a step still to run needs it); otherwise it has no value.
            let usable = found.filter(|s| !s.output_masked(key));
            usable.and_then(|s| s.outputs.get(key).cloned()).or_else(|| {
                // A dry run only plans: outputs that only a real run produces get a placeholder,
                // so the later steps can still be shown. A real run fails on a missing output.
                (journal.dry_run && found.is_some())
                    .then(|| Value::from(format!("<output of steps.{step}: {key}, known after a real run>")))
            })
        }
        Ref::StepStatus(step) => {
            journal.steps.iter().find(|s| &s.id == step).map(|s| serde_json::to_value(s.status).unwrap_or(Value::Null))
        }
        Ref::RunId => Some(Value::from(journal.run_id.clone())),
    }
}

/// Runs `rb`. Errors are problems before any step ran (parameters, resume, lock); a failing
/// step is an outcome with `failure` set.
pub async fn execute(
    rb: &Runbook,
    req: &RunRequest,
    config: &Config,
    interaction: &dyn Interaction,
    observer: &dyn RunObserver,
    reporter: &dyn Reporter,
) -> Result<RunOutcome, RunbookError> {
    // One process per run id: a second `--resume` of the same run would repeat its steps.
    let mut run_lock = match &req.resume {
        Some(id) => Some(lock_run(id, rb, req)?),
        None => None,
    };
    let previous = match &req.resume {
        Some(id) => Some(resumable(rb, id)?),
        None => None,
    };
    let params = resolve_params(rb, req, previous.as_ref(), interaction)?;
    let _lock = if rb.file.lock && !req.dry_run {
        let resource = std::fs::canonicalize(&rb.path).unwrap_or_else(|_| rb.path.clone());
        Some(crate::lock::try_lock(
            "runbook",
            &resource.display().to_string(),
            &format!("opsbook run {}", rb.path.display()),
        )?)
    } else {
        None
    };
    let steps: Vec<&StepSpec> = rb.file.steps.iter().map(|s| s.get_ref()).collect();
    let from_index = match &req.from {
        Some(id) => Some(steps.iter().position(|s| s.id.get_ref() == id).ok_or_else(|| RunbookError::NoSuchStep {
            from: id.clone(),
            steps: rb.step_ids().into_iter().map(String::from).collect(),
        })?),
        None => None,
    };
    let mut journal = match previous {
        Some(mut j) => {
            j.status = RunStatus::Running;
            j.finished = None;
            j.params = params.recorded.clone();
            j
        }
        None => new_journal(rb, req, &steps, &params),
    };
    if run_lock.is_none() {
        run_lock = Some(lock_run(&journal.run_id, rb, req)?);
    }
    let _run_lock = run_lock;
    // On resume: cleanup steps run again, and so do finished steps whose outputs were masked in
    // the journal but are needed by a step still to run (a masked value is never interpolated).
    let again = if req.resume.is_some() { run_again(&steps, &journal)? } else { HashMap::new() };
    journal.save()?;
    audit(rb, &journal, "run_started", None)?;

    let env = StepEnv { rb, req, config, interaction, reporter, params: &params };
    let mut failure = run_steps(&env, observer, &steps, &mut journal, from_index, &again).await?;
    journal.status = if crate::signal::is_interrupted() {
        failure = Some(ErrorClass::Interrupted);
        RunStatus::Interrupted
    } else if failure.is_some() {
        RunStatus::Failed
    } else {
        RunStatus::Ok
    };
    journal.finished = Some(Utc::now());
    journal.save()?;
    audit(rb, &journal, "run_finished", None)?;
    Ok(RunOutcome { journal, failure })
}

/// The journal of run `run_id`, if the run can be resumed: same runbook text, not finished,
/// not a dry run.
fn resumable(rb: &Runbook, run_id: &str) -> Result<RunJournal, RunbookError> {
    let j = RunJournal::load(run_id)?;
    let run_id = run_id.to_string();
    if j.sha256 != rb.sha256 {
        return Err(RunbookError::Changed { path: rb.path.clone(), run_id });
    }
    if j.status == RunStatus::Ok {
        return Err(RunbookError::Completed { run_id });
    }
    if j.dry_run {
        return Err(RunbookError::DryRunResumed { run_id });
    }
    Ok(j)
}

/// The journal of a new run: every step pending.
fn new_journal(rb: &Runbook, req: &RunRequest, steps: &[&StepSpec], params: &Params) -> RunJournal {
    RunJournal {
        run_id: new_run_id(),
        runbook: rb.file.name.clone(),
        path: std::fs::canonicalize(&rb.path).unwrap_or_else(|_| rb.path.clone()),
        sha256: rb.sha256.clone(),
        started: Utc::now(),
        finished: None,
        status: RunStatus::Running,
        dry_run: req.dry_run,
        params: params.recorded.clone(),
        steps: steps
            .iter()
            .map(|s| StepRecord {
                id: s.id.get_ref().clone(),
                name: s.name.clone(),
                action: s.action.get_ref().clone(),
                status: StepStatus::Pending,
                started: None,
                duration_ms: None,
                attempts: 0,
                outputs: Default::default(),
                masked: Vec::new(),
                error: None,
                error_class: None,
                note: None,
            })
            .collect(),
    }
}

/// Runs (or skips) each step in order, saving the journal and auditing after each; returns
/// the class of the failure that decides the run's outcome. Failure routing: after a failure
/// only `always` steps run, plus those its on_failure list names (`continue` carries on).
async fn run_steps(
    env: &StepEnv<'_>,
    observer: &dyn RunObserver,
    steps: &[&StepSpec],
    journal: &mut RunJournal,
    from_index: Option<usize>,
    again: &HashMap<usize, String>,
) -> Result<Option<ErrorClass>, RunbookError> {
    let total = steps.len();
    let mut failure: Option<ErrorClass> = None;
    // After an abort: only `always` steps, plus the steps an on_failure list names.
    let mut failing = false;
    let mut rescue: HashSet<String> = HashSet::new();
    for (index, step) in steps.iter().enumerate() {
        let id = step.id.get_ref().clone();
        let before_from = from_index.is_some_and(|f| index < f);
        if journal.steps[index].status == StepStatus::Ok && (!again.contains_key(&index) || before_from) {
            continue;
        }
        let skip = |journal: &mut RunJournal, note: &str| {
            let rec = &mut journal.steps[index];
            rec.status = StepStatus::Skipped;
            rec.note = Some(note.into());
        };
        let interrupted = crate::signal::is_interrupted();
        if before_from {
            skip(journal, "before --from");
        } else if (failing || interrupted) && !step.always && !rescue.contains(&id) {
            skip(journal, if interrupted { "interrupted" } else { "an earlier step failed" });
        } else {
            observer.step_started(index, total, &journal.steps[index]);
            run_step(env, journal, index, step).await;
            let why = again.get(&index).filter(|w| !w.is_empty());
            if let Some(why) = why.filter(|_| journal.steps[index].status == StepStatus::Ok) {
                journal.steps[index].note = Some(why.clone());
            }
            let rec = &journal.steps[index];
            if rec.status == StepStatus::Failed {
                let class = rec_class(rec);
                match step.on_failure.as_ref() {
                    Some(OnFailure::Mode(FailureMode::Continue)) => {}
                    Some(OnFailure::Goto(ids)) => {
                        failing = true;
                        failure.get_or_insert(class);
                        rescue.extend(ids.iter().cloned());
                    }
                    _ => {
                        failing = true;
                        failure.get_or_insert(class);
                    }
                }
            }
        }
        observer.step_finished(index, total, &journal.steps[index]);
        journal.save()?;
        audit(env.rb, journal, "step_finished", Some(index))?;
    }
    Ok(failure)
}

/// Takes the lock of run `run_id`, held until the run or resume ends.
fn lock_run(run_id: &str, rb: &Runbook, req: &RunRequest) -> Result<crate::lock::LockGuard, RunbookError> {
    let what = match &req.resume {
        Some(id) => format!("opsbook run {} --resume {id}", rb.path.display()),
        None => format!("opsbook run {}", rb.path.display()),
    };
    Ok(crate::lock::try_lock("run", &format!("run {run_id}"), &what)?)
}

/// Finished steps of a resumed run that run again, with the note to record: `always` steps
/// (cleanup follows the resumed steps; no note), and steps whose outputs are masked in the
/// journal while a step that will run refers to them. Walking backwards catches chains (a step run again for its
/// secret output may itself need another step's secret output).
/// Only actions whose repetition is harmless are run again for a secret output; for any other
/// (a shell command, an HTTP POST, a rotation) the resume is refused, naming the step.
fn run_again(steps: &[&StepSpec], journal: &RunJournal) -> Result<HashMap<usize, String>, RunbookError> {
    let mut again: HashMap<usize, String> = HashMap::new();
    for (index, step) in steps.iter().enumerate().rev() {
        let rec = &journal.steps[index];
        if rec.status == StepStatus::Ok && step.always {
            again.entry(index).or_default();
        }
        if rec.status == StepStatus::Ok && !again.contains_key(&index) {
            continue;
        }
        for r in step_refs(step) {
            let Ref::StepOutput { step: other, key } = r else { continue };
            let Some(j) = journal.steps.iter().position(|s| s.id == other) else { continue };
            if journal.steps[j].status == StepStatus::Ok && journal.steps[j].output_masked(&key) {
                let action = steps[j].action.get_ref();
                if !actions::repeatable_on_resume(action) {
                    return Err(RunbookError::SecretOutput {
                        run_id: journal.run_id.clone(),
                        producer: other,
                        action: action.clone(),
                        key,
                        step: step.id.get_ref().clone(),
                    });
                }
                again.entry(j).or_insert_with(|| {
                    format!("run again on resume: its output `{key}` held a secret, which the journal does not keep")
                });
            }
        }
    }
    Ok(again)
}

/// Every reference in a step's `when`, `target` and `with` (validated, so they parse).
fn step_refs(step: &StepSpec) -> Vec<Ref> {
    let mut refs = Vec::new();
    if let Some(when) = &step.when {
        refs.extend(interp::refs(when.get_ref()).unwrap_or_default());
    }
    if let Some(target) = &step.target {
        refs.extend(interp::refs(target).unwrap_or_default());
    }
    if let Some(with) = &step.with {
        refs.extend(interp::value_refs(&toml::Value::Table(with.get_ref().clone())).unwrap_or_default());
    }
    refs
}

/// The class recorded for a failed step.
fn rec_class(rec: &StepRecord) -> ErrorClass {
    rec.error_class.unwrap_or(ErrorClass::Failed)
}

fn audit(rb: &Runbook, journal: &RunJournal, event: &str, step: Option<usize>) -> Result<(), RunbookError> {
    journal::audit(&AuditEvent {
        time: Utc::now(),
        event,
        run_id: &journal.run_id,
        who: journal::actor(),
        host: crate::lock::hostname(),
        runbook: &journal.runbook,
        path: &rb.path,
        sha256: &journal.sha256,
        params: (event == "run_started").then_some(&journal.params),
        step: step.map(|i| &journal.steps[i]),
        status: (event == "run_finished").then_some(journal.status),
    })
}

/// What every step of one run shares.
struct StepEnv<'a> {
    rb: &'a Runbook,
    req: &'a RunRequest,
    config: &'a Config,
    interaction: &'a dyn Interaction,
    reporter: &'a dyn Reporter,
    params: &'a Params,
}

async fn run_step(env: &StepEnv<'_>, journal: &mut RunJournal, index: usize, step: &StepSpec) {
    let started = Instant::now();
    journal.steps[index].started = Some(Utc::now());
    journal.steps[index].status = StepStatus::Running;
    let result = prepare_and_run(env, journal, step).await;
    let rec = &mut journal.steps[index];
    rec.duration_ms = Some(started.elapsed().as_millis() as u64);
    match result {
        Ok(StepResult::Ran(outputs, attempts)) => {
            // A URL password in any output is a secret from now on, before the journal and the
            // audit log write the step.
            outputs.values().for_each(crate::redact::register_urls_in_json);
            rec.status = StepStatus::Ok;
            rec.outputs = outputs;
            rec.masked.clear();
            rec.attempts = attempts;
            rec.error = None;
            rec.error_class = None;
            // A note from an earlier attempt of this run ("interrupted", …) no longer holds.
            rec.note = None;
        }
        Ok(StepResult::Skipped(note)) => {
            rec.status = StepStatus::Skipped;
            rec.note = Some(note);
        }
        Err((error, attempts)) => {
            rec.status = StepStatus::Failed;
            rec.attempts = attempts;
            rec.error = Some(crate::redact::redact(&error.to_string()).into_owned());
            rec.outputs = Default::default();
            rec.error_class = Some(error.class());
        }
    }
}

enum StepResult {
    Ran(actions::Outputs, u32),
    Skipped(String),
}

async fn prepare_and_run(
    env: &StepEnv<'_>,
    journal: &RunJournal,
    step: &StepSpec,
) -> Result<StepResult, (ActionError, u32)> {
    let StepEnv { rb, req, config, interaction, reporter, params } = *env;
    let id = step.id.get_ref();
    let look = lookup(params, journal);
    let input_err = |error: interp::InterpError| (ActionError::Interpolation { step: id.clone(), error }, 0);
    if let Some(when) = &step.when {
        let rendered = interp::as_text(&interp::render(when.get_ref(), &look).map_err(input_err)?);
        if !interp::truthy(&rendered) {
            return Ok(StepResult::Skipped(format!("condition `{}` is false", when.get_ref())));
        }
    }
    if step.destructive && !req.dry_run && !req.assume_yes {
        let target = match &step.target {
            Some(t) => interp::as_text(&interp::render(t, &look).map_err(input_err)?),
            None => id.clone(),
        };
        confirm_destructive(interaction, step, id, &target).map_err(|e| (e, 0))?;
    }
    let with = match &step.with {
        Some(table) => interp::render_value(&toml::Value::Table(table.get_ref().clone()), &look).map_err(input_err)?,
        None => Value::Object(Default::default()),
    };
    let ctx = ActionCtx {
        config,
        dry_run: req.dry_run,
        assume_yes: req.assume_yes,
        acks: &req.acks,
        reporter,
        interaction,
        base_dir: rb.base_dir(),
        step_id: id,
        run_id: &journal.run_id,
    };
    let action = step.action.get_ref();
    let attempts = step.retry.as_ref().map_or(1, |r| r.attempts.max(1));
    let mut delay = step
        .retry
        .as_ref()
        .and_then(|r| r.delay.as_deref())
        .and_then(|d| humantime::parse_duration(d).ok())
        .unwrap_or(Duration::from_secs(1));
    let backoff = step.retry.as_ref().and_then(|r| r.backoff).unwrap_or(1.0);
    let timeout = step.timeout.as_ref().and_then(|t| humantime::parse_duration(t.get_ref()).ok());
    let mut attempt = 0;
    loop {
        attempt += 1;
        let run = actions::run(action, with.clone(), &ctx);
        let wind_down = step.always || actions::winds_down_on_interrupt(action);
        let outcome = run_bounded(run, timeout, wind_down).await;
        match outcome {
            Ok(outputs) => return Ok(StepResult::Ran(outputs, attempt)),
            Err(e) => {
                // Only failures that may pass on their own are retried; bad input, a missing
                // confirmation or an interrupt will not change by waiting.
                let retriable = matches!(e.class(), ErrorClass::Failed | ErrorClass::Unavailable);
                if attempt >= attempts || !retriable || crate::signal::is_interrupted() {
                    return Err((e, attempt));
                }
                tracing::warn!(
                    "step {id} attempt {attempt}/{attempts} failed: {e}; retrying in {}",
                    humantime::format_duration(delay)
                );
                tokio::time::sleep(delay).await;
                delay = delay.mul_f64(backoff);
            }
        }
    }
}

/// The action, bounded by the step timeout and, unless `wind_down`, by Ctrl-C. Cleanup steps
/// and actions that handle Ctrl-C themselves are left to finish; the process-wide grace period
/// after Ctrl-C (`INTERRUPT_GRACE` in lib.rs) still bounds them.
async fn run_bounded(
    run: impl std::future::Future<Output = Result<actions::Outputs, ActionError>>,
    timeout: Option<Duration>,
    wind_down: bool,
) -> Result<actions::Outputs, ActionError> {
    let timed = async {
        match timeout {
            Some(t) => tokio::time::timeout(t, run).await.unwrap_or(Err(ActionError::TimedOut { after: t })),
            None => run.await,
        }
    };
    if wind_down {
        return timed.await;
    }
    tokio::select! {
        r = timed => r,
        _ = crate::signal::interrupted() => Err(ActionError::Stopped),
    }
}

fn confirm_destructive(
    interaction: &dyn Interaction,
    step: &StepSpec,
    id: &str,
    target: &str,
) -> Result<(), ActionError> {
    if !interaction.can_prompt() {
        return Err(ActionError::DestructiveNoTerminal { step: id.to_string() });
    }
    let title = step.name.clone().unwrap_or_else(|| id.to_string());
    let confirmed = tokio::task::block_in_place(|| match step.confirm {
        Some(ConfirmMode::TypeName) => interaction.type_name(&format!("{title}: type `{target}` to confirm"), target),
        _ => interaction.confirm(&format!("{title} is destructive. Continue?")),
    });
    if confirmed {
        Ok(())
    } else {
        Err(ActionError::NotConfirmed { step: id.to_string() })
    }
}
