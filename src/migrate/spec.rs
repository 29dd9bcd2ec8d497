//! How migrations run, declared once: `[profiles.NAME.migrate]` in opsbook.toml, the inputs a
//! runbook `migrate` step shares with it, and what `opsbook migrate`'s flags convert into.
//! `settings::migrate` layers a given spec over the profile's and resolves it into `Settings`.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::lint::LintConfig;
use crate::spec::{opt_duration, opt_path};

/// The migrations directory, the lock and statement timeouts, and the lint rules. (The database
/// is the application database, given apart: `--database-url`, DATABASE_URL, the profile.)
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateSpec {
    /// Migrations directory [default: ./migrations]. In opsbook.toml relative to the working
    /// directory (also spelt `dir`); in a runbook relative to the runbook.
    #[serde(default, alias = "dir", deserialize_with = "opt_path")]
    pub migrations: Option<PathBuf>,
    /// How long to wait for the migration lock before giving up (exit 4), e.g. "60s".
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub lock_wait: Option<Duration>,
    /// lock_timeout set for every migration, e.g. "5s"; a timeout is retried with backoff.
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub lock_timeout: Option<Duration>,
    /// statement_timeout set for every migration, e.g. "15min" [default: the server's].
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub statement_timeout: Option<Duration>,
    /// Retries of a migration that hit lock_timeout [default: 3].
    pub retries: Option<u32>,
    /// Lint rules and severities (`[profiles.NAME.migrate.lint]`).
    pub lint: Option<LintConfig>,
}

impl MigrateSpec {
    /// `self` layered over `base` (the profile's): every input `self` gives wins.
    pub fn over(self, base: &MigrateSpec) -> MigrateSpec {
        MigrateSpec {
            migrations: self.migrations.or_else(|| base.migrations.clone()),
            lock_wait: self.lock_wait.or(base.lock_wait),
            lock_timeout: self.lock_timeout.or(base.lock_timeout),
            statement_timeout: self.statement_timeout.or(base.statement_timeout),
            retries: self.retries.or(base.retries),
            lint: self.lint.or_else(|| base.lint.clone()),
        }
    }
}
