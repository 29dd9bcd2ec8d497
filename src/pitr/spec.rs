//! Point-in-time recovery's inputs, declared once: the profile's `[profiles.NAME.pitr]` table,
//! the `with` of the `pitr-*` runbook steps, and what `opsbook pitr`'s flags convert into.
//! `settings::pitr` resolves it into the `Pitr` the library runs.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::{opt_duration, opt_path, opt_text, MonitorSpec};

/// How pgBackRest archives WAL and takes physical backups for one cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PitrSpec {
    /// pgBackRest stanza name [default: main].
    #[serde(default, deserialize_with = "opt_text", skip_serializing_if = "Option::is_none")]
    pub stanza: Option<String>,
    /// The cluster's data directory (PGDATA); pgBackRest runs on the database host.
    #[serde(default, deserialize_with = "opt_path", skip_serializing_if = "Option::is_none")]
    pub pg_path: Option<PathBuf>,
    /// Superuser connection used to turn archiving on and read pg_stat_archiver
    /// [default: the profile's admin_database_url, else database_url].
    #[serde(default, deserialize_with = "opt_text", skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Unix socket directory pgBackRest connects through [default: the database URL's host when
    /// it is a directory, else /var/run/postgresql].
    #[serde(default, deserialize_with = "opt_path", skip_serializing_if = "Option::is_none")]
    pub socket_dir: Option<PathBuf>,
    /// The repository: s3://bucket/prefix (S3/R2, settings from the profile's stores and the
    /// environment) or a local directory [default: the profile's store + /pitr/repo].
    #[serde(default, deserialize_with = "opt_text", skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// CA bundle that signs the S3 endpoint's certificate (a private or test endpoint).
    #[serde(default, deserialize_with = "opt_path", skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Directory for the pgBackRest configuration, logs, locks and spool
    /// [default: `pgbackrest` beside the data directory].
    #[serde(default, deserialize_with = "opt_path", skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// Full backups to keep (repo1-retention-full) [default: 2].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_full: Option<u32>,
    /// Differential backups to keep (repo1-retention-diff) [default: pgBackRest's].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_diff: Option<u32>,
    /// zst, lz4, gz, bz2 or none, with an optional level: "zst:3" [default: zst].
    #[serde(default, deserialize_with = "opt_text", skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// Repository encryption passphrase (aes-256-cbc), as `env:NAME` or `file:PATH`.
    #[serde(default, deserialize_with = "opt_text", skip_serializing_if = "Option::is_none")]
    pub cipher_pass: Option<String>,
    /// Parallel processes for backup and restore (process-max) [default: 2].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_max: Option<u32>,
    /// archive_timeout: the longest a quiet server waits before archiving a partly filled WAL
    /// segment, which bounds the RPO under low write load [default: 60s].
    #[serde(default, deserialize_with = "opt_duration", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub archive_timeout: Option<Duration>,
    /// `pitr status` exits 1 when the newest archived WAL is older than this [default: 15m].
    #[serde(default, deserialize_with = "opt_duration", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub rpo_target: Option<Duration>,
    /// `pitr check` fails when the newest full backup is older than this [default: 8d].
    #[serde(default, deserialize_with = "opt_duration", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub full_interval: Option<Duration>,
    #[serde(flatten)]
    pub monitor: MonitorSpec,
}

impl PitrSpec {
    /// `self` layered over `base` (the profile's table): what `self` sets wins.
    pub fn over(self, base: &PitrSpec) -> PitrSpec {
        fn pick<T: Clone>(a: Option<T>, b: &Option<T>) -> Option<T> {
            a.or_else(|| b.clone())
        }
        PitrSpec {
            stanza: pick(self.stanza, &base.stanza),
            pg_path: pick(self.pg_path, &base.pg_path),
            database_url: pick(self.database_url, &base.database_url),
            socket_dir: pick(self.socket_dir, &base.socket_dir),
            repo: pick(self.repo, &base.repo),
            ca_file: pick(self.ca_file, &base.ca_file),
            dir: pick(self.dir, &base.dir),
            keep_full: pick(self.keep_full, &base.keep_full),
            keep_diff: pick(self.keep_diff, &base.keep_diff),
            compression: pick(self.compression, &base.compression),
            cipher_pass: pick(self.cipher_pass, &base.cipher_pass),
            process_max: pick(self.process_max, &base.process_max),
            archive_timeout: pick(self.archive_timeout, &base.archive_timeout),
            rpo_target: pick(self.rpo_target, &base.rpo_target),
            full_interval: pick(self.full_interval, &base.full_interval),
            monitor: self.monitor.over(&base.monitor),
        }
    }
}
