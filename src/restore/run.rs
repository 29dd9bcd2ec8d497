//! The restore, step by step: select, check the target, verify the backup, create the new
//! database, restore, count rows. Any failure or Ctrl-C after the database was created drops it.

use std::time::Instant;

use chrono::Utc;

use super::{Pick, RestoreError, RestoreReport, RestoreRequest};
use crate::backup::catalog::{BackupEntry, Catalog};
use crate::backup::verify::{self, VerifyOptions};
use crate::drill::checks::{count_rows, row_count_verdict};
use crate::drill::restore::{self as pipeline, RestoreJob};
use crate::drill::target::Target;
use crate::drill::{Outcome, Step};
use crate::pg;
use crate::report::Reporter;
use crate::store::{Store, StoreOptions};

fn step(name: &str, outcome: Outcome, since: Option<Instant>, detail: impl Into<String>) -> Step {
    Step {
        name: name.into(),
        outcome,
        seconds: since.map_or(0.0, |t| t.elapsed().as_secs_f64()),
        detail: detail.into(),
    }
}

/// Picks the backup: `latest`, an id (or unique prefix), or the newest before a time.
pub fn select<'a>(catalog: &'a Catalog, set: &str, pick: &Pick) -> Result<&'a BackupEntry, RestoreError> {
    match pick {
        Pick::Latest => Ok(catalog.find(set, "latest")?),
        Pick::Id(id) => Ok(catalog.find(set, id)?),
        Pick::Before(before) => catalog
            .backups
            .iter()
            .filter(|b| b.set == set && b.manifest.snapshot_time < *before)
            .max_by_key(|b| b.manifest.snapshot_time)
            .ok_or_else(|| RestoreError::NoneBefore { set: set.to_string(), before: *before }),
    }
}

/// A human age: `3d 4h`, `2h 5m`, `40s`.
fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// Restores the request's backup into a new database (or, with `dry_run`, only plans it).
pub async fn restore(req: &RestoreRequest, reporter: &dyn Reporter) -> Result<RestoreReport, RestoreError> {
    let t = Instant::now();
    let store = Store::open_url(&req.store_url, &StoreOptions::default()).await?;
    let catalog = Catalog::load(&store, Some(&req.set)).await?;
    let entry = select(&catalog, &req.set, &req.pick)?;
    let manifest = &entry.manifest;
    if manifest.encryption.is_some() && req.identities.is_empty() {
        return Err(RestoreError::NeedsIdentity { id: entry.id.clone() });
    }
    let data = manifest.data().ok_or_else(|| RestoreError::NoDataObject { id: entry.id.clone() })?;
    let age_seconds = (Utc::now() - manifest.snapshot_time).num_seconds();
    let mut report = RestoreReport {
        tool: crate::backup::run::tool_name(),
        ok: false,
        dry_run: req.dry_run,
        store: store.url().to_string(),
        set: req.set.clone(),
        backup_id: entry.id.clone(),
        backup_snapshot: Some(manifest.snapshot_time),
        backup_age_seconds: Some(age_seconds),
        server: req.server.redacted(),
        database: req.database.clone(),
        created: false,
        restore_mode: if req.jobs > 1 { format!("spool -j {}", req.jobs) } else { "stream".into() },
        restored_bytes: 0,
        steps: Vec::new(),
        tables: Vec::new(),
        row_count_method: None,
    };
    report.steps.push(step(
        "select",
        Outcome::Passed,
        Some(t),
        format!(
            "backup {} of set {} (snapshot {}, {} old)",
            entry.id,
            req.set,
            manifest.snapshot_time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            age(age_seconds)
        ),
    ));

    let t = Instant::now();
    check_absent(&req.server, &req.database).await?;
    report.steps.push(step(
        "target",
        Outcome::Passed,
        Some(t),
        format!("{} has no database {}", req.server.redacted(), req.database),
    ));

    if req.dry_run {
        let would = |name: &str, detail: String| step(name, Outcome::Skipped, None, format!("dry run: would {detail}"));
        report.steps.push(would(
            "verify",
            format!("check size, SHA-256 and decoding of the backup's {} object(s)", manifest.objects.len()),
        ));
        report.steps.push(would("create", format!("create database {} on {}", req.database, req.server.redacted())));
        report.steps.push(would("restore", format!("pg_restore {} bytes ({})", data.size, report.restore_mode)));
        report.steps.push(would("row counts", "compare row counts with the backup's manifest".into()));
        report.ok = true;
        return Ok(report);
    }

    let dump_major = manifest.pg_dump_version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
    let tools = pg::discover(dump_major)?;

    let t = Instant::now();
    let options = VerifyOptions { deep: true, identities: req.identities.clone() };
    let record = verify::verify(&store, entry, &options, reporter).await?;
    if !record.ok {
        let failed: Vec<String> =
            record.checks.iter().filter(|c| !c.ok).map(|c| format!("{} {}: {}", c.object, c.check, c.detail)).collect();
        return Err(RestoreError::Unverified { id: entry.id.clone(), detail: failed.join("; ") });
    }
    report.steps.push(step(
        "verify",
        Outcome::Passed,
        Some(t),
        format!("{} check(s) passed: size, SHA-256, decoding, archive contents", record.checks.len()),
    ));

    let t = Instant::now();
    let target = Target::create_named(&req.server, &req.database).await?;
    report.steps.push(step("create", Outcome::Passed, Some(t), format!("created database {}", req.database)));

    let job = RestoreJob {
        store: &store,
        object: data,
        pg_restore: tools.pg_restore(),
        target: target.url(),
        jobs: req.jobs.max(1),
        spool_dir: std::env::temp_dir(),
        drill_id: &format!("restore-{}", std::process::id()),
        identities: &req.identities,
        keep_owners: false,
        application: "restore",
    };
    let outcome = tokio::select! {
        r = fill(&job, entry, reporter, &mut report) => Some(r),
        _ = crate::signal::interrupted() => None,
    };
    match outcome {
        Some(Ok(())) => {
            report.created = true;
            report.ok = true;
            Ok(report)
        }
        failed => {
            let database = req.database.clone();
            // The restore's error comes first; a failed drop is only logged.
            if let Err(e) = target.cleanup(false).await {
                tracing::warn!("could not drop the partial database {database}: {e}");
            }
            match failed {
                None => Err(RestoreError::Interrupted { database }),
                Some(Err(e)) => Err(e),
                Some(Ok(())) => unreachable!("matched above"),
            }
        }
    }
}

