//! `opsbook backup list` and `opsbook backup verify`: what the store holds, and whether a backup
//! is still whole.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::backup::{open_store, set_name};
use super::{Ctx, Result};
use crate::backup::manifest::VerifyRecord;
use crate::backup::verify::VerifyOptions;
use crate::backup::{codec, Catalog};
use crate::cli::StoreArgs;
use crate::error::{Context, Failure};
use crate::exit::ExitStatus;
use crate::ui::{progress, table};

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only this set [default: every set in the store].
    #[arg(long, value_name = "NAME")]
    pub set: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Backup id (or unique prefix), or "latest".
    #[arg(default_value = "latest")]
    pub backup: String,
    /// Backup set name [default: main].
    #[arg(long, value_name = "NAME")]
    pub set: Option<String>,
    /// Also decrypt, decompress and read the archive with pg_restore --list.
    #[arg(long)]
    pub deep: bool,
    /// age identity file (AGE-SECRET-KEY-1…) for --deep on encrypted backups.
    #[arg(long, value_name = "FILE", env = "OPSBOOK_AGE_IDENTITY")]
    pub identity: Option<PathBuf>,
}

/// A row a backup: set, kind, id, age, size, format (compression, encryption), verification and drill.
pub(crate) fn list_table(rows: &[ListRow<'_>]) -> table::Table {
    // The id carries the time; the exact times are in --output json.
    let mut t = table::new(&["set", "kind", "id", "age", "size", "format", "verified", "drilled"]);
    let check = |ok: Option<bool>| match ok {
        Some(true) => "yes",
        Some(false) => "FAILED",
        None => "-",
    };
    for r in rows {
        let format = if r.encrypted { format!("{}+age", r.compression) } else { r.compression.clone() };
        t.add_row(vec![
            r.set.to_string(),
            r.kind.to_string(),
            r.id.to_string(),
            table::age(r.age_seconds),
            table::bytes(r.size),
            format,
            check(r.verified.map(|v| v.ok)).to_string(),
            check(r.drilled.map(|d| d.ok)).to_string(),
        ]);
    }
    t
}

#[derive(Serialize)]
pub(crate) struct ListRow<'a> {
    pub(crate) set: &'a str,
    /// `dump`, or the physical backup's type (`full`, `diff`, `incr`) for PITR backups.
    pub(crate) kind: &'a str,
    pub(crate) id: &'a str,
    pub(crate) time: chrono::DateTime<chrono::Utc>,
    pub(crate) snapshot_time: chrono::DateTime<chrono::Utc>,
    pub(crate) age_seconds: i64,
    pub(crate) size: u64,
    pub(crate) raw_size: u64,
    pub(crate) compression: String,
    pub(crate) encrypted: bool,
    pub(crate) verified: Option<&'a VerifyRecord>,
    pub(crate) drilled: Option<&'a crate::backup::manifest::DrillSummary>,
    pub(crate) rows: Option<i64>,
}

pub(crate) async fn list(ctx: &Ctx<'_>, args: ListArgs) -> Result<ExitStatus> {
    let store = open_store(&ctx.config.store_url(args.store.store.as_deref(), None)?).await?;
    Catalog::require_existing(&store).await?;
    if let Some(set) = &args.set {
        set_name(Some(set))?;
    }
    let catalog = Catalog::load(&store, args.set.as_deref()).await?;
    let object_sets = crate::backup::objects::inventory::list_runs(&store, args.set.as_deref()).await?;
    let now = chrono::Utc::now();
    let rows: Vec<ListRow> = catalog
        .backups
        .iter()
        .map(|b| ListRow {
            set: &b.set,
            kind: "dump",
            id: &b.id,
            time: b.time(),
            snapshot_time: b.manifest.snapshot_time,
            age_seconds: (now - b.manifest.snapshot_time).num_seconds(),
            size: b.manifest.stored_size(),
            raw_size: b.manifest.objects.iter().map(|o| o.raw_size).sum(),
            compression: format!("{}:{}", b.manifest.compression.algorithm, b.manifest.compression.level),
            encrypted: b.manifest.encryption.is_some(),
            verified: b.last_verify.as_ref(),
            drilled: b.last_drill.as_ref(),
            rows: b.manifest.row_counts.as_ref().map(|r| r.total()),
        })
        .collect();
    let physical = physical_backups(ctx, args.set.as_deref()).await;
    let pitr_drills: Vec<Option<crate::backup::manifest::DrillSummary>> = physical
        .iter()
        .map(|(b, drills)| {
            let last = drills.iter().rev().find(|d| d.backup.as_deref() == Some(b.label.as_str()));
            last.map(|d| crate::backup::manifest::DrillSummary { time: d.time, ok: d.ok })
        })
        .collect();
    let mut rows = rows;
    let compress = physical_format(ctx);
    for ((b, _), drill) in physical.iter().zip(&pitr_drills) {
        rows.push(ListRow {
            set: PITR_SET,
            kind: &b.kind,
            id: &b.label,
            time: b.stopped,
            snapshot_time: b.stopped,
            age_seconds: (now - b.stopped).num_seconds(),
            size: b.repo_size,
            raw_size: b.size,
            compression: compress.clone(),
            encrypted: false,
            verified: None,
            drilled: drill.as_ref(),
            rows: None,
        });
    }
    if ctx.printer.is_json() {
        ctx.printer.report(
            ExitStatus::Success,
            &serde_json::json!({
                "store": store.url().to_string(),
                "backups": rows,
                "object_sets": object_sets,
                "orphans": catalog.orphans.len(),
                "unreadable": catalog.unreadable
            }),
        )?;
        return Ok(ExitStatus::Success);
    }
    super::backup_objects::print_object_sets(ctx, &object_sets)?;
    if rows.is_empty() && !object_sets.is_empty() {
        return Ok(ExitStatus::Success);
    }
    if rows.is_empty() {
        ctx.printer.line(format!("no backups in {}", store.url()))?;
        return Ok(ExitStatus::Success);
    }
    ctx.printer.table(&list_table(&rows))?;
    if !catalog.orphans.is_empty() {
        ctx.printer.note(format!(
            "{} incomplete backup director{} without a manifest (prune removes them after a day)",
            catalog.orphans.len(),
            if catalog.orphans.len() == 1 { "y" } else { "ies" }
        ));
    }
    Ok(ExitStatus::Success)
}

