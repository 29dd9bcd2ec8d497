//! A restore drill's inputs, declared once: the `with` of a runbook `restore-drill` step and what
//! `opsbook restore-drill`'s flags convert into. `settings::drill` resolves it into a
//! `DrillRequest`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::spec::{opt_duration, opt_path, opt_text, MonitorSpec};

/// What to drill, where to restore it, what to check, and where the results go.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct DrillSpec {
    /// Store URL [default: OPSBOOK_STORE / profile / sandbox].
    #[serde(default, deserialize_with = "opt_text")]
    pub store: Option<String>,
    /// Backup set [default: main].
    #[serde(default, deserialize_with = "opt_text")]
    pub set: Option<String>,
    /// latest (default), random, or a backup id (or unique prefix).
    #[serde(default, deserialize_with = "opt_text")]
    pub backup: Option<String>,
    /// Seed for random selection and object sampling (reported, so a drill can be repeated).
    pub seed: Option<u64>,
    /// Server on which a scratch database is created and dropped. Give this or `ephemeral`.
    #[serde(default, deserialize_with = "opt_text")]
    pub target_url: Option<String>,
    /// Restore into a throwaway local cluster.
    #[serde(default)]
    pub ephemeral: bool,
    /// Drill point-in-time recovery (pgBackRest) instead of a dump, in a throwaway cluster.
    #[serde(default)]
    pub pitr: bool,
    /// With pitr: recover to this time (RFC 3339; no zone means UTC), `latest`, or `random[:24h]`
    /// [default: latest].
    #[serde(default, deserialize_with = "opt_text")]
    pub target_time: Option<String>,
    /// With pitr: the pgBackRest stanza [default: the profile's pitr.stanza, else main].
    #[serde(default, deserialize_with = "opt_text")]
    pub stanza: Option<String>,
    /// With ephemeral: also restore the backup's globals (roles).
    #[serde(default)]
    pub globals: bool,
    /// Migrations to apply to the restored database: newer ones must apply cleanly.
    #[serde(default, deserialize_with = "opt_path")]
    pub migrations: Option<PathBuf>,
    /// SQL assertions; every statement must return true or a non-zero count.
    #[serde(default, deserialize_with = "opt_path")]
    pub check_sql: Option<PathBuf>,
    /// Media bucket to sample, s3://bucket[/prefix].
    #[serde(default, deserialize_with = "opt_text")]
    pub objects: Option<String>,
    /// Objects to sample [default: 20].
    pub sample: Option<usize>,
    /// Keys from this query over the restored database (first column) instead of a listing.
    #[serde(default, deserialize_with = "opt_text")]
    pub objects_query: Option<String>,
    /// Read sampled objects through presigned URLs.
    #[serde(default)]
    pub presign: bool,
    /// Check sampled objects against the newest inventory of this object set.
    #[serde(default, deserialize_with = "opt_text")]
    pub objects_inventory: Option<String>,
    /// Fail when the newest backup's snapshot is older than this (e.g. 26h).
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub rpo_target: Option<Duration>,
    /// Fail when download + restore + verify takes longer than this (e.g. 30m).
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub rto_target: Option<Duration>,
    /// pg_restore jobs: 1 streams the archive; more spools it to a local file first.
    pub jobs: Option<usize>,
    /// Where to spool the archive with jobs > 1 [default: the system temp dir].
    #[serde(default, deserialize_with = "opt_path")]
    pub spool_dir: Option<PathBuf>,
    /// Leave the restored database or cluster in place.
    #[serde(default)]
    pub keep: bool,
    /// age identity file for encrypted backups.
    #[serde(default, deserialize_with = "opt_path")]
    pub identity: Option<PathBuf>,
    /// Markdown report file.
    #[serde(default, deserialize_with = "opt_path")]
    pub report: Option<PathBuf>,
    /// JUnit XML file (one test case per step).
    #[serde(default, deserialize_with = "opt_path")]
    pub junit: Option<PathBuf>,
    #[serde(flatten)]
    pub monitor: MonitorSpec,
}

impl DrillSpec {
    /// The spec with its file paths taken relative to `base` (a runbook's directory).
    pub fn relative_to(mut self, base: impl Fn(&Path) -> PathBuf) -> DrillSpec {
        for path in [
            &mut self.migrations,
            &mut self.check_sql,
            &mut self.spool_dir,
            &mut self.identity,
            &mut self.report,
            &mut self.junit,
            &mut self.monitor.metrics_file,
        ] {
            if let Some(p) = path.as_mut() {
                *p = base(p);
            }
        }
        self
    }
}
