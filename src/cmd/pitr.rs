//! `opsbook pitr setup | backup | status | check | expire`: point-in-time recovery through
//! pgBackRest. PITR drills are `opsbook restore-drill --pitr`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{Ctx, Result};
use crate::cli::MonitorArgs;
use crate::exit::ExitStatus;
use crate::pitr::backup::BackupType;
use crate::pitr::status::Status;
use crate::pitr::{setup, Engine, PitrSpec};
use crate::ui::table;

#[derive(Debug, Args)]
pub struct PitrArgs {
    #[command(subcommand)]
    pub command: PitrCommand,
}

#[derive(Debug, Subcommand)]
pub enum PitrCommand {
    /// Configure pgBackRest and WAL archiving from [profiles.NAME.pitr] (idempotent), then
    /// prove archiving works with `pgbackrest check`. Runs on the database host.
    Setup(SetupArgs),
    /// Take a physical backup under the stanza's lock, with the profile's pings and metrics.
    Backup(BackupArgs),
    /// The RPO now: archive lag and failures, WAL range, newest backups, last restorable point.
    /// Exit 1 when archiving fails or lags past rpo_target.
    Status(StatusArgs),
    /// Status plus a full backup within full_interval and `pgbackrest check`; exit 1 on any
    /// problem.
    Check(StanzaArgs),
    /// Expire backups by the profile's retention, never the one the newest drill restored.
    Expire(ExpireArgs),
}

impl PitrCommand {
    pub fn name(&self) -> &'static str {
        match self {
            PitrCommand::Setup(_) => "setup",
            PitrCommand::Backup(_) => "backup",
            PitrCommand::Status(_) => "status",
            PitrCommand::Check(_) => "check",
            PitrCommand::Expire(_) => "expire",
        }
    }
}

/// Which stanza, flattened by every `pitr` command; the rest comes from [profiles.NAME.pitr].
#[derive(Debug, Clone, Default, Args)]
pub struct StanzaArgs {
    /// pgBackRest stanza [default: profile's pitr.stanza, else main].
    #[arg(long, value_name = "NAME")]
    pub stanza: Option<String>,
    /// The cluster's data directory [default: profile's pitr.pg_path, else the sandbox's].
    #[arg(long, value_name = "DIR")]
    pub pg_path: Option<PathBuf>,
    /// Repository: s3://bucket/prefix or a directory [default: profile's pitr.repo, else
    /// `pitr` beside the store].
    #[arg(long, value_name = "URL")]
    pub repo: Option<String>,
}

