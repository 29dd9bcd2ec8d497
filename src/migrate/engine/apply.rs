//! `up`: applying migration files, statement by statement, each in its own transaction (or none),
//! with lock and statement timeouts, retries after lock timeouts, and the history rows sqlx writes.

use super::*;

/// What `up` applied.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub version: Option<i64>,
    pub description: String,
    pub file: String,
    pub duration_ms: f64,
    pub attempts: u32,
    pub no_transaction: bool,
    pub lint: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    pub database: String,
    pub applied: Vec<Applied>,
    pub head: Option<i64>,
    pub lock_wait_ms: f64,
    /// Lint warnings of the applied migrations (errors block unless --allow-unsafe).
    pub warnings: Vec<Finding>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct UpOptions {
    pub target: Option<i64>,
    pub allow_unsafe: bool,
    pub ignore_missing: bool,
}

pub(super) fn timeouts_sql(settings: &Settings, local: bool) -> String {
    let scope = if local { "SET LOCAL" } else { "SET" };
    let mut sql = format!("{scope} lock_timeout = '{}ms'", settings.lock_timeout.as_millis());
    if let Some(st) = settings.statement_timeout {
        sql.push_str(&format!("; {scope} statement_timeout = '{}ms'", st.as_millis()));
    }
    sql
}

pub(super) async fn exec(conn: &mut PgConnection, sql: &str, what: &str) -> Result<(), MigrateError> {
    conn.execute(sqlx::raw_sql(sql)).await.map_err(|e| MigrateError::Pg(PgError::query(what, "database", e)))?;
    Ok(())
}

/// A failed migration statement, located in its file.
pub(super) struct ExecFailure {
    pub(super) line: Option<usize>,
    pub(super) message: String,
    pub(super) lock_timeout: bool,
    pub(super) connection_lost: bool,
    /// Ctrl-C arrived: the statement was cancelled, or the next one was not started.
    pub(super) interrupted: bool,
}

pub(super) fn describe(e: &sqlx::Error, sql: &str, settings: &Settings) -> ExecFailure {
    let connection_lost = matches!(e, sqlx::Error::Io(_) | sqlx::Error::Tls(_));
    let interrupted = signal::is_interrupted();
    let Some(db) = e.as_database_error().and_then(|d| d.try_downcast_ref::<PgDatabaseError>()) else {
        return ExecFailure { line: None, message: e.to_string(), lock_timeout: false, connection_lost, interrupted };
    };
    let line = match db.position() {
        Some(PgErrorPosition::Original(pos)) => {
            let offset: usize = sql.chars().take(pos.saturating_sub(1)).map(char::len_utf8).sum();
            Some(crate::text::line_col(sql, offset).0)
        }
        _ => None,
    };
    let mut message = format!("{} (SQLSTATE {})", db.message(), db.code());
    if let Some(d) = db.detail() {
        message.push_str(&format!("; {d}"));
    }
    if let Some(h) = db.hint() {
        message.push_str(&format!("; hint: {h}"));
    }
    let lock_timeout = db.code() == "55P03";
    if lock_timeout {
        message.push_str(&format!(
            "; another session holds a conflicting lock for longer than lock_timeout ({}ms)",
            settings.lock_timeout.as_millis()
        ));
    } else if db.code() == "57014" && !interrupted {
        message.push_str("; the statement ran past statement_timeout (raise --statement-timeout)");
    }
    ExecFailure { line, message, lock_timeout, connection_lost, interrupted }
}

/// What a run keeps about its migration connection.
pub(super) struct Session<'a> {
    url: &'a DbUrl,
    /// The connection's backend, for a cancel request on Ctrl-C.
    pid: i32,
    /// `search_path` when the run started: the history rows are written under it even after a
    /// migration changed it (`SET search_path TO app`).
    search_path: String,
}

impl<'a> Session<'a> {
    pub(super) async fn of(conn: &mut PgConnection, url: &'a DbUrl) -> Result<Session<'a>, MigrateError> {
        let (pid, search_path): (i32, String) =
            sqlx::query_as("SELECT pg_backend_pid(), current_setting('search_path')")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| MigrateError::Pg(PgError::query("read the session settings", "database", e)))?;
        Ok(Session { url, pid, search_path })
    }

    /// Asks the server to cancel the statement this session's connection is running: without it
    /// PostgreSQL would run it to the end, holding its locks, after opsbook has gone.
    async fn cancel(&self) {
        let cancelled = async {
            let mut other = pg::connect(self.url).await?;
            sqlx::query("SELECT pg_cancel_backend($1)")
                .bind(self.pid)
                .execute(&mut other)
                .await
                .map_err(|e| PgError::query("cancel the running migration statement", "database", e))
        };
        if let Err(e) = cancelled.await {
            tracing::warn!("interrupted, but could not cancel the running statement: {e}");
        }
    }
}

