//! Secret rotation: plan → create (the new value written to the store as pending) → set (applied
//! to the target) → test → finish (pending becomes current, current becomes previous) → revoke
//! (after the grace period). Every step is journaled before the next begins, so a crash at any
//! point resumes with `run --resume`; a failed test rolls the target back and leaves the store's
//! current value untouched. Values never leave this module except into the store: reports carry
//! fingerprints (the first 8 hex digits of SHA-256).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Executor;

use super::http::{self as http_call, HttpCall};
use super::keys::{self, AccessKey, AwsIam, KeyProvider};
use super::store::{Fields, Slot, Slots, StoreSpec};
use super::SecretsError;
use crate::config::Config;
use crate::error::{Classify, ErrorClass};
use crate::pg::{self, quote_ident, quote_literal, DbUrl};

/// `[[profiles.NAME.secrets]]` in opsbook.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// The key in the store (e.g. DATABASE_URL, JWT_SECRET).
    pub name: String,
    pub kind: Kind,
    /// postgres-password: the role (alternating: the group role; logins are ROLE_a / ROLE_b).
    pub role: Option<String>,
    #[serde(default)]
    pub strategy: Strategy,
    /// `dotenv:PATH`, `aws-sm:SECRET_ID` or `vault:MOUNT/PATH`.
    pub store: String,
    /// Rotate when the current value is older than this (e.g. "90d").
    pub max_age: Option<String>,
    /// How long the previous credential stays valid after a rotation (e.g. "1h").
    pub grace: Option<String>,
    /// random: bits of entropy [default: 256].
    pub bits: Option<u32>,
    /// password-hash: where the one-time plaintext goes (mode 0600).
    pub plaintext_file: Option<PathBuf>,
    /// s3-access-key, http-credential: the store key of the credential's id (e.g.
    /// AWS_ACCESS_KEY_ID; derived from a NAME ending in SECRET_ACCESS_KEY).
    pub id_name: Option<String>,
    /// s3-access-key: the IAM user owning the keys.
    pub user: Option<String>,
    /// s3-access-key: `s3://BUCKET` the new key is tested on.
    pub bucket: Option<String>,
    /// s3-access-key: the S3 endpoint for that test [default: the environment's].
    pub endpoint: Option<String>,
    /// s3-access-key: the key provider [default: aws-iam].
    pub provider: Option<String>,
    /// http-credential: the call creating the new credential (needs value_path).
    pub create: Option<HttpCall>,
    /// http-credential: the call proving the new credential works.
    pub test: Option<HttpCall>,
    /// http-credential: the call revoking an old credential.
    pub revoke: Option<HttpCall>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    PostgresPassword,
    Random,
    PasswordHash,
    S3AccessKey,
    HttpCredential,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    #[default]
    Single,
    Alternating,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PostgresPassword => "postgres-password",
            Kind::Random => "random",
            Kind::PasswordHash => "password-hash",
            Kind::S3AccessKey => "s3-access-key",
            Kind::HttpCredential => "http-credential",
        }
    }
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Single => "single",
            Strategy::Alternating => "alternating",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error(transparent)]
    ConfigFile(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Failed(String),
    /// The admin database (or another target) could not be reached (exit 3).
    #[error("{0}")]
    Unavailable(String),
}

impl Classify for RotateError {
    fn class(&self) -> ErrorClass {
        match self {
            RotateError::Config(_) => ErrorClass::Usage,
            RotateError::Secrets(e) => e.class(),
            RotateError::Lock(e) => e.class(),
            RotateError::ConfigFile(e) => e.class(),
            RotateError::Failed(_) => ErrorClass::Failed,
            RotateError::Unavailable(_) => ErrorClass::Unavailable,
        }
    }
}

/// Why a rotation step failed: the message for the report and the class that picks the exit
/// code (a target that cannot be reached is exit 3, not a failed rotation).
#[derive(Debug, Clone)]
pub struct StepError {
    pub class: ErrorClass,
    pub message: String,
}

impl StepError {
    fn failed(message: impl Into<String>) -> Self {
        StepError { class: ErrorClass::Failed, message: message.into() }
    }

    /// The same error, its message prefixed with the step or operation.
    fn context(self, what: &str) -> Self {
        StepError { message: format!("{what}: {}", self.message), ..self }
    }
}

impl From<String> for StepError {
    fn from(message: String) -> Self {
        StepError::failed(message)
    }
}

impl From<crate::error::ClassifiedError> for StepError {
    fn from(e: crate::error::ClassifiedError) -> Self {
        StepError { class: e.class, message: e.message }
    }
}

impl From<SecretsError> for StepError {
    fn from(e: SecretsError) -> Self {
        StepError { class: e.class(), message: e.to_string() }
    }
}

impl From<RotateError> for StepError {
    fn from(e: RotateError) -> Self {
        StepError { class: e.class(), message: e.to_string() }
    }
}

impl From<StepError> for RotateError {
    fn from(e: StepError) -> Self {
        match e.class {
            ErrorClass::Unavailable => RotateError::Unavailable(e.message),
            ErrorClass::Usage => RotateError::Config(e.message),
            _ => RotateError::Failed(e.message),
        }
    }
}

/// First 8 hex digits of SHA-256: enough to tell values apart, useless to an attacker.
pub fn fingerprint(value: &str) -> String {
    hex::encode(&Sha256::digest(value.as_bytes())[..4])
}

fn parse_duration(key: &str, name: &str, raw: &Option<String>) -> Result<Option<Duration>, RotateError> {
    raw.as_deref()
        .map(|r| {
            humantime::parse_duration(r.trim())
                .map_err(|e| RotateError::Config(format!("secrets `{name}`: {key} `{r}`: {e} (use e.g. 90d or 1h)")))
        })
        .transpose()
}

