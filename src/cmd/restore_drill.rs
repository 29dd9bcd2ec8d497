//! `opsbook restore-drill`: restore a backup somewhere harmless and prove it works.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args};

use super::{Ctx, Result};
use crate::cli::{MonitorArgs, StoreArgs};
use crate::drill::{self, render, DrillSpec, Outcome};
use crate::error::Failure;
use crate::exit::ExitStatus;
use crate::ui::{progress, table};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).multiple(true).args(["target_url", "ephemeral", "pitr"])))]
pub struct RestoreDrillArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Backup set [default: main].
    #[arg(long, value_name = "NAME")]
    pub set: Option<String>,
    /// latest, random, or a backup id (or unique prefix).
    #[arg(long, value_name = "WHICH", default_value = "latest")]
    pub backup: String,
    /// Seed for --backup random and object sampling (reported, so a drill can be repeated).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Server to restore on: the drill creates opsbook_drill_<id> there and drops it afterwards;
    /// it never touches a database it did not create.
    #[arg(long, value_name = "URL")]
    pub target_url: Option<String>,
    /// Restore into a throwaway local cluster (initdb; runs as `postgres` when root).
    #[arg(long)]
    pub ephemeral: bool,
    /// Drill point-in-time recovery instead of a dump: pgBackRest restores the stanza into a
    /// throwaway local cluster, recovers to --target-time and proves it with canary rows.
    #[arg(long)]
    pub pitr: bool,
    /// With --pitr: recover to this time (RFC 3339, e.g. 2026-12-07T03:10:00Z; no zone means
    /// UTC; or an age such as 20m), `latest` (the end of the archived WAL) or `random[:24h]` (a
    /// random time in that window, reported) [default: latest].
    #[arg(long, visible_alias = "target", value_name = "TIME", requires = "pitr")]
    pub target_time: Option<String>,
    /// With --pitr: the pgBackRest stanza [default: profile's pitr.stanza, else main].
    #[arg(long, value_name = "NAME", requires = "pitr")]
    pub stanza: Option<String>,
    /// With --ephemeral: also restore the backup's globals (roles), keeping owners and grants.
    #[arg(long)]
    pub globals: bool,
    /// Apply these migrations to the restored database: newer ones must apply cleanly.
    #[arg(long, value_name = "DIR")]
    pub migrations: Option<PathBuf>,
    /// SQL assertions; every statement must return true or a non-zero count.
    #[arg(long, value_name = "FILE")]
    pub check_sql: Option<PathBuf>,
    /// Media bucket to sample (s3://bucket[/prefix]): HEAD and a ranged GET per sampled key.
    #[arg(long, value_name = "URL")]
    pub objects: Option<String>,
    /// How many objects to sample [default: 20].
    #[arg(long, value_name = "N", requires = "objects")]
    pub sample: Option<usize>,
    /// Take keys from this query over the restored database (first column) instead of a
    /// listing, e.g. "SELECT image_key FROM products".
    #[arg(long, value_name = "SQL", requires = "objects")]
    pub objects_query: Option<String>,
    /// Read sampled objects through presigned URLs.
    #[arg(long, requires = "objects")]
    pub presign: bool,
    /// Check sampled objects against the newest inventory of this object set (`backup objects
    /// --set`): each listed key is read whole and its size and SHA-256 compared.
    #[arg(long, value_name = "SET", requires = "objects")]
    pub objects_inventory: Option<String>,
    /// Fail when the newest backup's snapshot is older than this (e.g. 26h).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub rpo_target: Option<Duration>,
    /// Fail when download + restore + verify takes longer than this (e.g. 30m).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub rto_target: Option<Duration>,
    /// pg_restore jobs. 1 streams the archive straight into pg_restore; more spools it to a local
    /// file first (parallel restore needs a seekable file).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// Where to spool the archive with --jobs > 1 [default: the system temp dir].
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Leave the restored database or cluster in place (the report says where).
    #[arg(long)]
    pub keep: bool,
    /// Write a Markdown report here.
    #[arg(long, value_name = "FILE.md")]
    pub report: Option<PathBuf>,
    /// Write JUnit XML here (one test case per step).
    #[arg(long, value_name = "FILE.xml")]
    pub junit: Option<PathBuf>,
    /// age identity file for encrypted backups.
    #[arg(long, value_name = "AGE_IDENTITY_FILE", env = "OPSBOOK_AGE_IDENTITY")]
    pub identity: Option<PathBuf>,
    #[command(flatten)]
    pub monitor: MonitorArgs,
}