/// Runs one statement; on Ctrl-C, cancels it on the server and waits for its answer.
pub(super) async fn run_statement(
    conn: &mut PgConnection,
    sql: &str,
    session: &Session<'_>,
) -> Result<(), sqlx::Error> {
    let run = conn.execute(sqlx::raw_sql(sql));
    tokio::pin!(run);
    tokio::select! {
        result = &mut run => result.map(drop),
        _ = signal::interrupted() => {
            session.cancel().await;
            run.await.map(drop)
        }
    }
}

/// Runs a migration file statement by statement (so a failure names its line, and a
/// `-- no-transaction` file runs each statement on its own). A file the parser rejects is sent
/// whole for PostgreSQL to judge.
pub(super) async fn run_script(
    conn: &mut PgConnection,
    m: &MigrationFile,
    s: &Settings,
    session: &Session<'_>,
) -> Result<(), ExecFailure> {
    let pieces: Vec<(usize, &str)> = match statements::split(&m.sql) {
        Some(list) if !list.is_empty() => list.iter().map(|st| (st.start, &m.sql[st.start..st.end])).collect(),
        _ => vec![(0, m.sql.as_str())],
    };
    let whole = pieces.len() == 1 && pieces[0].0 == 0;
    for (start, sql) in pieces {
        if signal::is_interrupted() {
            let line = Some(crate::text::line_col(&m.sql, start).0);
            return Err(ExecFailure {
                line,
                message: "interrupted".into(),
                lock_timeout: false,
                connection_lost: false,
                interrupted: true,
            });
        }
        if let Err(e) = run_statement(conn, sql, session).await {
            let mut f = describe(&e, sql, s);
            if !whole {
                let first = crate::text::line_col(&m.sql, start).0;
                f.line = Some(first + f.line.map_or(0, |l| l - 1));
            }
            return Err(f);
        }
    }
    Ok(())
}

/// Refuses files that cannot run inside the transaction opsbook wraps them in, before anything
/// runs: a COMMIT would end that transaction (everything after it — later files too, even in a
/// dry run — would commit statement by statement), and PostgreSQL rejects e.g. CREATE INDEX
/// CONCURRENTLY there. Not something --allow-unsafe can waive.
pub(super) fn ensure_transaction_safe(files: &[&MigrationFile]) -> Result<(), MigrateError> {
    for m in files.iter().filter(|m| !m.no_tx) {
        let Some(list) = statements::split(&m.sql) else { continue };
        for st in list {
            let line = crate::text::line_col(&m.sql, st.start).0;
            let message = match st.effect {
                TxEffect::None => continue,
                TxEffect::EndsTransaction => format!(
                    "line {line}: {} would end the transaction opsbook runs this file in, and everything after it \
                     (later files too, even in a dry run) would commit statement by statement. Remove the \
                     BEGIN/COMMIT lines (opsbook runs each file in its own transaction), or put \
                     `-- no-transaction` on the first line if the file manages its own transactions",
                    st.head
                ),
                TxEffect::NeedsNoTransaction => format!(
                    "line {line}: {} cannot run inside a transaction block; move it to its own file whose first \
                     line is `-- no-transaction`",
                    st.head
                ),
            };
            return Err(MigrateError::Source { path: m.path.clone(), message });
        }
    }
    Ok(())
}

/// After a transactional file ran: is opsbook's transaction still open? A COMMIT the parser
/// could not see (in a file it could not parse) would have ended it.
pub(super) async fn still_in_transaction(conn: &mut PgConnection) -> bool {
    exec(conn, "SAVEPOINT opsbook_open; RELEASE SAVEPOINT opsbook_open", "check the transaction").await.is_ok()
}

pub(super) const ENDED_TRANSACTION: &str = "the file ended opsbook's transaction (a COMMIT or ROLLBACK in it), so its \
     statements committed as they ran; check the schema, remove the transaction control from the file, \
     and run again";

