//! Schema migrations: sqlx-compatible history, an advisory lock with a deadline, lock-safe
//! execution, dry runs that report the locks a migration takes, drift classification and an
//! embedded zero-downtime linter.

pub mod drift;
pub mod engine;
pub mod history;
pub mod lint;
pub mod source;
pub mod spec;
pub mod statements;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::ConfigError;
use crate::error::{Classify, ErrorClass};
use crate::pg::{DbUrl, PgError};

pub use engine::{baseline, dry_run, status, up, validate};
pub use lint::{Finding, LintConfig, Rules, Severity};
pub use source::{MigrationFile, Source};

/// Where and how to migrate.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: DbUrl,
    pub dir: PathBuf,
    /// How long to wait for the migration lock before giving up (exit 4).
    pub lock_wait: Duration,
    /// `SET lock_timeout` for every migration.
    pub lock_timeout: Duration,
    /// `SET statement_timeout` for every migration; None keeps the server's.
    pub statement_timeout: Option<Duration>,
    /// How often a migration that hit lock_timeout is retried (with backoff).
    pub retries: u32,
    pub lint: LintConfig,
}

impl Settings {
    pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(60);
    pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_RETRIES: u32 = 3;
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// A migration file or the directory is unusable (exit 2).
    #[error("{}: {message}", path.display())]
    Source { path: PathBuf, message: String },

    // A bad argument or setting (exit 2).
    #[error("migration name `{name}` has no letters or digits")]
    NameWithoutWords { name: String },
    #[error("--reversible needs sqlx-style names (.up.sql/.down.sql)")]
    ReversibleFlyway,
    /// `migrate baseline VERSION` with a version no migration has (a typo would mark every
    /// migration below it applied).
    #[error(
        "baseline {version}: no migration in {} has this version; give the version of the newest migration the \
         database already has (see `opsbook migrate status`)",
        dir.display()
    )]
    UnknownBaseline { version: i64, dir: PathBuf },
    #[error("--target {version}: no migration has this version")]
    UnknownTarget { version: i64 },
    /// `key` is the list of `[migrate.lint]` it is in (include, exclude, warn, error).
    #[error(
        "unknown lint rule `{rule}` in migrate.lint.{key}; rule names are squawk's, e.g. \
         require-concurrent-index-creation, adding-not-nullable-field, ban-drop-column"
    )]
    UnknownLintRule { key: &'static str, rule: String },
    #[error("invalid migrate.lint.pg_version `{version}`: {error:?}; use e.g. \"15\" or \"16.2\"")]
    LintPgVersion { version: String, error: <squawk_linter::Version as std::str::FromStr>::Err },

    #[error("{op} {}: {source}", path.display())]
    Io {
        op: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Pg(#[from] PgError),

    #[error(transparent)]
    Config(#[from] ConfigError),

    /// Another session holds the migration lock (exit 4).
    #[error(
        "the migration lock on database '{database}' (advisory lock {key}) is held{}; gave up after {}s \
         (raise --lock-wait, or wait for that migration to finish)",
        holder.as_ref().map(|h| format!(" by {h}")).unwrap_or_default(),
        waited.as_secs()
    )]
    Busy { database: String, key: i64, waited: Duration, holder: Option<Box<history::LockHolder>> },

    /// `_sqlx_migrations` has a row with success = false (exit 1).
    #[error(
        "migration {version} is marked failed (success = false) in _sqlx_migrations: a previous run died \
         part-way. Repair the schema by hand, then delete that row (DELETE FROM _sqlx_migrations WHERE \
         version = {version}) and run again"
    )]
    Dirty { version: i64 },

    /// Applied migrations no longer match their files (exit 1). Each of `drifted` is
    /// `VERSION DESCRIPTION (STATE)`; `missing` says whether files are missing.
    #[error(
        "applied migrations no longer match the files: {}. Run `opsbook migrate validate` to see what changed; \
         restore the files{}",
        drifted.join(", "),
        if *missing { " or pass --ignore-missing" } else { "" }
    )]
    Drifted { drifted: Vec<String>, missing: bool },

    /// Pending migrations have lint errors and --allow-unsafe was not given (exit 1).
    #[error("{}", unsafe_message(findings))]
    Unsafe { findings: Vec<Finding> },

    /// A migration failed while running (exit 1). Earlier migrations of the run stay applied.
    #[error(
        "migration {label} ({file}{}) failed{}: {message}{}",
        line.map(|l| format!(":{l}")).unwrap_or_default(),
        if *attempts > 1 { format!(" after {attempts} attempts") } else { String::new() },
        if *applied_before > 0 {
            format!("; the {applied_before} migration(s) before it in this run were applied and committed")
        } else {
            String::new()
        }
    )]
    Execute { label: String, file: String, line: Option<usize>, message: String, attempts: u32, applied_before: usize },

    // Ctrl-C / SIGTERM during a run (exit 130); each says what was applied.
    #[error("interrupted before migration {label}; {applied} migration(s) of this run were applied and committed")]
    InterruptedBefore { label: String, applied: usize },
    /// `no_tx`: the migration runs without a transaction, so what it ran stays.
    #[error(
        "interrupted during migration {label}: {}{}",
        if *no_tx {
            "it runs without a transaction, so its statements before that point stay applied, and it is not \
             recorded: check them before running again"
        } else {
            "it was rolled back"
        },
        if *applied_before > 0 {
            format!("; the {applied_before} migration(s) before it in this run were applied and committed")
        } else {
            String::new()
        }
    )]
    InterruptedDuring { label: String, no_tx: bool, applied_before: usize },
    #[error("interrupted; the dry run was rolled back and changed nothing")]
    DryRunInterrupted,
}

