//! Secret rotation: plan → create (the new value written to the store as pending) → set (applied
//! to the target) → test → finish (pending becomes current, current becomes previous) → revoke
//! (after the grace period). Every step is journaled before the next begins, so a crash at any
//! point resumes with `run --resume`; a failed test rolls the target back and leaves the store's
//! current value untouched. Values never leave this module except into the store: reports carry
//! fingerprints (the first 8 hex digits of SHA-256).
//!
//! This file owns the specs (`[[profiles.NAME.secrets]]`), the errors, the [`Context`] and the
//! [`Rotator`] trait; `protocol` runs the steps in order and journals them, `state` keeps the
//! journal; one file per kind (`postgres_password`, `random`, `password_hash`, `s3_access_key`,
//! `http_credential`) implements what differs between kinds.

mod http_credential;
mod password_hash;
mod postgres_password;
mod protocol;
mod random;
mod s3_access_key;
pub mod spec;
mod state;

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::http::HttpCall;
use super::store::{Fields, Slots, StoreSpec};
use super::SecretsError;
use crate::error::{Classify, ErrorClass};
use crate::pg::{DbUrl, PgError};

pub use protocol::{check_plaintext_destination, rollback, run, selected, Outcome, Selection};
pub use spec::RotateSpec;
pub use state::{state_file, status, Progress, Revoke, SecretState, Standing, State, Step};

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

    /// The one place a kind is mapped to its behaviour.
    fn rotator(self) -> &'static dyn Rotator {
        match self {
            Kind::PostgresPassword => &postgres_password::PostgresPassword,
            Kind::Random => &random::Random,
            Kind::PasswordHash => &password_hash::PasswordHash,
            Kind::S3AccessKey => &s3_access_key::S3AccessKey,
            Kind::HttpCredential => &http_credential::HttpCredential,
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
    /// The admin connection is not a PostgreSQL URL (exit 2).
    #[error(transparent)]
    AdminUrl(PgError),
    // A setting of one `[[profiles.NAME.secrets]]` entry that cannot work (exit 2).
    /// A setting the entry's kind needs is missing; `what` names it, with what it is for.
    #[error("secrets `{name}`: kind {} needs {what}", kind.as_str())]
    KindNeeds { name: String, kind: Kind, what: &'static str },
    /// A setting given for a kind it does not apply to.
    #[error("secrets `{name}`: {setting} applies to kind {} only", kind.as_str())]
    NotForKind { name: String, setting: &'static str, kind: Kind },
    #[error("secrets `{name}`: {key} `{text}`: {error} (use e.g. 90d or 1h)")]
    Duration { name: String, key: &'static str, text: String, error: humantime::DurationError },
    #[error("secrets `{name}`: {error}")]
    Store { name: String, error: crate::secrets::store::StoreSpecError },
    #[error("secrets `{name}`: {error}")]
    Role { name: String, error: crate::provision::UnsafeIdentifier },
    /// One of the rules only one kind or one setting has (names, URL forms, lengths): `message`
    /// says which, and how to fix it.
    #[error("secrets `{name}`: {message}")]
    Spec { name: String, message: String },
    /// A configured HTTP call of an http-credential secret that cannot work (exit 2).
    #[error("secrets `{name}`: {source}")]
    Call {
        name: String,
        #[source]
        source: super::http::CallError,
    },
    #[error("secrets `{name}` is declared twice")]
    Duplicate { name: String },
    #[error("profile '{profile}' declares no secrets; add [[profiles.{profile}.secrets]] entries to opsbook.toml")]
    NoSecrets { profile: String },
    #[error("no secret named `{name}` in profile '{profile}'")]
    UnknownSecret { name: String, profile: String },
    /// Password-hash secrets whose one-time plaintext would land in a log (exit 2).
    #[error(
        "{} (kind password-hash) has no plaintext_file and stderr is not a terminal: the one-time plaintext \
         would land in a log. Set plaintext_file = \"PATH\" in its [[profiles.{profile}.secrets]] entry (written \
         with mode 0600), or run on a terminal; nothing was rotated",
        names.join(", ")
    )]
    NoPlaintextFile { names: Vec<String>, profile: String },
    #[error("rotation state {} is unreadable: {source}", path.display())]
    StateUnreadable {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// `what` is "password-hash" or "single-user password": the old value is gone.
    #[error("{name}: a {what} rotation cannot be undone (the old value is gone); rotate again instead")]
    Irreversible { name: String, what: &'static str },
    #[error(
        "{name} has no previous value in {store} (revoked after its grace period, or never rotated): nothing to roll \
         back to"
    )]
    NoPrevious { name: String, store: String },
    /// A rollback's previous login was re-enabled but cannot log in.
    #[error("the previous login does not work: {message}")]
    PreviousLogin { name: String, message: String },
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// A call to the target system outside a rotation's steps failed (a rollback re-enabling the
    /// previous login); its class decides the exit code (3 when the target is unreachable).
    #[error("{name}: {}", error.message)]
    Target { name: String, error: StepError },
}

impl Classify for RotateError {
    fn class(&self) -> ErrorClass {
        match self {
            RotateError::AdminUrl(_)
            | RotateError::KindNeeds { .. }
            | RotateError::NotForKind { .. }
            | RotateError::Duration { .. }
            | RotateError::Store { .. }
            | RotateError::Role { .. }
            | RotateError::Spec { .. }
            | RotateError::Call { .. }
            | RotateError::Duplicate { .. }
            | RotateError::NoSecrets { .. }
            | RotateError::UnknownSecret { .. }
            | RotateError::NoPlaintextFile { .. } => ErrorClass::Usage,
            RotateError::Secrets(e) => e.class(),
            RotateError::Lock(e) => e.class(),
            RotateError::StateUnreadable { .. }
            | RotateError::Irreversible { .. }
            | RotateError::NoPrevious { .. }
            | RotateError::PreviousLogin { .. } => ErrorClass::Failed,
            RotateError::Target { error, .. } => error.class,
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

    /// An error of another kind, with its class.
    fn classified(e: &(impl Classify + std::fmt::Display)) -> Self {
        StepError { class: e.class(), message: e.to_string() }
    }

    /// The same error, its message prefixed with the step or operation.
    fn context(self, what: &str) -> Self {
        StepError { message: format!("{what}: {}", self.message), ..self }
    }
}

impl From<super::http::CallError> for StepError {
    fn from(e: super::http::CallError) -> Self {
        StepError::failed(e.to_string())
    }
}

impl From<super::keys::KeyError> for StepError {
    fn from(e: super::keys::KeyError) -> Self {
        StepError::failed(e.to_string())
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

/// First 8 hex digits of SHA-256: enough to tell values apart, useless to an attacker.
pub fn fingerprint(value: &str) -> String {
    hex::encode(&Sha256::digest(value.as_bytes())[..4])
}

fn parse_duration(key: &'static str, name: &str, raw: &Option<String>) -> Result<Option<Duration>, RotateError> {
    raw.as_deref()
        .map(|r| {
            humantime::parse_duration(r.trim()).map_err(|error| RotateError::Duration {
                name: name.to_string(),
                key,
                text: r.to_string(),
                error,
            })
        })
        .transpose()
}

/// A pending step of a [`Rotator`]: boxed, so the protocol holds every kind as `&dyn Rotator`
/// and is compiled once rather than once per kind; Send, as a runbook action's future must be.
type StepFuture<'a, T, E = StepError> = BoxFuture<'a, Result<T, E>>;

/// What differs between kinds of secret. The protocol calls these in the order of the steps and
/// journals in between; nothing here touches the journal or the store's slots, except reading
/// them. The defaults suit a value with no target system (nothing to set, undo or revoke).
trait Rotator: Sync {
    /// The settings only this kind checks; the ones every kind shares are checked already.
    fn validate(&self, spec: &SecretSpec, admin: bool) -> Result<(), RotateError>;

    /// The store key of the credential's id when id_name is not set.
    fn default_id_field(&self, _spec: &SecretSpec) -> Option<String> {
        None
    }

    /// create: the pending value (created at the provider, for kinds that have one), and a
    /// one-time plaintext for the terminal.
    fn create<'a>(
        &'a self,
        spec: &'a SecretSpec,
        current: Option<&'a Fields>,
        store: &'a Slots,
    ) -> StepFuture<'a, (Fields, Option<String>)>;

    /// set: applies the pending value to the target system.
    fn set<'a>(&'a self, _ctx: &'a Context, _spec: &'a SecretSpec, _pending: &'a Fields) -> StepFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// test: proves the pending value works.
    fn test<'a>(&'a self, spec: &'a SecretSpec, pending: &'a Fields, current: Option<&'a Fields>)
        -> StepFuture<'a, ()>;

    /// Undoes `set` (or the creation) after a failed test: the old credential keeps working.
    fn roll_back<'a>(
        &'a self,
        _ctx: &'a Context,
        _spec: &'a SecretSpec,
        _pending: &'a Fields,
        _current: Option<&'a Fields>,
    ) -> StepFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// The new credential is live at the provider from the moment it is created, so a failed
    /// undo leaves something behind worth reporting.
    fn live_when_created(&self) -> bool {
        false
    }

    /// What this kind's rotation is called when finishing destroys the old value (nothing to
    /// keep as previous, nothing to roll back to); None when the old value survives.
    fn irreversible(&self, _spec: &SecretSpec) -> Option<&'static str> {
        None
    }

    /// What to revoke once `old` has been replaced by `new` ("login …", "key …", "credential …"
    /// or "value …", as the state file keeps it); None: nothing.
    fn revocation(&self, _spec: &SecretSpec, _old: &Fields, _new: &Fields) -> Option<String> {
        None
    }

    /// Revokes `what`, as [`Rotator::revocation`] wrote it, at the target; the protocol drops the
    /// store's previous value afterwards.
    fn revoke<'a>(
        &'a self,
        _ctx: &'a Context,
        _spec: &'a SecretSpec,
        _what: &'a str,
        _store: &'a Slots,
    ) -> StepFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// rollback: makes the previous value work at the target again, before the store puts it
    /// back as current.
    fn restore<'a>(
        &'a self,
        _ctx: &'a Context,
        _spec: &'a SecretSpec,
        _previous: &'a Fields,
    ) -> StepFuture<'a, (), RotateError> {
        Box::pin(async { Ok(()) })
    }
}

