//! Migration history in the database: sqlx's `_sqlx_migrations` (same DDL, same rows), the
//! `_opsbook_migrations` side log (who, where, lint verdict, the applied text, repeatables), the
//! advisory lock sqlx uses, and other tools' history tables.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Executor, PgConnection, Row};

use super::MigrateError;
use crate::pg::PgError;

/// sqlx's DDL, verbatim: both tools create the same table.
pub const SQLX_TABLE_DDL: &str = r#"
CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
);
"#;

const SIDE_TABLE_DDL: &str = r#"
CREATE TABLE IF NOT EXISTS _opsbook_migrations (
    id BIGSERIAL PRIMARY KEY,
    version BIGINT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    checksum BYTEA NOT NULL,
    script TEXT,
    applied_by TEXT NOT NULL,
    host TEXT NOT NULL,
    tool_version TEXT NOT NULL,
    lint TEXT NOT NULL,
    execution_ms BIGINT,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS _opsbook_migrations_version ON _opsbook_migrations (version, id);
"#;

fn q(op: &str, e: sqlx::Error) -> MigrateError {
    MigrateError::Pg(PgError::query(op, "migration history", e))
}

/// Creates both history tables when missing. Called with the migration lock held.
pub async fn ensure_tables(conn: &mut PgConnection) -> Result<(), MigrateError> {
    conn.execute(sqlx::raw_sql(SQLX_TABLE_DDL)).await.map_err(|e| q("create _sqlx_migrations", e))?;
    conn.execute(sqlx::raw_sql(SIDE_TABLE_DDL)).await.map_err(|e| q("create _opsbook_migrations", e))?;
    Ok(())
}

async fn table_exists(conn: &mut PgConnection, name: &str) -> Result<bool, MigrateError> {
    let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(name)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| q("look up history table", e))?;
    Ok(found.is_some())
}

/// One row of `_sqlx_migrations`.
#[derive(Debug, Clone)]
pub struct AppliedRow {
    pub version: i64,
    pub description: String,
    pub installed_on: DateTime<Utc>,
    pub success: bool,
    pub checksum: Vec<u8>,
    /// Nanoseconds, -1 when it was never updated (sqlx's convention).
    pub execution_time: i64,
}

/// The latest side-log row for a version or a repeatable file.
#[derive(Debug, Clone)]
pub struct SideRow {
    pub version: Option<i64>,
    pub name: String,
    pub kind: String,
    pub checksum: Vec<u8>,
    pub script: Option<String>,
    pub applied_by: String,
    pub host: String,
    pub lint: String,
    pub installed_on: DateTime<Utc>,
}

/// Everything recorded in the database.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub applied: Vec<AppliedRow>,
    /// Latest side row per version.
    pub side_versioned: Vec<SideRow>,
    /// Latest side row per repeatable file name.
    pub side_repeatable: Vec<SideRow>,
}

impl History {
    pub fn side_for(&self, version: i64) -> Option<&SideRow> {
        self.side_versioned.iter().find(|s| s.version == Some(version))
    }
    pub fn repeatable(&self, name: &str) -> Option<&SideRow> {
        self.side_repeatable.iter().find(|s| s.name == name)
    }
}

/// Reads the history; missing tables read as empty (nothing applied yet).
pub async fn read(conn: &mut PgConnection) -> Result<History, MigrateError> {
    let mut history = History::default();
    if table_exists(conn, "_sqlx_migrations").await? {
        let rows = sqlx::query(
            "SELECT version, description, installed_on, success, checksum, execution_time \
             FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| q("read _sqlx_migrations", e))?;
        for r in rows {
            history.applied.push(AppliedRow {
                version: r.get(0),
                description: r.get(1),
                installed_on: r.get(2),
                success: r.get(3),
                checksum: r.get(4),
                execution_time: r.get(5),
            });
        }
    }
    if table_exists(conn, "_opsbook_migrations").await? {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (coalesce(version::text, 'R:' || name)) \
                    version, name, kind, checksum, script, applied_by, host, lint, installed_on \
             FROM _opsbook_migrations \
             ORDER BY coalesce(version::text, 'R:' || name), id DESC",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| q("read _opsbook_migrations", e))?;
        for r in rows {
            let row = SideRow {
                version: r.get(0),
                name: r.get(1),
                kind: r.get(2),
                checksum: r.get(3),
                script: r.get(4),
                applied_by: r.get(5),
                host: r.get(6),
                lint: r.get(7),
                installed_on: r.get(8),
            };
            if row.version.is_some() {
                history.side_versioned.push(row);
            } else {
                history.side_repeatable.push(row);
            }
        }
    }
    Ok(history)
}

/// A side-log entry to write.
pub struct SideEntry<'a> {
    pub version: Option<i64>,
    pub name: &'a str,
    pub kind: &'a str,
    pub checksum: &'a [u8],
    pub script: Option<&'a str>,
    pub lint: &'a str,
    pub execution_ms: Option<i64>,
}

