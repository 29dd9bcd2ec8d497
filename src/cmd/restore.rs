//! `opsbook restore`: restore a dump backup into a new database.

use std::path::PathBuf;

use clap::Args;

use super::restore_drill::steps_table;
use super::{Ctx, Result};
use crate::cli::StoreArgs;
use crate::error::Failure;
use crate::exit::ExitStatus;
use crate::restore::{self, RestoreSpec};
use crate::ui::{progress, table};

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Backup set [default: main].
    #[arg(long, value_name = "NAME")]
    pub set: Option<String>,
    /// latest, or a backup id (or unique prefix) [default: latest].
    #[arg(long, value_name = "WHICH", conflicts_with = "before")]
    pub backup: Option<String>,
    /// Restore the newest backup whose snapshot is older than TIME (RFC 3339, e.g.
    /// 2026-12-07T03:10:00Z, or "YYYY-MM-DD HH:MM[:SS]" in UTC).
    #[arg(long, value_name = "TIME")]
    pub before: Option<String>,
    /// Server on which the new database is created.
    #[arg(long, value_name = "URL", required = true)]
    pub target_url: Option<String>,
    /// Name of the new database to create and restore into; an existing database is refused
    /// and left untouched. A failed or interrupted restore drops it again.
    #[arg(long, value_name = "NEW_DB", required = true)]
    pub into: Option<String>,
    /// pg_restore jobs. 1 streams the archive straight into pg_restore; more spools it to a local
    /// file first (parallel restore needs a seekable file).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// age identity file for encrypted backups.
    #[arg(long, value_name = "AGE_IDENTITY_FILE", env = "OPSBOOK_AGE_IDENTITY")]
    pub identity: Option<PathBuf>,
    /// Print the plan (backup, server, database) and touch nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl RestoreArgs {
    /// The flags as a restore spec.
    fn spec(&self) -> RestoreSpec {
        RestoreSpec {
            store: self.store.store.clone(),
            set: self.set.clone(),
            backup: self.backup.clone(),
            before: self.before.clone(),
            target_url: self.target_url.clone(),
            into: self.into.clone(),
            jobs: Some(self.jobs),
            identity: self.identity.clone(),
            dry_run: self.dry_run,
        }
    }
}

pub async fn run(ctx: &Ctx<'_>, args: RestoreArgs) -> Result<ExitStatus> {
    let spec = args.spec();
    let request = crate::settings::restore::resolve(&ctx.config, &spec)?;
    let reporter = progress::reporter(ctx.printer, "restore");
    let report = restore::restore(&request, reporter.as_ref()).await.map_err(|e| {
        Failure::from(e)
            .context(format!("restore of set '{}' from {} into {}", request.set, request.store_url, request.database))
    })?;
    let status = ExitStatus::Success;
    if ctx.printer.is_json() {
        ctx.printer.report(status, &report)?;
        return Ok(status);
    }
    ctx.printer.table(&steps_table(&report.steps))?;
    if !report.tables.is_empty() {
        let mut rows = table::new(&["table", "in backup", "restored"]);
        for c in &report.tables {
            let restored = c.restored.map_or_else(|| "missing".into(), |n| n.to_string());
            rows.add_row(vec![c.table.clone(), c.expected.to_string(), restored]);
        }
        ctx.printer.table(&rows)?;
    }
    if report.dry_run {
        ctx.printer.line(format!(
            "dry run: would restore backup {} into new database {} on {}; nothing was changed",
            report.backup_id, report.database, report.server
        ))?;
    } else {
        ctx.printer.line(format!(
            "restored backup {} into new database {} on {} ({} bytes)",
            report.backup_id, report.database, report.server, report.restored_bytes
        ))?;
    }
    Ok(status)
}
