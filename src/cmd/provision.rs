//! `opsbook provision plan | apply`.

use std::io::Write;

use clap::{Args, Subcommand};

use super::{Ctx, Result};
use crate::error::Failure;
use crate::exit::ExitStatus;
use crate::provision::{self, Action, Mode, Op, Plan, ProvisionSpec};
use crate::ui::{progress, table};

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    #[command(subcommand)]
    pub command: ProvisionCommand,
}

#[derive(Debug, Subcommand)]
pub enum ProvisionCommand {
    /// Compare the profile's [provision] table with what exists: resource, current, desired,
    /// action (create / update / none / skipped). Changes nothing.
    Plan(ConnArgs),
    /// Show the plan, confirm (--yes without a terminal), apply in order; stops at the first
    /// failure saying what was and was not done. Running it again changes nothing.
    Apply(ConnArgs),
}

impl ProvisionCommand {
    pub fn name(&self) -> &'static str {
        match self {
            ProvisionCommand::Plan(_) => "plan",
            ProvisionCommand::Apply(_) => "apply",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Superuser/admin connection used to create roles and the database [default: the
    /// profile's admin_database_url].
    #[arg(long, env = "ADMIN_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub admin_database_url: Option<String>,
}

impl ConnArgs {
    /// The flags as a provision spec for `mode`.
    fn spec(&self, mode: Mode) -> ProvisionSpec {
        ProvisionSpec { mode, admin_database_url: self.admin_database_url.clone(), expect_no_changes: false }
    }
}

pub async fn run(ctx: &Ctx<'_>, args: ProvisionArgs) -> Result<ExitStatus> {
    match args.command {
        ProvisionCommand::Plan(a) => plan(ctx, a).await,
        ProvisionCommand::Apply(a) => apply(ctx, a).await,
    }
}

fn print_plan(ctx: &Ctx<'_>, plan: &Plan) -> Result<()> {
    let mut t = table::new(&["resource", "current", "desired", "action"]);
    for i in &plan.items {
        t.add_row(vec![i.resource.clone(), i.current.clone(), i.desired.clone(), i.action.as_str().to_string()]);
    }
    ctx.printer.table(&t)?;
    let skipped = plan.items.iter().filter(|i| i.action == Action::Skipped).count();
    ctx.printer.line(format!(
        "{} change(s) for profile '{}'{}",
        plan.changes(),
        plan.profile,
        if skipped > 0 { format!(", {skipped} skipped (not supported by the provider)") } else { String::new() }
    ))?;
    Ok(())
}

async fn plan(ctx: &Ctx<'_>, args: ConnArgs) -> Result<ExitStatus> {
    let target = crate::settings::provision::resolve(&ctx.config, &args.spec(Mode::Plan)).await?;
    let plan = provision::plan(&target).await?;
    if ctx.printer.is_json() {
        ctx.printer.report(ExitStatus::Success, &plan)?;
    } else {
        print_plan(ctx, &plan)?;
    }
    Ok(ExitStatus::Success)
}

async fn apply(ctx: &Ctx<'_>, args: ConnArgs) -> Result<ExitStatus> {
    let mut target = crate::settings::provision::resolve(&ctx.config, &args.spec(Mode::Apply)).await?;
    let plan = provision::plan(&target).await?;
    if plan.changes() == 0 {
        if ctx.printer.is_json() {
            let report =
                serde_json::json!({ "profile": plan.profile, "items": plan.items, "applied": [], "skipped": [] });
            ctx.printer.report(ExitStatus::Success, &report)?;
        } else {
            print_plan(ctx, &plan)?;
            ctx.printer.line("nothing to do: the environment matches the profile")?;
        }
        return Ok(ExitStatus::Success);
    }
    let needs_admin_password = plan.items.iter().any(|i| matches!(i.op, Op::AdminPassword) && i.action != Action::None);
    if needs_admin_password && target.config.admin_password_file.is_none() && !ctx.printer.can_prompt() {
        return Err(Failure::usage(
            "the admin password is shown once on a terminal, and there is none: set admin_password_file in the \
             profile's [provision] table (written with mode 0600), or run on a terminal",
        ));
    }
    if !ctx.printer.is_json() {
        print_plan(ctx, &plan)?;
    }
    let question = format!("Apply {} change(s) to profile '{}'?", plan.changes(), plan.profile);
    let refusal = format!(
        "apply {} change(s) for profile '{}': pass --yes to confirm without a terminal",
        plan.changes(),
        plan.profile
    );
    crate::ui::prompt::confirm(ctx.printer, ctx.global.yes, &question, &refusal)?;
    let reporter = progress::steps(ctx.printer, "provision");
    let result = provision::apply(&mut target, plan, reporter.as_ref()).await;
    reporter.finish();
    let report = result?;
    if let Some(password) = &report.admin_password {
        // Straight to the terminal, once: never stdout, never a log, never JSON.
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "Admin password (shown once, store it in your password manager): {password}");
    }
    if ctx.printer.is_json() {
        ctx.printer.report(ExitStatus::Success, &report)?;
    } else {
        for line in &report.applied {
            ctx.printer.line(format!("done: {line}"))?;
        }
        for line in &report.skipped {
            ctx.printer.line(format!("skipped: {line}"))?;
        }
        if let Some(file) = &report.admin_password_file {
            ctx.printer.line(format!("admin password written to {file} (mode 0600)"))?;
        }
        ctx.printer.line(format!("{}; {} change(s) applied", report.login_test, report.applied.len()))?;
    }
    Ok(ExitStatus::Success)
}
