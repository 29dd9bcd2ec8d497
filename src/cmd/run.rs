//! `opsbook run RUNBOOK`: run a runbook's steps with a journal, resumable after a failure.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{Ctx, Result};
use crate::exit::ExitStatus;
use crate::runbook::engine::{self, RunObserver, RunRequest};
use crate::runbook::journal::{RunJournal, StepRecord, StepStatus};
use crate::ui::prompt::TerminalInteraction;
use crate::ui::{progress, table, Printer};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Runbook file, or the name of one in ./runbooks (e.g. quickstart).
    #[arg(value_name = "RUNBOOK")]
    pub runbook: PathBuf,
    /// A parameter value; repeat for several.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Show what each step would do; built-in actions plan without side effects, shell steps
    /// are shown, not run.
    #[arg(long)]
    pub dry_run: bool,
    /// Continue run RUN_ID after its last successful step, with the same parameters.
    #[arg(long, value_name = "RUN_ID", conflicts_with = "dry_run")]
    pub resume: Option<String>,
    /// Start at this step; earlier steps are skipped.
    #[arg(long, value_name = "STEP")]
    pub from: Option<String>,
    /// Acknowledge a manual step without a terminal; repeat for several.
    #[arg(long = "ack", value_name = "STEP")]
    pub acks: Vec<String>,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("invalid --param '{s}': use KEY=VALUE"))
}

/// A runbook path, or the name of a runbook shipped in ./runbooks.
pub fn locate(given: &Path) -> PathBuf {
    if given.exists() || given.extension().is_some() || given.components().count() > 1 {
        return given.to_path_buf();
    }
    let shipped = Path::new("runbooks").join(given).with_extension("toml");
    if shipped.exists() {
        shipped
    } else {
        given.to_path_buf()
    }
}

/// Step lines on stderr as the run goes (JSON Lines events with --output json -v).
struct Lines<'a> {
    printer: &'a Printer,
    json_events: bool,
}

impl RunObserver for Lines<'_> {
    fn step_started(&self, index: usize, total: usize, step: &StepRecord) {
        if !self.printer.is_json() {
            self.printer.note(format!("[{}/{total}] {} ({}) …", index + 1, title(step), step.action));
        }
    }

    fn step_finished(&self, index: usize, total: usize, step: &StepRecord) {
        if self.json_events {
            let event = serde_json::json!({ "event": "step_finished", "index": index, "step": step });
            self.printer.note(serde_json::to_string(&event).unwrap_or_default());
        } else if !self.printer.is_json() {
            let detail = match (&step.error, &step.note) {
                (Some(e), _) => format!(": {e}"),
                (None, Some(n)) => format!(" ({n})"),
                _ => String::new(),
            };
            self.printer.note(format!(
                "[{}/{total}] {} {}{}{detail}",
                index + 1,
                title(step),
                word(step.status),
                duration(step)
            ));
        }
    }
}

fn title(step: &StepRecord) -> String {
    step.name.clone().unwrap_or_else(|| step.id.clone())
}

fn word(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Pending => "pending",
        StepStatus::Running => "running",
        StepStatus::Ok => "ok",
        StepStatus::Failed => "FAILED",
        StepStatus::Skipped => "skipped",
    }
}

fn duration(step: &StepRecord) -> String {
    step.duration_ms.map(|ms| format!(" in {:.1}s", ms as f64 / 1000.0)).unwrap_or_default()
}

pub async fn run(ctx: &Ctx<'_>, args: RunArgs) -> Result<ExitStatus> {
    let path = locate(&args.runbook);
    let rb = crate::runbook::load(&path)?;
    let request = RunRequest {
        params: args.params,
        dry_run: args.dry_run,
        resume: args.resume,
        from: args.from,
        assume_yes: ctx.printer.yes,
        acks: args.acks,
    };
    let interaction = TerminalInteraction::new(ctx.printer);
    let observer = Lines { printer: ctx.printer, json_events: ctx.printer.is_json() && ctx.global.verbose > 0 };
    let reporter = progress::reporter(ctx.printer, &rb.file.name);
    let outcome = engine::execute(&rb, &request, &ctx.config, &interaction, &observer, reporter.as_ref()).await?;
    let status = outcome.failure.map_or(ExitStatus::Success, ExitStatus::from);
    if ctx.printer.is_json() {
        ctx.printer.report(status, &outcome.journal)?;
    } else {
        print_summary(ctx, &path, &outcome.journal, status)?;
    }
    Ok(status)
}

fn print_summary(ctx: &Ctx<'_>, path: &Path, journal: &RunJournal, status: ExitStatus) -> Result<()> {
    ctx.printer.table(&summary_table(journal))?;
    let mode = if journal.dry_run { " (dry run)" } else { "" };
    ctx.printer.line(format!("run {} of {}{mode}: {}", journal.run_id, journal.runbook, status.word()))?;
    if status != ExitStatus::Success && !journal.dry_run {
        ctx.printer.note(format!("resume with: opsbook run {} --resume {}", path.display(), journal.run_id));
    }
    Ok(())
}

/// The run summary: a row a step, with its error, note or first outputs.
pub(crate) fn summary_table(journal: &RunJournal) -> table::Table {
    let mut t = table::new(&["step", "action", "status", "time", "detail"]);
    for step in &journal.steps {
        let detail = step.error.clone().or_else(|| step.note.clone()).unwrap_or_else(|| {
            step.outputs
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "stdout" | "stderr" | "body" | "headers" | "instructions"))
                .take(3)
                .map(|(k, v)| format!("{k}={}", crate::runbook::interp::as_text(v)))
                .collect::<Vec<_>>()
                .join(" ")
        });
        t.add_row(vec![
            step.id.clone(),
            step.action.clone(),
            word(step.status).into(),
            duration(step).trim().into(),
            detail,
        ]);
    }
    t
}