impl SecretSpec {
    fn validate(&self, admin: bool) -> Result<(), RotateError> {
        let bad = |m: String| Err(RotateError::Config(format!("secrets `{}`: {m}", self.name)));
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return bad("name must be an environment variable name".into());
        }
        StoreSpec::parse(&self.store).map_err(|e| RotateError::Config(format!("secrets `{}`: {e}", self.name)))?;
        if let Some(id) = &self.id_name {
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || *id == self.name {
                return bad(format!("id_name `{id}` must be an environment variable name other than name"));
            }
        }
        let only = |field: &str, set: bool, kind: Kind| -> Result<(), RotateError> {
            if set && self.kind != kind {
                return bad(format!("{field} applies to kind {} only", kind.as_str()));
            }
            Ok(())
        };
        only("user", self.user.is_some(), Kind::S3AccessKey)?;
        only("bucket", self.bucket.is_some(), Kind::S3AccessKey)?;
        only("endpoint", self.endpoint.is_some(), Kind::S3AccessKey)?;
        only("provider", self.provider.is_some(), Kind::S3AccessKey)?;
        only("create", self.create.is_some(), Kind::HttpCredential)?;
        only("test", self.test.is_some(), Kind::HttpCredential)?;
        only("revoke", self.revoke.is_some(), Kind::HttpCredential)?;
        parse_duration("max_age", &self.name, &self.max_age)?;
        parse_duration("grace", &self.name, &self.grace)?;
        match self.kind {
            Kind::PostgresPassword => {
                let Some(role) = &self.role else { return bad("kind postgres-password needs role".into()) };
                crate::provision::check_identifier("role", role, false)
                    .map_err(|e| RotateError::Config(e.to_string()))?;
                if !admin {
                    return bad(
                        "kind postgres-password needs admin_database_url in the profile (or ADMIN_DATABASE_URL)".into(),
                    );
                }
            }
            Kind::Random => {
                if self.bits.is_some_and(|b| b < 128) {
                    return bad("bits must be at least 128".into());
                }
            }
            Kind::PasswordHash => {}
            Kind::S3AccessKey => {
                if self.user.is_none() {
                    return bad("kind s3-access-key needs user (the IAM user owning the keys)".into());
                }
                match self.bucket.as_deref().map(crate::store::StoreUrl::parse) {
                    Some(Ok(crate::store::StoreUrl::S3 { .. })) => {}
                    Some(_) => return bad("bucket must be an s3://BUCKET URL".into()),
                    None => {
                        return bad("kind s3-access-key needs bucket (s3://BUCKET, where the new key is tested)".into())
                    }
                }
                if let Some(p) = self.provider.as_deref().filter(|p| *p != "aws-iam") {
                    return bad(format!("provider `{p}` is not supported; use aws-iam"));
                }
                if self.id_field().is_none() {
                    return bad("kind s3-access-key needs id_name (the store key of the access key id)".into());
                }
            }
            Kind::HttpCredential => {
                let (Some(create), Some(test)) = (&self.create, &self.test) else {
                    return bad("kind http-credential needs a create call and a test call".into());
                };
                let what = |step: &str| format!("secrets `{}`: {step}", self.name);
                let cfg = |e: String| RotateError::Config(e);
                http_call::validate(&what("create"), create, &["current", "current_id"]).map_err(cfg)?;
                http_call::validate(&what("test"), test, &["new", "new_id", "current", "current_id"]).map_err(cfg)?;
                if create.value_path.is_none() {
                    return bad("create needs value_path (where the new value is in the JSON answer)".into());
                }
                if create.id_path.is_some() != self.id_name.is_some() {
                    return bad(
                        "create.id_path and id_name go together (the id is read from the answer and stored)".into()
                    );
                }
                if let Some(revoke) = &self.revoke {
                    http_call::validate(&what("revoke"), revoke, &["previous", "previous_id", "current", "current_id"])
                        .map_err(cfg)?;
                    let ids = http_call::used(revoke).iter().any(|n| n.ends_with("_id"));
                    if ids && self.id_name.is_none() {
                        return bad("revoke uses an id placeholder: set id_name and create.id_path".into());
                    }
                }
            }
        }
        if self.strategy == Strategy::Alternating && self.kind != Kind::PostgresPassword {
            return bad("strategy alternating applies to postgres-password only".into());
        }
        Ok(())
    }

    /// The store key of the credential's id, for kinds that have one.
    fn id_field(&self) -> Option<String> {
        self.id_name.clone().or_else(|| {
            (self.kind == Kind::S3AccessKey)
                .then(|| self.name.strip_suffix("SECRET_ACCESS_KEY").map(|p| format!("{p}ACCESS_KEY_ID")))
                .flatten()
        })
    }

    /// The fields of a value in the store: the secret first, then its id.
    fn fields(&self) -> Vec<String> {
        std::iter::once(self.name.clone()).chain(self.id_field()).collect()
    }

    fn previous_key(&self) -> String {
        format!("{}_PREVIOUS", self.name)
    }

    async fn slots(&self) -> Result<Slots, SecretsError> {
        Slots::open(&self.store, &self.fields()).await
    }

    async fn key_provider(&self) -> AwsIam {
        AwsIam::new(self.user.as_deref().expect("validated")).await
    }

    fn primary<'a>(&self, value: &'a Fields) -> &'a str {
        value.get(&self.name).map(String::as_str).unwrap_or_default()
    }

    fn id_of<'a>(&self, value: &'a Fields) -> Option<&'a str> {
        self.id_field().and_then(|f| value.get(&f)).map(String::as_str)
    }

    fn access_key(&self, value: &Fields) -> AccessKey {
        AccessKey { id: self.id_of(value).unwrap_or_default().to_string(), secret: self.primary(value).to_string() }
    }

    /// The template values for an HTTP call.
    fn call_vars(&self, slots: [(&'static str, Option<&Fields>); 2]) -> BTreeMap<&'static str, String> {
        let mut vars = BTreeMap::new();
        for (name, value) in slots {
            let Some(value) = value else { continue };
            vars.insert(name, self.primary(value).to_string());
            if let Some(id) = self.id_of(value) {
                vars.insert(
                    match name {
                        "current" => "current_id",
                        "new" => "new_id",
                        _ => "previous_id",
                    },
                    id.to_string(),
                );
            }
        }
        vars
    }
}

/// Rotation history, kept in the state directory per profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretState>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SecretState {
    pub rotated_at: Option<DateTime<Utc>>,
    pub fingerprint: Option<String>,
    /// A login (alternating) or previous value to revoke once the grace period is over.
    pub revoke: Option<Revoke>,
    /// When the value now in the previous slot was rotated in (None: never by opsbook), so a
    /// rollback restores the evidence of the value it puts back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_rotated_at: Option<DateTime<Utc>>,
    /// The fingerprint of the value the previous_rotated_at belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_fingerprint: Option<String>,
    /// An unfinished rotation: the step it reached.
    pub in_progress: Option<Progress>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revoke {
    pub what: String,
    pub after: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Created,
    Set,
    Tested,
    Finished,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    pub step: Step,
    pub pending_fingerprint: String,
    pub started: DateTime<Utc>,
}

fn state_path(profile: &str) -> PathBuf {
    crate::lock::state_dir().join("secrets").join(format!("{profile}.json"))
}

fn load_state(profile: &str) -> Result<State, RotateError> {
    let path = state_path(profile);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| RotateError::Failed(format!("rotation state {} is unreadable: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(source) => Err(SecretsError::Io { op: "read".into(), path, source }.into()),
    }
}

fn save_state(profile: &str, state: &State) -> Result<(), RotateError> {
    let path = state_path(profile);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| SecretsError::Io {
            op: "create".into(),
            path: dir.into(),
            source,
        })?;
    }
    let bytes = serde_json::to_vec_pretty(state).expect("state serializes");
    crate::files::write_atomic(&path, &bytes, Some(0o600)).map_err(|source| SecretsError::Io {
        op: "write".into(),
        path,
        source,
    })?;
    Ok(())
}

/// Everything a rotation needs from the configuration.
pub struct Context {
    pub profile: String,
    pub specs: Vec<SecretSpec>,
    pub admin: Option<DbUrl>,
}

pub fn context(config: &Config, admin_url: Option<&str>) -> Result<Context, RotateError> {
    let specs = config.profile.secrets.clone();
    if specs.is_empty() {
        return Err(RotateError::Config(format!(
            "profile '{}' declares no secrets; add [[profiles.{}.secrets]] entries to opsbook.toml",
            config.profile_name, config.profile_name
        )));
    }
    let admin = match admin_url.map(String::from).or_else(|| {
        config.profile.admin_database_url.as_deref().and_then(|raw| config.resolve("admin_database_url", raw).ok())
    }) {
        Some(raw) => {
            crate::redact::register_url_password(&raw);
            Some(DbUrl::parse_named("admin database URL", &raw).map_err(|e| RotateError::Config(e.to_string()))?)
        }
        None => None,
    };
    let mut seen = std::collections::HashSet::new();
    for spec in &specs {
        spec.validate(admin.is_some())?;
        if !seen.insert(&spec.name) {
            return Err(RotateError::Config(format!("secrets `{}` is declared twice", spec.name)));
        }
    }
    let mut specs = specs;
    let base = config.path.as_deref().and_then(std::path::Path::parent).filter(|b| !b.as_os_str().is_empty());
    for spec in &mut specs {
        spec.store = anchored_store(base, &spec.store);
        if let (Some(base), Some(file)) = (base, &spec.plaintext_file) {
            spec.plaintext_file = Some(base.join(file));
        }
    }
    Ok(Context { profile: config.profile_name.clone(), specs, admin })
}

/// A relative `dotenv:PATH` (like a relative plaintext_file) is relative to the config file, as
/// `file:` values are, not to the working directory: run from elsewhere, it names the same file.
fn anchored_store(base: Option<&std::path::Path>, store: &str) -> String {
    match (store.strip_prefix("dotenv:"), base) {
        (Some(path), Some(base)) if std::path::Path::new(path).is_relative() => {
            format!("dotenv:{}", base.join(path).display())
        }
        _ => store.to_string(),
    }
}

/// One secret's standing: the evidence `status` prints and promote-check reads.
#[derive(Debug, Clone, Serialize)]
pub struct Standing {
    pub name: String,
    pub kind: Kind,
    pub strategy: Strategy,
    pub store: String,
    pub present: bool,
    pub fingerprint: Option<String>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub age_seconds: Option<i64>,
    pub max_age_seconds: Option<u64>,
    pub next_due: Option<DateTime<Utc>>,
    pub due: bool,
    pub in_progress: Option<Step>,
    pub revoke_pending: Option<DateTime<Utc>>,
}

pub async fn status(ctx: &Context) -> Result<Vec<Standing>, RotateError> {
    let state = load_state(&ctx.profile)?;
    let now = Utc::now();
    let mut out = Vec::new();
    for spec in &ctx.specs {
        let store = spec.slots().await?;
        let value = store.primary(Slot::Current).map(String::from);
        let st = state.secrets.get(&spec.name).cloned().unwrap_or_default();
        let max_age = parse_duration("max_age", &spec.name, &spec.max_age)?;
        let next_due = match (st.rotated_at, max_age) {
            (Some(at), Some(m)) => Some(at + chrono::Duration::from_std(m).unwrap_or_default()),
            _ => None,
        };
        let due = value.is_none() || st.rotated_at.is_none() || next_due.is_some_and(|d| d <= now);
        out.push(Standing {
            name: spec.name.clone(),
            kind: spec.kind,
            strategy: spec.strategy,
            store: spec.store.clone(),
            present: value.is_some(),
            fingerprint: value.as_deref().map(fingerprint),
            rotated_at: st.rotated_at,
            age_seconds: st.rotated_at.map(|t| (now - t).num_seconds()),
            max_age_seconds: max_age.map(|d| d.as_secs()),
            next_due,
            due,
            in_progress: st.in_progress.as_ref().map(|p| p.step),
            revoke_pending: st.revoke.as_ref().map(|r| r.after),
        });
    }
    Ok(out)
}

/// What happened to one secret in a run.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub name: String,
    pub ok: bool,
    /// The steps performed in this run, in order.
    pub steps: Vec<String>,
    pub fingerprint: Option<String>,
    pub previous_fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of failure `error` is (a target that cannot be reached: exit 3).
    #[serde(skip)]
    pub error_class: Option<ErrorClass>,
    /// password-hash without a plaintext_file: the one-time plaintext, for the terminal only.
    #[serde(skip)]
    pub plaintext: Option<String>,
}

