//! `opsbook rotate-secrets plan | run | status | rollback`.

use std::io::{IsTerminal, Write};

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{Ctx, Result};
use crate::error::ErrorClass;
use crate::exit::ExitStatus;
use crate::secrets::rotate::{self, RotateSpec, Standing};
use crate::ui::table;

#[derive(Debug, Args)]
pub struct RotateSecretsArgs {
    #[command(subcommand)]
    pub command: RotateCommand,
}

#[derive(Debug, Subcommand)]
pub enum RotateCommand {
    /// Which secrets are due (no value yet, never rotated, or older than max_age).
    Plan(AdminArgs),
    /// Rotate the named secrets, or the due ones: create → set → test → finish → revoke, each
    /// step journaled. Continues past failures; exit 1 if any failed, 4 if a rotation runs.
    Run(RunArgs),
    /// Age, last rotation, next due, strategy and fingerprint of every secret.
    Status(AdminArgs),
    /// Put the previous value back (random values, access keys and gateway credentials, and
    /// alternating logins, within their grace period).
    Rollback(RollbackArgs),
}

impl RotateCommand {
    pub fn name(&self) -> &'static str {
        match self {
            RotateCommand::Plan(_) => "plan",
            RotateCommand::Run(_) => "run",
            RotateCommand::Status(_) => "status",
            RotateCommand::Rollback(_) => "rollback",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// Admin connection for postgres-password secrets [default: the profile's
    /// admin_database_url].
    #[arg(long, env = "ADMIN_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub admin_database_url: Option<String>,
}

impl AdminArgs {
    /// The flag as a rotation spec (for the subcommands that name no secrets).
    fn spec(&self) -> RotateSpec {
        RotateSpec { admin_database_url: self.admin_database_url.clone(), ..RotateSpec::default() }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Secrets to rotate (their names in the profile).
    #[arg(value_name = "NAME", conflicts_with_all = ["due", "resume"])]
    pub names: Vec<String>,
    /// Rotate every secret that is due.
    #[arg(long, conflicts_with = "resume")]
    pub due: bool,
    /// Finish rotations a crash or failure left part-way.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub admin: AdminArgs,
}

impl RunArgs {
    /// The flags as a rotation spec (`--due` is no names, which clap keeps apart from names).
    fn spec(&self) -> RotateSpec {
        RotateSpec { names: self.names.clone(), resume: self.resume, ..self.admin.spec() }
    }
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The secret to roll back.
    pub name: String,
    #[command(flatten)]
    pub admin: AdminArgs,
}

pub async fn run(ctx: &Ctx<'_>, args: RotateSecretsArgs) -> Result<ExitStatus> {
    match args.command {
        RotateCommand::Plan(a) => show(ctx, a, true).await,
        RotateCommand::Status(a) => show(ctx, a, false).await,
        RotateCommand::Run(a) => run_cmd(ctx, a).await,
        RotateCommand::Rollback(a) => rollback(ctx, a).await,
    }
}

fn age(seconds: Option<i64>) -> String {
    seconds.map(table::age).unwrap_or_else(|| "never rotated".into())
}

#[derive(Serialize)]
struct StatusReport<'a> {
    profile: &'a str,
    secrets: &'a [Standing],
    state_file: String,
}

async fn show(ctx: &Ctx<'_>, args: AdminArgs, plan_only: bool) -> Result<ExitStatus> {
    let rc = crate::settings::rotate::resolve(&ctx.config, &args.spec())?;
    let standings = rotate::status(&rc).await?;
    let shown: Vec<Standing> =
        standings.into_iter().filter(|s| !plan_only || s.due || s.in_progress.is_some()).collect();
    if ctx.printer.is_json() {
        let report = StatusReport {
            profile: &rc.profile,
            secrets: &shown,
            state_file: rotate::state_file(&rc.profile).display().to_string(),
        };
        ctx.printer.report(ExitStatus::Success, &report)?;
        return Ok(ExitStatus::Success);
    }
    if shown.is_empty() {
        ctx.printer.line("nothing is due")?;
        return Ok(ExitStatus::Success);
    }
    let mut t = table::new(&["secret", "kind", "strategy", "age", "next due", "fingerprint", "state"]);
    for s in &shown {
        let state = match (s.in_progress, s.due, s.revoke_pending) {
            (Some(step), _, _) => format!("interrupted after {step:?}; run --resume").to_lowercase(),
            (None, true, _) if !s.present => "missing: due".into(),
            (None, true, _) => "due".into(),
            (None, false, Some(at)) => format!("previous valid until {}", at.format("%Y-%m-%d %H:%M UTC")),
            (None, false, None) => "ok".into(),
        };
        t.add_row(vec![
            s.name.clone(),
            s.kind.as_str().to_string(),
            s.strategy.as_str().to_string(),
            age(s.age_seconds),
            s.next_due.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_else(|| "-".into()),
            s.fingerprint.clone().unwrap_or_else(|| "-".into()),
            state,
        ]);
    }
    ctx.printer.table(&t)?;
    Ok(ExitStatus::Success)
}

async fn run_cmd(ctx: &Ctx<'_>, args: RunArgs) -> Result<ExitStatus> {
    let spec = args.spec();
    let rc = crate::settings::rotate::resolve(&ctx.config, &spec)?;
    let selection = spec.selection();
    rotate::check_plaintext_destination(&rc, &selection, std::io::stderr().is_terminal()).await?;
    let outcomes = rotate::run(&rc, selection).await?;
    for o in &outcomes {
        if let Some(plaintext) = &o.plaintext {
            // Once, to the terminal only: never stdout, a log or JSON.
            let _ = writeln!(std::io::stderr().lock(), "{} plaintext (shown once): {plaintext}", o.name);
        }
    }
    // A target that could not be reached is exit 3, not a failed rotation.
    let status = outcomes
        .iter()
        .filter(|o| !o.ok)
        .fold(ExitStatus::Success, |s, o| s.worst(o.error_class.unwrap_or(ErrorClass::Failed).into()));
    if ctx.printer.is_json() {
        ctx.printer.report(status, &serde_json::json!({ "profile": rc.profile, "secrets": outcomes }))?;
        return Ok(status);
    }
    if outcomes.is_empty() {
        ctx.printer.line("nothing to rotate")?;
        return Ok(status);
    }
    let mut t = table::new(&["secret", "result", "steps", "fingerprint", "detail"]);
    for o in &outcomes {
        t.add_row(vec![
            o.name.clone(),
            if o.ok { "ok".into() } else { "FAILED".into() },
            o.steps.join(" → "),
            match (&o.previous_fingerprint, &o.fingerprint) {
                (Some(a), Some(b)) => format!("{a} → {b}"),
                (None, Some(b)) => b.clone(),
                _ => "-".into(),
            },
            o.error.clone().unwrap_or_default(),
        ]);
    }
    ctx.printer.table(&t)?;
    Ok(status)
}

async fn rollback(ctx: &Ctx<'_>, args: RollbackArgs) -> Result<ExitStatus> {
    let rc = crate::settings::rotate::resolve(&ctx.config, &args.admin.spec())?;
    let o = rotate::rollback(&rc, &args.name).await?;
    if ctx.printer.is_json() {
        ctx.printer.report(ExitStatus::Success, &o)?;
    } else {
        ctx.printer.line(format!(
            "{}: rolled back ({} → {})",
            o.name,
            o.previous_fingerprint.as_deref().unwrap_or("-"),
            o.fingerprint.as_deref().unwrap_or("-")
        ))?;
    }
    Ok(ExitStatus::Success)
}
