//! Runbook actions: each is a typed input (`Input`, deserialized from the step's `with` table
//! after interpolation) and one `run` function that calls the same library code as the matching
//! subcommand. With `ctx.dry_run` an action only plans: it reads, never writes or sends.

pub mod backup;
pub mod backup_objects;
pub mod control;
pub mod dlq_replay;
pub mod http;
pub mod migrate;
pub mod notify;
pub mod pitr;
pub mod promote_check;
pub mod provision;
pub mod restore;
pub mod restore_drill;
pub mod rotate_secrets;
pub mod shell;
pub mod sql;
pub mod wait;

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::error::{Classify, ErrorClass};
use crate::report::Reporter;

/// What a step produced, readable by later steps as `${steps.ID.outputs.KEY}`.
pub type Outputs = Map<String, Value>;

/// Questions a step may need to ask a person. The command layer implements it on the terminal;
/// library code never prompts by itself. Methods block; the engine calls them off the async workers.
pub trait Interaction: Send + Sync {
    /// Whether a person can answer (a terminal, and not --no-input).
    fn can_prompt(&self) -> bool;
    /// Yes/no, default no.
    fn confirm(&self, question: &str) -> bool;
    /// The person must type `expected` exactly.
    fn type_name(&self, prompt: &str, expected: &str) -> bool;
    /// Free text (hidden when `secret`); None when declined or empty.
    fn ask(&self, prompt: &str, secret: bool) -> Option<String>;
}

/// Everything an action may use besides its input.
pub struct ActionCtx<'a> {
    pub config: &'a Config,
    pub dry_run: bool,
    /// --yes was given.
    pub assume_yes: bool,
    /// Step ids acknowledged with --ack (manual steps without a terminal).
    pub acks: &'a [String],
    pub reporter: &'a dyn Reporter,
    pub interaction: &'a dyn Interaction,
    /// Directory of the runbook file: relative paths in inputs resolve against it.
    pub base_dir: PathBuf,
    pub step_id: &'a str,
    pub run_id: &'a str,
}

