//! `provision`: the desired state of an environment (database, roles, grants, extensions,
//! bucket, secrets, migrations, seeds) compared with what exists, as a plan of create / update /
//! none per resource, and an idempotent apply that stops at the first failure saying what was
//! and was not done.

mod bucket;
mod postgres;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError};
use crate::error::{Classify, ErrorClass};
use crate::pg::DbUrl;
use crate::report::Reporter;
use crate::secrets::{EnvFile, SecretStore};
use crate::store::{Store, StoreOptions};

/// `[profiles.NAME.provision]` in opsbook.toml.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    None,
    /// The provider does not support this; not a failure.
    Skipped,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::None => "none",
            Action::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    Owner,
    App,
    ReadOnly,
}

impl RoleKind {
    /// The key naming this role in the profile's `[provision]` table.
    pub fn config_key(self) -> &'static str {
        match self {
            RoleKind::Owner => "owner_role",
            RoleKind::App => "app_role",
            RoleKind::ReadOnly => "readonly_role",
        }
    }

    /// The `.env` key holding this role's connection URL.
    pub fn env_key(self) -> &'static str {
        match self {
            RoleKind::Owner => "MIGRATION_DATABASE_URL",
            RoleKind::App => "DATABASE_URL",
            RoleKind::ReadOnly => "READONLY_DATABASE_URL",
        }
    }
}

/// What applying an item does.
#[derive(Debug, Clone)]
pub enum Op {
    Role(RoleKind),
    RoleSettings(RoleKind),
    Password(RoleKind),
    Database,
    Extension(String),
    PublicSchema,
    Grants,
    Bucket,
    Versioning,
    Lifecycle,
    Cors,
    PublicAccess,
    EnvValue(&'static str, String),
    JwtSecret,
    AdminPassword,
    Migrations,
    Seeds,
}

/// One resource of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub resource: String,
    pub current: String,
    pub desired: String,
    pub action: Action,
    #[serde(skip)]
    pub op: Op,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub profile: String,
    pub items: Vec<Item>,
}

impl Plan {
    pub fn changes(&self) -> usize {
        self.items.iter().filter(|i| matches!(i.action, Action::Create | Action::Update)).count()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub profile: String,
    pub items: Vec<Item>,
    pub applied: Vec<String>,
    /// Items the provider has no API for (not changes, not failures).
    pub skipped: Vec<String>,
    pub login_test: String,
    /// Where the one-time admin password was written, when a file was configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_password_file: Option<String>,
    /// The one-time admin password when no file is configured: for the terminal only.
    #[serde(skip)]
    pub admin_password: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    ConfigFile(#[from] ConfigError),
    /// Reading the current state failed.
    #[error("{what}: {message}")]
    Inspect { what: String, message: String, class: ErrorClass },
    /// Apply stopped part-way.
    #[error(
        "provision stopped at {failed}: {message}\n  done: {}\n  not done: {}\nFix the cause and run `opsbook provision apply` again; finished steps are not repeated",
        if done.is_empty() { "nothing".to_string() } else { done.join(", ") },
        if remaining.is_empty() { "nothing".to_string() } else { remaining.join(", ") }
    )]
    Partial { failed: String, message: String, done: Vec<String>, remaining: Vec<String>, class: ErrorClass },
    /// Another apply holds the environment (exit 4).
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// Planned again under the lock, the environment needs changes that were not confirmed.
    #[error(
        "the environment changed since the plan was shown (another provision run?): {} not confirmed; nothing was \
         applied. Run `opsbook provision apply` again to review the new plan",
        unconfirmed.join(", ")
    )]
    Changed { unconfirmed: Vec<String> },
}

impl Classify for ProvisionError {
    fn class(&self) -> ErrorClass {
        match self {
            ProvisionError::Config(_) => ErrorClass::Usage,
            ProvisionError::ConfigFile(e) => e.class(),
            ProvisionError::Inspect { class, .. } | ProvisionError::Partial { class, .. } => *class,
            ProvisionError::Lock(e) => e.class(),
            ProvisionError::Changed { .. } => ErrorClass::Failed,
        }
    }
}

