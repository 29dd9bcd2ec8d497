//! The migration operations: status, up, dry-run, validate, baseline.
//!
//! Every writing operation holds sqlx's advisory lock for the database, so opsbook, `sqlx migrate
//! run` and `sqlx::migrate!()` never race; rows go to `_sqlx_migrations` exactly as sqlx writes
//! them, and the extra facts to `_opsbook_migrations`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::{PgDatabaseError, PgErrorPosition};
use sqlx::{Executor, PgConnection, Row};

use super::drift::{self, DriftKind};
use super::history::{self, History, MigrationLock, OtherTool, SideEntry};
use super::lint::{self, Finding, Rules};
use super::source::{self, MigrationFile, Source};
use super::statements::{self, TxEffect};
use super::{MigrateError, Settings};
use crate::pg::{self, DbUrl, PgError};
use crate::report::Reporter;
use crate::signal;

/// Where one migration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Applied,
    /// Not applied yet (or, for a repeatable migration, changed since it last ran).
    Pending,
    /// Applied, but the file's checksum differs from the recorded one.
    Changed,
    /// Applied, but no file has this version.
    Missing,
    /// Recorded with success = false: a run died part-way.
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Applied => "applied",
            State::Pending => "pending",
            State::Changed => "changed",
            State::Missing => "missing file",
            State::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// None for repeatable migrations.
    pub version: Option<i64>,
    pub description: String,
    pub file: Option<String>,
    pub state: State,
    pub installed_on: Option<DateTime<Utc>>,
    pub duration_ms: Option<f64>,
    pub applied_by: Option<String>,
    pub no_transaction: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub database: String,
    pub migrations_dir: String,
    /// The newest applied version.
    pub head: Option<i64>,
    pub entries: Vec<Entry>,
    /// History tables of other migration tools found in the database.
    pub other_tools: Vec<OtherTool>,
}

impl Status {
    pub fn count(&self, state: State) -> usize {
        self.entries.iter().filter(|e| e.state == state).count()
    }
    /// Anything that makes `check` fail: pending, changed, missing or failed.
    pub fn problems(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.state != State::Applied)
    }
}

fn ms(nanos: i64) -> Option<f64> {
    (nanos >= 0).then(|| nanos as f64 / 1e6)
}

/// Compares the files with the history. Pure: no I/O.
pub fn compare(source: &Source, history: &History, database: &str) -> Status {
    let mut entries = Vec::new();
    let head = history.applied.iter().filter(|r| r.success).map(|r| r.version).max();
    let mut seen = HashSet::new();
    for row in &history.applied {
        seen.insert(row.version);
        let file = source.find(row.version);
        let side = history.side_for(row.version);
        let (state, note) = match file {
            _ if !row.success => (State::Failed, Some("recorded with success = false".to_string())),
            None => (State::Missing, Some("applied, but no file has this version".to_string())),
            Some(f) if f.checksum != row.checksum => {
                (State::Changed, Some("the file changed after it was applied (see `migrate validate`)".to_string()))
            }
            Some(_) => (State::Applied, side.filter(|s| s.kind == "baseline").map(|_| "baseline".to_string())),
        };
        entries.push(Entry {
            version: Some(row.version),
            description: file.map_or_else(|| row.description.clone(), |f| f.description.clone()),
            file: file.map(|f| f.file_name.clone()),
            state,
            installed_on: Some(row.installed_on),
            duration_ms: ms(row.execution_time),
            applied_by: side.map(|s| s.applied_by.clone()),
            no_transaction: file.is_some_and(|f| f.no_tx),
            note,
        });
    }
    for m in &source.versioned {
        let v = m.version.expect("versioned");
        if seen.contains(&v) {
            continue;
        }
        let note = head.filter(|h| *h > v).map(|h| format!("out of order: older than the applied head {h}"));
        entries.push(Entry {
            version: Some(v),
            description: m.description.clone(),
            file: Some(m.file_name.clone()),
            state: State::Pending,
            installed_on: None,
            duration_ms: None,
            applied_by: None,
            no_transaction: m.no_tx,
            note,
        });
    }
    entries.sort_by_key(|e| e.version);
    for m in &source.repeatable {
        let last = history.repeatable(&m.file_name);
        let (state, note) = match last {
            None => (State::Pending, None),
            Some(s) if s.checksum != m.checksum => (State::Pending, Some("changed since it last ran; re-runs".into())),
            Some(_) => (State::Applied, None),
        };
        entries.push(Entry {
            version: None,
            description: m.description.clone(),
            file: Some(m.file_name.clone()),
            state,
            installed_on: last.map(|s| s.installed_on),
            duration_ms: None,
            applied_by: last.map(|s| s.applied_by.clone()),
            no_transaction: m.no_tx,
            note,
        });
    }
    Status {
        database: database.to_string(),
        migrations_dir: source.dir.display().to_string(),
        head,
        entries,
        other_tools: Vec::new(),
    }
}

