//! The migration operations: status (here), up (`apply`), dry-run (`dry_run`), validate and
//! baseline (`validate`).
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

mod apply;
mod dry_run;
mod validate;

pub use apply::*;
pub use dry_run::*;
pub use validate::*;

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
        return Err(MigrateError::Drifted { drifted: bad, missing: status.count(State::Missing) > 0 });
    }
    Ok(())
}

/// Lints the given migrations as they will run.
pub fn lint_files(rules: &Rules, files: &[&MigrationFile]) -> Vec<(usize, Vec<Finding>)> {
    files.iter().enumerate().map(|(i, m)| (i, rules.lint(&m.path, &m.sql, !m.no_tx))).collect()
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