/// A failed operation inside plan or apply, with its exit class.
#[derive(Debug)]
pub(crate) struct StepError {
    message: String,
    class: ErrorClass,
}

impl<E: Classify + std::fmt::Display> From<E> for StepError {
    fn from(e: E) -> Self {
        StepError { message: e.to_string(), class: e.class() }
    }
}

impl StepError {
    fn failed(message: impl Into<String>) -> Self {
        StepError { message: message.into(), class: ErrorClass::Failed }
    }

    /// The profile asks for something opsbook must not do (exit 2).
    fn usage(message: impl Into<String>) -> Self {
        StepError { message: message.into(), class: ErrorClass::Usage }
    }
}

/// Everything plan and apply need, resolved from the profile.
pub struct Target {
    pub profile: String,
    pub config: ProvisionConfig,
    pub admin: DbUrl,
    pub env: EnvFile,
    pub store: Option<Store>,
    /// The profile's `[migrate]` table, for the migrations provision runs.
    pub migrate_config: crate::migrate::spec::MigrateSpec,
    /// `S3_ENDPOINT` for the app, when the store has a custom endpoint (R2, MinIO…).
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
}

/// Identifiers: letters, digits, `_` (and `-` for extension names), at most 63 bytes. Everything
/// is quoted as well; this check keeps odd names out of the plan and the `.env` URLs.
pub fn check_identifier(key: &str, name: &str, allow_dash: bool) -> Result<(), ProvisionError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || (allow_dash && c == '-'));
    if ok {
        Ok(())
    } else {
        Err(ProvisionError::Config(format!(
            "provision.{key} `{name}` is not a safe identifier: use letters, digits and _ (at most 63, starting \
             with a letter or _)"
        )))
    }
}

