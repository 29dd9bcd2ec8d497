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

use super::{EnvFile, SecretStore, SecretsError};
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
    /// `dotenv:PATH`.
    pub store: String,
    /// Rotate when the current value is older than this (e.g. "90d").
    pub max_age: Option<String>,
    /// How long the previous credential stays valid after a rotation (e.g. "1h").
    pub grace: Option<String>,
    /// random: bits of entropy [default: 256].
    pub bits: Option<u32>,
    /// password-hash: where the one-time plaintext goes (mode 0600).
    pub plaintext_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    PostgresPassword,
    Random,
    PasswordHash,
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
}

impl Classify for RotateError {
    fn class(&self) -> ErrorClass {
        match self {
            RotateError::Config(_) => ErrorClass::Usage,
            RotateError::Secrets(e) => e.class(),
            RotateError::Lock(e) => e.class(),
            RotateError::ConfigFile(e) => e.class(),
            RotateError::Failed(_) => ErrorClass::Failed,
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
        if !self.store.starts_with("dotenv:") {
            return bad(format!("store `{}` is not supported; use dotenv:PATH", self.store));
        }
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
        }
        if self.strategy == Strategy::Alternating && self.kind != Kind::PostgresPassword {
            return bad("strategy alternating applies to postgres-password only".into());
        }
        Ok(())
    }

    fn store_path(&self) -> PathBuf {
        PathBuf::from(self.store.trim_start_matches("dotenv:"))
    }

    fn pending_key(&self) -> String {
        format!("{}_PENDING", self.name)
    }

