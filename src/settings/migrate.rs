//! Resolves a migrate spec (flags or a runbook step) over the profile's `[migrate]` table into the
//! migration engine's `Settings`.

use std::path::PathBuf;

use crate::config::Config;
use crate::migrate::spec::MigrateSpec;
use crate::migrate::{MigrateError, Settings};
use crate::pg::DbUrl;

/// The migrations directory: given > profile > ./migrations.
pub fn dir(config: &Config, given: Option<&std::path::Path>) -> PathBuf {
    given
        .map(PathBuf::from)
        .or_else(|| config.profile.migrate.migrations.clone())
        .unwrap_or_else(|| PathBuf::from("migrations"))
}

/// Settings for the application database (`database_url` given, else DATABASE_URL, profile,
/// sandbox): `given` over the profile's `[migrate]` table and the defaults.
pub fn resolve(config: &Config, database_url: Option<&str>, given: &MigrateSpec) -> Result<Settings, MigrateError> {
    let url = config.database_url(database_url, None)?;
    Ok(settings_for(&config.profile.migrate, DbUrl::parse_named("database URL", &url)?, given))
}

/// Settings for a database the caller already holds (a restored copy, a role's own URL):
/// `given` over `profile` (a `[migrate]` table) and the defaults.
pub fn settings_for(profile: &MigrateSpec, database_url: DbUrl, given: &MigrateSpec) -> Settings {
    let spec = given.clone().over(profile);
    Settings {
        database_url,
        dir: spec.migrations.unwrap_or_else(|| PathBuf::from("migrations")),
        lock_wait: spec.lock_wait.unwrap_or(Settings::DEFAULT_LOCK_WAIT),
        lock_timeout: spec.lock_timeout.unwrap_or(Settings::DEFAULT_LOCK_TIMEOUT),
        statement_timeout: spec.statement_timeout,
        retries: spec.retries.unwrap_or(Settings::DEFAULT_RETRIES),
        lint: spec.lint.unwrap_or_default(),
    }
}