impl ActionCtx<'_> {
    pub fn resolve_path(&self, path: &str) -> PathBuf {
        let p = PathBuf::from(path);
        if p.is_absolute() {
            p
        } else {
            self.base_dir.join(p)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    // The step's inputs are wrong (exit 2).
    /// The `with` table does not fit the action's input type.
    #[error("invalid `with` for action {action}: {error}")]
    With { action: String, error: serde_json::Error },
    #[error("unknown action `{action}`")]
    UnknownAction { action: String },
    /// Two inputs that exclude each other were both given.
    #[error("give `{first}` or `{second}`, not both")]
    Both { first: &'static str, second: &'static str },
    /// None of the inputs the action needs one of; `choices` names them with what each is.
    #[error("give {choices}")]
    Neither { choices: &'static str },
    /// An input that must not be empty is.
    #[error("{input} is empty")]
    Empty { input: &'static str },
    #[error("argv is empty: give the program and its arguments")]
    EmptyArgv,
    /// An input given with a mode it does not apply to.
    #[error("`{input}` only applies to {modes}")]
    NotApplicable { input: &'static str, modes: &'static str },
    /// A file an input names cannot be read.
    #[error("{input}: cannot read {}: {source}", path.display())]
    ReadFile {
        input: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("file {} holds no SQL", path.display())]
    NoSql { path: PathBuf },
    #[error("env: invalid variable name `{name}`")]
    EnvName { name: String },
    /// `url` is masked.
    #[error("{input}: invalid URL `{url}`: {error}")]
    Url { input: String, url: String, error: url::ParseError },
    /// `url` is masked.
    #[error("{input}: URL `{url}` is not http:// or https://")]
    UrlScheme { input: String, url: String },
    #[error("{input}: invalid duration `{text}` ({error}); use e.g. 500ms, 30s, 5m, 2h")]
    Duration { input: String, text: String, error: humantime::DurationError },
    #[error("invalid HTTP method `{method}`")]
    Method { method: String },
    #[error("invalid header name `{name}`")]
    HeaderName { name: String },
    #[error("invalid value for header `{name}`")]
    HeaderValue { name: String },
    #[error("expect_header: invalid header name `{name}`")]
    ExpectHeaderName { name: String },
    #[error("bearer_token_env: environment variable {var} is not set")]
    TokenUnset { var: String },
    #[error("bearer_token_env: {var} holds characters not allowed in a header")]
    TokenNotHeader { var: String },
    /// A `${…}` reference in the step's `when`, `target` or `with` that cannot be rendered.
    #[error("step `{step}`: {error}")]
    Interpolation { step: String, error: super::interp::InterpError },
    #[error(transparent)]
    Identity(#[from] crate::backup::codec::IdentityError),
    /// `provision` apply would create the admin password and the profile gives no file for it.
    #[error(
        "provision apply in a runbook needs admin_password_file in the profile's [provision] table: the one-time \
         admin password has nowhere else to go"
    )]
    NoAdminPasswordFile,
    /// `rotate-secrets` would rotate a password hash whose plaintext has no file to go to.
    #[error(
        "secret {secret} is a password hash without plaintext_file: in a runbook the one-time plaintext has nowhere to go"
    )]
    NoPlaintextFile { secret: String },

    // The action ran and failed, or its expectation did not hold (exit 1).
    #[error("cwd: {} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    /// `command` is the command as shown in messages.
    #[error("cannot run {command}: {error}")]
    Spawn { command: String, error: std::io::Error },
    #[error("waiting for {command} failed: {error}")]
    WaitChild { command: String, error: std::io::Error },
    /// The command ended with a code the step does not expect (exit 3 when a shell could not
    /// find the command: 127). `stderr_note` quotes the tail of its stderr, masked.
    #[error("{command} {} (expected {expected}){stderr_note}", shell::how_it_ended(status))]
    Exited { command: String, status: std::process::ExitStatus, expected: String, stderr_note: String, via_shell: bool },
    #[error("cannot set up the HTTP client: {0}")]
    Client(reqwest::Error),
    /// `request` is the method and masked URL; `body_note` quotes the start of the body, masked.
    #[error("{request}: expected status {expected}, got {status}{body_note}")]
    Status { request: String, expected: String, status: u16, body_note: String },
    /// `got` is the body excerpt, quoted and masked.
    #[error("{request}: expected the body to contain `{needle}`, got {got}")]
    BodyLacks { request: String, needle: String, got: String },
    #[error("{request}: expected header {name} containing `{want}`, but the response has no {name} header")]
    HeaderMissing { request: String, name: String, want: String },
    #[error("{request}: expected header {name} containing `{want}`, got `{got}`")]
    HeaderLacks { request: String, name: String, want: String, got: String },
    #[error("{request}: the webhook answered {status}{body_note}")]
    Webhook { request: String, status: reqwest::StatusCode, body_note: String },
    /// The SQL failed (exit 1), or the server went away during it (exit 3). `database` is masked.
    #[error("{what} failed on {database}: {}", crate::pg::query::describe_sql_error(error))]
    Sql { what: String, database: String, error: sqlx::Error },
    /// The SQL ran; its result is not the one `expect` asks for.
    #[error("{what} on {database}: {mismatch}")]
    Expectation { what: String, database: String, mismatch: sql::Mismatch },
    /// A `wait` query that cannot succeed by waiting (a syntax error). `query` is its summary.
    #[error("`{query}` on {database}: {}", crate::pg::query::describe_sql_error(error))]
    PollQuery { query: String, database: String, error: sqlx::Error },
    #[error(
        "gave up after {} ({attempts} {}): {what} did not {goal}; last: {last}",
        humantime::format_duration(*timeout),
        if *attempts == 1 { "attempt" } else { "attempts" }
    )]
    GaveUp { what: String, goal: &'static str, timeout: std::time::Duration, attempts: u64, last: String },
    /// Ctrl-C during a `wait`. `elapsed` is how long it had waited, as humantime text.
    #[error("interrupted after {elapsed} while {what}")]
    WaitInterrupted { what: String, elapsed: String },
    /// Each problem is `VERSION DESCRIPTION (STATE)`.
    #[error("migrations not up to date: {}", problems.join(", "))]
    NotUpToDate { problems: Vec<String> },
    #[error("lint errors: {}", migrate::finding_lines(findings))]
    LintErrors { findings: Vec<crate::migrate::lint::Finding> },
    #[error("dry run of {file} failed (rolled back): {error}")]
    DryRunFailed { file: String, error: String },
    /// Each failed check is `OBJECT CHECK: DETAIL`.
    #[error("backup {set}/{id} failed verification: {}", failed.join("; "))]
    VerifyFailed { set: String, id: String, failed: Vec<String> },
    /// Each failed step is `STEP: DETAIL`.
    #[error("restore drill of {backup_id} failed: {}", failed.join("; "))]
    DrillFailed { backup_id: String, failed: Vec<String> },
    /// The step's `timeout` passed.
    #[error("timed out after {}", humantime::format_duration(*after))]
    TimedOut { after: std::time::Duration },
    /// Ctrl-C dropped an action that does not wind down by itself.
    #[error("interrupted")]
    Stopped,

    // A service it needs is unreachable (exit 3).
    #[error(transparent)]
    Connect(crate::pg::PgError),
    /// No answer, or no answer in time.
    #[error("{request}: {}", http::describe_error(error, *timeout))]
    Request { request: String, error: reqwest::Error, timeout: std::time::Duration },
    #[error("cannot run {command}: program `{program}` not found")]
    ProgramNotFound { command: String, program: String },
    /// `dlq-replay`: the DLQ database went away during the replay; the rest stay for a resume.
    #[error(
        "the DLQ database became unreachable: {delivered} of {planned} dead letters delivered; the rest are still \
         in the DLQ (`opsbook run --resume {run_id}` once it is back)"
    )]
    DeadLetterSourceLost { delivered: u64, planned: u64, run_id: String },

    // A confirmation or acknowledgement is needed and nobody gave it (exit 5).
    #[error("declined: {question}")]
    Declined { question: String },
    #[error("step `{step}` asks \"{question}\" and there is no terminal; pass --yes")]
    NoTerminal { step: String, question: String },
    #[error("manual step `{step}` needs a person: run on a terminal, or acknowledge it with --ack {step}")]
    NeedsPerson { step: String },
    #[error("manual step `{step}` was not confirmed")]
    ManualNotConfirmed { step: String },
    #[error("step `{step}` is destructive and there is no terminal to confirm it; pass --yes")]
    DestructiveNoTerminal { step: String },
    #[error("step `{step}` was not confirmed")]
    NotConfirmed { step: String },
    #[error("stanza {stanza}: {}", problems.join("; "))]
    PitrProblems { stanza: String, problems: Vec<String> },
    #[error("PITR drill to {target} failed: {}", failed.join("; "))]
    PitrDrillFailed { target: String, failed: Vec<String> },
    /// Each failed check is `CHECK: EVIDENCE`.
    #[error("promotion checks failed — {}", failed.join("; "))]
    PromotionFailed { failed: Vec<String> },
    /// A report file the step was asked to write (the promote-check JUnit file).
    #[error("write {}: {source}", path.display())]
    WriteReport {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `dlq-replay` stats: more dead letters than the step allows.
    #[error("the DLQ holds {total} dead letters, more than {max}")]
    TooManyDeadLetters { total: u64, max: u64 },
    /// `dlq-replay`: deliveries failed; `first` is up to three of them as `#ID: ERROR`.
    #[error(
        "{failed} of {planned} dead letters could not be delivered and stay in the DLQ ({})",
        first.join("; ")
    )]
    Undelivered { failed: u64, planned: u64, first: Vec<String> },
    /// `provision` plan with `expect_no_changes`: each pending change is `ACTION RESOURCE`.
    #[error("the environment still differs from the profile: {}", json_list(pending))]
    NotProvisioned { pending: Vec<String> },
    /// `rotate-secrets`: each failure is `SECRET: ERROR`. `unreachable` when a target could not
    /// be reached (exit 3, as for the command).
    #[error("rotation failed for {}", failed.join("; "))]
    RotationFailed { failed: Vec<String>, unreachable: bool },

    // Ctrl-C stopped the action part-way; what it finished is kept (exit 130).
    /// `dlq-replay`: in-flight deliveries finished; `skipped` dead letters were not attempted.
    #[error(
        "interrupted: {delivered} of {planned} dead letters delivered, {failed} failed, {skipped} not attempted and \
         still in the DLQ; `opsbook run --resume {run_id}` replays them"
    )]
    ReplayInterrupted { delivered: u64, planned: u64, failed: u64, skipped: u64, run_id: String },

    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    #[error(transparent)]
    Objects(Box<crate::backup::objects::ObjectsError>),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Pg(#[from] crate::pg::PgError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Migrate(#[from] crate::migrate::MigrateError),
    #[error(transparent)]
    Drill(Box<crate::drill::DrillError>),
    #[error(transparent)]
    Restore(Box<crate::restore::RestoreError>),
    #[error(transparent)]
    Provision(Box<crate::provision::ProvisionError>),
    #[error(transparent)]
    Rotate(Box<crate::secrets::rotate::RotateError>),
    #[error(transparent)]
    Pitr(Box<crate::pitr::PitrError>),
    #[error(transparent)]
    Promote(Box<crate::promote::PromoteError>),
    #[error(transparent)]
    Dlq(Box<crate::dlq::DlqError>),
}