/// Test-only crash hook: `OPSBOOK_ROTATE_CRASH_AFTER=<step>` ends the process right after that
/// step is journaled, the way a kill would.
fn crash_point(step: &str) {
    if std::env::var("OPSBOOK_ROTATE_CRASH_AFTER").is_ok_and(|s| s == step) {
        std::process::exit(99);
    }
}

fn alternate_logins(group: &str) -> (String, String) {
    (format!("{group}_a"), format!("{group}_b"))
}

async fn admin_conn(ctx: &Context) -> Result<(sqlx::PgConnection, DbUrl), StepError> {
    let admin = ctx.admin.clone().ok_or_else(|| StepError::failed("no admin database URL"))?;
    let conn = pg::connect(&admin).await.map_err(|e| StepError { class: e.class(), message: e.to_string() })?;
    Ok((conn, admin))
}

async fn admin_exec(ctx: &Context, sql: &str) -> Result<(), StepError> {
    let (mut conn, _) = admin_conn(ctx).await?;
    conn.execute(sqlx::raw_sql(sql)).await.map(drop).map_err(|e| {
        let message = pg::query::describe_sql_error(&e);
        let class = pg::PgError::query("", "", e).class();
        StepError { class, message }
    })
}

async fn login_works(url: &str) -> Result<(), String> {
    let url = DbUrl::parse(url).map_err(|e| e.to_string())?;
    let mut conn = pg::conn::connect_timeout(&url, Duration::from_secs(10)).await.map_err(|e| e.to_string())?;
    sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut conn).await.map(drop).map_err(|e| e.to_string())
}