fn unsafe_message(findings: &[Finding]) -> String {
    let errors: Vec<&Finding> = findings.iter().filter(|f| f.severity == Severity::Error).collect();
    let mut msg = format!("refusing to apply: pending migrations have {} lint error(s):", errors.len());
    for f in errors.iter().take(10) {
        msg.push_str(&format!("\n  {}:{}: {} ({})", f.file, f.line, f.message, f.rule));
    }
    if errors.len() > 10 {
        msg.push_str(&format!("\n  … and {} more (see `opsbook migrate lint --pending`)", errors.len() - 10));
    }
    msg.push_str(
        "\nMake the migrations lock-safe (see the rule's help in `opsbook migrate lint`), silence a reviewed \
         statement with `-- squawk-ignore RULE`, or pass --allow-unsafe",
    );
    msg
}

impl MigrateError {
    pub(crate) fn io(op: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MigrateError::Io { op: op.into(), path: path.into(), source }
    }
}

impl Classify for MigrateError {
    fn class(&self) -> ErrorClass {
        match self {
            MigrateError::Source { .. }
            | MigrateError::NameWithoutWords { .. }
            | MigrateError::ReversibleFlyway
            | MigrateError::UnknownBaseline { .. }
            | MigrateError::UnknownTarget { .. }
            | MigrateError::UnknownLintRule { .. }
            | MigrateError::LintPgVersion { .. } => ErrorClass::Usage,
            MigrateError::Pg(e) => e.class(),
            MigrateError::Config(e) => e.class(),
            MigrateError::Busy { .. } => ErrorClass::Busy,
            MigrateError::InterruptedBefore { .. }
            | MigrateError::InterruptedDuring { .. }
            | MigrateError::DryRunInterrupted => ErrorClass::Interrupted,
            MigrateError::Io { .. }
            | MigrateError::Dirty { .. }
            | MigrateError::Drifted { .. }
            | MigrateError::Unsafe { .. }
            | MigrateError::Execute { .. } => ErrorClass::Failed,
        }
    }
}
