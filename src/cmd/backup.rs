//! `opsbook backup run | list | verify | prune`.

use clap::{Args, Subcommand, ValueEnum};

use super::{Ctx, Result};
use crate::backup::job::{self, JobReport, JobSettings};
use crate::backup::manifest::RowCountMethod;
use crate::backup::prune::{self, PruneOptions, PrunePlan};
use crate::backup::retention::RetentionPolicy;
use crate::backup::spec::{BackupSpec, RowCounts};
use crate::backup::{BackupError, Catalog, Manifest};
use crate::cli::{DatabaseArgs, MonitorArgs, StoreArgs};
use crate::error::Failure;
use crate::exit::ExitStatus;
use crate::store::{Store, StoreOptions};
use crate::ui::{progress, table};

pub use super::backup_list::{ListArgs, VerifyArgs};
pub use super::backup_objects::ObjectsArgs;

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: BackupCommand,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Dump the database (pg_dump, custom format) through zstd and optional age encryption
    /// straight into the store; the manifest is written last.
    Run(RunArgs),
    /// List complete backups (reads manifests only).
    List(ListArgs),
    /// Check a backup's objects against its manifest (size, SHA-256); --deep also decodes the
    /// archive and reads it with pg_restore --list. Exit 1 when a check fails.
    Verify(VerifyArgs),
    /// Delete backups outside the retention policy, orphaned objects and stale uploads.
    Prune(PruneArgs),
    /// Copy an object store (the media bucket) to a second provider or a local directory,
    /// incrementally, and write an inventory (key, size, SHA-256) beside the backups.
    Objects(ObjectsArgs),
}

impl BackupCommand {
    pub fn name(&self) -> &'static str {
        match self {
            BackupCommand::Run(_) => "run",
            BackupCommand::List(_) => "list",
            BackupCommand::Verify(_) => "verify",
            BackupCommand::Prune(_) => "prune",
            BackupCommand::Objects(_) => "objects",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RowCountArg {
    /// count(*) per table inside the dump's snapshot: exactly what the dump holds.
    Exact,
    /// Planner statistics: free, approximate.
    Estimate,
    Off,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Backup set name (a path segment in the store) [default: main].
    #[arg(long, value_name = "NAME", conflicts_with = "all")]
    pub set: Option<String>,
    /// Back up every set declared in the profile ([profiles.NAME.sets.SET]); continues past
    /// failures and exits with the worst outcome.
    #[arg(long)]
    pub all: bool,
    /// With --all: how many sets run at once.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "all", value_parser = at_least_one)]
    pub parallel: usize,
    /// Compression: zstd or zstd:LEVEL (1-19) [default: zstd:1, the fastest; higher levels
    /// spend more CPU for smaller backups].
    #[arg(long, value_name = "SPEC")]
    pub compression: Option<String>,
    /// Encrypt to this age recipient (age1…); repeat for several.
    #[arg(long = "encrypt-to", value_name = "AGE_RECIPIENT")]
    pub encrypt_to: Vec<String>,
    /// Also store `pg_dumpall --globals-only` (roles, tablespaces) without role passwords.
    #[arg(long)]
    pub globals: bool,
    /// With --globals: include role password hashes (needs superuser).
    #[arg(long, requires = "globals")]
    pub globals_with_passwords: bool,
    /// Per-table row counts recorded in the manifest [default: exact].
    #[arg(long, value_enum, value_name = "MODE")]
    pub row_counts: Option<RowCountArg>,
    #[command(flatten)]
    pub monitor: MonitorArgs,
    /// Upload part size (e.g. 16MiB); every part but the last has exactly this size (R2
    /// requires it) [default: 8MiB, larger for databases over ~64 GiB to stay under 10,000 parts].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub part_size: Option<usize>,
    /// Parts uploaded at once; peak memory is about part size × (this + 1) plus ~20 MiB
    /// [default: 2].
    #[arg(long, value_name = "N")]
    pub upload_concurrency: Option<usize>,
    /// Prune the set by its retention policy after the new backup is complete.
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub retention: RetentionArgs,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Backup set name [default: main].
    #[arg(long, value_name = "NAME")]
    pub set: Option<String>,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Show the plan with a reason per backup; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// restic-style retention flags; they override the set's policy in opsbook.toml.
#[derive(Debug, Clone, Default, Args)]
pub struct RetentionArgs {
    /// Keep the N newest backups.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the last N hours that have one.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the last N days that have one.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last N ISO weeks that have one.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the last N months that have one.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the last N years that have one.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every backup within this duration of the newest one (e.g. 14d, 36h).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub keep_within: Option<std::time::Duration>,
    /// Never keep fewer than the N newest backups.
    #[arg(long, value_name = "N")]
    pub min_keep: Option<u32>,
    /// Time zone in which days, weeks, months and years are counted [default: profile's
    /// time_zone, else UTC].
    #[arg(long, value_name = "TZ")]
    pub tz: Option<String>,
    /// Allow deleting more than half of the set's backups.
    #[arg(long)]
    pub force: bool,
}

/// `--parallel`: a count of at least 1.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("'{s}' is not a whole number of at least 1")),
    }
}

/// `--part-size`: a byte size within S3's part limits.
pub(crate) fn parse_size(s: &str) -> Result<usize, String> {
    let size = crate::spec::parse_bytes(s).map_err(|e| e.to_string())?;
    crate::settings::backup::check_part_size(size).map_err(|e| format!("{s}: {e}"))
}

pub async fn run(ctx: &Ctx<'_>, args: BackupArgs) -> Result<ExitStatus> {
    match args.command {
        BackupCommand::Run(a) if a.all => run_all(ctx, a).await,
        BackupCommand::Run(a) => run_one(ctx, a).await,
        BackupCommand::List(a) => super::backup_list::list(ctx, a).await,
        BackupCommand::Verify(a) => super::backup_list::verify(ctx, a).await,
        BackupCommand::Prune(a) => prune_cmd(ctx, a).await,
        BackupCommand::Objects(a) => super::backup_objects::run(ctx, a).await,
    }
}

pub(crate) fn set_name(given: Option<&str>) -> Result<String> {
    Ok(job::set_name(given)?)
}

pub(crate) async fn open_store(url: &str) -> Result<Store> {
    Ok(Store::open_url(url, &StoreOptions::default()).await?)
}

impl RetentionArgs {
    fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: self.keep_within,
            min_keep: self.min_keep.unwrap_or(0),
        }
    }
}

