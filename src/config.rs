//! `opsbook.toml`: profiles, backup sets, and `env:NAME` / `file:PATH` value indirection.
//! Precedence is flags > environment > profile > defaults; clap already merges the first two.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::backup::spec::BackupSpec;
use crate::error::{Classify, ErrorClass};

/// The file looked for in the working directory when `--config` is not given.
pub const DEFAULT_FILE: &str = "opsbook.toml";
/// The profile used when `--profile` is not given.
pub const DEFAULT_PROFILE: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("profile '{name}' is not in {path} (profiles there: {available}); add [profiles.{name}] or pick another with --profile")]
    UnknownProfile { name: String, path: String, available: String },
    #[error("{key} in {path} reads environment variable {var}, which is not set; export it or change the value")]
    MissingEnv { key: String, path: String, var: String },
    #[error("{key} in {path} reads file {file}: {source}")]
    ValueFile { key: String, path: String, file: PathBuf, source: std::io::Error },
    #[error("{what} is not set: {fix}")]
    Missing { what: String, fix: String },
    #[error("invalid {key}: {message}")]
    Invalid { key: String, message: String },
}

impl Classify for ConfigError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Usage
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// One `[profiles.NAME]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The application database (backup, migrate, promote-check).
    pub database_url: Option<String>,
    /// An admin connection (provision, rotate-secrets).
    pub admin_database_url: Option<String>,
    /// Default backup store URL.
    pub store: Option<String>,
    /// Time zone in which retention periods (days, weeks…) are computed, e.g. "Europe/Berlin".
    pub time_zone: Option<String>,
    /// Backup sets (`[profiles.NAME.sets.SET]`).
    #[serde(default, deserialize_with = "crate::spec::strict_map")]
    pub sets: BTreeMap<String, BackupSpec>,
    /// Migration settings (`[profiles.NAME.migrate]`).
    #[serde(default)]
    pub migrate: crate::migrate::spec::MigrateSpec,
    /// Desired state of the environment (`[profiles.NAME.provision]`).
    pub provision: Option<crate::provision::ProvisionConfig>,
    /// Secrets to rotate (`[[profiles.NAME.secrets]]`).
    #[serde(default)]
    pub secrets: Vec<crate::secrets::rotate::SecretSpec>,
    /// What the promotion checklist expects of the environment (`[profiles.NAME.promote]`).
    #[serde(default, deserialize_with = "crate::spec::strict")]
    pub promote: crate::promote::ChecklistSpec,
    /// Dead-letter table, column names and replay defaults (`[profiles.NAME.dlq]`).
    #[serde(default, deserialize_with = "crate::spec::strict")]
    pub dlq: crate::dlq::spec::QueueSpec,
    /// Point-in-time recovery through pgBackRest (`[profiles.NAME.pitr]`).
    #[serde(default, deserialize_with = "crate::spec::strict")]
    pub pitr: crate::pitr::PitrSpec,
    /// Stores with their own endpoint and credentials (`[profiles.NAME.stores.STORE]`), for
    /// commands that talk to two providers at once (`backup objects`).
    #[serde(default)]
    pub stores: BTreeMap<String, StoreConfig>,
}

/// `[profiles.NAME.stores.STORE]`: connection settings for every store URL under `url`.
/// Values may be `env:NAME` or `file:PATH`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `s3://bucket/prefix` (or a local path); the settings apply to this URL and below it.
    pub url: String,
    /// S3 endpoint, e.g. `https://ACCOUNT.r2.cloudflarestorage.com`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// Force path-style addressing.
    pub path_style: Option<bool>,
    /// Sign upload bodies with SigV4 (`true`) even over HTTPS or to a loopback endpoint, or
    /// never (`false`) [default: only plain HTTP to another host].
    pub sign_payload: Option<bool>,
}

