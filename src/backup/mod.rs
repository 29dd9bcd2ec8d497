//! Database backups: streaming dump to the store, manifests, listing, verification, retention.

pub mod catalog;
pub mod codec;
pub mod job;
pub mod layout;
pub mod manifest;
pub mod objects;
pub mod prune;
pub mod retention;
pub mod run;
pub mod spec;
pub mod verify;

use crate::error::{Classify, ErrorClass};
use crate::pg::PgError;
use crate::store::StoreError;

pub use catalog::{BackupEntry, Catalog};
pub use manifest::Manifest;
pub use run::{BackupRequest, Globals};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error("{op} failed: {error}")]
    Query { op: String, error: sqlx::Error },
    #[error("cannot start {tool}: {source}")]
    Spawn { tool: String, source: std::io::Error },
    #[error("{tool} failed ({status}): {stderr}")]
    Dump { tool: String, status: String, stderr: String },
    #[error("{tool} produced no output; nothing was stored")]
    EmptyDump { tool: String },
    #[error("{op}: {source}")]
    Io { op: String, source: std::io::Error },
    #[error("{0}")]
    Input(String),
    /// `named`: the caller gave this id (a wrong id is an input error); otherwise the set had
    /// no backup to pick for `latest` or `random` (the operation fails).
    #[error("backup {id} not found in set '{set}'{hint}")]
    NotFound { set: String, id: String, hint: String, named: bool },
    #[error("invalid manifest {key}: {message}")]
    Manifest { key: String, message: String },
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("interrupted; the upload was aborted and no manifest was written")]
    Interrupted,
    /// The new backup is complete and listed; only the prune after it failed.
    #[error("backup {id} of set '{set}' is complete and stored, but pruning after it failed: {source}")]
    PruneAfterBackup { set: String, id: String, source: Box<BackupError> },
}

impl Classify for BackupError {
    fn class(&self) -> ErrorClass {
        match self {
            BackupError::Store(e) => e.class(),
            BackupError::Pg(e) => e.class(),
            BackupError::Query {
                error: sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut, ..
            } => ErrorClass::Unavailable,
            BackupError::Spawn { .. } => ErrorClass::Unavailable,
            BackupError::Input(_) | BackupError::Config(_) | BackupError::NotFound { named: true, .. } => {
                ErrorClass::Usage
            }
            BackupError::Lock(crate::lock::LockError::Busy { .. }) => ErrorClass::Busy,
            BackupError::Interrupted => ErrorClass::Interrupted,
            BackupError::PruneAfterBackup { source, .. } => source.class(),
            _ => ErrorClass::Failed,
        }
    }
}
