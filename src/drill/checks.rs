//! The checks on a restored database, each a step of the drill's report: row counts against
//! the backup's snapshot, `--check-sql` assertions, newer migrations, and the RTO.

use std::time::Instant;

use super::run::Steps;
use super::{DrillReport, DrillRequest, MigrationCheck, Outcome, SqlCheck, Step, TableCheck};
use crate::backup::catalog::BackupEntry;
use crate::backup::manifest::RowCountMethod;
use crate::migrate::engine::UpOptions;
use crate::pg::{self, DbUrl};

const GIB: f64 = (1u64 << 30) as f64;

/// The "rto" step: download + restore + verify time, against the target.
pub(super) fn finish_rto(req: &DrillRequest, report: &mut DrillReport, steps: &mut Steps, since: Instant) {
    let seconds = since.elapsed().as_secs_f64();
    report.rto.seconds = seconds;
    report.rto.ok = req.rto_target.is_none_or(|t| seconds <= t.as_secs_f64());
    if report.restored_bytes > 0 {
        report.rto_seconds_per_gib = Some(seconds / (report.restored_bytes as f64 / GIB));
    }
    steps.steps.push(Step {
        name: "rto".into(),
        outcome: Steps::passed_or_failed(report.rto.ok),
        seconds,
        detail: format!(
            "{seconds:.1}s download + restore + verify{}{}",
            report.rto_seconds_per_gib.map(|g| format!(" ({g:.1}s per GiB)")).unwrap_or_default(),
            report.rto.target_seconds.map(|t| format!(" (target {t:.0}s)")).unwrap_or_default()
        ),
    });
}

/// Every table the backup counted, counted again in `conn`'s database, and whether the backup's
/// counts are exact (None when the backup recorded no row counts).
pub(crate) async fn count_rows(entry: &BackupEntry, conn: &mut sqlx::PgConnection) -> Option<(Vec<TableCheck>, bool)> {
    let counts = entry.manifest.row_counts.as_ref()?;
    let exact = counts.method == RowCountMethod::Exact;
    let mut tables = Vec::new();
    for (table, expected) in &counts.tables {
        // Table names come from format('%I.%I') at backup time: already quoted identifiers.
        let restored =
            sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {table}")).fetch_one(&mut *conn).await.ok();
        let ok = restored.is_some_and(|r| !exact || r == *expected);
        tables.push(TableCheck { table: table.clone(), expected: *expected, restored, ok });
    }
    Some((tables, exact))
}

/// Whether every table checks out, and the row-count step's detail.
pub(crate) fn row_count_verdict(tables: &[TableCheck], exact: bool) -> (bool, String) {
    let bad: Vec<String> = tables
        .iter()
        .filter(|c| !c.ok)
        .map(|c| match c.restored {
            None => format!("{} is missing", c.table),
            Some(r) => format!("{} has {r} rows, the backup's snapshot had {}", c.table, c.expected),
        })
        .collect();
    let total: i64 = tables.iter().filter_map(|c| c.restored).sum();
    if bad.is_empty() {
        let how = if exact { ", equal to the snapshot's counts" } else { " (the backup recorded estimates)" };
        (true, format!("{} tables, {total} rows{how}", tables.len()))
    } else {
        (false, bad.join("; "))
    }
}

/// The "row counts" step: every table the backup counted, counted again in the restored
/// database (equal counts when the backup recorded exact ones).
pub(super) async fn row_counts(
    entry: &BackupEntry,
    conn: &mut sqlx::PgConnection,
    steps: &mut Steps,
    report: &mut DrillReport,
) {
    let t = Instant::now();
    let Some((tables, exact)) = count_rows(entry, conn).await else {
        steps.skip("row counts", "the backup recorded no row counts (--row-counts off)");
        return;
    };
    report.row_count_method = Some(if exact { "exact" } else { "estimate" }.into());
    report.tables = tables;
    let (ok, detail) = row_count_verdict(&report.tables, exact);
    steps.push("row counts", Steps::passed_or_failed(ok), t, detail);
}

/// The "check sql" step: each `--check-sql` statement must return true.
pub(super) async fn check_sql(
    req: &DrillRequest,
    conn: &mut sqlx::PgConnection,
    steps: &mut Steps,
    report: &mut DrillReport,
) {
    let Some((path, text)) = &req.check_sql else { return };
    steps.stage("check sql");
    let t = Instant::now();
    let (checks, ok, detail) = run_sql_checks(conn, path, text).await;
    report.sql_checks = checks;
    steps.push("check sql", Steps::passed_or_failed(ok), t, detail);
}

/// Runs each statement of a check-SQL file: every one must return true or a non-zero count.
/// Returns the checks, whether all held, and the step's detail naming each failure by file:line.
pub(crate) async fn run_sql_checks(
    conn: &mut sqlx::PgConnection,
    path: &std::path::Path,
    text: &str,
) -> (Vec<SqlCheck>, bool, String) {
    let mut checks = Vec::new();
    for (line, statement) in pg::query::split_statements(text) {
        let (value, ok, error) = match pg::query::execute(conn, &statement).await {
            Ok(result) => {
                let ok = result.value.as_deref().and_then(pg::query::truth) == Some(true);
                (result.value, ok, None)
            }
            Err(e) => (None, false, Some(pg::query::describe_sql_error(&e))),
        };
        checks.push(SqlCheck { line, statement, value, ok, error });
    }
    let bad: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| {
            format!(
                "{}:{}: {}",
                path.display(),
                c.line,
                c.error.clone().unwrap_or_else(|| format!("returned {}", c.value.as_deref().unwrap_or("no value")))
            )
        })
        .collect();
    let detail = if bad.is_empty() {
        format!("{} assertions held", checks.len())
    } else {
        format!("failed: {}", bad.join("; "))
    };
    (checks, bad.is_empty(), detail)
}

/// The "migrations" step: the migrations newer than the backup apply to the restored database.
pub(super) async fn migrations(
    req: &DrillRequest,
    head_in_manifest: Option<&str>,
    url: &DbUrl,
    steps: &mut Steps,
    report: &mut DrillReport,
) {
    let Some(base) = &req.migrations else { return };
    steps.stage("migrations");
    let t = Instant::now();
    let mut settings = base.clone();
    settings.database_url = url.clone();
    let head_in_backup = head_in_manifest.and_then(|h| h.parse().ok());
    // The drill checks that migrations apply, not whether they are lint-clean.
    let opts = UpOptions { target: None, allow_unsafe: true, ignore_missing: false };
    match crate::migrate::up(&settings, opts, &crate::report::Silent).await {
        Ok(up) => {
            let applied: Vec<String> = up
                .applied
                .iter()
                .map(|a| format!("{} {}", a.version.map_or_else(|| "R".into(), |v| v.to_string()), a.description))
                .collect();
            let detail = format!(
                "backup at {}; {} newer migration(s) applied cleanly{}",
                head_in_manifest.unwrap_or("no recorded head"),
                applied.len(),
                if applied.is_empty() { String::new() } else { format!(": {}", applied.join(", ")) }
            );
            report.migrations = Some(MigrationCheck { head_in_backup, applied, head_after: up.head });
            steps.push("migrations", Outcome::Passed, t, detail);
        }
        Err(e) => {
            report.migrations = Some(MigrationCheck { head_in_backup, applied: Vec::new(), head_after: None });
            steps.push("migrations", Outcome::Failed, t, e.to_string());
        }
    }
}