impl RunArgs {
    /// The flags as a backup spec; `None` leaves an input to the set's configuration.
    fn spec(&self) -> BackupSpec {
        BackupSpec {
            database_url: self.db.database_url.clone(),
            store: self.store.store.clone(),
            compression: self.compression.clone(),
            encrypt_to: self.encrypt_to.clone(),
            globals: self.globals.then_some(true),
            globals_with_passwords: self.globals_with_passwords.then_some(true),
            row_counts: self.row_counts.map(|r| match r {
                RowCountArg::Exact => RowCounts::Exact,
                RowCountArg::Estimate => RowCounts::Estimate,
                RowCountArg::Off => RowCounts::Off,
            }),
            part_size: self.part_size.map(|p| p as u64),
            upload_concurrency: self.upload_concurrency,
            monitor: self.monitor.spec(),
            retention: self.retention.policy(),
        }
    }

    /// One set's settings: these flags over the set's configuration.
    fn resolve(
        &self,
        config: &crate::config::Config,
        spec: &BackupSpec,
        set: &str,
        per_set: bool,
    ) -> Result<JobSettings> {
        let tz = self.retention.tz.as_deref();
        Ok(crate::settings::backup::resolve(config, spec, set, per_set, tz, self.retention.force)?)
    }
}

/// One set's job with the command's error context.
async fn backup_set(ctx: &Ctx<'_>, settings: &JobSettings, then_prune: bool, bars: bool) -> Result<JobReport> {
    let set = &settings.request.set;
    let reporter = if bars { progress::reporter(ctx.printer, set) } else { Box::new(crate::report::Silent) };
    job::run_job(settings, then_prune, reporter.as_ref()).await.map_err(|e| match e {
        // The backup did not fail: its own message says so.
        e @ BackupError::PruneAfterBackup { .. } => Failure::from(e),
        e => Failure::from(e).context(format!("backup of set '{set}' to {} failed", settings.store_url)),
    })
}

