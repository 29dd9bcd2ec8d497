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
    /// The step's inputs are wrong (exit 2).
    #[error("{0}")]
    Input(String),
    /// The action ran and failed, or its expectation did not hold (exit 1).
    #[error("{0}")]
    Failed(String),
    /// A service it needs is unreachable (exit 3).
    #[error("{0}")]
    Unavailable(String),
    /// A confirmation or acknowledgement is needed and nobody gave it (exit 5).
    #[error("{0}")]
    NeedsConfirmation(String),
    /// Ctrl-C stopped the action part-way; what it finished is kept (exit 130).
    #[error("{0}")]
    Interrupted(String),
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
    Provision(Box<crate::provision::ProvisionError>),
    #[error(transparent)]
    Rotate(Box<crate::secrets::rotate::RotateError>),
    #[error(transparent)]
    Pitr(Box<crate::pitr::PitrError>),
}

impl From<crate::pitr::PitrError> for ActionError {
    fn from(e: crate::pitr::PitrError) -> Self {
        ActionError::Pitr(Box::new(e))
    }
}

impl Classify for ActionError {
    fn class(&self) -> ErrorClass {
        match self {
            ActionError::Input(_) => ErrorClass::Usage,
            ActionError::Failed(_) => ErrorClass::Failed,
            ActionError::Unavailable(_) => ErrorClass::Unavailable,
            ActionError::NeedsConfirmation(_) => ErrorClass::ConfirmationRequired,
            ActionError::Interrupted(_) => ErrorClass::Interrupted,
            ActionError::Backup(e) => e.class(),
            ActionError::Objects(e) => e.class(),
            ActionError::Store(e) => e.class(),
            ActionError::Pg(e) => e.class(),
            ActionError::Config(e) => e.class(),
            ActionError::Migrate(e) => e.class(),
            ActionError::Drill(e) => e.class(),
            ActionError::Provision(e) => e.class(),
            ActionError::Rotate(e) => e.class(),
            ActionError::Pitr(e) => e.class(),
        }
    }
}

/// Actions that watch Ctrl-C themselves and wind down cleanly: a replay lets in-flight
/// deliveries finish and records them, a backup aborts its upload, a drill removes its scratch
/// target, an object copy journals what it copied. Dropping them mid-way would lose that work
/// (a delivered dead letter left in the table is sent again), so the engine lets them return.
/// Everything else is dropped on Ctrl-C (a shell step's process group is killed).
pub fn winds_down_on_interrupt(action: &str) -> bool {
    matches!(action, "dlq-replay" | "backup" | "backup-objects" | "restore-drill" | "wait")
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
    serde_json::from_value(with).map_err(|e| ActionError::Input(format!("invalid `with` for action {action}: {e}")))
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

        /// Checks literal inputs (a `with` table without references) against the action's type.
        pub fn check_literal(action: &str, with: Value) -> Result<(), String> {
            match action {
                $($name => serde_json::from_value::<$module::Input>(with).map(drop).map_err(|e| e.to_string()),)*
                other => Err(format!("unknown action `{other}`")),
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
                other => Err(ActionError::Input(format!("unknown action `{other}`"))),
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