/// The pending value for a spec: a new password URL, random key, argon2id hash, access key or
/// gateway credential (the last two are created at the provider here). The second part is a
/// one-time plaintext for the terminal.
async fn new_value(
    spec: &SecretSpec,
    current: Option<&Fields>,
    store: &Slots,
) -> Result<(Fields, Option<String>), StepError> {
    let one = |v: String| Fields::from([(spec.name.clone(), v)]);
    match spec.kind {
        Kind::Random => {
            let bits = spec.bits.unwrap_or(256) as usize;
            Ok((one(super::hex_key(bits.div_ceil(8))), None))
        }
        Kind::PasswordHash => {
            let plaintext = super::password(24);
            let hash = super::argon2id(&plaintext).map_err(|e| e.to_string())?;
            Ok((one(hash), Some(plaintext)))
        }
        Kind::PostgresPassword => {
            let current = current.map(|c| spec.primary(c)).ok_or(format!(
                "{} has no current value in {}: provision it first (the URL's host and database are reused)",
                spec.name, spec.store
            ))?;
            let url = DbUrl::parse(current).map_err(|e| format!("{}: {e}", spec.name))?;
            let role = spec.role.as_deref().expect("validated");
            let user = match spec.strategy {
                Strategy::Single => role.to_string(),
                Strategy::Alternating => {
                    let (a, b) = alternate_logins(role);
                    let active = url.username().unwrap_or_default();
                    if active == a {
                        b
                    } else {
                        a
                    }
                }
            };
            let password = super::password(32);
            Ok((one(url.with_credentials(&user, &password).expose().to_string()), None))
        }
        Kind::S3AccessKey => {
            let provider = spec.key_provider().await;
            let existing = provider.list().await?;
            // Providers cap keys per user (IAM: two); never delete a key we do not know about.
            if existing.len() >= 2 {
                let known = |id: &String| {
                    [current, store.get(Slot::Previous)]
                        .into_iter()
                        .flatten()
                        .any(|v| spec.id_of(v) == Some(id.as_str()))
                };
                let unknown: Vec<&String> = existing.iter().filter(|id| !known(id)).collect();
                return Err(format!(
                    "{} already has {} access keys ({}); IAM allows two. {}",
                    provider.describe(),
                    existing.len(),
                    existing.join(", "),
                    if unknown.is_empty() {
                        "Wait for the previous key's revocation (rotate-secrets run --resume after its grace) first"
                            .to_string()
                    } else {
                        format!(
                            "Delete the key not in this store if nothing uses it ({}), then run again",
                            unknown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                        )
                    }
                )
                .into());
            }
            let key = provider.create().await?;
            let id_field = spec.id_field().expect("validated");
            Ok((Fields::from([(spec.name.clone(), key.secret), (id_field, key.id)]), None))
        }
        Kind::HttpCredential => {
            let create = spec.create.as_ref().expect("validated");
            let answer =
                http_call::call("create", create, "POST", &spec.call_vars([("current", current), ("new", None)]))
                    .await?;
            let value = http_call::extract("create", &answer, create.value_path.as_deref().expect("validated"))?;
            let mut fields = one(value);
            if let (Some(path), Some(field)) = (&create.id_path, spec.id_field()) {
                fields.insert(field, http_call::extract("create", &answer, path)?);
            }
            Ok((fields, None))
        }
    }
}