async fn run_one(ctx: &Ctx<'_>, args: RunArgs) -> Result<ExitStatus> {
    let set = set_name(args.set.as_deref())?;
    let settings = args.resolve(&ctx.config, &args.spec(), &set, false)?;
    let report = backup_set(ctx, &settings, args.prune, true).await?;
    if ctx.printer.is_json() {
        ctx.printer.report(ExitStatus::Success, &report)?;
    } else if let Some(manifest) = &report.backup {
        print_run(ctx, manifest, report.duration_seconds)?;
        if let Some(plan) = &report.prune {
            print_prune(ctx, plan, false)?;
        }
    }
    Ok(ExitStatus::Success)
}

async fn run_all(ctx: &Ctx<'_>, args: RunArgs) -> Result<ExitStatus> {
    use futures::stream::{self, StreamExt};
    let sets: Vec<String> = ctx.config.profile.sets.keys().cloned().collect();
    if sets.is_empty() {
        return Err(Failure::usage(format!(
            "--all: profile '{}' declares no backup sets; add [profiles.{}.sets.NAME] to opsbook.toml",
            ctx.config.profile_name, ctx.config.profile_name
        )));
    }
    let args = &args;
    let mut spec = args.spec();
    // A --notify-url (or OPSBOOK_NOTIFY_URL) given for --all watches the whole run: one start,
    // then one success or failure for all sets together, so a failed set can never be followed
    // by a green ping. Sets with their own notify_url in opsbook.toml still ping it per set.
    let run_heartbeat = match spec.monitor.notify_url.take() {
        Some(url) => {
            crate::notify::check_url(&url).map_err(|e| Failure::usage(format!("--notify-url: {e}")))?;
            Some(crate::notify::Heartbeat::new(Some(url)))
        }
        None => None,
    };
    if let Some(h) = &run_heartbeat {
        h.start().await;
    }
    let spec = &spec;
    // Each result keeps the set's store URL (empty when its settings did not resolve), so a
    // failed set's report can name it.
    let results: Vec<(String, String, Result<JobReport>)> = stream::iter(sets)
        .map(|set| async move {
            match args.resolve(&ctx.config, spec, &set, true) {
                Ok(settings) => {
                    let outcome = backup_set(ctx, &settings, args.prune, false).await;
                    (set, settings.store_url, outcome)
                }
                Err(e) => (set, String::new(), Err(e)),
            }
        })
        .buffer_unordered(args.parallel.max(1))
        .collect()
        .await;
    let mut status = ExitStatus::Success;
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    let mut rows = table::new(&["set", "status", "backup", "stored", "time", "error"]);
    for (set, store, outcome) in results {
        match outcome {
            Ok(report) => {
                let m = report.backup.as_ref().expect("successful run has a manifest");
                rows.add_row(vec![
                    set,
                    "ok".into(),
                    m.id.clone(),
                    table::bytes(m.stored_size()),
                    format!("{:.1}s", report.duration_seconds),
                    String::new(),
                ]);
                reports.push((ExitStatus::Success, report));
            }
            Err(err) => {
                let s = crate::exit::classify(&err);
                status = status.worst(s);
                // The table has a set column: the cause, without "backup of set X failed".
                let top = err.chain().next().and_then(|e| e.downcast_ref::<BackupError>());
                let cause = match top {
                    Some(e) => e.to_string(),
                    None => err.chain().skip(1).map(ToString::to_string).collect::<Vec<_>>().join(": "),
                };
                rows.add_row(vec![set.clone(), s.word().into(), String::new(), String::new(), String::new(), cause]);
                failed.push(set.clone());
                reports.push((
                    s,
                    JobReport {
                        set,
                        store,
                        backup: None,
                        duration_seconds: 0.0,
                        prune: None,
                        error: Some(format!("{err:#}")),
                    },
                ));
            }
        }
    }
    if let Some(h) = &run_heartbeat {
        let total = reports.len();
        if failed.is_empty() {
            h.success(format!("backup --all: {total} sets backed up")).await;
        } else {
            h.fail(format!("backup --all: {} of {total} sets failed: {}", failed.len(), failed.join(", "))).await;
        }
    }
    if ctx.printer.is_json() {
        let sets: Vec<serde_json::Value> = reports
            .iter()
            .map(|(s, report)| {
                let mut entry = serde_json::to_value(report).unwrap_or_default();
                if let serde_json::Value::Object(map) = &mut entry {
                    map.insert("status".into(), s.word().into());
                    map.insert("exit_code".into(), s.code().into());
                }
                entry
            })
            .collect();
        ctx.printer.report(status, &serde_json::json!({ "sets": sets }))?;
    } else {
        ctx.printer.table(&rows)?;
    }
    Ok(status)
}