impl ProvisionConfig {
    fn validate(&self) -> Result<(), ProvisionError> {
        check_identifier("database", &self.database, false)?;
        check_identifier("owner_role", &self.owner_role, false)?;
        check_identifier("app_role", &self.app_role, false)?;
        if let Some(ro) = &self.readonly_role {
            check_identifier("readonly_role", ro, false)?;
        }
        for ext in &self.extensions {
            check_identifier("extensions", ext, true)?;
        }
        let mut names = vec![&self.owner_role, &self.app_role];
        names.extend(self.readonly_role.as_ref());
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != names.len() {
            return Err(ProvisionError::Config("provision: owner_role, app_role and readonly_role must differ".into()));
        }
        for (key, v) in [
            ("statement_timeout", &self.statement_timeout),
            ("idle_in_transaction_session_timeout", &self.idle_in_transaction_session_timeout),
        ] {
            if let Some(v) = v {
                humantime::parse_duration(v)
                    .map_err(|e| ProvisionError::Config(format!("provision.{key} `{v}`: {e} (use e.g. 30s)")))?;
            }
        }
        for origin in &self.bucket_cors_origins {
            if url::Url::parse(origin).is_err() && origin != "*" {
                return Err(ProvisionError::Config(format!(
                    "provision.bucket_cors_origins: `{origin}` is not an origin like https://app.example"
                )));
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

/// Resolves the profile's provision table, the admin connection, the env file and the bucket.
pub async fn target(config: &Config, admin_url: Option<&str>) -> Result<Target, ProvisionError> {
    let p = config.profile.provision.clone().ok_or_else(|| {
        ProvisionError::Config(format!(
            "profile '{}' has no [profiles.{}.provision] table in {}; see `opsbook provision --help`",
            config.profile_name,
            config.profile_name,
            config.path.as_ref().map_or("opsbook.toml".into(), |p| p.display().to_string())
        ))
    })?;
    p.validate()?;
    let admin_raw = config.pick(
        admin_url,
        config.profile.admin_database_url.as_deref(),
        "admin database URL",
        "pass --admin-database-url, set ADMIN_DATABASE_URL, or set admin_database_url in the profile",
    )?;
    let admin =
        DbUrl::parse_named("admin database URL", &admin_raw).map_err(|e| ProvisionError::Config(e.to_string()))?;
    let env = EnvFile::load(&p.env_file).map_err(|e| ProvisionError::Inspect {
        what: "read the env file".into(),
        message: e.to_string(),
        class: e.class(),
    })?;
    let store = match &p.bucket {
        None => None,
        Some(bucket) => {
            let url = format!("s3://{bucket}");
            Some(Store::open_url(&url, &StoreOptions::default()).await.map_err(|e| ProvisionError::Inspect {
                what: format!("open bucket {bucket}"),
                message: e.to_string(),
                class: e.class(),
            })?)
        }
    };
    let s3_endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "R2_ENDPOINT"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
    let s3_region =
        ["AWS_REGION", "AWS_DEFAULT_REGION"].iter().find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
    Ok(Target {
        profile: config.profile_name.clone(),
        config: p,
        admin,
        env,
        store,
        migrate_config: config.profile.migrate.clone(),
        s3_endpoint,
        s3_region,
    })
}

/// Compares the desired state with what exists.
pub async fn plan(t: &Target) -> Result<Plan, ProvisionError> {
    let mut items = postgres::plan(t).await.map_err(|e| ProvisionError::Inspect {
        what: format!("inspect PostgreSQL at {}", t.admin.redacted()),
        message: e.message,
        class: e.class,
    })?;
    if let Some(store) = &t.store {
        items.extend(bucket::plan(t, store).await.map_err(|e| ProvisionError::Inspect {
            what: format!("inspect bucket {}", store.url()),
            message: e.message,
            class: e.class,
        })?);
    }
    items.extend(secret_items(t));
    let db_exists = items.iter().any(|i| matches!(i.op, Op::Database) && i.action != Action::Create);
    items.extend(postgres::plan_data(t, db_exists).await.map_err(|e| ProvisionError::Inspect {
        what: "inspect migrations and seeds".into(),
        message: e.message,
        class: e.class,
    })?);
    Ok(Plan { profile: t.profile.clone(), items })
}

fn secret_items(t: &Target) -> Vec<Item> {
    let env = &t.env;
    let file = env.describe();
    let mut items = Vec::new();
    let value_item = |key: &'static str, want: String| {
        let have = env.get(key);
        let action = match &have {
            None => Action::Create,
            Some(v) if *v == want => Action::None,
            Some(_) => Action::Update,
        };
        Item {
            resource: format!("{key} in {file}"),
            current: have.unwrap_or_else(|| "missing".into()),
            desired: want.clone(),
            action,
            op: Op::EnvValue(key, want),
        }
    };
    if let Some(bucket) = &t.config.bucket {
        items.push(value_item("S3_BUCKET", bucket.clone()));
        if let Some(endpoint) = &t.s3_endpoint {
            items.push(value_item("S3_ENDPOINT", endpoint.clone()));
        }
        if let Some(region) = &t.s3_region {
            items.push(value_item("S3_REGION", region.clone()));
        }
    }
    let jwt = env.get("JWT_SECRET");
    items.push(Item {
        resource: format!("JWT_SECRET in {file}"),
        current: match &jwt {
            None => "missing".into(),
            Some(v) if v.len() >= 43 => format!("set ({} characters)", v.len()),
            Some(v) => format!("too short ({} characters; at least 256 bits needed)", v.len()),
        },
        desired: "random, 512 bits".into(),
        action: match &jwt {
            None => Action::Create,
            Some(v) if v.len() >= 43 => Action::None,
            Some(_) => Action::Update,
        },
        op: Op::JwtSecret,
    });
    let hash = env.get("ADMIN_PASSWORD_HASH");
    items.push(Item {
        resource: format!("ADMIN_PASSWORD_HASH in {file}"),
        current: match &hash {
            None => "missing".into(),
            Some(h) if h.starts_with("$argon2id$") => "argon2id hash".into(),
            Some(_) => "not an argon2id hash".into(),
        },
        desired: "argon2id hash of a generated admin password".into(),
        action: match &hash {
            None => Action::Create,
            Some(h) if h.starts_with("$argon2id$") => Action::None,
            Some(_) => Action::Update,
        },
        op: Op::AdminPassword,
    });
    items
}

/// One apply at a time per env file and per database (on this machine, see [`crate::lock`]):
/// two runs would race on the roles and each write the env file from its own copy.
fn lock(t: &Target) -> Result<Vec<crate::lock::LockGuard>, ProvisionError> {
    let env = std::path::absolute(t.env.path()).unwrap_or_else(|_| t.env.path().to_path_buf());
    // The same file through a symlinked directory is the same env file.
    let env = match (env.parent(), env.file_name()) {
        (Some(dir), Some(name)) => dir.canonicalize().map_or(env.clone(), |d| d.join(name)),
        _ => env,
    };
    let database = format!(
        "database {} on {}:{}",
        t.config.database,
        t.admin.host().unwrap_or_else(|| "localhost".into()),
        t.admin.port().unwrap_or(5432)
    );
    let what = format!("provision apply (profile {})", t.profile);
    Ok(vec![
        crate::lock::try_lock("provision", &format!("env file {}", env.display()), &what)?,
        crate::lock::try_lock("provision", &database, &what)?,
    ])
}

/// Changes in `fresh` (planned again under the lock) on resources `shown` did not change: a
/// change nobody confirmed. Fewer changes are fine (another run did some of the work).
fn unconfirmed(shown: &Plan, fresh: &Plan) -> Vec<String> {
    let is_change = |i: &&Item| matches!(i.action, Action::Create | Action::Update);
    fresh
        .items
        .iter()
        .filter(is_change)
        .filter(|f| !shown.items.iter().filter(is_change).any(|s| s.resource == f.resource))
        .map(|f| format!("{} {}", f.action.as_str(), f.resource))
        .collect()
}

/// Applies a confirmed plan in order. Stops at the first failure with what was done and what was not.
///
/// Holds the provision lock throughout. Under it the env file is read again and the plan made
/// again, so a run that waited on a confirmation while another finished neither repeats that
/// work (new passwords, a new JWT secret) nor writes back a stale copy of the env file.
pub async fn apply(t: &mut Target, shown: Plan, reporter: &dyn Reporter) -> Result<ApplyReport, ProvisionError> {
    let _locks = lock(t)?;
    t.env = EnvFile::load(t.env.path()).map_err(|e| ProvisionError::Inspect {
        what: "read the env file".into(),
        message: e.to_string(),
        class: e.class(),
    })?;
    let plan = self::plan(t).await?;
    let unconfirmed = unconfirmed(&shown, &plan);
    if !unconfirmed.is_empty() {
        return Err(ProvisionError::Changed { unconfirmed });
    }
    let mut report = ApplyReport {
        profile: plan.profile.clone(),
        items: plan.items.clone(),
        applied: Vec::new(),
        skipped: Vec::new(),
        login_test: String::new(),
        admin_password_file: None,
        admin_password: None,
    };
    let todo: Vec<&Item> = plan.items.iter().filter(|i| matches!(i.action, Action::Create | Action::Update)).collect();
    for (n, item) in todo.iter().enumerate() {
        reporter.note(&format!("{} {}", item.action.as_str(), item.resource));
        // `Some(why)`: the provider lacks the API; the item is skipped, not failed.
        let result = match &item.op {
            Op::Bucket | Op::Versioning | Op::Lifecycle | Op::Cors | Op::PublicAccess => {
                let store = t.store.as_ref().expect("bucket items need a store");
                bucket::apply(t, store, &item.op).await
            }
            Op::JwtSecret => save_env(t, "JWT_SECRET", &crate::secrets::hex_key(64)).map(|()| None),
            Op::EnvValue(key, value) => save_env(t, key, value).map(|()| None),
            Op::AdminPassword => admin_password(t, &mut report).map(|()| None),
            _ => postgres::apply(t, &item.op).await.map(|()| None),
        };
        match result {
            Err(e) => {
                return Err(ProvisionError::Partial {
                    failed: format!("{} {}", item.action.as_str(), item.resource),
                    message: e.message,
                    done: report.applied.clone(),
                    remaining: todo[n + 1..].iter().map(|i| format!("{} {}", i.action.as_str(), i.resource)).collect(),
                    class: e.class,
                })
            }
            Ok(Some(why)) => {
                if let Some(reported) = report.items.iter_mut().find(|i| i.resource == item.resource) {
                    reported.action = Action::Skipped;
                    reported.current = bucket::unsupported_note(&why);
                }
                report.skipped.push(format!("{}: not supported by this provider ({why})", item.resource));
            }
            Ok(None) => report.applied.push(format!("{} {}", item.action.as_str(), item.resource)),
        }
    }
    report.login_test = postgres::login_test(t).await.map_err(|e| ProvisionError::Partial {
        failed: "login test as the app role".into(),
        message: e.message,
        done: report.applied.clone(),
        remaining: Vec::new(),
        class: e.class,
    })?;
    Ok(report)
}

fn save_env(t: &mut Target, key: &str, value: &str) -> Result<(), StepError> {
    t.env.set(key, value);
    t.env.save()?;
    Ok(())
}

fn admin_password(t: &mut Target, report: &mut ApplyReport) -> Result<(), StepError> {
    let password = crate::secrets::password(24);
    let hash = crate::secrets::argon2id(&password)?;
    // The plaintext goes out first: a hash nobody knows the password of would lock the admin out.
    match &t.config.admin_password_file {
        Some(path) => {
            crate::files::write_atomic(path, format!("{password}\n").as_bytes(), Some(0o600))
                .map_err(|e| StepError::failed(format!("write {}: {e}", path.display())))?;
            report.admin_password_file = Some(path.display().to_string());
        }
        None => report.admin_password = Some(password),
    }
    save_env(t, "ADMIN_PASSWORD_HASH", &hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(items: &[(&str, Action)]) -> Plan {
        Plan {
            profile: "staging".into(),
            items: items
                .iter()
                .map(|(resource, action)| Item {
                    resource: resource.to_string(),
                    current: String::new(),
                    desired: String::new(),
                    action: *action,
                    op: Op::Grants,
                })
                .collect(),
        }
    }

    #[test]
    fn a_plan_made_again_under_the_lock_may_only_drop_changes() {
        let shown = plan(&[("role app", Action::Create), ("JWT_SECRET", Action::Create), ("bucket m", Action::None)]);
        // Another run did part of the work: fine.
        let fresh = plan(&[("role app", Action::None), ("JWT_SECRET", Action::Create), ("bucket m", Action::None)]);
        assert!(unconfirmed(&shown, &fresh).is_empty());
        // Another action on a confirmed resource is still that resource's change.
        let fresh = plan(&[("role app", Action::Update), ("JWT_SECRET", Action::None), ("bucket m", Action::None)]);
        assert!(unconfirmed(&shown, &fresh).is_empty());
        // A change nobody saw is not applied.
        let fresh = plan(&[("role app", Action::None), ("JWT_SECRET", Action::None), ("bucket m", Action::Update)]);
        assert_eq!(unconfirmed(&shown, &fresh), ["update bucket m"]);
        let fresh =
            plan(&[("role app", Action::Create), ("JWT_SECRET", Action::Create), ("bucket m", Action::Skipped)]);
        assert!(unconfirmed(&shown, &fresh).is_empty(), "skipped is not a change");
    }
}