/// Who is applying: `os-user@host as db-role`, and the host.
pub fn actor() -> (String, String) {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .or_else(|| nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.name))
        .unwrap_or_else(|| "unknown".into());
    let host = crate::lock::hostname();
    (user, host)
}

/// Writes only the side-log row (e.g. a checksum repair, which changes no `_sqlx_migrations` row).
pub async fn log(conn: &mut PgConnection, entry: &SideEntry<'_>) -> Result<(), MigrateError> {
    write(conn, None, entry).await
}

/// Records an applied migration in one round trip: the `_sqlx_migrations` row (versioned ones
/// only; same columns and values sqlx writes, with the execution time measured before COMMIT)
/// and the side-log row.
pub async fn record(
    conn: &mut PgConnection,
    description: &str,
    execution_nanos: i64,
    entry: &SideEntry<'_>,
) -> Result<(), MigrateError> {
    write(conn, Some((description, execution_nanos)), entry).await
}

/// The side-log row, plus the `_sqlx_migrations` row when `sqlx_row` is given and the entry has
/// a version, in one statement.
async fn write(
    conn: &mut PgConnection,
    sqlx_row: Option<(&str, i64)>,
    entry: &SideEntry<'_>,
) -> Result<(), MigrateError> {
    let (user, host) = actor();
    let (description, execution_nanos) = sqlx_row.unwrap_or(("", 0));
    sqlx::query(
        "WITH sqlx_row AS ( \
           INSERT INTO _sqlx_migrations ( version, description, success, checksum, execution_time ) \
           SELECT $1, $11, TRUE, $4, $12 WHERE $1 IS NOT NULL AND $13) \
         INSERT INTO _opsbook_migrations \
           (version, name, kind, checksum, script, applied_by, host, tool_version, lint, execution_ms) \
         VALUES ($1, $2, $3, $4, $5, $6 || ' as ' || current_user, $7, $8, $9, $10)",
    )
    .bind(entry.version)
    .bind(entry.name)
    .bind(entry.kind)
    .bind(entry.checksum)
    .bind(entry.script)
    .bind(user)
    .bind(host)
    .bind(env!("CARGO_PKG_VERSION"))
    .bind(entry.lint)
    .bind(entry.execution_ms)
    .bind(description)
    .bind(execution_nanos)
    .bind(sqlx_row.is_some())
    .execute(&mut *conn)
    .await
    .map_err(|e| q("record the migration in _sqlx_migrations and _opsbook_migrations", e))?;
    Ok(())
}

pub async fn set_checksum(conn: &mut PgConnection, version: i64, checksum: &[u8]) -> Result<(), MigrateError> {
    sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2")
        .bind(checksum)
        .bind(version)
        .execute(&mut *conn)
        .await
        .map_err(|e| q("update checksum", e))?;
    Ok(())
}

/// sqlx's advisory-lock key for a database: 0x3d32ad9e × CRC-32 (IEEE) of its name.
pub fn lock_key(database: &str) -> i64 {
    0x3d32ad9e * i64::from(crc32fast::hash(database.as_bytes()))
}

/// Who holds the migration lock, from pg_stat_activity.
#[derive(Debug, Clone, Serialize)]
pub struct LockHolder {
    pub pid: i32,
    pub application: String,
    pub user: Option<String>,
    pub client: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub state: Option<String>,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if !self.application.is_empty() {
            write!(f, ", application '{}'", self.application)?;
        }
        if let Some(u) = &self.user {
            write!(f, ", user {u}")?;
        }
        if let Some(c) = &self.client {
            write!(f, ", from {c}")?;
        }
        if let Some(s) = &self.since {
            write!(f, ", connected since {}", s.format("%Y-%m-%d %H:%M:%S UTC"))?;
        }
        if let Some(s) = &self.state {
            write!(f, ", {s}")?;
        }
        Ok(())
    }
}

async fn lock_holder(conn: &mut PgConnection, key: i64) -> Option<LockHolder> {
    let hi = i64::from((key as u64 >> 32) as u32);
    let lo = i64::from(key as u64 as u32);
    let row = sqlx::query(
        "SELECT a.pid, coalesce(a.application_name, ''), a.usename::text, a.client_addr::text, \
                a.backend_start, a.state \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
           AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.database = \
               (SELECT oid FROM pg_database WHERE datname = current_database()) \
         LIMIT 1",
    )
    .bind(hi)
    .bind(lo)
    .fetch_optional(&mut *conn)
    .await
    .ok()??;
    Some(LockHolder {
        pid: row.get(0),
        application: row.get(1),
        user: row.get(2),
        client: row.get(3),
        since: row.get(4),
        state: row.get(5),
    })
}