/// A list as the step's outputs show it (`["create role app", …]`).
fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_default()
}

impl From<crate::promote::PromoteError> for ActionError {
    fn from(e: crate::promote::PromoteError) -> Self {
        ActionError::Promote(Box::new(e))
    }
}

impl From<crate::dlq::DlqError> for ActionError {
    fn from(e: crate::dlq::DlqError) -> Self {
        ActionError::Dlq(Box::new(e))
    }
}

impl From<crate::pitr::PitrError> for ActionError {
    fn from(e: crate::pitr::PitrError) -> Self {
        ActionError::Pitr(Box::new(e))
    }
}

impl Classify for ActionError {
    fn class(&self) -> ErrorClass {
        use ActionError as E;
        match self {
            E::With { .. }
            | E::UnknownAction { .. }
            | E::Both { .. }
            | E::Neither { .. }
            | E::Empty { .. }
            | E::EmptyArgv
            | E::NotApplicable { .. }
            | E::ReadFile { .. }
            | E::NoSql { .. }
            | E::EnvName { .. }
            | E::Url { .. }
            | E::UrlScheme { .. }
            | E::Duration { .. }
            | E::Method { .. }
            | E::HeaderName { .. }
            | E::HeaderValue { .. }
            | E::ExpectHeaderName { .. }
            | E::TokenUnset { .. }
            | E::TokenNotHeader { .. }
            | E::Interpolation { .. }
            | E::Identity(_)
            | E::NoAdminPasswordFile
            | E::NoPlaintextFile { .. } => ErrorClass::Usage,
            E::Sql { error, .. } if sql::is_connection_error(error) => ErrorClass::Unavailable,
            // A shell exits 127 when it cannot find the command.
            E::Exited { status, via_shell: true, .. } if status.code() == Some(127) => ErrorClass::Unavailable,
            E::RotationFailed { unreachable: true, .. } => ErrorClass::Unavailable,
            E::NotADirectory { .. }
            | E::Spawn { .. }
            | E::WaitChild { .. }
            | E::Exited { .. }
            | E::Client(_)
            | E::Status { .. }
            | E::BodyLacks { .. }
            | E::HeaderMissing { .. }
            | E::HeaderLacks { .. }
            | E::Webhook { .. }
            | E::Sql { .. }
            | E::Expectation { .. }
            | E::PollQuery { .. }
            | E::GaveUp { .. }
            | E::WaitInterrupted { .. }
            | E::NotUpToDate { .. }
            | E::LintErrors { .. }
            | E::DryRunFailed { .. }
            | E::VerifyFailed { .. }
            | E::DrillFailed { .. }
            | E::PitrProblems { .. }
            | E::PitrDrillFailed { .. }
            | E::TimedOut { .. }
            | E::PromotionFailed { .. }
            | E::WriteReport { .. }
            | E::TooManyDeadLetters { .. }
            | E::Undelivered { .. }
            | E::NotProvisioned { .. }
            | E::RotationFailed { .. }
            | E::Stopped => ErrorClass::Failed,
            E::Connect(_) | E::Request { .. } | E::ProgramNotFound { .. } | E::DeadLetterSourceLost { .. } => {
                ErrorClass::Unavailable
            }
            E::Declined { .. }
            | E::NoTerminal { .. }
            | E::NeedsPerson { .. }
            | E::ManualNotConfirmed { .. }
            | E::DestructiveNoTerminal { .. }
            | E::NotConfirmed { .. } => ErrorClass::ConfirmationRequired,
            E::ReplayInterrupted { .. } => ErrorClass::Interrupted,
            E::Backup(e) => e.class(),
            E::Objects(e) => e.class(),
            E::Store(e) => e.class(),
            E::Pg(e) => e.class(),
            E::Config(e) => e.class(),
            E::Migrate(e) => e.class(),
            E::Drill(e) => e.class(),
            E::Restore(e) => e.class(),
            E::Provision(e) => e.class(),
            E::Rotate(e) => e.class(),
            E::Promote(e) => e.class(),
            E::Dlq(e) => e.class(),
            E::Pitr(e) => e.class(),
        }
    }
}

