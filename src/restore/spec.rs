//! A restore's inputs, declared once: what `opsbook restore`'s flags convert into.
//! `settings::restore` resolves it into a `RestoreRequest`.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::spec::{opt_path, opt_text};

/// Which backup to restore, and the new database on which server to restore it into.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct RestoreSpec {
    /// Store URL [default: OPSBOOK_STORE / profile / sandbox].
    #[serde(default, deserialize_with = "opt_text")]
    pub store: Option<String>,
    /// Backup set [default: main].
    #[serde(default, deserialize_with = "opt_text")]
    pub set: Option<String>,
    /// latest (default) or a backup id (or unique prefix). Not with `before`.
    #[serde(default, deserialize_with = "opt_text")]
    pub backup: Option<String>,
    /// The newest backup whose snapshot is older than this time (RFC 3339, or
    /// `YYYY-MM-DD HH:MM[:SS]` in UTC).
    #[serde(default, deserialize_with = "opt_text")]
    pub before: Option<String>,
    /// Server on which the new database is created.
    #[serde(default, deserialize_with = "opt_text")]
    pub target_url: Option<String>,
    /// Name of the new database; an existing database is refused.
    #[serde(default, deserialize_with = "opt_text")]
    pub into: Option<String>,
    /// pg_restore jobs: 1 streams the archive; more spools it to a local file first.
    pub jobs: Option<usize>,
    /// age identity file for encrypted backups.
    #[serde(default, deserialize_with = "opt_path")]
    pub identity: Option<PathBuf>,
    /// Print the plan; touch nothing.
    #[serde(default)]
    pub dry_run: bool,
}