/// Applies the pending value to the target system.
/// (Access keys and gateway credentials are live from the moment they are created.)
async fn set_target(ctx: &Context, spec: &SecretSpec, pending: &Fields) -> Result<(), StepError> {
    if spec.kind != Kind::PostgresPassword {
        return Ok(());
    }
    let url = DbUrl::parse(spec.primary(pending)).map_err(|e| e.to_string())?;
    let user = url.username().unwrap_or_default();
    let password = url.password().unwrap_or_default();
    let verifier = super::scram_verifier(&password);
    let group = spec.role.as_deref().expect("validated");
    let mut sql = String::new();
    if spec.strategy == Strategy::Alternating {
        // The logins exist as members of the group, acting as it, so objects stay owned by it.
        sql.push_str(&format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {lit}) THEN \
               CREATE ROLE {id} LOGIN IN ROLE {grp}; END IF; END $$; \
             ALTER ROLE {id} SET role = {grp_lit}; ",
            lit = quote_literal(&user),
            id = quote_ident(&user),
            grp = quote_ident(group),
            grp_lit = quote_literal(group),
        ));
    }
    sql.push_str(&format!("ALTER ROLE {} LOGIN PASSWORD {}", quote_ident(&user), quote_literal(&verifier)));
    admin_exec(ctx, &sql).await
}

/// Undoes `set_target` (or the creation) after a failed test: the old credential keeps working.
async fn roll_back_target(
    ctx: &Context,
    spec: &SecretSpec,
    pending: &Fields,
    current: Option<&Fields>,
) -> Result<(), String> {
    match (spec.kind, spec.strategy) {
        (Kind::PostgresPassword, Strategy::Alternating) => {
            let user = DbUrl::parse(spec.primary(pending)).ok().and_then(|u| u.username()).unwrap_or_default();
            admin_exec(ctx, &format!("ALTER ROLE {} NOLOGIN", quote_ident(&user))).await.map_err(|e| e.message)
        }
        (Kind::PostgresPassword, Strategy::Single) => {
            let old = current
                .and_then(|c| DbUrl::parse(spec.primary(c)).ok())
                .and_then(|u| u.password())
                .ok_or("no old password")?;
            let role = spec.role.as_deref().expect("validated");
            let verifier = super::scram_verifier(&old);
            admin_exec(ctx, &format!("ALTER ROLE {} PASSWORD {}", quote_ident(role), quote_literal(&verifier)))
                .await
                .map_err(|e| e.message)
        }
        (Kind::S3AccessKey, _) => match spec.id_of(pending) {
            Some(id) => spec.key_provider().await.delete(id).await,
            None => Err("the new key's id is not in the store".into()),
        },
        (Kind::HttpCredential, _) => match &spec.revoke {
            Some(revoke) => http_call::call(
                "revoke (roll back)",
                revoke,
                "DELETE",
                &spec.call_vars([("previous", Some(pending)), ("current", current)]),
            )
            .await
            .map(drop)
            .map_err(|e| e.message),
            None => Err("no revoke call is configured: the new credential stays valid at the gateway".into()),
        },
        _ => Ok(()),
    }
}

