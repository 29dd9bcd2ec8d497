//! A backup set's inputs, declared once: `[profiles.NAME.sets.SET]` in opsbook.toml, the `with`
//! of a runbook `backup` step, and what `backup run`'s flags convert into. `settings::backup`
//! layers the given spec over the set's configured one and resolves it into a `JobSettings`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::retention::RetentionPolicy;
use crate::spec::{opt_bytes, opt_text, MonitorSpec};

/// What a backup of one set dumps, how it stores it, how it is watched and how long it is kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BackupSpec {
    /// The database to dump [default: DATABASE_URL / profile / sandbox].
    #[serde(default, deserialize_with = "opt_text", skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// The store URL [default: OPSBOOK_STORE / profile / sandbox].
    #[serde(default, deserialize_with = "opt_text", skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// zstd or zstd:LEVEL (1-19) [default: zstd:1].
    #[serde(default, deserialize_with = "opt_text", skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// age recipients (age1…) to encrypt to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encrypt_to: Vec<String>,
    /// Also store `pg_dumpall --globals-only` (roles, tablespaces) without role passwords.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globals: Option<bool>,
    /// With globals: include role password hashes (needs superuser).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globals_with_passwords: Option<bool>,
    /// Per-table row counts in the manifest: exact, estimate or off [default: exact].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_counts: Option<RowCounts>,
    /// Upload part size, e.g. "16MiB" [default: 8MiB, larger for databases over ~64 GiB].
    #[serde(default, deserialize_with = "opt_bytes", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub part_size: Option<u64>,
    /// Parts uploaded at once [default: 2].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_concurrency: Option<usize>,
    #[serde(flatten)]
    pub monitor: MonitorSpec,
    #[serde(flatten)]
    pub retention: RetentionPolicy,
}

/// How the manifest's per-table row counts are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RowCounts {
    /// count(*) per table inside the dump's snapshot: exactly what the dump holds.
    Exact,
    /// Planner statistics: cheap, approximate.
    Estimate,
    Off,
}

impl BackupSpec {
    /// `self` layered over `base` (a set's configured spec): every input `self` gives wins.
    pub fn over(self, base: &BackupSpec) -> BackupSpec {
        BackupSpec {
            database_url: self.database_url.or_else(|| base.database_url.clone()),
            store: self.store.or_else(|| base.store.clone()),
            compression: self.compression.or_else(|| base.compression.clone()),
            encrypt_to: if self.encrypt_to.is_empty() { base.encrypt_to.clone() } else { self.encrypt_to },
            globals: self.globals.or(base.globals),
            globals_with_passwords: self.globals_with_passwords.or(base.globals_with_passwords),
            row_counts: self.row_counts.or(base.row_counts),
            part_size: self.part_size.or(base.part_size),
            upload_concurrency: self.upload_concurrency.or(base.upload_concurrency),
            monitor: self.monitor.over(&base.monitor),
            retention: self.retention.merge_over(&base.retention),
        }
    }
}
