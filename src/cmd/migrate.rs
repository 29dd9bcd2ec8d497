//! `opsbook migrate up | status | check | validate | dry-run | lint | new | baseline`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{Ctx, Result};
use crate::cli::{DatabaseArgs, MigrationsArg};
use crate::error::Failure;
use crate::exit::ExitStatus;
use crate::migrate::drift::DriftKind;
use crate::migrate::engine::{self, DryOutcome, State, UpOptions};
use crate::migrate::spec::MigrateSpec;
use crate::migrate::{self, lint, source, Finding, Rules, Settings};
use crate::ui::{progress, table};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub command: MigrateCommand,
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Apply pending migrations in order, each in its own transaction with lock_timeout set;
    /// refuses files with lint errors unless --allow-unsafe.
    Up(UpArgs),
    /// Applied, pending, changed and missing migrations, and other tools' history tables.
    Status(ConnArgs),
    /// CI gate: exit 1 when anything is pending, changed, missing or failed. Read-only.
    Check(ConnArgs),
    /// Classify changes to applied migration files as cosmetic or semantic; exit 1 on any drift.
    Validate(ValidateArgs),
    /// Run pending migrations inside a transaction, report the locks each takes and its time,
    /// then roll back. Exit 1 when one fails.
    DryRun(DryRunArgs),
    /// Zero-downtime lint (squawk rules) of migration files; exit 1 on errors.
    Lint(LintArgs),
    /// Create the next timestamped migration file.
    New(NewArgs),
    /// Record migrations up to VERSION as applied without running them (existing schemas).
    Baseline(BaselineArgs),
}

impl MigrateCommand {
    pub fn name(&self) -> &'static str {
        match self {
            MigrateCommand::Up(_) => "up",
            MigrateCommand::Status(_) => "status",
            MigrateCommand::Check(_) => "check",
            MigrateCommand::Validate(_) => "validate",
            MigrateCommand::DryRun(_) => "dry-run",
            MigrateCommand::Lint(_) => "lint",
            MigrateCommand::New(_) => "new",
            MigrateCommand::Baseline(_) => "baseline",
        }
    }
}

/// Where the migrations are and how to reach the database.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub migrations: MigrationsArg,
    /// How long to wait for the migration lock before exiting 4 [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub lock_wait: Option<Duration>,
    /// lock_timeout set for every migration; a timeout is retried with backoff [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub lock_timeout: Option<Duration>,
    /// statement_timeout set for every migration [default: the server's].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub statement_timeout: Option<Duration>,
}

impl ConnArgs {
    /// The flags as a migrate spec, over the profile's `[migrate]` table.
    fn spec(&self) -> MigrateSpec {
        MigrateSpec {
            migrations: self.migrations.migrations.clone(),
            lock_wait: self.lock_wait,
            lock_timeout: self.lock_timeout,
            statement_timeout: self.statement_timeout,
            ..Default::default()
        }
    }

    fn settings(&self, ctx: &Ctx<'_>) -> Result<Settings> {
        Ok(crate::settings::migrate::resolve(&ctx.config, self.db.database_url.as_deref(), &self.spec())?)
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Apply up to and including this version.
    #[arg(long, value_name = "VERSION")]
    pub target: Option<i64>,
    /// Apply even when pending migrations have lint errors.
    #[arg(long)]
    pub allow_unsafe: bool,
    /// Go on when applied migrations have no file (e.g. deploying an older branch).
    #[arg(long)]
    pub ignore_missing: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Record the new checksum of files whose change is only cosmetic (whitespace, line endings,
    /// BOM, comments), so sqlx and opsbook accept them again.
    #[arg(long)]
    pub repair_cosmetic: bool,
}

#[derive(Debug, Args)]
pub struct DryRunArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Dry-run up to and including this version.
    #[arg(long, value_name = "VERSION")]
    pub target: Option<i64>,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// Files to lint [default: every migration in the directory].
    #[arg(value_name = "FILES")]
    pub files: Vec<PathBuf>,
    /// Lint only the migrations the database has not applied yet.
    #[arg(long, conflicts_with = "files")]
    pub pending: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// What the migration does, e.g. "add product tags".
    pub name: String,
    /// Create an .up.sql/.down.sql pair.
    #[arg(long)]
    pub reversible: bool,
    /// Use a Flyway name (V<version>__<name>.sql) [default: the directory's style].
    #[arg(long, conflicts_with = "reversible")]
    pub flyway: bool,
    #[command(flatten)]
    pub migrations: MigrationsArg,
}

#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// Every migration with a version up to this one is recorded as applied.
    #[arg(value_name = "VERSION")]
    pub upto: i64,
    #[command(flatten)]
    pub conn: ConnArgs,
}