fn print_run(ctx: &Ctx<'_>, m: &Manifest, duration: f64) -> Result<()> {
    let raw: u64 = m.objects.iter().map(|o| o.raw_size).sum();
    let stored = m.stored_size();
    let p = ctx.printer;
    p.line(format!("backup {}/{} complete", m.set, m.id))?;
    p.line(format!("  snapshot   {}", m.snapshot_time.format("%Y-%m-%d %H:%M:%SZ")))?;
    p.line(format!(
        "  stored     {} (dump {}, zstd:{}{}, {:.1}× smaller)",
        table::bytes(stored),
        table::bytes(raw),
        m.compression.level,
        if m.encryption.is_some() { ", age-encrypted" } else { "" },
        raw as f64 / stored.max(1) as f64
    ))?;
    if let Some(rc) = &m.row_counts {
        let method = match rc.method {
            RowCountMethod::Exact => "exact",
            RowCountMethod::Estimate => "estimated",
        };
        p.line(format!("  rows       {} in {} tables ({method})", rc.total(), rc.tables.len()))?;
    }
    p.line(format!(
        "  duration   {duration:.1}s ({}/s of dump)",
        table::bytes((raw as f64 / duration.max(0.001)) as u64)
    ))?;
    Ok(())
}

async fn prune_cmd(ctx: &Ctx<'_>, args: PruneArgs) -> Result<ExitStatus> {
    let set = set_name(args.set.as_deref())?;
    let cfg = ctx.config.set(&set);
    let store = open_store(&ctx.config.store_url(args.store.store.as_deref(), cfg)?).await?;
    Catalog::require_existing(&store).await?;
    let opts = PruneOptions {
        policy: crate::settings::backup::policy(&ctx.config, &args.retention.policy(), &set),
        tz: ctx.config.time_zone(args.retention.tz.as_deref())?,
        force: args.retention.force,
        dry_run: args.dry_run,
        now: chrono::Utc::now(),
    };
    let _lock =
        crate::lock::try_lock("backup", &format!("set {set} in {}", store.url()), &format!("backup prune --set {set}"))
            .map_err(BackupError::from)?;
    let plan = prune::plan(&store, &set, &opts).await?;
    if !args.dry_run {
        prune::apply(&store, &plan).await?;
    }
    if ctx.printer.is_json() {
        ctx.printer.report(ExitStatus::Success, &serde_json::json!({ "dry_run": args.dry_run, "plan": plan }))?;
    } else {
        print_prune(ctx, &plan, args.dry_run)?;
    }
    Ok(ExitStatus::Success)
}

fn print_prune(ctx: &Ctx<'_>, plan: &PrunePlan, dry_run: bool) -> Result<()> {
    let mut t = table::new(&["id", "time", "action", "reason"]);
    for v in &plan.backups {
        t.add_row(vec![
            v.id.clone(),
            v.time.format("%Y-%m-%d %H:%M").to_string(),
            if v.keep {
                "keep"
            } else if dry_run {
                "would delete"
            } else {
                "deleted"
            }
            .into(),
            v.reasons.join(", "),
        ]);
    }
    if !plan.backups.is_empty() {
        ctx.printer.table(&t)?;
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    ctx.printer.line(format!(
        "set {} ({}): kept {}, {verb} {}, {}, {}; {} {}",
        plan.set,
        plan.time_zone,
        plan.kept(),
        plural(plan.deleted(), "backup", "backups"),
        plural(plan.orphans.len(), "orphaned directory", "orphaned directories"),
        plural(plan.stale_uploads.len(), "stale upload", "stale uploads"),
        table::bytes(plan.reclaim_bytes),
        if dry_run { "would be freed" } else { "freed" },
    ))?;
    if let Some(why) = &plan.stale_uploads_skipped {
        ctx.printer.line(format!("stale uploads: skipped: {why}"))?;
    }
    if let Some(why) = &plan.refused {
        ctx.printer.warn(format!("a real run would refuse this plan: {why}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(super::parse_size("8M").unwrap(), 8 << 20);
        assert!(super::parse_size("1MiB").is_err());
        assert!(super::parse_size("12XB").is_err());
        assert_eq!(super::parse_size("5GiB").unwrap(), 5 << 30);
        assert!(super::parse_size("6GiB").unwrap_err().contains("5 GiB"));
    }
}