impl StanzaArgs {
    pub fn spec(&self) -> PitrSpec {
        PitrSpec {
            stanza: self.stanza.clone(),
            pg_path: self.pg_path.clone(),
            repo: self.repo.clone(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    #[command(flatten)]
    pub stanza: StanzaArgs,
    /// Show the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Restart PostgreSQL when archive_mode needs it (asks first; --yes in scripts).
    #[arg(long)]
    pub restart: bool,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub stanza: StanzaArgs,
    /// Backup type [default: incr, or full when there is none to build on].
    #[arg(long = "type", value_name = "TYPE", value_parser = ["full", "diff", "incr"])]
    pub kind: Option<String>,
    #[command(flatten)]
    pub monitor: MonitorArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub stanza: StanzaArgs,
    /// First write a canary row (the time now) and switch WAL, so a later PITR drill can prove
    /// the point it reaches; run it from cron every few minutes.
    #[arg(long)]
    pub canary: bool,
}

#[derive(Debug, Args)]
pub struct ExpireArgs {
    #[command(flatten)]
    pub stanza: StanzaArgs,
    /// Show what would be expired; expire nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(ctx: &Ctx<'_>, args: PitrArgs) -> Result<ExitStatus> {
    match args.command {
        PitrCommand::Setup(a) => setup_cmd(ctx, a).await,
        PitrCommand::Backup(a) => backup_cmd(ctx, a).await,
        PitrCommand::Status(a) => status_cmd(ctx, &a.stanza, a.canary, false).await,
        PitrCommand::Check(a) => status_cmd(ctx, &a, false, true).await,
        PitrCommand::Expire(a) => expire_cmd(ctx, a).await,
    }
}

async fn setup_cmd(ctx: &Ctx<'_>, args: SetupArgs) -> Result<ExitStatus> {
    let p = crate::settings::pitr::resolve(&ctx.config, args.stanza.spec())?;
    let engine = Engine::new(&p)?;
    let plan = setup::plan(&p, &engine).await?;
    let mut t = table::new(&["item", "action", "detail"]);
    for i in &plan.items {
        let action = match i.action {
            setup::Action::Create => "create",
            setup::Action::Update => "update",
            setup::Action::Ok => "ok",
        };
        t.add_row(vec![i.item.clone(), action.into(), i.detail.clone()]);
    }
    ctx.printer.line(format!("pitr setup: stanza {} → {}", p.stanza, p.repo.display()))?;
    ctx.printer.table(&t)?;
    if args.dry_run {
        if plan.restart_needed {
            ctx.printer.line("a restart of PostgreSQL will be needed (archive_mode)")?;
        }
        ctx.printer.line(format!("{} change(s) planned; nothing changed (--dry-run)", plan.changes()))?;
        if ctx.printer.is_json() {
            ctx.printer.report(ExitStatus::Success, &serde_json::json!({ "dry_run": true, "plan": plan }))?;
        }
        return Ok(ExitStatus::Success);
    }
    if plan.restart_needed && args.restart {
        crate::ui::prompt::confirm(
            ctx.printer,
            ctx.global.yes,
            &format!("Restart PostgreSQL ({}) now to turn archiving on?", p.pg_path.display()),
            "turning archiving on restarts PostgreSQL: pass --yes to confirm without a terminal",
        )?;
    }
    let applied = setup::apply(&p, &engine, &plan, args.restart).await?;
    if ctx.printer.is_json() {
        ctx.printer
            .report(ExitStatus::Success, &serde_json::json!({ "dry_run": false, "plan": plan, "applied": applied }))?;
    } else {
        let restarted = if applied.restarted { "; PostgreSQL restarted" } else { "" };
        ctx.printer.line(format!(
            "{} change(s) applied{restarted}; pgbackrest check passed: WAL reaches the repository",
            applied.changed
        ))?;
        ctx.printer.line(format!(
            "next: `opsbook pitr backup --type full`, then `opsbook pitr status` (configuration: {})",
            p.conf_path().display()
        ))?;
    }
    Ok(ExitStatus::Success)
}

async fn backup_cmd(ctx: &Ctx<'_>, args: BackupArgs) -> Result<ExitStatus> {
    let mut spec = args.stanza.spec();
    spec.monitor = args.monitor.spec();
    let p = crate::settings::pitr::resolve(&ctx.config, spec)?;
    let kind = args.kind.as_deref().map(str::parse::<BackupType>).transpose()?;
    ctx.printer.note(format!("pitr backup: stanza {} → {}", p.stanza, p.repo.display()));
    let o = crate::pitr::backup::job(&p, kind).await?;
    if ctx.printer.is_json() {
        ctx.printer.report(ExitStatus::Success, &o)?;
        return Ok(ExitStatus::Success);
    }
    let b = &o.backup;
    ctx.printer.line(format!("{} backup {} of stanza {}", b.kind, b.label, o.stanza))?;
    ctx.printer.line(format!("  database   {}", table::bytes(b.size)))?;
    ctx.printer.line(format!(
        "  stored     {} (compressed{})",
        table::bytes(b.repo_size),
        if b.kind == "full" { "" } else { ", changes only" }
    ))?;
    ctx.printer.line(format!("  duration   {:.1}s", o.duration_seconds))?;
    if let (Some(a), Some(z)) = (&b.wal_start, &b.wal_stop) {
        ctx.printer.line(format!("  WAL        {a} … {z}"))?;
    }
    if let Some(label) = &o.protected {
        ctx.printer.line(format!(
            "  retention  {} full backups kept, to keep {label} (the newest drilled backup)",
            o.retention_full
        ))?;
    }
    Ok(ExitStatus::Success)
}

async fn status_cmd(ctx: &Ctx<'_>, args: &StanzaArgs, canary: bool, full_check: bool) -> Result<ExitStatus> {
    let p = crate::settings::pitr::resolve(&ctx.config, args.spec())?;
    let status = crate::pitr::status::report(&p, canary, full_check).await?;
    let code = if status.problems.is_empty() { ExitStatus::Success } else { ExitStatus::Failure };
    if ctx.printer.is_json() {
        ctx.printer.report(code, &status)?;
    } else {
        print_status(ctx, &status)?;
    }
    Ok(code)
}

fn when(t: Option<chrono::DateTime<chrono::Utc>>, now: chrono::DateTime<chrono::Utc>) -> String {
    match t {
        Some(t) => format!("{} ({} ago)", t.format("%Y-%m-%d %H:%M:%SZ"), table::age((now - t).num_seconds())),
        None => "never".into(),
    }
}

fn print_status(ctx: &Ctx<'_>, s: &Status) -> Result<()> {
    let a = &s.archiver;
    let p = ctx.printer;
    p.line(format!("stanza {} → {} (archive_mode {})", s.stanza, s.repo, a.archive_mode))?;
    if let Some(c) = s.canary {
        p.line(format!("  canary      written at {}", c.format("%Y-%m-%d %H:%M:%S%.3fZ")))?;
    }
    p.line(format!(
        "  archived    {} at {}",
        a.last_archived_wal.as_deref().unwrap_or("nothing yet"),
        when(a.last_archived_time, a.now)
    ))?;
    if a.failed_count > 0 {
        p.line(format!(
            "  failures    {} (last: {} at {})",
            a.failed_count,
            a.last_failed_wal.as_deref().unwrap_or("?"),
            when(a.last_failed_time, a.now)
        ))?;
    }
    let lag = s.lag_seconds.map_or_else(|| "unknown".into(), table::age);
    p.line(format!("  lag         {lag} (target {})", table::age(s.rpo_target_seconds as i64)))?;
    if let (Some(lo), Some(hi)) = (&s.wal_min, &s.wal_max) {
        p.line(format!("  WAL held    {lo} … {hi}"))?;
    }
    for (kind, b) in [("full", &s.newest_full), ("diff", &s.newest_diff), ("incr", &s.newest_incr)] {
        if let Some(b) = b {
            p.line(format!("  newest {kind} {} at {}", b.label, when(Some(b.stopped), a.now)))?;
        }
    }
    if let Some(r) = s.restorable_point {
        p.line(format!("  restorable  {} (newest point a drill reached)", r.format("%Y-%m-%d %H:%M:%SZ")))?;
    }
    if s.problems.is_empty() {
        p.line("ok")?;
    }
    for problem in &s.problems {
        p.line(format!("PROBLEM {}: {}", problem.check, problem.message))?;
    }
    Ok(())
}

async fn expire_cmd(ctx: &Ctx<'_>, args: ExpireArgs) -> Result<ExitStatus> {
    let p = crate::settings::pitr::resolve(&ctx.config, args.stanza.spec())?;
    let engine = Engine::new(&p)?;
    let _lock =
        crate::lock::try_lock("pitr", &format!("stanza {}", p.stanza), &format!("pitr expire of stanza {}", p.stanza))?;
    let o = crate::pitr::backup::expire(&p, &engine, args.dry_run).await?;
    if ctx.printer.is_json() {
        ctx.printer.report(ExitStatus::Success, &o)?;
        return Ok(ExitStatus::Success);
    }
    let verb = if o.dry_run { "would expire" } else { "expired" };
    ctx.printer.line(format!(
        "stanza {}: keeping {} full backup(s); {verb} {}",
        o.stanza,
        o.retention_full,
        if o.expired.is_empty() { "nothing".to_string() } else { o.expired.join(", ") }
    ))?;
    if let Some(label) = &o.protected {
        ctx.printer.line(format!("kept {label}: the newest passed PITR drill restored from it"))?;
    }
    Ok(ExitStatus::Success)
}