impl SecretSpec {
    fn rotator(&self) -> &'static dyn Rotator {
        self.kind.rotator()
    }

    /// An error about this entry's settings.
    fn invalid(&self, message: impl Into<String>) -> RotateError {
        RotateError::Spec { name: self.name.clone(), message: message.into() }
    }

    /// The entry's kind needs a setting it lacks; `what` names it.
    fn needs(&self, what: &'static str) -> RotateError {
        RotateError::KindNeeds { name: self.name.clone(), kind: self.kind, what }
    }

    fn validate(&self, admin: bool) -> Result<(), RotateError> {
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(self.invalid("name must be an environment variable name"));
        }
        StoreSpec::parse(&self.store).map_err(|error| RotateError::Store { name: self.name.clone(), error })?;
        if let Some(id) = &self.id_name {
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || *id == self.name {
                return Err(
                    self.invalid(format!("id_name `{id}` must be an environment variable name other than name"))
                );
            }
        }
        let only = |setting: &'static str, set: bool, kind: Kind| -> Result<(), RotateError> {
            if set && self.kind != kind {
                return Err(RotateError::NotForKind { name: self.name.clone(), setting, kind });
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
        self.rotator().validate(self, admin)?;
        if self.strategy == Strategy::Alternating && self.kind != Kind::PostgresPassword {
            return Err(self.invalid("strategy alternating applies to postgres-password only"));
        }
        Ok(())
    }

    /// The store key of the credential's id, for kinds that have one.
    fn id_field(&self) -> Option<String> {
        self.id_name.clone().or_else(|| self.rotator().default_id_field(self))
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

    fn primary<'a>(&self, value: &'a Fields) -> &'a str {
        value.get(&self.name).map(String::as_str).unwrap_or_default()
    }

    fn id_of<'a>(&self, value: &'a Fields) -> Option<&'a str> {
        self.id_field().and_then(|f| value.get(&f)).map(String::as_str)
    }
}

/// Everything a rotation needs from the configuration.
#[derive(Debug)]
pub struct Context {
    pub profile: String,
    pub specs: Vec<SecretSpec>,
    pub admin: Option<DbUrl>,
}

impl Context {
    /// Checks every secret's settings (`admin`: whether there is an admin connection) and that
    /// no name is declared twice.
    pub fn new(profile: String, specs: Vec<SecretSpec>, admin: Option<DbUrl>) -> Result<Context, RotateError> {
        if specs.is_empty() {
            return Err(RotateError::NoSecrets { profile });
        }
        let mut seen = std::collections::HashSet::new();
        for spec in &specs {
            spec.validate(admin.is_some())?;
            if !seen.insert(&spec.name) {
                return Err(RotateError::Duplicate { name: spec.name.clone() });
            }
        }
        Ok(Context { profile, specs, admin })
    }

    fn spec(&self, name: &str) -> Result<&SecretSpec, RotateError> {
        self.specs
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| RotateError::UnknownSecret { name: name.to_string(), profile: self.profile.clone() })
    }
}
