//! `provision`: the desired state of an environment (database, roles, grants, extensions,
//! bucket, secrets, migrations, seeds) compared with what exists, as a plan of create / update /
//! none per resource, and an idempotent apply that stops at the first failure saying what was
//! and was not done.

mod bucket;
mod postgres;
pub mod spec;

use serde::Serialize;

use crate::error::{Classify, ErrorClass};
use crate::pg::{DbUrl, PgError};
use crate::report::Reporter;
use crate::secrets::{EnvFile, SecretStore, SecretsError};
use crate::store::Store;

pub use spec::{check_identifier, Mode, ProvisionConfig, ProvisionSpec, UnsafeIdentifier};

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
    /// The profile has no desired state to provision (exit 2).
    #[error(
        "profile '{profile}' has no [profiles.{profile}.provision] table in {file}; see `opsbook provision --help`"
    )]
    NoDesiredState { profile: String, file: String },
    /// A database, role or extension name that is not a plain identifier (exit 2).
    #[error(transparent)]
    Identifier(#[from] UnsafeIdentifier),
    /// Two of owner_role, app_role and readonly_role name the same role (exit 2).
    #[error("provision: owner_role, app_role and readonly_role must differ (they are {})", roles.join(", "))]
    SameRoles { roles: Vec<String> },
    /// A role setting that is not a duration (exit 2).
    #[error("provision.{key} `{value}`: {source} (use e.g. 30s)")]
    Duration {
        key: &'static str,
        value: String,
        #[source]
        source: humantime::DurationError,
    },
    #[error("provision.bucket_cors_origins: `{origin}` is not an origin like https://app.example")]
    CorsOrigin { origin: String },
    /// No admin connection given, or a profile value (`env:NAME`, `file:PATH`) that cannot be
    /// read: the settings layer's error, which names the key and where it is set (exit 2).
    #[error(transparent)]
    Profile(Box<dyn std::error::Error + Send + Sync>),
    /// The admin connection is not a PostgreSQL URL (exit 2).
    #[error(transparent)]
    AdminUrl(PgError),
    /// The env file cannot be read.
    #[error("read the env file: {0}")]
    EnvFile(#[source] SecretsError),
    /// The bucket cannot be opened.
    #[error("open bucket {bucket}: {source}")]
    Bucket {
        bucket: String,
        #[source]
        source: crate::store::StoreError,
    },
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
            ProvisionError::NoDesiredState { .. }
            | ProvisionError::Identifier(_)
            | ProvisionError::SameRoles { .. }
            | ProvisionError::Duration { .. }
            | ProvisionError::CorsOrigin { .. }
            | ProvisionError::AdminUrl(_)
            | ProvisionError::Profile(_) => ErrorClass::Usage,
            ProvisionError::EnvFile(e) => e.class(),
            ProvisionError::Bucket { source, .. } => source.class(),
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
    t.env = EnvFile::load(t.env.path()).map_err(ProvisionError::EnvFile)?;
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
