//! Provision's inputs, declared once: the run's (`ProvisionSpec`: the `with` of a runbook
//! `provision` step and what `opsbook provision plan | apply`'s flags convert into) and the
//! desired state (`ProvisionConfig`: `[profiles.NAME.provision]` in opsbook.toml).
//! `settings::provision` resolves both, with the environment, into a [`super::Target`].

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{ProvisionError, RoleKind};
use crate::spec::opt_text;

/// Plan only, or plan and apply.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Compare only.
    #[default]
    Plan,
    /// Apply the plan.
    Apply,
}

/// A provision run: what it does and through which admin connection. (What it provisions is the
/// profile's [`ProvisionConfig`].)
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisionSpec {
    /// plan (default) or apply.
    #[serde(default)]
    pub mode: Mode,
    /// Admin connection [default: ADMIN_DATABASE_URL / the profile's admin_database_url].
    #[serde(default, deserialize_with = "opt_text")]
    pub admin_database_url: Option<String>,
    /// plan: fail when the plan still has changes (a check after apply).
    #[serde(default)]
    pub expect_no_changes: bool,
}

/// `[profiles.NAME.provision]` in opsbook.toml: the desired state of the environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionConfig {
    pub database: String,
    /// Owns the schema and runs migrations (DDL).
    pub owner_role: String,
    /// The application: DML only.
    pub app_role: String,
    /// SELECT only.
    pub readonly_role: Option<String>,
    #[serde(default)]
    pub extensions: Vec<String>,
    pub connection_limit: Option<i32>,
    /// Database encoding [default: UTF8].
    pub encoding: Option<String>,
    /// `ALTER ROLE … SET statement_timeout` for the app and read-only roles [default: 30s].
    pub statement_timeout: Option<String>,
    /// `ALTER ROLE … SET idle_in_transaction_session_timeout` for all three roles [default: 60s].
    pub idle_in_transaction_session_timeout: Option<String>,
    pub bucket: Option<String>,
    pub bucket_versioning: Option<bool>,
    #[serde(default)]
    pub bucket_cors_origins: Vec<String>,
    pub abort_incomplete_multipart_days: Option<i32>,
    pub noncurrent_version_expiry_days: Option<i32>,
    /// Block public access to the bucket where the provider supports it [default: true].
    pub block_public_access: Option<bool>,
    /// The `.env` file secrets are written to.
    pub env_file: PathBuf,
    pub migrations: Option<PathBuf>,
    pub seeds: Option<PathBuf>,
    /// Where the one-time admin password goes (mode 0600); without it, only the terminal.
    pub admin_password_file: Option<PathBuf>,
}

/// A name opsbook refuses to put into SQL or a `.env` URL.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{key} `{name}` is not a safe identifier: use letters, digits and _ (at most 63, starting with a letter or _)")]
pub struct UnsafeIdentifier {
    /// The setting naming it (`provision.app_role`, `role`).
    pub key: String,
    pub name: String,
}

/// Identifiers: letters, digits, `_` (and `-` for extension names), at most 63 bytes. Everything
/// is quoted as well; this check keeps odd names out of the plan and the `.env` URLs.
pub fn check_identifier(key: &str, name: &str, allow_dash: bool) -> Result<(), UnsafeIdentifier> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || (allow_dash && c == '-'));
    if ok {
        Ok(())
    } else {
        Err(UnsafeIdentifier { key: key.to_string(), name: name.to_string() })
    }
}

impl ProvisionConfig {
    /// Checks names, durations and origins before anything is inspected.
    pub fn validate(&self) -> Result<(), ProvisionError> {
        check_identifier("provision.database", &self.database, false)?;
        for (kind, role) in self.roles() {
            check_identifier(&format!("provision.{}", kind.config_key()), role, false)?;
        }
        for ext in &self.extensions {
            check_identifier("provision.extensions", ext, true)?;
        }
        let names: Vec<&str> = self.roles().into_iter().map(|(_, r)| r).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != names.len() {
            return Err(ProvisionError::SameRoles { roles: names.iter().map(|r| r.to_string()).collect() });
        }
        for (key, v) in [
            ("statement_timeout", &self.statement_timeout),
            ("idle_in_transaction_session_timeout", &self.idle_in_transaction_session_timeout),
        ] {
            if let Some(v) = v {
                humantime::parse_duration(v).map_err(|source| ProvisionError::Duration {
                    key,
                    value: v.clone(),
                    source,
                })?;
            }
        }
        for origin in &self.bucket_cors_origins {
            if url::Url::parse(origin).is_err() && origin != "*" {
                return Err(ProvisionError::CorsOrigin { origin: origin.clone() });
            }
        }
        Ok(())
    }

    pub(crate) fn role(&self, kind: RoleKind) -> Option<&str> {
        match kind {
            RoleKind::Owner => Some(&self.owner_role),
            RoleKind::App => Some(&self.app_role),
            RoleKind::ReadOnly => self.readonly_role.as_deref(),
        }
    }

    pub(crate) fn roles(&self) -> Vec<(RoleKind, &str)> {
        [RoleKind::Owner, RoleKind::App, RoleKind::ReadOnly]
            .into_iter()
            .filter_map(|k| self.role(k).map(|r| (k, r)))
            .collect()
    }
}