/// pgBackRest's compression (and repository cipher) as the format column shows it.
fn physical_format(ctx: &Ctx<'_>) -> String {
    let p = &ctx.config.profile.pitr;
    let compression = p.compression.clone().unwrap_or_else(|| "zst".into());
    if p.cipher_pass.is_some() {
        format!("{compression}+aes")
    } else {
        compression
    }
}

/// The `set` column of physical (PITR) backups.
const PITR_SET: &str = "pitr";

/// The profile's physical backups (pgBackRest) with the stanza's drill records, when it has a
/// `[pitr]` table and `--set` does not exclude them; a failure to read them is a warning.
async fn physical_backups(
    ctx: &Ctx<'_>,
    set: Option<&str>,
) -> Vec<(crate::pitr::info::Backup, std::sync::Arc<Vec<crate::pitr::drill::DrillReport>>)> {
    if ctx.config.profile.pitr == crate::pitr::PitrSpec::default() || set.is_some_and(|s| s != PITR_SET) {
        return Vec::new();
    }
    let read = async {
        let p = crate::settings::pitr::resolve(&ctx.config, crate::pitr::PitrSpec::default())?;
        let info = crate::pitr::Engine::new(&p)?.info_or_empty().await?;
        let drills = std::sync::Arc::new(crate::pitr::drill::records(&p).await.unwrap_or_default());
        Ok::<_, crate::pitr::PitrError>(info.backups.into_iter().map(|b| (b, drills.clone())).collect())
    };
    match read.await {
        Ok(rows) => rows,
        Err(e) => {
            ctx.printer.warn(format!("physical (PITR) backups not listed: {e}"));
            Vec::new()
        }
    }
}

pub(crate) async fn verify(ctx: &Ctx<'_>, args: VerifyArgs) -> Result<ExitStatus> {
    let set = set_name(args.set.as_deref())?;
    let store = open_store(&ctx.config.store_url(args.store.store.as_deref(), ctx.config.set(&set))?).await?;
    Catalog::require_existing(&store).await?;
    let identities = match &args.identity {
        Some(path) => codec::read_identities(path).map_err(|e| Failure::usage(format!("--identity: {e}")))?,
        None => Vec::new(),
    };
    let catalog = Catalog::load(&store, Some(&set)).await?;
    let entry = catalog.find(&set, &args.backup)?;
    let reporter = progress::reporter(ctx.printer, &set);
    let record =
        crate::backup::verify::verify(&store, entry, &VerifyOptions { deep: args.deep, identities }, reporter.as_ref())
            .await
            .with_context(|| format!("verifying backup {}/{}", set, entry.id))?;
    let status = if record.ok { ExitStatus::Success } else { ExitStatus::Failure };
    if ctx.printer.is_json() {
        ctx.printer.report(status, &record)?;
        return Ok(status);
    }
    let mut t = table::new(&["object", "check", "result", "detail"]);
    for c in &record.checks {
        let object = c.object.rsplit('/').next().unwrap_or(&c.object).to_string();
        t.add_row(vec![object, c.check.clone(), if c.ok { "ok" } else { "FAILED" }.into(), c.detail.clone()]);
    }
    ctx.printer.table(&t)?;
    ctx.printer.line(format!(
        "backup {}/{} {}{}",
        set,
        entry.id,
        if record.ok { "verified" } else { "FAILED verification" },
        if record.deep { " (deep)" } else { "" }
    ))?;
    Ok(status)
}
