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
    #[error("--compression: {0}")]
    Compression(#[source] codec::CodecError),
    #[error("--encrypt-to: {0}")]
    EncryptTo(#[source] codec::RecipientError),
    #[error("--upload-concurrency must be at least 1")]
    UploadConcurrency,
    #[error(transparent)]
    PartSize(#[from] crate::settings::backup::PartSizeError),
    #[error("--notify-url for set '{set}': {source}")]
    NotifyUrl { set: String, source: crate::notify::PingUrlError },
    #[error(transparent)]
    SetName(#[from] layout::SetNameError),
    /// A local store directory that does not exist: a mistyped --store.
    #[error(
        "store directory {} does not exist: check --store (backup run creates it with the first backup)",
        path.display()
    )]
    NoStoreDir { path: std::path::PathBuf },
    #[error("pruning needs a retention policy for set '{set}': give --keep-* flags or keep_* in opsbook.toml")]
    PruneWithoutPolicy { set: String },
    #[error("backup id prefix '{prefix}' matches {count} backups; give more of the id")]
    AmbiguousId { prefix: String, count: usize },
    #[error("backup {id} is age-encrypted: --deep needs --identity FILE with a matching AGE-SECRET-KEY")]
    DeepNeedsIdentity { id: String },
    /// Intact bytes that the given key cannot open: the key is wrong, not the backup.
    #[error(
        "none of the identities in --identity matches a recipient {key} was encrypted to; nothing was recorded \
         (pass the AGE-SECRET-KEY for the backup's --encrypt-to recipient)"
    )]
    WrongIdentity { key: String },
    /// `named`: the caller gave this id (a wrong id is an input error); otherwise the set had
    /// no backup to pick for `latest` or `random` (the operation fails).
    #[error("backup {id} not found in set '{set}'{hint}")]
    NotFound { set: String, id: String, hint: String, named: bool },
    #[error("invalid manifest {key}: {message}")]
    Manifest { key: String, message: String },
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// An empty retention policy (exit 2), or the delete guard (exit 1).
    #[error(transparent)]
    Retention(#[from] retention::RetentionError),
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
            BackupError::Compression(_)
            | BackupError::EncryptTo(_)
            | BackupError::UploadConcurrency
            | BackupError::PartSize(_)
            | BackupError::NotifyUrl { .. }
            | BackupError::SetName(_)
            | BackupError::NoStoreDir { .. }
            | BackupError::AmbiguousId { .. }
            | BackupError::PruneWithoutPolicy { .. }
            | BackupError::DeepNeedsIdentity { .. }
            | BackupError::WrongIdentity { .. }
            | BackupError::Config(_)
            | BackupError::NotFound { named: true, .. } => ErrorClass::Usage,
            BackupError::Retention(e) => e.class(),
            BackupError::Lock(crate::lock::LockError::Busy { .. }) => ErrorClass::Busy,
            BackupError::Interrupted => ErrorClass::Interrupted,
            BackupError::PruneAfterBackup { source, .. } => source.class(),
            _ => ErrorClass::Failed,
        }
    }
}