async fn test_value(spec: &SecretSpec, pending: &Fields, current: Option<&Fields>) -> Result<(), String> {
    let value = spec.primary(pending);
    match spec.kind {
        Kind::PostgresPassword => login_works(value).await,
        Kind::Random => (value.len() >= 32).then_some(()).ok_or_else(|| "generated value is too short".into()),
        Kind::PasswordHash => {
            value.starts_with("$argon2id$").then_some(()).ok_or_else(|| "not an argon2id hash".into())
        }
        Kind::S3AccessKey => {
            let settle = std::env::var("OPSBOOK_KEY_SETTLE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
            keys::probe(
                spec.bucket.as_deref().expect("validated"),
                spec.endpoint.as_deref(),
                &spec.access_key(pending),
                Duration::from_secs(settle),
            )
            .await
        }
        Kind::HttpCredential => {
            let test = spec.test.as_ref().expect("validated");
            http_call::call("test", test, "GET", &spec.call_vars([("new", Some(pending)), ("current", current)]))
                .await
                .map(drop)
                .map_err(|e| e.message)
        }
    }
}

/// Runs (or resumes) the rotation of one secret.
async fn rotate_one(ctx: &Context, spec: &SecretSpec, state: &mut State) -> Outcome {
    let mut outcome = Outcome {
        name: spec.name.clone(),
        ok: false,
        steps: Vec::new(),
        fingerprint: None,
        previous_fingerprint: None,
        error: None,
        error_class: None,
        plaintext: None,
    };
    match rotate_steps(ctx, spec, state, &mut outcome).await {
        Ok(()) => outcome.ok = true,
        Err(e) => {
            outcome.error = Some(e.message);
            outcome.error_class = Some(e.class);
        }
    }
    outcome
}

async fn rotate_steps(ctx: &Context, spec: &SecretSpec, state: &mut State, out: &mut Outcome) -> Result<(), StepError> {
    let mut store = spec.slots().await?;
    let current = store.get(Slot::Current).cloned();
    out.previous_fingerprint = store.primary(Slot::Current).map(fingerprint);
    let mut entry = state.secrets.get(&spec.name).cloned().unwrap_or_default();
    let journal = |state: &mut State, entry: &SecretState| -> Result<(), StepError> {
        state.secrets.insert(spec.name.clone(), entry.clone());
        save_state(&ctx.profile, state).map_err(StepError::from)
    };

    // A crash between writing the store and the journal at finish: the store already holds the
    // pending value as current; only the bookkeeping is left.
    if let (Some(p), None, Some(c)) = (&entry.in_progress, store.get(Slot::Pending), store.primary(Slot::Current)) {
        if p.pending_fingerprint == fingerprint(c) {
            let fp = fingerprint(c);
            // The revocation finish would have scheduled: the replaced value is in the previous slot.
            let grace = parse_duration("grace", &spec.name, &spec.grace)?.unwrap_or_default();
            let (old, new) = (store.get(Slot::Previous), store.get(Slot::Current));
            entry.revoke = old.zip(new).and_then(|(old, new)| revocation(spec, old, new, grace));
            let outgoing = old.map(|o| fingerprint(spec.primary(o)));
            entry.previous_rotated_at =
                entry.rotated_at.filter(|_| outgoing.is_some() && entry.fingerprint == outgoing);
            entry.previous_fingerprint = outgoing;
            entry.in_progress = None;
            entry.rotated_at = Some(Utc::now());
            entry.fingerprint = Some(fp.clone());
            journal(state, &entry)?;
            out.steps.push("finished (recorded after a crash)".into());
            out.fingerprint = Some(fp);
            if grace.is_zero() {
                revoke_due(ctx, spec, state, out).await?;
            }
            return Ok(());
        }
    }

    // create: the pending value goes to the store first, so nothing is ever known only in memory.
    let resumed = entry.in_progress.clone().filter(|_| store.get(Slot::Pending).is_some());
    let pending = match &resumed {
        Some(p) => {
            out.steps.push(format!("resumed after {:?}", p.step).to_lowercase());
            store.get(Slot::Pending).cloned().expect("checked")
        }
        None => {
            let (value, plaintext) = new_value(spec, current.as_ref(), &store).await?;
            if let Some(plaintext) = plaintext {
                match &spec.plaintext_file {
                    Some(file) => crate::files::write_atomic(file, format!("{plaintext}\n").as_bytes(), Some(0o600))
                        .map_err(|e| format!("write {}: {e}", file.display()))?,
                    None => out.plaintext = Some(plaintext),
                }
            }
            if let Err(e) = store.put_pending(&value).await {
                // A credential created at a provider but not stored would be orphaned.
                let undo = roll_back_target(ctx, spec, &value, current.as_ref()).await;
                let e = StepError::from(e).context("create");
                return Err(match (spec.kind, undo) {
                    (Kind::S3AccessKey | Kind::HttpCredential, Err(u)) => StepError {
                        message: format!("{}; the new credential could not be removed either ({u})", e.message),
                        ..e
                    },
                    _ => e,
                });
            }
            entry.in_progress = Some(Progress {
                step: Step::Created,
                pending_fingerprint: fingerprint(spec.primary(&value)),
                started: Utc::now(),
            });
            journal(state, &entry)?;
            out.steps.push("created".into());
            crash_point("created");
            value
        }
    };
    let reached = entry.in_progress.as_ref().map(|p| p.step).unwrap_or(Step::Created);

    if reached < Step::Set {
        set_target(ctx, spec, &pending).await.map_err(|e| e.context("set"))?;
        entry.in_progress.as_mut().expect("in progress").step = Step::Set;
        journal(state, &entry)?;
        out.steps.push("set".into());
        crash_point("set");
    }
    if reached < Step::Tested {
        if let Err(e) = test_value(spec, &pending, current.as_ref()).await {
            let rollback = roll_back_target(ctx, spec, &pending, current.as_ref()).await;
            let dropped = store.drop_pending().await;
            entry.in_progress = None;
            journal(state, &entry)?;
            let mut message = match rollback {
                Ok(()) => format!("test failed ({e}); rolled back, the current value is unchanged"),
                Err(r) => format!("test failed ({e}); ROLLBACK FAILED ({r}): check the target by hand"),
            };
            if let Err(d) = dropped {
                message.push_str(&format!("; the pending value is still in the store ({d})"));
            }
            return Err(message.into());
        }
        entry.in_progress.as_mut().expect("in progress").step = Step::Tested;
        journal(state, &entry)?;
        out.steps.push("tested".into());
        crash_point("tested");
    }

    // finish: pending becomes current, current becomes previous.
    let grace = parse_duration("grace", &spec.name, &spec.grace)?.unwrap_or_default();
    // A single-user password's old value is dead once set: nothing to keep.
    let keep =
        !matches!((spec.kind, spec.strategy), (Kind::PostgresPassword, Strategy::Single) | (Kind::PasswordHash, _));
    let pending_fp = fingerprint(spec.primary(&pending));
    store.finish(keep && current.as_ref() != Some(&pending)).await.map_err(|e| StepError::from(e).context("finish"))?;
    crash_point("stored");
    entry.revoke = current.as_ref().and_then(|old| revocation(spec, old, &pending, grace));
    // The outgoing value's history, for a rollback: its rotation time only if the state's record
    // is about that very value.
    let outgoing = current.as_ref().map(|c| fingerprint(spec.primary(c)));
    entry.previous_rotated_at = entry.rotated_at.filter(|_| outgoing.is_some() && entry.fingerprint == outgoing);
    entry.previous_fingerprint = outgoing;
    entry.rotated_at = Some(Utc::now());
    entry.fingerprint = Some(pending_fp.clone());
    entry.in_progress = None;
    journal(state, &entry)?;
    out.steps.push("finished".into());
    out.fingerprint = Some(pending_fp);
    crash_point("finished");
    if grace.is_zero() {
        revoke_due(ctx, spec, state, out).await?;
    }
    Ok(())
}

/// What to revoke once `old` has been replaced by `new`, and when: the previous login
/// (alternating), access key, credential or value, after the grace period. Without a grace
/// period it is revoked at once, random values included.
fn revocation(spec: &SecretSpec, old: &Fields, new: &Fields, grace: Duration) -> Option<Revoke> {
    if old == new {
        return None;
    }
    let what = match (spec.kind, spec.strategy) {
        (Kind::PostgresPassword, Strategy::Alternating) => DbUrl::parse(spec.primary(old))
            .ok()
            .and_then(|u| u.username())
            .filter(|old_user| {
                DbUrl::parse(spec.primary(new)).ok().and_then(|p| p.username()).as_ref() != Some(old_user)
            })
            .map(|u| format!("login {u}")),
        (Kind::Random, _) => Some(format!("value {}", spec.previous_key())),
        (Kind::S3AccessKey, _) => spec.id_of(old).map(|id| format!("key {id}")),
        (Kind::HttpCredential, _) => Some(match spec.id_of(old) {
            Some(id) => format!("credential {id}"),
            None => format!("credential {}", fingerprint(spec.primary(old))),
        }),
        _ => None,
    }?;
    Some(Revoke { what, after: Utc::now() + chrono::Duration::from_std(grace).unwrap_or_default() })
}

/// Revokes the previous login, key, credential or value once its grace period is over.
async fn revoke_due(ctx: &Context, spec: &SecretSpec, state: &mut State, out: &mut Outcome) -> Result<(), StepError> {
    let Some(entry) = state.secrets.get(&spec.name).cloned() else { return Ok(()) };
    let Some(revoke) = entry.revoke.clone() else { return Ok(()) };
    if revoke.after > Utc::now() {
        return Ok(());
    }
    let mut store = spec.slots().await?;
    if let Some(login) = revoke.what.strip_prefix("login ") {
        admin_exec(ctx, &format!("ALTER ROLE {} NOLOGIN", quote_ident(login)))
            .await
            .map_err(|e| e.context("revoke"))?;
    } else if let Some(id) = revoke.what.strip_prefix("key ") {
        spec.key_provider().await.delete(id).await.map_err(|e| format!("revoke: {e}"))?;
    } else if revoke.what.starts_with("credential ") {
        if let Some(call) = &spec.revoke {
            let vars = spec.call_vars([("previous", store.get(Slot::Previous)), ("current", store.get(Slot::Current))]);
            http_call::call("revoke", call, "DELETE", &vars).await.map_err(|e| StepError::from(e).context("revoke"))?;
        }
    }
    if revoke.what.strip_prefix("login ").is_none() || store.get(Slot::Previous).is_some() {
        store.drop_previous().await.map_err(|e| StepError::from(e).context("revoke"))?;
    }
    let mut entry = entry;
    entry.revoke = None;
    state.secrets.insert(spec.name.clone(), entry);
    save_state(&ctx.profile, state)?;
    out.steps.push(format!("revoked {}", revoke.what));
    Ok(())
}

/// Which secrets a run touches.
pub enum Selection {
    Names(Vec<String>),
    Due,
    /// Only unfinished rotations and due revocations.
    Resume,
}

/// The secrets a run with `selection` rotates (besides the revocations that are due).
pub async fn selected<'a>(ctx: &'a Context, selection: &Selection) -> Result<Vec<&'a SecretSpec>, RotateError> {
    let standings = status(ctx).await?;
    let state = load_state(&ctx.profile)?;
    Ok(match selection {
        Selection::Names(names) => {
            for n in names {
                if !ctx.specs.iter().any(|s| &s.name == n) {
                    return Err(RotateError::Config(format!("no secret named `{n}` in profile '{}'", ctx.profile)));
                }
            }
            ctx.specs.iter().filter(|s| names.contains(&s.name)).collect()
        }
        Selection::Due => ctx
            .specs
            .iter()
            .filter(|s| standings.iter().any(|st| st.name == s.name && (st.due || st.in_progress.is_some())))
            .collect(),
        Selection::Resume => {
            ctx.specs.iter().filter(|s| state.secrets.get(&s.name).is_some_and(|e| e.in_progress.is_some())).collect()
        }
    })
}

