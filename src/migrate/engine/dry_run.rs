//! `dry-run`: the pending migrations inside one transaction that is rolled back, reporting the
//! locks each file takes (diffing `pg_locks` before and after).

use super::*;

/// A lock a migration took, from pg_locks.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Hash)]
pub struct LockTaken {
    pub relation: String,
    pub kind: String,
    pub mode: String,
    /// The relation was created by this migration, so nobody else can be blocked by it.
    pub new_object: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DryOutcome {
    Ok,
    Failed,
    /// `-- no-transaction`: cannot be rolled back, so only linted.
    CannotDryRun,
    /// An earlier migration failed, so this one was not tried.
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct DryEntry {
    pub version: Option<i64>,
    pub description: String,
    pub file: String,
    pub outcome: DryOutcome,
    pub duration_ms: Option<f64>,
    pub locks: Vec<LockTaken>,
    pub findings: Vec<Finding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DryRunReport {
    pub database: String,
    pub migrations: Vec<DryEntry>,
}

impl DryRunReport {
    pub fn ok(&self) -> bool {
        self.migrations.iter().all(|m| m.outcome != DryOutcome::Failed)
    }
}

pub(super) const LOCKS_SQL: &str =
    "SELECT l.relation::bigint, n.nspname::text, c.relname::text, c.relkind::text, l.mode \
     FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'";

pub(super) async fn held_locks(conn: &mut PgConnection) -> Result<Vec<(i64, String, String, String)>, MigrateError> {
    let rows = sqlx::query(LOCKS_SQL)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| MigrateError::Pg(PgError::query("read pg_locks", "database", e)))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let schema: String = r.get(1);
            let name: String = r.get(2);
            let rel = if schema == "public" { name } else { format!("{schema}.{name}") };
            let kind = match r.get::<String, _>(3).as_str() {
                "r" | "p" => "table",
                "i" | "I" => "index",
                "S" => "sequence",
                "v" => "view",
                "m" => "materialized view",
                _ => "relation",
            };
            (r.get::<i64, _>(0), rel, kind.to_string(), r.get::<String, _>(4))
        })
        .collect())
}

pub(super) async fn relation_oids(conn: &mut PgConnection) -> Result<HashSet<i64>, MigrateError> {
    let oids: Vec<i64> = sqlx::query_scalar(
        "SELECT c.oid::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| MigrateError::Pg(PgError::query("list relations", "database", e)))?;
    Ok(oids.into_iter().collect())
}

/// `migrate dry-run`: runs the pending migrations inside one transaction, records the locks
/// each one adds and its time, then rolls everything back.
pub async fn dry_run(settings: &Settings, target: Option<i64>) -> Result<DryRunReport, MigrateError> {
    let rules = Rules::new(&settings.lint)?;
    let (source, mut conn) = open(settings).await?;
    let history = history::read(&mut conn).await?;
    let status = compare(&source, &history, &settings.database_url.redacted());
    ensure_consistent(&status, false)?;
    let todo = pending(&source, &status, target);
    ensure_transaction_safe(&todo)?;
    let lock = MigrationLock::acquire(&mut conn, settings.lock_wait).await?;
    let result = dry_run_locked(&mut conn, settings, &rules, &todo).await;
    let _ = exec(&mut conn, "ROLLBACK", "rollback").await;
    lock.release(&mut conn).await;
    Ok(DryRunReport { database: status.database, migrations: result? })
}

pub(super) async fn dry_run_locked(
    conn: &mut PgConnection,
    settings: &Settings,
    rules: &Rules,
    todo: &[&MigrationFile],
) -> Result<Vec<DryEntry>, MigrateError> {
    let session = Session::of(conn, &settings.database_url).await?;
    exec(conn, "BEGIN", "begin").await?;
    exec(conn, &timeouts_sql(settings, true), "set timeouts").await?;
    let mut out = Vec::new();
    let mut failed = false;
    for m in todo {
        let findings = rules.lint(&m.path, &m.sql, !m.no_tx);
        let mut entry = DryEntry {
            version: m.version,
            description: m.description.clone(),
            file: m.file_name.clone(),
            outcome: DryOutcome::Ok,
            duration_ms: None,
            locks: Vec::new(),
            findings,
            error: None,
        };
        if failed {
            entry.outcome = DryOutcome::Skipped;
        } else if m.no_tx {
            entry.outcome = DryOutcome::CannotDryRun;
        } else if statements::split(&m.sql).is_none() {
            // Unread by the parser, it could hide a COMMIT that would make the dry run real.
            entry.outcome = DryOutcome::CannotDryRun;
            entry.error = Some(format!(
                "{}: not run: the linter's parser cannot read it (see its syntax-error findings), so the dry run \
                 cannot rule out a COMMIT that would make it real",
                m.path.display()
            ));
        } else {
            let existing = relation_oids(conn).await?;
            let before: HashSet<(i64, String)> =
                held_locks(conn).await?.into_iter().map(|(oid, _, _, mode)| (oid, mode)).collect();
            let start = Instant::now();
            match run_script(conn, m, settings, &session).await {
                Ok(()) if !still_in_transaction(conn).await => {
                    failed = true;
                    entry.outcome = DryOutcome::Failed;
                    entry.error = Some(format!("{}: {ENDED_TRANSACTION}", m.path.display()));
                }
                Err(f) if f.interrupted => return Err(MigrateError::DryRunInterrupted),
                Ok(()) => {
                    entry.duration_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
                    for (oid, relation, kind, mode) in held_locks(conn).await? {
                        if !before.contains(&(oid, mode.clone())) {
                            entry.locks.push(LockTaken { relation, kind, mode, new_object: !existing.contains(&oid) });
                        }
                    }
                    entry.locks.sort_by(|a, b| {
                        (a.new_object, &a.relation, &a.mode).cmp(&(b.new_object, &b.relation, &b.mode))
                    });
                }
                Err(f) => {
                    failed = true;
                    entry.outcome = DryOutcome::Failed;
                    entry.duration_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
                    entry.error = Some(format!(
                        "{}{}: {}",
                        m.path.display(),
                        f.line.map(|l| format!(":{l}")).unwrap_or_default(),
                        f.message
                    ));
                }
            }
        }
        out.push(entry);
    }
    Ok(out)
}