/// Writes the history rows under the run's original search_path; the migration's own setting
/// is what later files see (as under sqlx). Inside the migration's transaction the switch is
/// transaction-local, so the COMMIT restores exactly what the migration left for the session
/// (a `SET` survives, a `SET LOCAL` ends); outside one it is switched back by hand.
pub(super) async fn record_applied(
    conn: &mut PgConnection,
    m: &MigrationFile,
    entry: &SideEntry<'_>,
    elapsed: Duration,
    session: &Session<'_>,
) -> Result<(), MigrateError> {
    let setting = |what: &'static str| move |e| MigrateError::Pg(PgError::query(what, "database", e));
    let now: String = sqlx::query_scalar("SELECT current_setting('search_path')")
        .fetch_one(&mut *conn)
        .await
        .map_err(setting("read search_path"))?;
    let changed = now != session.search_path;
    let in_transaction = !m.no_tx;
    let set = "SELECT set_config('search_path', $1, $2)";
    if changed {
        sqlx::query(set)
            .bind(&session.search_path)
            .bind(in_transaction)
            .execute(&mut *conn)
            .await
            .map_err(setting("set search_path"))?;
    }
    history::record(conn, &m.description, elapsed.as_nanos() as i64, entry).await?;
    if changed && !in_transaction {
        sqlx::query(set).bind(&now).bind(false).execute(&mut *conn).await.map_err(setting("restore search_path"))?;
    }
    Ok(())
}

pub(super) fn side_entry<'a>(
    m: &'a MigrationFile,
    kind: &'a str,
    lint: &'a str,
    elapsed: Option<Duration>,
) -> SideEntry<'a> {
    SideEntry {
        version: m.version,
        name: &m.file_name,
        kind,
        checksum: &m.checksum,
        script: Some(&m.sql),
        lint,
        execution_ms: elapsed.map(|d| d.as_millis() as i64),
    }
}

/// Applies one migration: in its own transaction with the record rows (so it is never applied
/// twice), or, for `-- no-transaction` files, statement by statement followed by the record.
/// A lock timeout in a transactional migration rolls back and is retried with backoff.
pub(super) async fn apply_one(
    conn: &mut PgConnection,
    m: &MigrationFile,
    s: &Settings,
    session: &Session<'_>,
    lint: &'static str,
    applied_before: usize,
) -> Result<Applied, MigrateError> {
    if m.no_tx {
        return apply_without_transaction(conn, m, s, session, lint, applied_before).await;
    }
    let fail = |f: ExecFailure, attempts: u32| execute_error(m, s, f, attempts, applied_before);
    let failed_record = |e: MigrateError| MigrateError::Execute {
        label: m.label(),
        file: m.path.display().to_string(),
        line: None,
        message: format!("it ran, but recording it in the migration history failed, so it was rolled back: {e}"),
        attempts: 1,
        applied_before,
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let start = Instant::now();
        // One round trip opens the transaction and sets its timeouts.
        exec(conn, &format!("BEGIN; {}", timeouts_sql(s, true)), "begin").await?;
        match run_script(conn, m, s, session).await {
            Ok(()) => {
                if !still_in_transaction(conn).await {
                    return Err(MigrateError::Execute {
                        label: m.label(),
                        file: m.path.display().to_string(),
                        line: None,
                        message: ENDED_TRANSACTION.into(),
                        attempts: attempt,
                        applied_before,
                    });
                }
                // Unlike sqlx (insert with -1, UPDATE after COMMIT), the time is written inside
                // the transaction: one commit per migration instead of two.
                let elapsed = start.elapsed();
                let entry = side_entry(m, kind_of(m), lint, Some(elapsed));
                if let Err(e) = record_applied(conn, m, &entry, elapsed, session).await {
                    let _ = exec(conn, "ROLLBACK", "rollback").await;
                    return Err(failed_record(e));
                }
                exec(conn, "COMMIT", "commit").await?;
                return Ok(applied(m, start.elapsed(), attempt, lint));
            }
            Err(f) => {
                let _ = exec(conn, "ROLLBACK", "rollback").await;
                if f.lock_timeout && !f.interrupted && attempt <= s.retries {
                    let pause = Duration::from_millis(500 * 2u64.pow(attempt - 1));
                    tracing::warn!(
                        migration = %m.label(),
                        "lock_timeout hit (attempt {attempt}); retrying in {}ms",
                        pause.as_millis()
                    );
                    tokio::time::sleep(pause).await;
                    continue;
                }
                return Err(fail(f, attempt));
            }
        }
    }
}

/// A `-- no-transaction` migration: statement by statement, then its record. Not retried:
/// what ran before a failure stays applied.
async fn apply_without_transaction(
    conn: &mut PgConnection,
    m: &MigrationFile,
    s: &Settings,
    session: &Session<'_>,
    lint: &'static str,
    applied_before: usize,
) -> Result<Applied, MigrateError> {
    let attempt = 1;
    let start = Instant::now();
    exec(conn, &timeouts_sql(s, false), "set timeouts").await?;
    let ran = run_script(conn, m, s, session).await;
    exec(conn, "RESET lock_timeout; RESET statement_timeout", "reset timeouts").await?;
    ran.map_err(|f| execute_error(m, s, f, attempt, applied_before))?;
    let elapsed = start.elapsed();
    let entry = side_entry(m, kind_of(m), lint, Some(elapsed));
    record_applied(conn, m, &entry, elapsed, session).await.map_err(|e| MigrateError::Execute {
        label: m.label(),
        file: m.path.display().to_string(),
        line: None,
        message: format!("its statements ran and stay applied, but recording it in the migration history failed: {e}"),
        attempts: 1,
        applied_before,
    })?;
    Ok(applied(m, elapsed, attempt, lint))
}