pub async fn run(ctx: &Ctx<'_>, args: MigrateArgs) -> Result<ExitStatus> {
    match args.command {
        MigrateCommand::Up(a) => up(ctx, a).await,
        MigrateCommand::Status(a) => status(ctx, a, false).await,
        MigrateCommand::Check(a) => status(ctx, a, true).await,
        MigrateCommand::Validate(a) => validate(ctx, a).await,
        MigrateCommand::DryRun(a) => dry_run(ctx, a).await,
        MigrateCommand::Lint(a) => lint_cmd(ctx, a).await,
        MigrateCommand::New(a) => new(ctx, a),
        MigrateCommand::Baseline(a) => baseline(ctx, a).await,
    }
}

fn version_text(v: Option<i64>) -> String {
    v.map_or_else(|| "R".into(), |v| v.to_string())
}

fn head_text(v: Option<i64>) -> String {
    v.map_or_else(|| "none".into(), |v| v.to_string())
}

fn millis(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

async fn up(ctx: &Ctx<'_>, args: UpArgs) -> Result<ExitStatus> {
    let settings = args.conn.settings(ctx)?;
    let reporter = progress::steps(ctx.printer, "migrate");
    let opts = UpOptions { target: args.target, allow_unsafe: args.allow_unsafe, ignore_missing: args.ignore_missing };
    let report = migrate::up(&settings, opts, reporter.as_ref()).await;
    reporter.finish();
    let report = report?;
    if ctx.printer.is_json() {
        ctx.printer.report(ExitStatus::Success, &report)?;
        return Ok(ExitStatus::Success);
    }
    print_findings(ctx, &report.warnings, true);
    if report.applied.is_empty() {
        ctx.printer.line(format!("up to date: nothing to apply (head {})", head_text(report.head)))?;
        return Ok(ExitStatus::Success);
    }
    let mut t = table::new(&["version", "description", "time", "lint", "note"]);
    for a in &report.applied {
        let mut note = Vec::new();
        if a.no_transaction {
            note.push("no transaction".to_string());
        }
        if a.attempts > 1 {
            note.push(format!("{} attempts (lock timeout)", a.attempts));
        }
        t.add_row(vec![
            version_text(a.version),
            a.description.clone(),
            millis(a.duration_ms),
            a.lint.to_string(),
            note.join(", "),
        ]);
    }
    ctx.printer.table(&t)?;
    ctx.printer.line(format!(
        "applied {} migration(s); head {}{}",
        report.applied.len(),
        head_text(report.head),
        if report.lock_wait_ms >= 1000.0 {
            format!(" (waited {:.1}s for the migration lock)", report.lock_wait_ms / 1000.0)
        } else {
            String::new()
        }
    ))?;
    Ok(ExitStatus::Success)
}

async fn status(ctx: &Ctx<'_>, args: ConnArgs, check: bool) -> Result<ExitStatus> {
    let settings = args.settings(ctx)?;
    let status = migrate::status(&settings).await?;
    let problems = status.problems().count();
    let code = if check && problems > 0 { ExitStatus::Failure } else { ExitStatus::Success };
    if ctx.printer.is_json() {
        ctx.printer.report(code, &status)?;
        return Ok(code);
    }
    let shown: Vec<&engine::Entry> = if check { status.problems().collect() } else { status.entries.iter().collect() };
    if !shown.is_empty() {
        let mut t = table::new(&["version", "description", "state", "installed", "by", "note"]);
        for e in shown {
            t.add_row(vec![
                version_text(e.version),
                e.description.clone(),
                e.state.as_str().to_string(),
                e.installed_on.map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default(),
                e.applied_by.clone().unwrap_or_default(),
                e.note.clone().unwrap_or_default(),
            ]);
        }
        ctx.printer.table(&t)?;
    }
    for o in &status.other_tools {
        ctx.printer.line(format!(
            "{} history ({}): {} applied{}{}",
            o.tool,
            o.table,
            o.applied,
            o.latest.as_ref().map(|l| format!(", latest {l}")).unwrap_or_default(),
            o.note.as_ref().map(|n| format!(" — {n}")).unwrap_or_default()
        ))?;
    }
    let summary = format!(
        "{} applied, {} pending, {} changed, {} missing file, {} failed; head {}",
        status.count(State::Applied),
        status.count(State::Pending),
        status.count(State::Changed),
        status.count(State::Missing),
        status.count(State::Failed),
        head_text(status.head)
    );
    if check && problems > 0 {
        ctx.printer.line(format!("check failed: {summary}"))?;
    } else {
        ctx.printer.line(summary)?;
    }
    Ok(code)
}

async fn validate(ctx: &Ctx<'_>, args: ValidateArgs) -> Result<ExitStatus> {
    let settings = args.conn.settings(ctx)?;
    let report = migrate::validate(&settings, args.repair_cosmetic).await?;
    let code = if report.ok() { ExitStatus::Success } else { ExitStatus::Failure };
    if ctx.printer.is_json() {
        ctx.printer.report(code, &report)?;
        return Ok(code);
    }
    for d in &report.drift {
        let what = match d.kind {
            DriftKind::Cosmetic if d.repaired => {
                "cosmetic change (whitespace, line endings, BOM or comments): new checksum recorded"
            }
            DriftKind::Cosmetic => "cosmetic change only (whitespace, line endings, BOM or comments)",
            DriftKind::Semantic => "semantic change: the SQL differs from what was applied",
            DriftKind::Missing => "the file is missing",
            DriftKind::Unknown => {
                "changed; the applied text was not recorded (applied by another tool), so it cannot be classified"
            }
        };
        ctx.printer.line(format!("{} {} ({}): {what}", d.version, d.description, d.file.as_deref().unwrap_or("-")))?;
        for s in &d.removed {
            ctx.printer.line(format!("  - {s}"))?;
        }
        for s in &d.added {
            ctx.printer.line(format!("  + {s}"))?;
        }
    }
    let unrepaired_cosmetic = report.drift.iter().any(|d| d.kind == DriftKind::Cosmetic && !d.repaired);
    ctx.printer.line(format!(
        "{} applied migration(s) checked, {} drifted{}",
        report.checked,
        report.drift.iter().filter(|d| !d.repaired).count(),
        if unrepaired_cosmetic { "; record cosmetic changes with --repair-cosmetic" } else { "" }
    ))?;
    Ok(code)
}

async fn dry_run(ctx: &Ctx<'_>, args: DryRunArgs) -> Result<ExitStatus> {
    let settings = args.conn.settings(ctx)?;
    let report = migrate::dry_run(&settings, args.target).await?;
    let code = if report.ok() { ExitStatus::Success } else { ExitStatus::Failure };
    if ctx.printer.is_json() {
        ctx.printer.report(code, &report)?;
        return Ok(code);
    }
    if report.migrations.is_empty() {
        ctx.printer.line("nothing pending: nothing to dry-run")?;
        return Ok(code);
    }
    let mut t = table::new(&["version", "description", "outcome", "time", "locks taken"]);
    for m in &report.migrations {
        let locks: Vec<String> = m
            .locks
            .iter()
            .map(|l| format!("{} on {} {}{}", l.mode, l.kind, l.relation, if l.new_object { " (new)" } else { "" }))
            .collect();
        let outcome = match m.outcome {
            DryOutcome::Ok => "ok",
            DryOutcome::Failed => "FAILED",
            DryOutcome::CannotDryRun => "cannot dry-run (no transaction); linted only",
            DryOutcome::Skipped => "skipped (an earlier one failed)",
        };
        t.add_row(vec![
            version_text(m.version),
            m.description.clone(),
            outcome.to_string(),
            m.duration_ms.map(millis).unwrap_or_default(),
            locks.join("\n"),
        ]);
    }
    ctx.printer.table(&t)?;
    for m in &report.migrations {
        if let Some(e) = &m.error {
            ctx.printer.line(format!("error: {e}"))?;
        }
        print_findings(ctx, &m.findings, false);
    }
    ctx.printer.line(if report.ok() {
        "dry run ok: everything rolled back"
    } else {
        "dry run failed: everything rolled back"
    })?;
    Ok(code)
}

fn print_findings(ctx: &Ctx<'_>, findings: &[Finding], to_stderr: bool) {
    for f in findings {
        let sev = match f.severity {
            lint::Severity::Error => "error",
            lint::Severity::Warning => "warning",
        };
        let mut text = format!("{}:{}:{}: {sev}[{}] {}", f.file, f.line, f.column, f.rule, f.message);
        if let Some(h) = &f.help {
            text.push_str(&format!("\n  help: {h}"));
        }
        if to_stderr {
            ctx.printer.note(text);
        } else {
            let _ = ctx.printer.line(text);
        }
    }
}

#[derive(Serialize)]
struct LintReport {
    files: usize,
    errors: usize,
    warnings: usize,
    findings: Vec<Finding>,
}

async fn lint_cmd(ctx: &Ctx<'_>, args: LintArgs) -> Result<ExitStatus> {
    let rules = Rules::new(&ctx.config.profile.migrate.lint.clone().unwrap_or_default())?;
    let mut findings = Vec::new();
    let files: usize;
    if args.pending {
        let settings = args.conn.settings(ctx)?;
        let status = migrate::status(&settings).await?;
        let src = source::load(&settings.dir)?;
        let todo = engine::pending(&src, &status, None);
        files = todo.len();
        for (_, f) in engine::lint_files(&rules, &todo) {
            findings.extend(f);
        }
    } else if args.files.is_empty() {
        let src =
            source::load(&crate::settings::migrate::dir(&ctx.config, args.conn.migrations.migrations.as_deref()))?;
        let all: Vec<&migrate::MigrationFile> = src.all().collect();
        files = all.len();
        for (_, f) in engine::lint_files(&rules, &all) {
            findings.extend(f);
        }
    } else {
        files = args.files.len();
        for path in &args.files {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
            findings.extend(rules.lint(path, &text, !source::is_no_tx(&text)));
        }
    }
    let errors = findings.iter().filter(|f| f.severity == lint::Severity::Error).count();
    let warnings = findings.len() - errors;
    let code = if errors > 0 { ExitStatus::Failure } else { ExitStatus::Success };
    if ctx.printer.is_json() {
        ctx.printer.report(code, &LintReport { files, errors, warnings, findings })?;
        return Ok(code);
    }
    print_findings(ctx, &findings, false);
    ctx.printer.line(format!("{files} file(s) linted: {errors} error(s), {warnings} warning(s)"))?;
    Ok(code)
}

fn new(ctx: &Ctx<'_>, args: NewArgs) -> Result<ExitStatus> {
    let dir = crate::settings::migrate::dir(&ctx.config, args.migrations.migrations.as_deref());
    let style = args.flyway.then_some(source::Style::Flyway);
    let created = source::create(&dir, &args.name, args.reversible, style, chrono::Utc::now())?;
    let paths: Vec<String> = created.iter().map(|p| p.display().to_string()).collect();
    if ctx.printer.is_json() {
        ctx.printer.report(ExitStatus::Success, &serde_json::json!({ "created": paths }))?;
    } else {
        for p in paths {
            ctx.printer.line(format!("created {p}"))?;
        }
    }
    Ok(ExitStatus::Success)
}

async fn baseline(ctx: &Ctx<'_>, args: BaselineArgs) -> Result<ExitStatus> {
    let settings = args.conn.settings(ctx)?;
    let report = migrate::baseline(&settings, args.upto).await?;
    if ctx.printer.is_json() {
        ctx.printer.report(ExitStatus::Success, &report)?;
    } else {
        for a in &report.recorded {
            ctx.printer.line(format!("recorded {} {} as applied (not run)", version_text(a.version), a.description))?;
        }
        ctx.printer.line(format!(
            "baseline {}: {} recorded, {} already applied",
            report.version,
            report.recorded.len(),
            report.already_applied
        ))?;
    }
    Ok(ExitStatus::Success)
}