/// Refuses, before anything is rotated, a password-hash secret without plaintext_file when
/// there is no terminal to show its one-time plaintext on: it must never land in a log.
pub async fn check_plaintext_destination(
    ctx: &Context,
    selection: &Selection,
    terminal: bool,
) -> Result<(), RotateError> {
    if terminal {
        return Ok(());
    }
    let homeless: Vec<&str> = selected(ctx, selection)
        .await?
        .into_iter()
        .filter(|s| s.kind == Kind::PasswordHash && s.plaintext_file.is_none())
        .map(|s| s.name.as_str())
        .collect();
    if homeless.is_empty() {
        return Ok(());
    }
    Err(RotateError::Config(format!(
        "{} (kind password-hash) has no plaintext_file and stderr is not a terminal: the one-time plaintext \
         would land in a log. Set plaintext_file = \"PATH\" in its [[profiles.{}.secrets]] entry (written with \
         mode 0600), or run on a terminal; nothing was rotated",
        homeless.join(", "),
        ctx.profile
    )))
}

pub async fn run(ctx: &Context, selection: Selection) -> Result<Vec<Outcome>, RotateError> {
    let _lock = crate::lock::try_lock(
        "rotate-secrets",
        &format!("profile {}", ctx.profile),
        &format!("rotate-secrets run (profile {})", ctx.profile),
    )?;
    let chosen = selected(ctx, &selection).await?;
    let mut state = load_state(&ctx.profile)?;
    let mut outcomes = Vec::new();
    for spec in &ctx.specs {
        let rotate = chosen.iter().any(|c| c.name == spec.name);
        if rotate {
            outcomes.push(rotate_one(ctx, spec, &mut state).await);
        } else if state
            .secrets
            .get(&spec.name)
            .is_some_and(|e| e.revoke.as_ref().is_some_and(|r| r.after <= Utc::now()))
        {
            let mut o = Outcome {
                name: spec.name.clone(),
                ok: true,
                steps: Vec::new(),
                fingerprint: None,
                previous_fingerprint: None,
                error: None,
                error_class: None,
                plaintext: None,
            };
            if let Err(e) = revoke_due(ctx, spec, &mut state, &mut o).await {
                o.ok = false;
                o.error = Some(e.message);
                o.error_class = Some(e.class);
            }
            outcomes.push(o);
        }
    }
    Ok(outcomes)
}