/// The migrations `up` would run, in order: pending versioned ones up to `target`, then
/// repeatable ones that are new or changed (only when no versioned migration is held back).
pub fn pending<'a>(source: &'a Source, status: &Status, target: Option<i64>) -> Vec<&'a MigrationFile> {
    let is_pending = |m: &MigrationFile| {
        status
            .entries
            .iter()
            .any(|e| e.state == State::Pending && e.version == m.version && e.file.as_deref() == Some(&m.file_name))
    };
    let mut out: Vec<&MigrationFile> = source
        .versioned
        .iter()
        .filter(|m| is_pending(m) && target.is_none_or(|t| m.version.is_some_and(|v| v <= t)))
        .collect();
    let held_back = source.versioned.iter().any(|m| is_pending(m) && !out.iter().any(|o| o.version == m.version));
    if !held_back {
        out.extend(source.repeatable.iter().filter(|m| is_pending(m)));
    }
    out
}

async fn open(settings: &Settings) -> Result<(Source, PgConnection), MigrateError> {
    let source = source::load(&settings.dir)?;
    let conn = pg::connect(&settings.database_url).await?;
    Ok((source, conn))
}

/// `migrate status` / `migrate check`: read-only.
pub async fn status(settings: &Settings) -> Result<Status, MigrateError> {
    let (source, mut conn) = open(settings).await?;
    let history = history::read(&mut conn).await?;
    let mut status = compare(&source, &history, &settings.database_url.redacted());
    status.other_tools = history::other_tools(&mut conn).await;
    Ok(status)
}

/// Refuses to go on when applied migrations are failed, changed or (unless ignored) missing —
/// sqlx's Migrator refuses in the same cases.
fn ensure_consistent(status: &Status, ignore_missing: bool) -> Result<(), MigrateError> {
    if let Some(e) = status.entries.iter().find(|e| e.state == State::Failed) {
        return Err(MigrateError::Dirty { version: e.version.unwrap_or_default() });
    }
    let bad: Vec<String> = status
        .entries
        .iter()
        .filter(|e| e.state == State::Changed || (e.state == State::Missing && !ignore_missing))
        .map(|e| format!("{} {} ({})", e.version.unwrap_or_default(), e.description, e.state.as_str()))
        .collect();
    if !bad.is_empty() {
        return Err(MigrateError::Drifted(format!(
            "applied migrations no longer match the files: {}. Run `opsbook migrate validate` to see what \
             changed; restore the files{}",
            bad.join(", "),
            if status.count(State::Missing) > 0 { " or pass --ignore-missing" } else { "" }
        )));
    }
    Ok(())
}

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

fn timeouts_sql(settings: &Settings, local: bool) -> String {
    let scope = if local { "SET LOCAL" } else { "SET" };
    let mut sql = format!("{scope} lock_timeout = '{}ms'", settings.lock_timeout.as_millis());
    if let Some(st) = settings.statement_timeout {
        sql.push_str(&format!("; {scope} statement_timeout = '{}ms'", st.as_millis()));
    }
    sql
}

async fn exec(conn: &mut PgConnection, sql: &str, what: &str) -> Result<(), MigrateError> {
    conn.execute(sqlx::raw_sql(sql)).await.map_err(|e| MigrateError::Pg(PgError::query(what, "database", e)))?;
    Ok(())
}