/// The error for a migration whose SQL failed after `attempts` tries: interrupted, the
/// connection lost, or the statement's own error.
fn execute_error(
    m: &MigrationFile,
    s: &Settings,
    f: ExecFailure,
    attempts: u32,
    applied_before: usize,
) -> MigrateError {
    if f.interrupted {
        return MigrateError::InterruptedDuring { label: m.label(), no_tx: m.no_tx, applied_before };
    }
    if f.connection_lost {
        return MigrateError::Pg(PgError::Connect { url: s.database_url.redacted(), cause: f.message });
    }
    MigrateError::Execute {
        label: m.label(),
        file: m.path.display().to_string(),
        line: f.line,
        message: f.message,
        attempts,
        applied_before,
    }
}

pub(super) fn kind_of(m: &MigrationFile) -> &'static str {
    if m.version.is_some() {
        "versioned"
    } else {
        "repeatable"
    }
}

pub(super) fn applied(m: &MigrationFile, elapsed: Duration, attempts: u32, lint: &'static str) -> Applied {
    Applied {
        version: m.version,
        description: m.description.clone(),
        file: m.file_name.clone(),
        duration_ms: elapsed.as_secs_f64() * 1000.0,
        attempts,
        no_transaction: m.no_tx,
        lint,
    }
}

/// `migrate up`: applies pending migrations in order under the lock.
pub async fn up(settings: &Settings, opts: UpOptions, reporter: &dyn Reporter) -> Result<UpReport, MigrateError> {
    let rules = Rules::new(&settings.lint)?;
    let (source, mut conn) = open(settings).await?;
    let lock = MigrationLock::acquire(&mut conn, settings.lock_wait).await?;
    let waited = lock.waited;
    let result = up_locked(&mut conn, settings, &source, &rules, opts, reporter).await;
    lock.release(&mut conn).await;
    let mut report = result?;
    report.lock_wait_ms = waited.as_secs_f64() * 1000.0;
    Ok(report)
}

pub(super) async fn up_locked(
    conn: &mut PgConnection,
    settings: &Settings,
    source: &Source,
    rules: &Rules,
    opts: UpOptions,
    reporter: &dyn Reporter,
) -> Result<UpReport, MigrateError> {
    history::ensure_tables(conn).await?;
    let history = history::read(conn).await?;
    let status = compare(source, &history, &settings.database_url.redacted());
    ensure_consistent(&status, opts.ignore_missing)?;
    if let Some(t) = opts.target {
        if source.find(t).is_none() && status.entries.iter().all(|e| e.version != Some(t)) {
            return Err(MigrateError::UnknownTarget { version: t });
        }
    }
    let todo = pending(source, &status, opts.target);
    ensure_transaction_safe(&todo)?;
    let linted = lint_files(rules, &todo);
    let all: Vec<Finding> = linted.iter().flat_map(|(_, f)| f.iter().cloned()).collect();
    if let Some(f) = all.iter().find(|f| f.rule == lint::SYNTAX_ERROR).filter(|_| !opts.allow_unsafe) {
        return Err(MigrateError::Source {
            path: f.file.clone().into(),
            message: format!(
                "line {}: syntax error: {}; fix the SQL (or, if PostgreSQL accepts it and only the linter's \
                 parser does not, pass --allow-unsafe)",
                f.line, f.message
            ),
        });
    }
    if lint::has_errors(&all) && !opts.allow_unsafe {
        return Err(MigrateError::Unsafe { findings: all });
    }
    let session = Session::of(conn, &settings.database_url).await?;
    let mut done = Vec::new();
    for (m, (_, findings)) in todo.iter().zip(&linted) {
        if signal::is_interrupted() {
            return Err(MigrateError::InterruptedBefore { label: m.label(), applied: done.len() });
        }
        let verdict = match lint::verdict(findings) {
            "errors" => "unsafe-allowed",
            v => v,
        };
        reporter.note(&format!("applying {}", m.label()));
        let a = apply_one(conn, m, settings, &session, verdict, done.len()).await?;
        tracing::info!(migration = %m.label(), ms = a.duration_ms, "applied");
        done.push(a);
    }
    let head = done.iter().filter_map(|a| a.version).max().max(status.head);
    let warnings = all.into_iter().filter(|f| f.severity == lint::Severity::Warning).collect();
    Ok(UpReport { database: status.database, applied: done, head, lock_wait_ms: 0.0, warnings })
}