/// The loaded configuration: the selected profile and where it came from.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub path: Option<PathBuf>,
    pub profile_name: String,
    pub profile: Profile,
    /// The embedded defaults: a running `opsbook sandbox`'s env file, used when nothing else
    /// names a database or store.
    pub sandbox: Option<SandboxDefaults>,
}

/// `DATABASE_URL` and `OPSBOOK_STORE` from a sandbox env file.
#[derive(Debug, Clone, Default)]
pub struct SandboxDefaults {
    pub env_file: PathBuf,
    pub database_url: Option<String>,
    pub store: Option<String>,
}

impl SandboxDefaults {
    /// Reads `<dir>/env` when it exists.
    pub fn read(dir: &Path) -> Option<SandboxDefaults> {
        let env_file = dir.join("env");
        let text = std::fs::read_to_string(&env_file).ok()?;
        let mut out = SandboxDefaults { env_file, ..Default::default() };
        for line in text.lines() {
            match line.split_once('=') {
                Some(("DATABASE_URL", v)) => out.database_url = Some(v.to_string()),
                Some(("OPSBOOK_STORE", v)) => out.store = Some(v.to_string()),
                _ => {}
            }
        }
        Some(out)
    }
}

impl Config {
    /// Loads `explicit` (must exist) or `./opsbook.toml` (optional) and selects the profile.
    pub fn load(explicit: Option<&Path>, profile: Option<&str>) -> Result<Config, ConfigError> {
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()),
        };
        let file = match &path {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.clone(), source })?;
                parse(&text, p)?
            }
            None => ConfigFile::default(),
        };
        let name = profile.unwrap_or(DEFAULT_PROFILE).to_string();
        let selected = match file.profiles.get(&name) {
            Some(p) => p.clone(),
            None if profile.is_none() => Profile::default(),
            None => {
                return Err(ConfigError::UnknownProfile {
                    name,
                    path: path.as_ref().map_or("(no config file)".into(), |p| p.display().to_string()),
                    available: if file.profiles.is_empty() {
                        "none".into()
                    } else {
                        file.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                    },
                })
            }
        };
        let sandbox_dir =
            std::env::var_os("OPSBOOK_SANDBOX_DIR").map_or_else(|| PathBuf::from(".opsbook/sandbox"), PathBuf::from);
        Ok(Config { path, profile_name: name, profile: selected, sandbox: SandboxDefaults::read(&sandbox_dir) })
    }

    fn source_name(&self) -> String {
        match &self.path {
            Some(p) => format!("{} [profiles.{}]", p.display(), self.profile_name),
            None => "(no config file)".into(),
        }
    }

    /// Resolves a configured value: `env:NAME` reads the environment, `file:PATH` reads a file
    /// (relative to the config file), anything else is literal. A `file://` URL (a store) is a
    /// literal, not a file to read.
    pub fn resolve(&self, key: &str, raw: &str) -> Result<String, ConfigError> {
        if let Some(var) = raw.strip_prefix("env:") {
            return std::env::var(var).map_err(|_| ConfigError::MissingEnv {
                key: key.into(),
                path: self.source_name(),
                var: var.into(),
            });
        }
        if let Some(file) = raw.strip_prefix("file:").filter(|_| !raw.starts_with("file://")) {
            let base = self.path.as_ref().and_then(|p| p.parent()).unwrap_or(Path::new("."));
            let full = base.join(file);
            let text = std::fs::read_to_string(&full).map_err(|source| ConfigError::ValueFile {
                key: key.into(),
                path: self.source_name(),
                file: full.clone(),
                source,
            })?;
            let value = text.trim_end_matches(['\n', '\r']).to_string();
            crate::redact::register(&value);
            return Ok(value);
        }
        Ok(raw.to_string())
    }

    /// Picks flag/env value first, then the configured one, or says how to set it.
    pub fn pick(
        &self,
        given: Option<&str>,
        configured: Option<&str>,
        key: &str,
        fix: &str,
    ) -> Result<String, ConfigError> {
        let value = match (given, configured) {
            (Some(v), _) => v.to_string(),
            (None, Some(raw)) => self.resolve(key, raw)?,
            (None, None) => {
                return Err(ConfigError::Missing { what: key.into(), fix: fix.into() });
            }
        };
        crate::redact::register_urls_in(&value);
        Ok(value)
    }

    /// Like `pick`, with the sandbox's value as the last resort.
    fn pick_or_sandbox(
        &self,
        given: Option<&str>,
        configured: Option<&str>,
        sandbox: Option<&str>,
        key: &str,
        fix: &str,
    ) -> Result<String, ConfigError> {
        if given.is_none() && configured.is_none() {
            if let Some(value) = sandbox {
                tracing::info!(
                    "no {key} given: using the sandbox's ({})",
                    self.sandbox.as_ref().map_or_else(String::new, |s| s.env_file.display().to_string())
                );
                return Ok(value.to_string());
            }
        }
        self.pick(given, configured, key, fix)
    }

    /// The application database URL: flag > DATABASE_URL > set > profile > sandbox.
    pub fn database_url(&self, given: Option<&str>, set: Option<&BackupSpec>) -> Result<String, ConfigError> {
        let configured = set.and_then(|s| s.database_url.as_deref()).or(self.profile.database_url.as_deref());
        let sandbox = self.sandbox.as_ref().and_then(|s| s.database_url.as_deref());
        // Commands get DATABASE_URL through clap; runbook steps read it here.
        let from_env = env_value("DATABASE_URL");
        self.pick_or_sandbox(
            given.or(from_env.as_deref()),
            configured,
            sandbox,
            "database URL",
            &format!(
                "pass --database-url, set DATABASE_URL, set database_url in {}, or start `opsbook sandbox up`",
                self.source_hint()
            ),
        )
    }

    /// The backup store URL: flag > OPSBOOK_STORE > set > profile > sandbox.
    pub fn store_url(&self, given: Option<&str>, set: Option<&BackupSpec>) -> Result<String, ConfigError> {
        let configured = set.and_then(|s| s.store.as_deref()).or(self.profile.store.as_deref());
        let sandbox = self.sandbox.as_ref().and_then(|s| s.store.as_deref());
        let from_env = env_value("OPSBOOK_STORE");
        self.pick_or_sandbox(
            given.or(from_env.as_deref()),
            configured,
            sandbox,
            "store",
            &format!("pass --store, set OPSBOOK_STORE, or set store in {}", self.source_hint()),
        )
    }

    fn source_hint(&self) -> String {
        match &self.path {
            Some(p) => format!("{} [profiles.{}]", p.display(), self.profile_name),
            None => format!("{DEFAULT_FILE} [profiles.{}]", self.profile_name),
        }
    }

    /// The time zone for retention periods: flag > profile > UTC.
    pub fn time_zone(&self, given: Option<&str>) -> Result<chrono_tz::Tz, ConfigError> {
        let name = given.or(self.profile.time_zone.as_deref()).unwrap_or("UTC");
        name.parse().map_err(|_| ConfigError::Invalid {
            key: "time zone".into(),
            message: format!("'{name}' is not an IANA time zone name (e.g. UTC, Europe/Berlin)"),
        })
    }

    pub fn set(&self, name: &str) -> Option<&BackupSpec> {
        self.profile.sets.get(name)
    }

    /// A store given as a URL or as the name of a `[profiles.NAME.stores.STORE]` table, with
    /// the connection settings of the configured store whose URL is the longest match (the
    /// environment fills whatever it leaves unset).
    pub fn store_with_options(
        &self,
        key: &str,
        given: &str,
    ) -> Result<(String, crate::store::StoreOptions), ConfigError> {
        let url = match self.profile.stores.get(given) {
            Some(named) => named.url.clone(),
            None => given.to_string(),
        };
        let under = |base: &str| {
            let base = base.trim_end_matches('/');
            url == base || url.strip_prefix(base).is_some_and(|rest| rest.starts_with('/'))
        };
        let matched = self.profile.stores.iter().filter(|(_, s)| under(&s.url)).max_by_key(|(_, s)| s.url.len());
        let Some((name, store)) = matched else {
            return Ok((url, crate::store::StoreOptions::default()));
        };
        let field = |field: &str, value: &Option<String>| -> Result<Option<String>, ConfigError> {
            value.as_deref().map(|raw| self.resolve(&format!("stores.{name}.{field}"), raw)).transpose()
        };
        let secret_key = field("secret_key", &store.secret_key)?;
        if let Some(secret) = &secret_key {
            crate::redact::register(secret);
        }
        let options = crate::store::StoreOptions {
            path_style: store.path_style,
            sign_payload: store.sign_payload,
            endpoint: field("endpoint", &store.endpoint)?,
            region: field("region", &store.region)?,
            access_key: field("access_key", &store.access_key)?,
            secret_key,
        };
        if options.access_key.is_some() != options.secret_key.is_some() {
            return Err(ConfigError::Invalid {
                key: format!("{key} (stores.{name} in {})", self.source_name()),
                message: "access_key and secret_key must be given together".into(),
            });
        }
        Ok((url, options))
    }
}

fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let location = e
            .span()
            .map(|span| {
                let (line, col) = crate::text::line_col(text, span.start);
                format!("line {line}, column {col}: ")
            })
            .unwrap_or_default();
        ConfigError::Parse { path: path.to_path_buf(), message: format!("{location}{}", e.message()) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opsbook.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn profile_values_and_indirection() {
        let (dir, path) = write(
            "[profiles.prod]\ndatabase_url = \"file:db-url\"\nstore = \"env:OPSBOOK_TEST_STORE_X\"\n[profiles.prod.sets.shop]\nkeep_daily = 30\n",
        );
        std::fs::write(dir.path().join("db-url"), "postgres://u:pw-from-file@h/db\n").unwrap();
        let cfg = Config::load(Some(&path), Some("prod")).unwrap();
        assert_eq!(cfg.database_url(None, None).unwrap(), "postgres://u:pw-from-file@h/db");
        assert_eq!(cfg.database_url(Some("postgres://flag"), None).unwrap(), "postgres://flag");
        let err = cfg.store_url(None, None).unwrap_err();
        assert!(err.to_string().contains("OPSBOOK_TEST_STORE_X"), "{err}");
        assert_eq!(cfg.set("shop").unwrap().retention.keep_daily, Some(30));
        assert_eq!(crate::redact::redact("pw-from-file"), "***");
    }

    #[test]
    fn file_urls_are_literal_values() {
        let (_dir, path) = write("[profiles.prod]\nstore = \"file:///srv/backups\"\n");
        let cfg = Config::load(Some(&path), Some("prod")).unwrap();
        assert_eq!(cfg.store_url(None, None).unwrap(), "file:///srv/backups");
    }

    #[test]
    fn unknown_field_names_line() {
        let (_dir, path) = write("[profiles.prod]\nstore = \"x\"\ndatabse_url = \"y\"\n");
        let err = Config::load(Some(&path), Some("prod")).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("databse_url"), "{err}");
    }

    #[test]
    fn unknown_profile_lists_available() {
        let (_dir, path) = write("[profiles.staging]\n");
        let err = Config::load(Some(&path), Some("prod")).unwrap_err().to_string();
        assert!(err.contains("staging"), "{err}");
    }

    #[test]
    fn missing_value_says_fix() {
        let cfg = Config::default();
        let err = cfg.database_url(None, None).unwrap_err().to_string();
        assert!(err.contains("--database-url"), "{err}");
        assert!(cfg.time_zone(Some("Mars/Base")).is_err());
        assert_eq!(cfg.time_zone(Some("Europe/Berlin")).unwrap(), chrono_tz::Europe::Berlin);
    }
}