/// Puts the previous value back as current (random values, and alternating logins still inside
/// their grace period).
pub async fn rollback(ctx: &Context, name: &str) -> Result<Outcome, RotateError> {
    let _lock =
        crate::lock::try_lock("rotate-secrets", &format!("profile {}", ctx.profile), "rotate-secrets rollback")?;
    let spec = ctx
        .specs
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| RotateError::Config(format!("no secret named `{name}` in profile '{}'", ctx.profile)))?;
    if spec.kind == Kind::PostgresPassword && spec.strategy == Strategy::Single || spec.kind == Kind::PasswordHash {
        return Err(RotateError::Failed(format!(
            "{name}: a {} rotation cannot be undone (the old value is gone); rotate again instead",
            if spec.kind == Kind::PasswordHash { "password-hash" } else { "single-user password" }
        )));
    }
    let mut store = spec.slots().await?;
    let previous = store.get(Slot::Previous).cloned().ok_or_else(|| {
        RotateError::Failed(format!(
            "{name} has no previous value in {} (revoked after its grace period, or never rotated): nothing to roll back to",
            spec.store
        ))
    })?;
    let current = store.get(Slot::Current).cloned();
    if spec.kind == Kind::PostgresPassword {
        let user = DbUrl::parse(spec.primary(&previous)).ok().and_then(|u| u.username()).unwrap_or_default();
        admin_exec(ctx, &format!("ALTER ROLE {} LOGIN", quote_ident(&user)))
            .await
            .map_err(|e| e.context("rollback"))?;
        login_works(spec.primary(&previous))
            .await
            .map_err(|e| RotateError::Failed(format!("the previous login does not work: {e}")))?;
    }
    store.swap_previous().await?;
    let mut state = load_state(&ctx.profile)?;
    let entry = state.secrets.entry(spec.name.clone()).or_default();
    let restored = fingerprint(spec.primary(&previous));
    let rolled_away = current.as_ref().map(|c| fingerprint(spec.primary(c)));
    // The evidence follows the value: the one put back keeps the rotation time it had (none if
    // opsbook never rotated it in, so it is due again), and the one rolled away becomes the
    // previous value with its own, so rolling back twice restores both.
    let restored_at = entry.previous_rotated_at.filter(|_| entry.previous_fingerprint.as_ref() == Some(&restored));
    entry.previous_rotated_at = entry.rotated_at.filter(|_| rolled_away.is_some() && entry.fingerprint == rolled_away);
    entry.previous_fingerprint = rolled_away;
    entry.rotated_at = restored_at;
    entry.fingerprint = Some(restored);
    // The rolled-away login, key, credential or value is revoked by the next run.
    entry.revoke = current
        .as_ref()
        .and_then(|c| match spec.kind {
            Kind::PostgresPassword => {
                let user_of = |f: &Fields| DbUrl::parse(spec.primary(f)).ok().and_then(|u| u.username());
                // Never the login just restored (both values may name the same user).
                user_of(c).filter(|u| user_of(&previous).as_ref() != Some(u)).map(|u| format!("login {u}"))
            }
            Kind::Random => Some(format!("value {}", spec.previous_key())),
            Kind::S3AccessKey => spec.id_of(c).map(|id| format!("key {id}")),
            Kind::HttpCredential => Some(format!(
                "credential {}",
                spec.id_of(c).map(String::from).unwrap_or_else(|| fingerprint(spec.primary(c)))
            )),
            Kind::PasswordHash => None,
        })
        .map(|what| Revoke { what, after: Utc::now() });
    save_state(&ctx.profile, &state)?;
    Ok(Outcome {
        name: name.to_string(),
        ok: true,
        steps: vec!["rolled back".into()],
        fingerprint: Some(fingerprint(spec.primary(&previous))),
        previous_fingerprint: current.as_ref().map(|c| fingerprint(spec.primary(c))),
        error: None,
        error_class: None,
        plaintext: None,
    })
}

/// Where the rotation state of a profile is kept (for messages).
pub fn state_file(profile: &str) -> PathBuf {
    state_path(profile)
}