impl RestoreDrillArgs {
    /// The flags as a drill spec.
    fn spec(&self) -> DrillSpec {
        DrillSpec {
            store: self.store.store.clone(),
            set: self.set.clone(),
            backup: Some(self.backup.clone()),
            seed: self.seed,
            target_url: self.target_url.clone(),
            ephemeral: self.ephemeral,
            pitr: self.pitr,
            target_time: self.target_time.clone(),
            stanza: self.stanza.clone(),
            globals: self.globals,
            migrations: self.migrations.clone(),
            check_sql: self.check_sql.clone(),
            objects: self.objects.clone(),
            sample: self.sample,
            objects_query: self.objects_query.clone(),
            presign: self.presign,
            objects_inventory: self.objects_inventory.clone(),
            rpo_target: self.rpo_target,
            rto_target: self.rto_target,
            jobs: Some(self.jobs),
            spool_dir: self.spool_dir.clone(),
            keep: self.keep,
            identity: self.identity.clone(),
            report: self.report.clone(),
            junit: self.junit.clone(),
            monitor: self.monitor.spec(),
        }
    }
}

pub async fn run(ctx: &Ctx<'_>, args: RestoreDrillArgs) -> Result<ExitStatus> {
    let spec = args.spec();
    if spec.pitr {
        return pitr_drill(ctx, &spec).await;
    }
    let request = crate::settings::drill::resolve(&ctx.config, &spec)?;
    let reporter = progress::reporter(ctx.printer, "drill");
    let report = match drill::drill_reporting(&request, reporter.as_ref()).await {
        Ok(report) => report,
        Err(failure) => {
            // The report files describe the failure too; the drill's error stays the one reported.
            if let Err(e) = render::write_files(&spec, &failure.report) {
                tracing::warn!("{e:#}");
            }
            return Err(Failure::from(failure.error)
                .context(format!("restore drill of set '{}' from {}", request.set, request.store_url)));
        }
    };
    let status = if report.ok { ExitStatus::Success } else { ExitStatus::Failure };
    render::write_files(&spec, &report)?;
    if ctx.printer.is_json() {
        ctx.printer.report(status, &report)?;
        return Ok(status);
    }
    ctx.printer.table(&steps_table(&report.steps))?;
    if !report.tables.is_empty() {
        let mut rows = table::new(&["table", "in backup", "restored", ""]);
        for c in &report.tables {
            rows.add_row(vec![
                c.table.clone(),
                c.expected.to_string(),
                c.restored.map_or_else(|| "missing".into(), |n| n.to_string()),
                if c.ok { "ok".into() } else { "MISMATCH".into() },
            ]);
        }
        ctx.printer.table(&rows)?;
    }
    if let Some(kept) = &report.kept {
        ctx.printer.line(format!("kept: {kept}"))?;
    }
    ctx.printer.line(format!(
        "drill {} of backup {}: {} (RTO {:.1}s, RPO {:.0}s, seed {})",
        report.drill_id,
        report.backup_id,
        if report.ok { "passed" } else { "FAILED" },
        report.rto.seconds,
        report.rpo.seconds,
        report.seed
    ))?;
    Ok(status)
}

/// A row a drill step: name, result, time and detail.
pub(crate) fn steps_table(steps: &[drill::Step]) -> table::Table {
    let mut t = table::new(&["step", "result", "time", "detail"]);
    for s in steps {
        let result = match s.outcome {
            Outcome::Passed => "passed",
            Outcome::Failed => "FAILED",
            Outcome::Skipped => "skipped",
        };
        t.add_row(vec![s.name.clone(), result.into(), format!("{:.1}s", s.seconds), s.detail.clone()]);
    }
    t
}

/// `restore-drill --pitr`: pgBackRest restores the stanza to a point in time in a throwaway
/// cluster; canaries prove the point reached.
async fn pitr_drill(ctx: &Ctx<'_>, spec: &DrillSpec) -> Result<ExitStatus> {
    let request = crate::settings::pitr::drill_request(&ctx.config, spec)?;
    ctx.printer.note(format!(
        "PITR drill: stanza {} from {} to {}",
        request.pitr.stanza,
        request.pitr.repo.display(),
        request.target.describe()
    ));
    let report = crate::pitr::drill::run(&request).await?;
    let status = if report.ok { ExitStatus::Success } else { ExitStatus::Failure };
    if ctx.printer.is_json() {
        ctx.printer.report(status, &report)?;
        return Ok(status);
    }
    ctx.printer.table(&steps_table(&report.steps))?;
    if let Some(kept) = &report.kept {
        ctx.printer.line(format!("kept: {kept}"))?;
    }
    let verdict = if report.ok { "passed" } else { "FAILED" };
    match &report.backup {
        None => ctx.printer.line(format!("PITR drill {} to {}: {verdict}", report.drill_id, report.target))?,
        Some(backup) => {
            let rpo = report.measured_rpo_seconds.map_or_else(|| "not measured".into(), |s| format!("{s:.1}s"));
            ctx.printer.line(format!(
                "PITR drill {} of {backup} to {}: {verdict} (RTO {:.1}s, measured RPO {rpo})",
                report.drill_id, report.target, report.rto_seconds,
            ))?
        }
    }
    Ok(status)
}
