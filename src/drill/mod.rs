//! Restore drills: prove a backup restores, count its rows, re-apply migrations, sample the
//! media bucket, and measure RTO and RPO — then clean up, whatever happened.

pub mod checks;
pub mod objects;
pub mod render;
pub mod restore;
pub mod run;
pub mod spec;
pub mod target;

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::backup::BackupError;
use crate::error::{Classify, ErrorClass};
use crate::migrate::MigrateError;
use crate::pg::{DbUrl, PgError};
use crate::store::StoreError;

pub use run::{drill, drill_reporting, DrillFailure};
pub use spec::DrillSpec;

/// Which backup to drill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    Latest,
    /// A random complete backup of the set; the seed makes the pick reproducible.
    Random,
    /// An id or unique prefix.
    Id(String),
}

impl Which {
    pub fn parse(text: &str) -> Which {
        match text {
            "latest" => Which::Latest,
            "random" => Which::Random,
            id => Which::Id(id.to_string()),
        }
    }
}

/// Where the restore goes.
#[derive(Debug, Clone)]
pub enum TargetSpec {
    /// A server on which the drill creates (and later drops) `opsbook_drill_<id>`.
    Server(DbUrl),
    /// A throwaway local cluster (initdb + pg_ctl) under this directory.
    Ephemeral { parent: PathBuf },
}

/// Where sampled objects come from.
#[derive(Debug, Clone)]
pub struct ObjectsSpec {
    /// The media bucket (`s3://bucket[/prefix]` or a local store URL).
    pub url: String,
    /// Endpoint and credentials from `[profiles.X.stores]` when the URL is under one.
    pub options: crate::store::StoreOptions,
    pub sample: usize,
    /// SQL run on the restored database; the first column of each row is an object key.
    pub query: Option<String>,
    /// Read through presigned URLs, as browsers do.
    pub presign: bool,
    /// Object set (`backup objects --set`) whose newest inventory the sampled objects are
    /// checked against: each sampled key it lists is read whole and its SHA-256 compared.
    pub inventory: Option<String>,
}

/// Everything a drill needs.
#[derive(Clone)]
pub struct DrillRequest {
    pub store_url: String,
    pub set: String,
    pub which: Which,
    /// Seed for `random` and for object sampling; drawn and reported when not given.
    pub seed: Option<u64>,
    pub target: TargetSpec,
    /// Also restore the globals object (roles) when the backup has one (ephemeral targets only).
    pub globals: bool,
    /// Migrations to apply to the restored database (the migration engine's settings; its
    /// database URL is replaced by the restored database's).
    pub migrations: Option<crate::migrate::Settings>,
    /// `--check-sql`: the file and its text.
    pub check_sql: Option<(PathBuf, String)>,
    pub objects: Option<ObjectsSpec>,
    pub rpo_target: Option<Duration>,
    pub rto_target: Option<Duration>,
    /// pg_restore jobs: 1 streams the archive into pg_restore; more spools it to a local file
    /// first (parallel restore needs a seekable archive).
    pub jobs: usize,
    /// Where spooled archives go [default: the system temp dir].
    pub spool_dir: Option<PathBuf>,
    pub keep: bool,
    pub identities: Vec<age::x25519::Identity>,
    pub notify_url: Option<String>,
    pub metrics_file: Option<PathBuf>,
}