/// The held migration lock; release it with [`MigrationLock::release`] (closing the connection
/// also releases it).
pub struct MigrationLock {
    key: i64,
    pub waited: Duration,
}

impl MigrationLock {
    /// Takes the lock with `pg_try_advisory_lock` in a polling loop (never the blocking form, so
    /// the wait has a deadline); on expiry the error names the holder.
    pub async fn acquire(conn: &mut PgConnection, wait: Duration) -> Result<MigrationLock, MigrateError> {
        let database: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| q("read current_database()", e))?;
        let key = lock_key(&database);
        let start = Instant::now();
        let mut pause = Duration::from_millis(25);
        loop {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| q("pg_try_advisory_lock", e))?;
            if got {
                return Ok(MigrationLock { key, waited: start.elapsed() });
            }
            if start.elapsed() >= wait {
                let holder = lock_holder(conn, key).await.map(Box::new);
                return Err(MigrateError::Busy { database, key, waited: wait, holder });
            }
            tokio::time::sleep(pause.min(wait.saturating_sub(start.elapsed()))).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    pub async fn release(self, conn: &mut PgConnection) {
        if let Err(e) = sqlx::query("SELECT pg_advisory_unlock($1)").bind(self.key).execute(&mut *conn).await {
            tracing::debug!("releasing the migration lock failed (the connection closes anyway): {e}");
        }
    }
}

/// What another migration tool's history table says.
#[derive(Debug, Clone, Serialize)]
pub struct OtherTool {
    pub tool: String,
    pub table: String,
    pub applied: i64,
    pub latest: Option<String>,
    pub latest_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

async fn columns(conn: &mut PgConnection, table: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default()
}

/// Looks for Flyway, Prisma, TypeORM, dbmate and golang-migrate history tables and reads what
/// they say is applied. A table that cannot be read is reported with a note, never an error.
pub async fn other_tools(conn: &mut PgConnection) -> Vec<OtherTool> {
    // (tool, table, columns that identify it, query returning applied count, latest, latest_at)
    let probes: [(&str, &str, &[&str], &str); 5] = [
        (
            "flyway",
            "flyway_schema_history",
            &["installed_rank", "version", "success"],
            "SELECT count(*) FILTER (WHERE success), \
                    (SELECT version || ' ' || description FROM flyway_schema_history \
                      WHERE success AND version IS NOT NULL ORDER BY installed_rank DESC LIMIT 1), \
                    max(installed_on)::timestamptz FROM flyway_schema_history",
        ),
        (
            "prisma",
            "_prisma_migrations",
            &["migration_name", "finished_at", "rolled_back_at"],
            "SELECT count(*) FILTER (WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL), \
                    (SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL \
                      AND rolled_back_at IS NULL ORDER BY finished_at DESC LIMIT 1), \
                    max(finished_at)::timestamptz FROM _prisma_migrations",
        ),
        (
            "typeorm",
            "migrations",
            &["timestamp", "name"],
            "SELECT count(*), (SELECT name FROM migrations ORDER BY timestamp DESC LIMIT 1), \
                    NULL::timestamptz FROM migrations",
        ),
        (
            "golang-migrate",
            "schema_migrations",
            &["version", "dirty"],
            "SELECT count(*) FILTER (WHERE NOT dirty), \
                    (SELECT version::text || CASE WHEN dirty THEN ' (dirty)' ELSE '' END \
                       FROM schema_migrations LIMIT 1), NULL::timestamptz FROM schema_migrations",
        ),
        (
            "dbmate",
            "schema_migrations",
            &["version"],
            "SELECT count(*), max(version::text), NULL::timestamptz FROM schema_migrations",
        ),
    ];
    let mut found: Vec<OtherTool> = Vec::new();
    for (tool, table, required, query) in probes {
        if found.iter().any(|f| f.table == table) {
            continue; // golang-migrate and dbmate share a table name; the first match wins
        }
        let cols = columns(conn, table).await;
        if cols.is_empty() || !required.iter().all(|c| cols.iter().any(|have| have == c)) {
            continue;
        }
        match sqlx::query(query).fetch_one(&mut *conn).await {
            Ok(row) => found.push(OtherTool {
                tool: tool.into(),
                table: table.into(),
                applied: row.get(0),
                latest: row.get(1),
                latest_at: row.get(2),
                note: None,
            }),
            Err(e) => found.push(OtherTool {
                tool: tool.into(),
                table: table.into(),
                applied: 0,
                latest: None,
                latest_at: None,
                note: Some(format!("cannot read: {e}")),
            }),
        }
    }
    found
}