/// Actions that watch Ctrl-C themselves and wind down cleanly: a replay lets in-flight
/// deliveries finish and records them, a backup aborts its upload, a drill removes its scratch
/// target, a restore drops its partial database, an object copy journals what it copied.
/// Dropping them mid-way would lose that work (a delivered dead letter left in the table is sent
/// again), so the engine lets them return.
/// Everything else is dropped on Ctrl-C (a shell step's process group is killed).
pub fn winds_down_on_interrupt(action: &str) -> bool {
    matches!(action, "dlq-replay" | "backup" | "backup-objects" | "restore" | "restore-drill" | "wait")
}

/// Actions a resume may run again when a later step needs an output of theirs that the journal
/// masks: running them twice does no harm (they converge, or only read).
pub fn repeatable_on_resume(action: &str) -> bool {
    matches!(
        action,
        "sandbox"
            | "provision"
            | "migrate"
            | "backup-list"
            | "backup-verify"
            | "promote-check"
            | "wait"
            | "pitr-status"
    )
}

/// Deserializes an action's input, naming the action on error.
pub fn input<T: DeserializeOwned>(action: &str, with: Value) -> Result<T, ActionError> {
    serde_json::from_value(with).map_err(|error| ActionError::With { action: action.to_string(), error })
}

/// Field names and required fields of an input type, from its JSON Schema.
pub fn fields_of<T: JsonSchema>() -> (Vec<String>, Vec<String>) {
    let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
    let names = schema["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default();
    let required = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    (names, required)
}

macro_rules! actions {
    ($($name:literal => $module:ident),* $(,)?) => {
        /// Every action a step may name.
        pub const ACTIONS: &[&str] = &[$($name),*];

        /// Allowed and required `with` keys of an action, or None for an unknown action.
        pub fn fields(action: &str) -> Option<(Vec<String>, Vec<String>)> {
            match action {
                $($name => Some(fields_of::<$module::Input>()),)*
                _ => None,
            }
        }

        /// Checks literal inputs (a `with` table without references) against the action's type;
        /// None for an unknown action.
        pub fn check_literal(action: &str, with: Value) -> Option<Result<(), serde_json::Error>> {
            match action {
                $($name => Some(serde_json::from_value::<$module::Input>(with).map(drop)),)*
                _ => None,
            }
        }

        /// JSON Schema of every action's input, keyed by action name.
        pub fn input_schemas() -> serde_json::Value {
            let mut map = Map::new();
            $(map.insert($name.to_string(), serde_json::to_value(schemars::schema_for!($module::Input)).unwrap_or_default());)*
            Value::Object(map)
        }

        /// Runs (or, in a dry run, plans) one action.
        pub async fn run(action: &str, with: Value, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
            match action {
                $($name => $module::run(input(action, with)?, ctx).await,)*
                other => Err(ActionError::UnknownAction { action: other.to_string() }),
            }
        }
    };
}

actions! {
    "sandbox" => control_sandbox,
    "backup" => backup,
    "backup-prune" => backup_prune,
    "backup-verify" => backup_verify,
    "backup-list" => backup_list,
    "backup-objects" => backup_objects,
    "migrate" => migrate,
    "restore" => restore,
    "restore-drill" => restore_drill,
    "pitr-setup" => pitr_setup,
    "pitr-backup" => pitr_backup,
    "pitr-status" => pitr_status,
    "provision" => provision,
    "rotate-secrets" => rotate_secrets,
    "promote-check" => promote_check,
    "dlq-replay" => dlq_replay,
    "sql" => sql,
    "http" => http,
    "shell" => shell,
    "confirm" => control_confirm,
    "manual" => control_manual,
    "wait" => wait,
    "notify" => notify,
}

// Several actions share a file; these aliases give each its own `Input`/`run` pair.
use backup::list as backup_list;
use backup::prune as backup_prune;
use backup::verify as backup_verify;
use control::confirm as control_confirm;
use control::manual as control_manual;
use control::sandbox as control_sandbox;
use pitr::backup as pitr_backup;
use pitr::setup as pitr_setup;
use pitr::status as pitr_status;

#[cfg(test)]
mod tests {
    use super::*;

    /// The failures the promote-check, dlq-replay, provision and rotate-secrets actions report:
    /// each its class and its message.
    #[test]
    fn action_failures_keep_their_class_and_message() {
        let cases = [
            (
                ActionError::PromotionFailed { failed: vec!["backup: none".into(), "tls: expired".into()] },
                ErrorClass::Failed,
                "promotion checks failed — backup: none; tls: expired",
            ),
            (
                ActionError::TooManyDeadLetters { total: 12, max: 10 },
                ErrorClass::Failed,
                "the DLQ holds 12 dead letters, more than 10",
            ),
            (
                ActionError::Undelivered { failed: 2, planned: 5, first: vec!["#1: 500".into(), "#4: timeout".into()] },
                ErrorClass::Failed,
                "2 of 5 dead letters could not be delivered and stay in the DLQ (#1: 500; #4: timeout)",
            ),
            (
                ActionError::NotProvisioned { pending: vec!["create role app".into(), "update bucket media".into()] },
                ErrorClass::Failed,
                r#"the environment still differs from the profile: ["create role app","update bucket media"]"#,
            ),
            (
                ActionError::RotationFailed { failed: vec!["JWT: no".into()], unreachable: false },
                ErrorClass::Failed,
                "rotation failed for JWT: no",
            ),
            (
                ActionError::RotationFailed { failed: vec!["DB: down".into()], unreachable: true },
                ErrorClass::Unavailable,
                "rotation failed for DB: down",
            ),
            (
                ActionError::DeadLetterSourceLost { delivered: 3, planned: 5, run_id: "r1".into() },
                ErrorClass::Unavailable,
                "the DLQ database became unreachable: 3 of 5 dead letters delivered; the rest are still in the DLQ \
                 (`opsbook run --resume r1` once it is back)",
            ),
            (
                ActionError::ReplayInterrupted { delivered: 3, planned: 9, failed: 1, skipped: 5, run_id: "r1".into() },
                ErrorClass::Interrupted,
                "interrupted: 3 of 9 dead letters delivered, 1 failed, 5 not attempted and still in the DLQ; \
                 `opsbook run --resume r1` replays them",
            ),
            (
                ActionError::NoAdminPasswordFile,
                ErrorClass::Usage,
                "provision apply in a runbook needs admin_password_file in the profile's [provision] table: the \
                 one-time admin password has nowhere else to go",
            ),
            (
                ActionError::NoPlaintextFile { secret: "ADMIN_HASH".into() },
                ErrorClass::Usage,
                "secret ADMIN_HASH is a password hash without plaintext_file: in a runbook the one-time plaintext has \
                 nowhere to go",
            ),
        ];
        for (error, class, message) in cases {
            assert_eq!(error.class(), class, "{error}");
            assert_eq!(error.to_string(), message);
        }
    }
}