/// Refuses a database name that already exists on the server, before anything else is done.
async fn check_absent(server: &crate::pg::DbUrl, name: &str) -> Result<(), RestoreError> {
    let mut conn = pg::connect(server).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| pg::PgError::query("look for the --into database", server.redacted(), e))?;
    if exists {
        return Err(RestoreError::Exists { name: name.to_string(), server: server.redacted() });
    }
    Ok(())
}

/// Test-only pause: `OPSBOOK_RESTORE_PAUSE_AFTER_CREATE=<seconds>` waits that long after the new
/// database was created (so a test can interrupt the restore there). Only in builds with the
/// `fault-injection` feature, so a release binary cannot be made to stall by its environment.
#[cfg(feature = "fault-injection")]
async fn pause_point() {
    if let Some(secs) = std::env::var("OPSBOOK_RESTORE_PAUSE_AFTER_CREATE").ok().and_then(|s| s.parse().ok()) {
        tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
    }
}

#[cfg(not(feature = "fault-injection"))]
async fn pause_point() {}

/// pg_restore into the new database, then the row counts; an error when either fails.
async fn fill(
    job: &RestoreJob<'_>,
    entry: &BackupEntry,
    reporter: &dyn Reporter,
    report: &mut RestoreReport,
) -> Result<(), RestoreError> {
    pause_point().await;
    let restored = pipeline::run(job, reporter).await?;
    report.restored_bytes = restored.raw_bytes;
    report.restore_mode = restored.mode.clone();
    let failed = |detail: String| RestoreError::RestoreFailed {
        id: entry.id.clone(),
        database: job.target.database().unwrap_or_default(),
        detail,
    };
    if !restored.download.ok {
        return Err(failed(restored.download.detail));
    }
    if !restored.restore.ok {
        return Err(failed(restored.restore.detail));
    }
    report.steps.push(Step {
        name: "restore".into(),
        outcome: Outcome::Passed,
        seconds: restored.restore.seconds,
        detail: restored.restore.detail,
    });

    let t = Instant::now();
    let mut conn = pg::connect(job.target).await?;
    match count_rows(entry, &mut conn).await {
        None => report.steps.push(step(
            "row counts",
            Outcome::Skipped,
            None,
            "the backup recorded no row counts (--row-counts off)",
        )),
        Some((tables, exact)) => {
            let (ok, detail) = row_count_verdict(&tables, exact);
            report.row_count_method = Some(if exact { "exact" } else { "estimate" }.into());
            report.tables = tables;
            if !ok {
                return Err(failed(format!("row counts differ from the backup's: {detail}")));
            }
            report.steps.push(step("row counts", Outcome::Passed, Some(t), detail));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ages_read_in_the_largest_units() {
        assert_eq!(super::age(40), "40s");
        assert_eq!(super::age(125), "2m 5s");
        assert_eq!(super::age(7500), "2h 5m");
        assert_eq!(super::age(90_000), "1d 1h");
    }
}