    fn previous_key(&self) -> String {
        format!("{}_PREVIOUS", self.name)
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
    crate::notify::write_atomic(&path, &bytes, Some(0o600)).map_err(|source| SecretsError::Io {
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
    Ok(Context { profile: config.profile_name.clone(), specs, admin })
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

pub fn status(ctx: &Context) -> Result<Vec<Standing>, RotateError> {
    let state = load_state(&ctx.profile)?;
    let now = Utc::now();
    let mut out = Vec::new();
    for spec in &ctx.specs {
        let store = EnvFile::load(&spec.store_path())?;
        let value = store.get(&spec.name);
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

async fn admin_conn(ctx: &Context) -> Result<(sqlx::PgConnection, DbUrl), String> {
    let admin = ctx.admin.clone().ok_or("no admin database URL")?;
    let conn = pg::connect(&admin).await.map_err(|e| e.to_string())?;
    Ok((conn, admin))
}

async fn admin_exec(ctx: &Context, sql: &str) -> Result<(), String> {
    let (mut conn, _) = admin_conn(ctx).await?;
    conn.execute(sqlx::raw_sql(sql)).await.map(drop).map_err(|e| pg::query::describe_sql_error(&e))
}

async fn login_works(url: &str) -> Result<(), String> {
    let url = DbUrl::parse(url).map_err(|e| e.to_string())?;
    let mut conn = pg::conn::connect_timeout(&url, Duration::from_secs(10)).await.map_err(|e| e.to_string())?;
    sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut conn).await.map(drop).map_err(|e| e.to_string())
}

/// The pending value for a spec: a new password URL, random key or argon2id hash.
fn new_value(spec: &SecretSpec, current: Option<&str>) -> Result<(String, Option<String>), String> {
    match spec.kind {
        Kind::Random => {
            let bits = spec.bits.unwrap_or(256) as usize;
            Ok((super::hex_key(bits.div_ceil(8)), None))
        }
        Kind::PasswordHash => {
            let plaintext = super::password(24);
            let hash = super::argon2id(&plaintext).map_err(|e| e.to_string())?;
            Ok((hash, Some(plaintext)))
        }
        Kind::PostgresPassword => {
            let current = current.ok_or(format!(
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
            Ok((url.with_credentials(&user, &password).expose().to_string(), None))
        }
    }
}

/// Applies the pending value to the target system.
async fn set_target(ctx: &Context, spec: &SecretSpec, pending: &str) -> Result<(), String> {
    if spec.kind != Kind::PostgresPassword {
        return Ok(());
    }
    let url = DbUrl::parse(pending).map_err(|e| e.to_string())?;
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

/// Undoes `set_target` after a failed test: the old credential keeps working.
async fn roll_back_target(
    ctx: &Context,
    spec: &SecretSpec,
    pending: &str,
    current: Option<&str>,
) -> Result<(), String> {
    if spec.kind != Kind::PostgresPassword {
        return Ok(());
    }
    match spec.strategy {
        Strategy::Alternating => {
            let user = DbUrl::parse(pending).ok().and_then(|u| u.username()).unwrap_or_default();
            admin_exec(ctx, &format!("ALTER ROLE {} NOLOGIN", quote_ident(&user))).await
        }
        Strategy::Single => {
            let old = current.and_then(|c| DbUrl::parse(c).ok()).and_then(|u| u.password()).ok_or("no old password")?;
            let role = spec.role.as_deref().expect("validated");
            let verifier = super::scram_verifier(&old);
            admin_exec(ctx, &format!("ALTER ROLE {} PASSWORD {}", quote_ident(role), quote_literal(&verifier))).await
        }
    }
}

async fn test_value(spec: &SecretSpec, pending: &str) -> Result<(), String> {
    match spec.kind {
        Kind::PostgresPassword => login_works(pending).await,
        Kind::Random => (pending.len() >= 32).then_some(()).ok_or_else(|| "generated value is too short".into()),
        Kind::PasswordHash => {
            pending.starts_with("$argon2id$").then_some(()).ok_or_else(|| "not an argon2id hash".into())
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
        plaintext: None,
    };
    match rotate_steps(ctx, spec, state, &mut outcome).await {
        Ok(()) => outcome.ok = true,
        Err(e) => outcome.error = Some(e),
    }
    outcome
}

async fn rotate_steps(ctx: &Context, spec: &SecretSpec, state: &mut State, out: &mut Outcome) -> Result<(), String> {
    let path = spec.store_path();
    let mut store = EnvFile::load(&path).map_err(|e| e.to_string())?;
    let current = store.get(&spec.name);
    if let Some(c) = &current {
        crate::redact::register(c);
        crate::redact::register_url_password(c);
    }
    out.previous_fingerprint = current.as_deref().map(fingerprint);
    let mut entry = state.secrets.get(&spec.name).cloned().unwrap_or_default();
    let journal = |state: &mut State, entry: &SecretState| -> Result<(), String> {
        state.secrets.insert(spec.name.clone(), entry.clone());
        save_state(&ctx.profile, state).map_err(|e| e.to_string())
    };

    // A crash between writing the store and the journal at finish: the store already holds the
    // pending value as current; only the bookkeeping is left.
    if let (Some(p), None, Some(c)) = (&entry.in_progress, store.get(&spec.pending_key()), &current) {
        if p.pending_fingerprint == fingerprint(c) {
            entry.in_progress = None;
            entry.rotated_at = Some(Utc::now());
            entry.fingerprint = Some(fingerprint(c));
            journal(state, &entry)?;
            out.steps.push("finished (recorded after a crash)".into());
            out.fingerprint = Some(fingerprint(c));
            return Ok(());
        }
    }

    // create: the pending value goes to the store first, so nothing is ever known only in memory.
    let resumed = entry.in_progress.clone().filter(|_| store.get(&spec.pending_key()).is_some());
    let pending = match &resumed {
        Some(p) => {
            out.steps.push(format!("resumed after {:?}", p.step).to_lowercase());
            store.get(&spec.pending_key()).expect("checked")
        }
        None => {
            let (value, plaintext) = new_value(spec, current.as_deref())?;
            if let Some(plaintext) = plaintext {
                match &spec.plaintext_file {
                    Some(file) => crate::notify::write_atomic(file, format!("{plaintext}\n").as_bytes(), Some(0o600))
                        .map_err(|e| format!("write {}: {e}", file.display()))?,
                    None => out.plaintext = Some(plaintext),
                }
            }
            store.set(&spec.pending_key(), &value);
            store.save().map_err(|e| e.to_string())?;
            entry.in_progress =
                Some(Progress { step: Step::Created, pending_fingerprint: fingerprint(&value), started: Utc::now() });
            journal(state, &entry)?;
            out.steps.push("created".into());
            crash_point("created");
            value
        }
    };
    crate::redact::register(&pending);
    crate::redact::register_url_password(&pending);
    let reached = entry.in_progress.as_ref().map(|p| p.step).unwrap_or(Step::Created);

    if reached < Step::Set {
        set_target(ctx, spec, &pending).await.map_err(|e| format!("set: {e}"))?;
        entry.in_progress.as_mut().expect("in progress").step = Step::Set;
        journal(state, &entry)?;
        out.steps.push("set".into());
        crash_point("set");
    }
    if reached < Step::Tested {
        if let Err(e) = test_value(spec, &pending).await {
            let rollback = roll_back_target(ctx, spec, &pending, current.as_deref()).await;
            store.remove(&spec.pending_key());
            let _ = store.save();
            entry.in_progress = None;
            journal(state, &entry)?;
            return Err(match rollback {
                Ok(()) => format!("test failed ({e}); rolled back, the current value is unchanged"),
                Err(r) => format!("test failed ({e}); ROLLBACK FAILED ({r}): check the target by hand"),
            });
        }
        entry.in_progress.as_mut().expect("in progress").step = Step::Tested;
        journal(state, &entry)?;
        out.steps.push("tested".into());
        crash_point("tested");
    }

    // finish: pending becomes current, current becomes previous (one atomic file replace).
    let grace = parse_duration("grace", &spec.name, &spec.grace).map_err(|e| e.to_string())?.unwrap_or_default();
    if let Some(old) = &current {
        // A single-user password's old value is dead once set: nothing to keep.
        let keep = spec.kind == Kind::Random || spec.strategy == Strategy::Alternating;
        if keep && *old != pending {
            store.set(&spec.previous_key(), old);
        }
    }
    store.set(&spec.name, &pending);
    store.remove(&spec.pending_key());
    store.save().map_err(|e| e.to_string())?;
    crash_point("stored");
    let revoke_what = match (spec.kind, spec.strategy, &current) {
        (Kind::PostgresPassword, Strategy::Alternating, Some(old)) => DbUrl::parse(old)
            .ok()
            .and_then(|u| u.username())
            .filter(|old_user| DbUrl::parse(&pending).ok().and_then(|p| p.username()).as_ref() != Some(old_user))
            .map(|u| format!("login {u}")),
        (Kind::Random, _, Some(_)) if spec.grace.is_some() => Some(format!("value {}", spec.previous_key())),
        _ => None,
    };
    entry.revoke = revoke_what
        .map(|what| Revoke { what, after: Utc::now() + chrono::Duration::from_std(grace).unwrap_or_default() });
    entry.rotated_at = Some(Utc::now());
    entry.fingerprint = Some(fingerprint(&pending));
    entry.in_progress = None;
    journal(state, &entry)?;
    out.steps.push("finished".into());
    out.fingerprint = Some(fingerprint(&pending));
    crash_point("finished");
    if grace.is_zero() {
        revoke_due(ctx, spec, state, out).await?;
    }
    Ok(())
}

/// Revokes the previous login or value once its grace period is over.
async fn revoke_due(ctx: &Context, spec: &SecretSpec, state: &mut State, out: &mut Outcome) -> Result<(), String> {
    let Some(entry) = state.secrets.get(&spec.name).cloned() else { return Ok(()) };
    let Some(revoke) = entry.revoke.clone() else { return Ok(()) };
    if revoke.after > Utc::now() {
        return Ok(());
    }
    if let Some(login) = revoke.what.strip_prefix("login ") {
        admin_exec(ctx, &format!("ALTER ROLE {} NOLOGIN", quote_ident(login)))
            .await
            .map_err(|e| format!("revoke: {e}"))?;
    } else {
        let mut store = EnvFile::load(&spec.store_path()).map_err(|e| e.to_string())?;
        store.remove(&spec.previous_key());
        store.save().map_err(|e| e.to_string())?;
    }
    let mut entry = entry;
    entry.revoke = None;
    state.secrets.insert(spec.name.clone(), entry);
    save_state(&ctx.profile, state).map_err(|e| e.to_string())?;
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

pub async fn run(ctx: &Context, selection: Selection) -> Result<Vec<Outcome>, RotateError> {
    let _lock = crate::lock::try_lock(
        "rotate-secrets",
        &format!("profile {}", ctx.profile),
        &format!("rotate-secrets run (profile {})", ctx.profile),
    )?;
    let standings = status(ctx)?;
    let mut state = load_state(&ctx.profile)?;
    let chosen: Vec<&SecretSpec> = match &selection {
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
    };
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
                plaintext: None,
            };
            if let Err(e) = revoke_due(ctx, spec, &mut state, &mut o).await {
                o.ok = false;
                o.error = Some(e);
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
    let mut store = EnvFile::load(&spec.store_path())?;
    let previous = store.get(&spec.previous_key()).ok_or_else(|| {
        RotateError::Failed(format!(
            "{name} has no previous value ({} is not in {}): nothing to roll back to{}",
            spec.previous_key(),
            spec.store,
            if spec.strategy == Strategy::Single && spec.kind == Kind::PostgresPassword {
                "; a single-user password rotation cannot be undone, rotate again instead"
            } else {
                ""
            }
        ))
    })?;
    if spec.kind == Kind::PostgresPassword && spec.strategy == Strategy::Single {
        return Err(RotateError::Failed(format!(
            "{name}: a single-user password rotation cannot be undone (the old password is gone); rotate again instead"
        )));
    }
    let current = store.get(&spec.name);
    if spec.kind == Kind::PostgresPassword {
        let user = DbUrl::parse(&previous).ok().and_then(|u| u.username()).unwrap_or_default();
        admin_exec(ctx, &format!("ALTER ROLE {} LOGIN", quote_ident(&user))).await.map_err(RotateError::Failed)?;
        login_works(&previous)
            .await
            .map_err(|e| RotateError::Failed(format!("the previous login does not work: {e}")))?;
    }
    store.set(&spec.name, &previous);
    match &current {
        Some(c) => store.set(&spec.previous_key(), c),
        None => store.remove(&spec.previous_key()),
    }
    store.save()?;
    let mut state = load_state(&ctx.profile)?;
    let entry = state.secrets.entry(spec.name.clone()).or_default();
    entry.fingerprint = Some(fingerprint(&previous));
    entry.revoke = None;
    save_state(&ctx.profile, &state)?;
    Ok(Outcome {
        name: name.to_string(),
        ok: true,
        steps: vec!["rolled back".into()],
        fingerprint: Some(fingerprint(&previous)),
        previous_fingerprint: current.as_deref().map(fingerprint),
        error: None,
        plaintext: None,
    })
}

/// Where the rotation state of a profile is kept (for messages).
pub fn state_file(profile: &str) -> PathBuf {
    state_path(profile)
}