/// A failed migration statement, located in its file.
struct ExecFailure {
    line: Option<usize>,
    message: String,
    lock_timeout: bool,
    connection_lost: bool,
    /// Ctrl-C arrived: the statement was cancelled, or the next one was not started.
    interrupted: bool,
}

fn describe(e: &sqlx::Error, sql: &str, settings: &Settings) -> ExecFailure {
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
struct Session<'a> {
    url: &'a DbUrl,
    /// The connection's backend, for a cancel request on Ctrl-C.
    pid: i32,
    /// `search_path` when the run started: the history rows are written under it even after a
    /// migration changed it (`SET search_path TO app`).
    search_path: String,
}

impl<'a> Session<'a> {
    async fn of(conn: &mut PgConnection, url: &'a DbUrl) -> Result<Session<'a>, MigrateError> {
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
async fn run_statement(conn: &mut PgConnection, sql: &str, session: &Session<'_>) -> Result<(), sqlx::Error> {
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
async fn run_script(
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
fn ensure_transaction_safe(files: &[&MigrationFile]) -> Result<(), MigrateError> {
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
async fn still_in_transaction(conn: &mut PgConnection) -> bool {
    exec(conn, "SAVEPOINT opsbook_open; RELEASE SAVEPOINT opsbook_open", "check the transaction").await.is_ok()
}

const ENDED_TRANSACTION: &str = "the file ended opsbook's transaction (a COMMIT or ROLLBACK in it), so its \
     statements committed as they ran; check the schema, remove the transaction control from the file, \
     and run again";

/// Writes the history rows under the run's original search_path; the migration's own setting
/// is what later files see (as under sqlx). Inside the migration's transaction the switch is
/// transaction-local, so the COMMIT restores exactly what the migration left for the session
/// (a `SET` survives, a `SET LOCAL` ends); outside one it is switched back by hand.
async fn record_applied(
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

fn side_entry<'a>(m: &'a MigrationFile, kind: &'a str, lint: &'a str, elapsed: Option<Duration>) -> SideEntry<'a> {
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
async fn apply_one(
    conn: &mut PgConnection,
    m: &MigrationFile,
    s: &Settings,
    session: &Session<'_>,
    lint: &'static str,
    applied_before: usize,
) -> Result<Applied, MigrateError> {
    let earlier = if applied_before > 0 {
        format!("; the {applied_before} migration(s) before it in this run were applied and committed")
    } else {
        String::new()
    };
    let fail = |f: ExecFailure, attempts: u32| -> MigrateError {
        if f.interrupted {
            let what = if m.no_tx {
                "it runs without a transaction, so its statements before that point stay applied, and it is \
                 not recorded: check them before running again"
            } else {
                "it was rolled back"
            };
            return MigrateError::Interrupted(format!("interrupted during migration {}: {what}{earlier}", m.label()));
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
    };
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
        if m.no_tx {
            exec(conn, &timeouts_sql(s, false), "set timeouts").await?;
            let ran = run_script(conn, m, s, session).await;
            exec(conn, "RESET lock_timeout; RESET statement_timeout", "reset timeouts").await?;
            ran.map_err(|f| fail(f, attempt))?;
            let elapsed = start.elapsed();
            let entry = side_entry(m, kind_of(m), lint, Some(elapsed));
            record_applied(conn, m, &entry, elapsed, session).await.map_err(|e| MigrateError::Execute {
                label: m.label(),
                file: m.path.display().to_string(),
                line: None,
                message: format!(
                    "its statements ran and stay applied, but recording it in the migration history failed: {e}"
                ),
                attempts: 1,
                applied_before,
            })?;
            return Ok(applied(m, elapsed, attempt, lint));
        }
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

fn kind_of(m: &MigrationFile) -> &'static str {
    if m.version.is_some() {
        "versioned"
    } else {
        "repeatable"
    }
}

fn applied(m: &MigrationFile, elapsed: Duration, attempts: u32, lint: &'static str) -> Applied {
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

/// Lints the given migrations as they will run.
pub fn lint_files(rules: &Rules, files: &[&MigrationFile]) -> Vec<(usize, Vec<Finding>)> {
    files.iter().enumerate().map(|(i, m)| (i, rules.lint(&m.path, &m.sql, !m.no_tx))).collect()
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

async fn up_locked(
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
            return Err(MigrateError::Input(format!("--target {t}: no migration has this version")));
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
            return Err(MigrateError::Interrupted(format!(
                "interrupted before migration {}; {} migration(s) of this run were applied and committed",
                m.label(),
                done.len()
            )));
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

const LOCKS_SQL: &str = "SELECT l.relation::bigint, n.nspname::text, c.relname::text, c.relkind::text, l.mode \
     FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'";

async fn held_locks(conn: &mut PgConnection) -> Result<Vec<(i64, String, String, String)>, MigrateError> {
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

async fn relation_oids(conn: &mut PgConnection) -> Result<HashSet<i64>, MigrateError> {
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

async fn dry_run_locked(
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
                Err(f) if f.interrupted => {
                    return Err(MigrateError::Interrupted(
                        "interrupted; the dry run was rolled back and changed nothing".into(),
                    ))
                }
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

/// One applied migration whose file no longer matches.
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    pub version: i64,
    pub description: String,
    pub file: Option<String>,
    pub kind: DriftKind,
    pub removed: Vec<String>,
    pub added: Vec<String>,
    pub repaired: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ValidateReport {
    pub database: String,
    pub checked: usize,
    pub drift: Vec<Drift>,
}

impl ValidateReport {
    pub fn ok(&self) -> bool {
        self.drift.iter().all(|d| d.repaired)
    }
}

/// `migrate validate`: classifies every applied migration whose file changed. With
/// `repair_cosmetic`, records the new checksum for changes that are only cosmetic (like
/// Flyway's repair), so sqlx and opsbook accept the file again.
pub async fn validate(settings: &Settings, repair_cosmetic: bool) -> Result<ValidateReport, MigrateError> {
    let (source, mut conn) = open(settings).await?;
    let history = history::read(&mut conn).await?;
    let mut drift = Vec::new();
    let mut checked = 0;
    for row in history.applied.iter().filter(|r| r.success) {
        checked += 1;
        let Some(file) = source.find(row.version) else {
            drift.push(Drift {
                version: row.version,
                description: row.description.clone(),
                file: None,
                kind: DriftKind::Missing,
                removed: Vec::new(),
                added: Vec::new(),
                repaired: false,
            });
            continue;
        };
        if file.checksum == row.checksum {
            continue;
        }
        let original =
            history.side_for(row.version).filter(|s| s.checksum == row.checksum).and_then(|s| s.script.clone());
        let (kind, diff) = match &original {
            Some(text) => drift::classify(text, &file.sql),
            None => (DriftKind::Unknown, drift::StatementDiff::default()),
        };
        drift.push(Drift {
            version: row.version,
            description: file.description.clone(),
            file: Some(file.file_name.clone()),
            kind,
            removed: diff.removed,
            added: diff.added,
            repaired: false,
        });
    }
    if repair_cosmetic && drift.iter().any(|d| d.kind == DriftKind::Cosmetic) {
        let lock = MigrationLock::acquire(&mut conn, settings.lock_wait).await?;
        let result = repair(&mut conn, &source, &mut drift).await;
        lock.release(&mut conn).await;
        result?;
    }
    Ok(ValidateReport { database: settings.database_url.redacted(), checked, drift })
}

async fn repair(conn: &mut PgConnection, source: &Source, drift: &mut [Drift]) -> Result<(), MigrateError> {
    exec(conn, "BEGIN", "begin").await?;
    for d in drift.iter_mut().filter(|d| d.kind == DriftKind::Cosmetic) {
        let file = source.find(d.version).expect("drift entries with a kind have a file");
        history::set_checksum(conn, d.version, &file.checksum).await?;
        history::log(conn, &side_entry(file, "repair", "not-linted", None)).await?;
        d.repaired = true;
    }
    exec(conn, "COMMIT", "commit").await
}

#[derive(Debug, Clone, Serialize)]
pub struct BaselineReport {
    pub database: String,
    pub version: i64,
    pub recorded: Vec<Applied>,
    pub already_applied: usize,
}

/// `migrate baseline VERSION`: records every migration up to VERSION as applied without running
/// it (for a database whose schema already exists).
pub async fn baseline(settings: &Settings, version: i64) -> Result<BaselineReport, MigrateError> {
    let (source, mut conn) = open(settings).await?;
    if source.find(version).is_none() {
        // A typo (20 for 2) would otherwise mark every migration below it applied.
        return Err(MigrateError::Input(format!(
            "baseline {version}: no migration in {} has this version; give the version of the newest \
             migration the database already has (see `opsbook migrate status`)",
            source.dir.display()
        )));
    }
    let upto: Vec<&MigrationFile> =
        source.versioned.iter().filter(|m| m.version.is_some_and(|v| v <= version)).collect();
    let lock = MigrationLock::acquire(&mut conn, settings.lock_wait).await?;
    let result = async {
        history::ensure_tables(&mut conn).await?;
        let history = history::read(&mut conn).await?;
        let applied: HashSet<i64> = history.applied.iter().map(|r| r.version).collect();
        exec(&mut conn, "BEGIN", "begin").await?;
        let mut recorded = Vec::new();
        for m in upto.iter().filter(|m| !applied.contains(&m.version.unwrap_or_default())) {
            history::record(&mut conn, &m.description, 0, &side_entry(m, "baseline", "not-linted", None)).await?;
            recorded.push(self::applied(m, Duration::ZERO, 0, "not-linted"));
        }
        exec(&mut conn, "COMMIT", "commit").await?;
        Ok::<_, MigrateError>(BaselineReport {
            database: settings.database_url.redacted(),
            version,
            already_applied: upto.len() - recorded.len(),
            recorded,
        })
    }
    .await;
    lock.release(&mut conn).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::history::AppliedRow;

    fn file(version: Option<i64>, name: &str, sql: &str) -> MigrationFile {
        MigrationFile {
            version,
            description: name.into(),
            style: if version.is_some() { source::Style::Sqlx } else { source::Style::Repeatable },
            path: name.into(),
            file_name: name.into(),
            sql: sql.into(),
            checksum: source::checksum(sql),
            no_tx: false,
            down: None,
        }
    }

    fn row(version: i64, sql: &str) -> AppliedRow {
        AppliedRow {
            version,
            description: "x".into(),
            installed_on: Utc::now(),
            success: true,
            checksum: source::checksum(sql),
            execution_time: 1_000_000,
        }
    }

    #[test]
    fn compare_classifies_every_state() {
        let source = Source {
            dir: "m".into(),
            versioned: vec![
                file(Some(1), "1_a.sql", "a"),
                file(Some(2), "2_b.sql", "b2"),
                file(Some(4), "4_d.sql", "d"),
            ],
            repeatable: vec![file(None, "R__v.sql", "v")],
        };
        let history = History { applied: vec![row(1, "a"), row(2, "b"), row(3, "c")], ..Default::default() };
        let status = compare(&source, &history, "db");
        let states: Vec<(Option<i64>, State)> = status.entries.iter().map(|e| (e.version, e.state)).collect();
        assert_eq!(
            states,
            vec![
                (Some(1), State::Applied),
                (Some(2), State::Changed),
                (Some(3), State::Missing),
                (Some(4), State::Pending),
                (None, State::Pending)
            ]
        );
        assert_eq!(status.head, Some(3));
        let todo: Vec<&str> = pending(&source, &status, None).iter().map(|m| m.file_name.as_str()).collect();
        assert_eq!(todo, vec!["4_d.sql", "R__v.sql"]);
        assert!(pending(&source, &status, Some(3)).is_empty(), "target below 4 holds everything back");
        assert!(ensure_consistent(&status, true).is_err(), "a changed file always blocks");
    }
}
