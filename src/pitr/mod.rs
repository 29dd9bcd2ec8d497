//! Point-in-time recovery through pgBackRest. opsbook does not archive WAL itself: pgBackRest
//! does, durably, with timelines and gaps handled. This module configures it from the profile
//! (`setup`), runs its backups and expiry under opsbook's lock (`engine`), measures the RPO
//! actually achieved from `pg_stat_archiver` and canary rows (`status`), and proves recovery to
//! a point in time by restoring into a throwaway cluster (`drill`).

pub mod backup;
pub mod conf;
pub mod drill;
pub mod engine;
pub mod info;
pub mod setup;
pub mod spec;
pub mod status;

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Classify, ErrorClass};
use crate::pg::{DbUrl, PgError};
use crate::spec::MonitorSpec;

pub use engine::Engine;
pub use spec::PitrSpec;

/// The table the canary rows go to, in the database of the PITR connection.
pub const CANARY_TABLE: &str = "opsbook_pitr_canary";

/// A resolved PITR configuration: what `settings::pitr` makes of the spec and the profile.
#[derive(Debug, Clone)]
pub struct Pitr {
    pub profile: String,
    pub stanza: String,
    /// The cluster's data directory.
    pub pg_path: PathBuf,
    pub pg_port: u16,
    pub socket_dir: PathBuf,
    /// Superuser connection (ALTER SYSTEM, pg_stat_archiver, canaries).
    pub db: DbUrl,
    pub repo: Repo,
    /// Configuration, logs, locks and spool.
    pub dir: PathBuf,
    pub keep_full: u32,
    pub keep_diff: Option<u32>,
    pub compress_type: String,
    pub compress_level: Option<u32>,
    /// Repository passphrase (a secret, registered for redaction).
    pub cipher_pass: Option<String>,
    pub process_max: u32,
    pub archive_timeout: Duration,
    pub rpo_target: Duration,
    pub full_interval: Duration,
    /// The store where drill records go (the dump store).
    pub records: String,
    pub records_options: crate::store::StoreOptions,
    pub monitor: MonitorSpec,
}

impl Pitr {
    /// The pgBackRest configuration file.
    pub fn conf_path(&self) -> PathBuf {
        self.dir.join(format!("{}.conf", self.stanza))
    }
}

/// Where pgBackRest keeps backups and WAL.
#[derive(Debug, Clone, PartialEq)]
pub enum Repo {
    Local(PathBuf),
    S3(S3Repo),
}

impl Repo {
    /// The repository as the user named it (no credentials).
    pub fn display(&self) -> String {
        match self {
            Repo::Local(p) => p.display().to_string(),
            Repo::S3(s) => format!("s3://{}{}", s.bucket, s.path),
        }
    }
}

/// An S3 (or R2, or S3-compatible) repository. pgBackRest speaks only HTTPS.
#[derive(Clone, PartialEq)]
pub struct S3Repo {
    pub bucket: String,
    /// Absolute path in the bucket ("/prefix" or "/").
    pub path: String,
    /// Endpoint host (no scheme, no port).
    pub endpoint: String,
    pub port: Option<u16>,
    pub region: String,
    pub key: String,
    /// The secret access key (registered for redaction).
    pub secret: String,
    pub path_style: bool,
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for S3Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Repo")
            .field("bucket", &self.bucket)
            .field("path", &self.path)
            .field("endpoint", &self.endpoint)
            .field("port", &self.port)
            .field("region", &self.region)
            .field("key", &self.key)
            .field("secret", &crate::redact::MASK)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PitrError {
    /// A setting is missing or wrong (exit 2).
    #[error("pitr.{key}: {message}")]
    Setting { key: String, message: String },
    /// pgBackRest is not installed (exit 3).
    #[error("pgBackRest is not installed (no `pgbackrest` on PATH): install it with `apt-get install -y pgbackrest`")]
    NotInstalled,
    /// pgBackRest ran and failed; `detail` is the tail of what it printed (exit 1, or 3 when it
    /// could not reach the database or the repository).
    #[error("pgbackrest {command} (stanza {stanza}) failed: {detail}")]
    Engine { command: String, stanza: String, detail: String, class: ErrorClass },
    /// A file or directory could not be used.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `pgbackrest info` printed something we cannot read.
    #[error("cannot read `pgbackrest info` for stanza {stanza}: {message}")]
    Info { stanza: String, message: String },
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A step of a PITR drill could not go on (exit 1).
    #[error("PITR drill, step {step}: {message}")]
    Drill { step: &'static str, message: String },
    /// Another run holds the stanza's lock (exit 4).
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// Interrupted by a signal (exit 130).
    #[error("interrupted")]
    Interrupted,
    /// A restart is needed before archiving is on (exit 1).
    #[error("archive_mode = on takes effect only after PostgreSQL restarts: {hint}")]
    RestartNeeded { hint: String },
}

impl PitrError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PitrError::Io { op, path: path.into(), source }
    }
    pub(crate) fn setting(key: &str, message: impl Into<String>) -> Self {
        PitrError::Setting { key: key.to_string(), message: message.into() }
    }
}

impl Classify for PitrError {
    fn class(&self) -> ErrorClass {
        match self {
            PitrError::Setting { .. } => ErrorClass::Usage,
            PitrError::NotInstalled => ErrorClass::Unavailable,
            PitrError::Engine { class, .. } => *class,
            PitrError::Io { .. }
            | PitrError::Info { .. }
            | PitrError::Drill { .. }
            | PitrError::RestartNeeded { .. } => ErrorClass::Failed,
            PitrError::Interrupted => ErrorClass::Interrupted,
            PitrError::Lock(e) => e.class(),
            PitrError::Pg(e) => e.class(),
            PitrError::Store(e) => e.class(),
        }
    }
}
