//! `opsbook runbook list | show | validate | schema`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{Ctx, Result};
use crate::error::Failure;
use crate::exit::ExitStatus;
use crate::runbook::{self, RunbookError};
use crate::ui::table;

#[derive(Debug, Args)]
pub struct RunbookArgs {
    #[command(subcommand)]
    pub command: RunbookCommand,
}

#[derive(Debug, Subcommand)]
pub enum RunbookCommand {
    /// List the runbooks in a directory with their description and schedule.
    List {
        /// Directory to look in.
        #[arg(default_value = "runbooks")]
        dir: PathBuf,
    },
    /// Show a runbook's parameters and steps.
    Show {
        /// Runbook file or shipped name.
        runbook: PathBuf,
    },
    /// Check runbooks without running them; every problem is reported with file, line and column.
    Validate {
        /// Runbook files or shipped names.
        #[arg(required = true)]
        runbooks: Vec<PathBuf>,
    },
    /// Print the JSON Schema of the runbook format (action inputs under x-opsbook-actions).
    Schema,
}

impl RunbookCommand {
    pub fn name(&self) -> &'static str {
        match self {
            RunbookCommand::List { .. } => "list",
            RunbookCommand::Show { .. } => "show",
            RunbookCommand::Validate { .. } => "validate",
            RunbookCommand::Schema => "schema",
        }
    }
}

pub async fn run(ctx: &Ctx<'_>, args: RunbookArgs) -> Result<ExitStatus> {
    let p = ctx.printer;
    match args.command {
        RunbookCommand::Schema => {
            let mut schema = runbook::format::json_schema();
            schema["x-opsbook-actions"] = runbook::actions::input_schemas();
            if p.is_json() {
                p.report(ExitStatus::Success, &serde_json::json!({ "schema": schema }))?;
            } else {
                // The schema document itself, for editors (`> runbook.schema.json`).
                p.line(serde_json::to_string_pretty(&schema)?)?;
            }
            Ok(ExitStatus::Success)
        }
        RunbookCommand::List { dir } => {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|e| Failure::usage(format!("cannot list {}: {e}", dir.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            entries.sort();
            let mut rows = Vec::new();
            let mut status = ExitStatus::Success;
            for path in entries {
                match runbook::load(&path) {
                    Ok(rb) => rows.push(serde_json::json!({
                        "path": path, "name": rb.file.name, "description": rb.file.description,
                        "schedule": rb.file.schedule, "steps": rb.file.steps.len(), "valid": true,
                    })),
                    Err(e) => {
                        status = ExitStatus::Usage;
                        rows.push(serde_json::json!({ "path": path, "valid": false, "error": e.to_string() }));
                    }
                }
            }
            if p.is_json() {
                p.report(status, &serde_json::json!({ "runbooks": rows }))?;
            } else {
                let mut t = table::new(&["runbook", "name", "schedule", "steps", "description"]);
                for r in &rows {
                    let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
                    let name = if r["valid"] == true { s("name") } else { "INVALID".into() };
                    let desc = if r["valid"] == true { s("description") } else { s("error") };
                    t.add_row(vec![s("path"), name, s("schedule"), r["steps"].to_string().replace("null", ""), desc]);
                }
                p.table(&t)?;
            }
            Ok(status)
        }
        RunbookCommand::Show { runbook: path } => {
            let rb = runbook::load(&super::run::locate(&path))?;
            if p.is_json() {
                let steps: Vec<serde_json::Value> = rb
                    .file
                    .steps
                    .iter()
                    .map(|s| {
                        let s = s.get_ref();
                        serde_json::json!({
                            "id": s.id.get_ref(), "name": s.name, "action": s.action.get_ref(),
                            "when": s.when.as_ref().map(|w| w.get_ref()), "destructive": s.destructive, "always": s.always,
                        })
                    })
                    .collect();
                let params: Vec<serde_json::Value> = rb
                    .file
                    .params
                    .iter()
                    .map(|(n, s)| serde_json::json!({"name": n, "type": s.kind, "required": s.required, "description": s.description}))
                    .collect();
                p.report(
                    ExitStatus::Success,
                    &serde_json::json!({
                        "path": rb.path, "name": rb.file.name, "description": rb.file.description,
                        "schedule": rb.file.schedule, "lock": rb.file.lock, "params": params, "steps": steps,
                    }),
                )?;
                return Ok(ExitStatus::Success);
            }
            p.line(format!("{} — {}", rb.file.name, rb.file.description.clone().unwrap_or_default()))?;
            if let Some(s) = &rb.file.schedule {
                p.line(format!("schedule: {s}"))?;
            }
            if !rb.file.params.is_empty() {
                let mut t = table::new(&["param", "type", "default", "description"]);
                for (name, spec) in &rb.file.params {
                    t.add_row(vec![
                        name.clone(),
                        format!("{:?}", spec.kind).to_lowercase(),
                        spec.default.as_ref().map(|d| d.to_string()).unwrap_or_else(|| {
                            if spec.required {
                                "(required)".into()
                            } else {
                                String::new()
                            }
                        }),
                        spec.description.clone().unwrap_or_default(),
                    ]);
                }
                p.table(&t)?;
            }
            let mut t = table::new(&["#", "step", "action", "flags"]);
            for (i, s) in rb.file.steps.iter().enumerate() {
                let s = s.get_ref();
                let mut flags = Vec::new();
                if s.destructive {
                    flags.push("destructive".to_string());
                }
                if s.always {
                    flags.push("always".to_string());
                }
                if let Some(w) = &s.when {
                    flags.push(format!("when {}", w.get_ref()));
                }
                t.add_row(vec![
                    (i + 1).to_string(),
                    s.name.clone().unwrap_or_else(|| s.id.get_ref().clone()),
                    s.action.get_ref().clone(),
                    flags.join(", "),
                ]);
            }
            p.table(&t)?;
            Ok(ExitStatus::Success)
        }
        RunbookCommand::Validate { runbooks } => {
            let mut results = Vec::new();
            let mut status = ExitStatus::Success;
            for given in runbooks {
                let path = super::run::locate(&given);
                match runbook::load(&path) {
                    Ok(rb) => results.push(serde_json::json!({"path": path, "valid": true, "name": rb.file.name})),
                    Err(RunbookError::Invalid { diagnostics, .. }) => {
                        status = ExitStatus::Usage;
                        for d in &diagnostics {
                            p.error(&Failure::usage(format!(
                                "{}:{}:{}: {}",
                                path.display(),
                                d.line,
                                d.column,
                                d.message
                            )));
                        }
                        results.push(serde_json::json!({"path": path, "valid": false, "diagnostics": diagnostics}));
                    }
                    Err(e) => {
                        status = ExitStatus::Usage;
                        p.error(&Failure::usage(&e));
                        results.push(serde_json::json!({"path": path, "valid": false, "error": e.to_string()}));
                    }
                }
            }
            if p.is_json() {
                p.report(status, &serde_json::json!({ "runbooks": results }))?;
            } else {
                for r in &results {
                    p.line(format!(
                        "{}: {}",
                        r["path"].as_str().unwrap_or(""),
                        if r["valid"] == true { "ok" } else { "INVALID" }
                    ))?;
                }
            }
            Ok(status)
        }
    }
}