/// How one step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Step {
    pub name: String,
    pub outcome: Outcome,
    pub seconds: f64,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TableCheck {
    pub table: String,
    pub expected: i64,
    /// None when the table is missing from the restore.
    pub restored: Option<i64>,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SqlCheck {
    pub line: usize,
    pub statement: String,
    pub value: Option<String>,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MigrationCheck {
    /// Applied in the backup (head at backup time).
    pub head_in_backup: Option<i64>,
    /// Applied by the drill: migrations newer than the backup.
    pub applied: Vec<String>,
    pub head_after: Option<i64>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ObjectProblem {
    pub key: String,
    pub error: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ObjectCheck {
    pub source: String,
    /// "listing" or "query".
    pub sampled_from: String,
    pub candidates: usize,
    pub sampled: usize,
    pub readable: usize,
    pub missing: Vec<String>,
    pub unreadable: Vec<ObjectProblem>,
    pub presigned: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inventory: Option<InventoryCheck>,
}

/// Sampled objects compared with an object copy's inventory.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct InventoryCheck {
    pub set: String,
    /// The copy run whose inventory was used.
    pub run: String,
    /// Sampled keys read whole and hashed.
    pub checked: usize,
    /// Sampled keys the inventory does not list (or lists without a hash).
    pub not_in_inventory: usize,
    /// Objects whose size or SHA-256 differs from the inventory.
    pub mismatched: Vec<ObjectProblem>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Measure {
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_seconds: Option<f64>,
    pub ok: bool,
}

/// The drill's result; also the drill record stored beside the backup (`drill-<time>.json`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct DrillReport {
    pub tool: String,
    pub drill_id: String,
    /// When the drill ended (the record's time).
    pub time: DateTime<Utc>,
    pub started: DateTime<Utc>,
    pub ok: bool,
    pub store: String,
    pub set: String,
    pub backup_id: String,
    /// None when the drill stopped before selecting a backup.
    pub backup_snapshot: Option<DateTime<Utc>>,
    pub seed: u64,
    pub target: String,
    /// pg_restore mode: "stream" or "spool -j N".
    pub restore_mode: String,
    pub restored_bytes: u64,
    pub steps: Vec<Step>,
    pub tables: Vec<TableCheck>,
    pub row_count_method: Option<String>,
    pub sql_checks: Vec<SqlCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrations: Option<MigrationCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects: Option<ObjectCheck>,
    /// Download + restore + verify wall time.
    pub rto: Measure,
    /// RTO per GiB of restored archive.
    pub rto_seconds_per_gib: Option<f64>,
    /// Now minus the snapshot time of the set's newest complete backup.
    pub rpo: Measure,
    /// What was left in place with --keep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
    /// Where the record was stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_key: Option<String>,
    /// The error that stopped the drill before it could reach a verdict (report files only:
    /// such a drill stores no record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DrillReport {
    pub fn failed_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.outcome == Outcome::Failed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("give --target-url or --ephemeral, not both")]
    TwoTargets,
    #[error(
        "say where to restore: --target-url URL (a server where the drill creates a scratch database) or \
         --ephemeral (a throwaway local cluster)"
    )]
    NoTarget,
    #[error("cannot read --check-sql {}: {source}", path.display())]
    CheckSql {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--check-sql {} holds no SQL statement", path.display())]
    CheckSqlEmpty { path: PathBuf },
    #[error("--sample, --objects-query and --presign need --objects s3://bucket[/prefix]")]
    SamplingWithoutObjects,
    #[error("--objects-inventory needs --objects (the copy to check, e.g. the --to of `backup objects`)")]
    InventoryWithoutObjects,
    #[error(
        "--presign needs an S3 --objects store (s3://bucket[/prefix]); {url} is a local directory, which has no \
         presigned URLs: drop --presign"
    )]
    PresignLocal { url: String },
    #[error("--jobs must be at least 1 (1 streams the archive into pg_restore; more restores in parallel)")]
    NoJobs,
    #[error(transparent)]
    Identity(#[from] crate::backup::codec::IdentityError),
    #[error("backup {id} is age-encrypted: pass --identity FILE with a matching AGE-SECRET-KEY")]
    NeedsIdentity { id: String },
    #[error("backup {id} has no data object in its manifest")]
    NoDataObject { id: String },
    /// `server` is redacted.
    #[error(
        "database {name} already exists on {server}; the drill only restores into a database it creates, so it \
         will not touch it"
    )]
    ScratchExists { name: String, server: String },
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted; the drill's scratch database or cluster was removed")]
    Interrupted,
}

impl Classify for DrillError {
    fn class(&self) -> ErrorClass {
        match self {
            DrillError::TwoTargets
            | DrillError::NoTarget
            | DrillError::CheckSql { .. }
            | DrillError::CheckSqlEmpty { .. }
            | DrillError::SamplingWithoutObjects
            | DrillError::InventoryWithoutObjects
            | DrillError::PresignLocal { .. }
            | DrillError::NoJobs
            | DrillError::Identity(_)
            | DrillError::NeedsIdentity { .. }
            | DrillError::NoDataObject { .. }
            | DrillError::ScratchExists { .. } => ErrorClass::Usage,
            DrillError::Backup(e) => e.class(),
            DrillError::Store(e) => e.class(),
            DrillError::Pg(e) => e.class(),
            DrillError::Migrate(e) => e.class(),
            DrillError::Io { .. } => ErrorClass::Failed,
            DrillError::Interrupted => ErrorClass::Interrupted,
        }
    }
}

/// Default number of objects sampled with --objects.
pub const DEFAULT_SAMPLE: usize = 20;
