//! `opsbook restore`: restore a dump backup into a new database — picked by id, `latest` or
//! time, verified before any database is touched, row counts compared afterwards, and the
//! partial database removed when the restore fails or is interrupted.

pub mod run;
pub mod spec;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::backup::BackupError;
use crate::drill::{DrillError, Step, TableCheck};
use crate::error::{Classify, ErrorClass};
use crate::pg::{DbUrl, PgError};
use crate::store::StoreError;

pub use run::restore;
pub use spec::RestoreSpec;

/// Which backup to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    Latest,
    /// An id or unique prefix.
    Id(String),
    /// The newest backup whose snapshot is older than this.
    Before(DateTime<Utc>),
}

/// Everything a restore needs.
#[derive(Clone)]
pub struct RestoreRequest {
    pub store_url: String,
    pub set: String,
    pub pick: Pick,
    /// The server the new database is created on.
    pub server: DbUrl,
    pub database: String,
    pub jobs: usize,
    pub identities: Vec<age::x25519::Identity>,
    pub dry_run: bool,
}

/// The restore's result.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub tool: String,
    pub ok: bool,
    pub dry_run: bool,
    pub store: String,
    pub set: String,
    pub backup_id: String,
    pub backup_snapshot: Option<DateTime<Utc>>,
    /// Now minus the backup's snapshot time.
    pub backup_age_seconds: Option<i64>,
    /// The target server (redacted).
    pub server: String,
    pub database: String,
    /// Whether the new database exists after the run (false when the restore failed and it was
    /// removed, or on a dry run).
    pub created: bool,
    pub restore_mode: String,
    pub restored_bytes: u64,
    pub steps: Vec<Step>,
    pub tables: Vec<TableCheck>,
    pub row_count_method: Option<String>,
}

/// Parses `--before` ([`crate::spec::parse_time`]): RFC 3339, `YYYY-MM-DD HH:MM[:SS]` in UTC, a
/// date, or an age such as `2h` (that long ago).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, RestoreError> {
    crate::spec::parse_time(text, Utc::now()).ok_or_else(|| RestoreError::BadTime { text: text.trim().to_string() })
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("say where to restore: --target-url URL (the server on which the new database is created)")]
    NoTarget,
    #[error("say which new database to restore into: --into NAME")]
    NoInto,
    #[error("give --backup or --before, not both")]
    BackupAndBefore,
    #[error("--before {text}: not a time (RFC 3339, e.g. 2026-12-07T03:10:00Z, YYYY-MM-DD HH:MM[:SS] in UTC, or an age such as 2h)")]
    BadTime { text: String },
    #[error("set {set} has no complete backup with a snapshot before {before}")]
    NoneBefore { set: String, before: DateTime<Utc> },
    #[error("--into {name}: a database name must be 1 to 63 bytes")]
    BadName { name: String },
    /// `server` is redacted.
    #[error(
        "database {name} already exists on {server}; restore only creates a new database, so it will not touch \
         it: pick another --into name"
    )]
    Exists { name: String, server: String },
    #[error("--jobs must be at least 1 (1 streams the archive into pg_restore; more restores in parallel)")]
    NoJobs,
    #[error("backup {id} is age-encrypted: pass --identity FILE with a matching AGE-SECRET-KEY")]
    NeedsIdentity { id: String },
    #[error("backup {id} has no data object in its manifest")]
    NoDataObject { id: String },
    #[error("backup {id} failed verification, so nothing was restored: {detail}")]
    Unverified { id: String, detail: String },
    #[error("restoring backup {id} into {database} failed; the new database was removed: {detail}")]
    RestoreFailed { id: String, database: String, detail: String },
    #[error("interrupted; the new database {database} was removed")]
    Interrupted { database: String },
    #[error(transparent)]
    Identity(#[from] crate::backup::codec::IdentityError),
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error(transparent)]
    Drill(DrillError),
}

impl From<DrillError> for RestoreError {
    fn from(e: DrillError) -> Self {
        match e {
            DrillError::ScratchExists { name, server } => RestoreError::Exists { name, server },
            DrillError::Pg(e) => RestoreError::Pg(e),
            DrillError::Store(e) => RestoreError::Store(e),
            DrillError::Backup(e) => RestoreError::Backup(e),
            e => RestoreError::Drill(e),
        }
    }
}

impl Classify for RestoreError {
    fn class(&self) -> ErrorClass {
        match self {
            RestoreError::NoTarget
            | RestoreError::NoInto
            | RestoreError::BackupAndBefore
            | RestoreError::BadTime { .. }
            | RestoreError::NoneBefore { .. }
            | RestoreError::BadName { .. }
            | RestoreError::Exists { .. }
            | RestoreError::NoJobs
            | RestoreError::NeedsIdentity { .. }
            | RestoreError::NoDataObject { .. }
            | RestoreError::Identity(_) => ErrorClass::Usage,
            RestoreError::Unverified { .. } | RestoreError::RestoreFailed { .. } => ErrorClass::Failed,
            RestoreError::Interrupted { .. } => ErrorClass::Interrupted,
            RestoreError::Backup(e) => e.class(),
            RestoreError::Store(e) => e.class(),
            RestoreError::Pg(e) => e.class(),
            RestoreError::Drill(e) => e.class(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_takes_rfc3339_and_plain_utc_times() {
        let t = parse_time("2026-12-07T03:10:00Z").unwrap();
        assert_eq!(parse_time("2026-12-07 03:10").unwrap(), t);
        assert_eq!(parse_time("2026-12-07 03:10:00").unwrap(), t);
        assert_eq!(parse_time("2026-12-07T04:10:00+01:00").unwrap(), t);
        assert!(matches!(parse_time("yesterday"), Err(RestoreError::BadTime { .. })));
    }
}
