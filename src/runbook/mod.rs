//! Runbooks: declarative TOML steps that call the same library functions as the subcommands.
//! `load` parses and validates a file (every problem with file, line and column); `engine`
//! runs it with a journal after every step so a run can be resumed.

pub mod actions;
pub mod engine;
pub mod format;
pub mod interp;
pub mod journal;
pub mod validate;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Classify, ErrorClass};
pub use format::RunbookFile;

/// A problem at a place in a runbook file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RunbookError {
    #[error("cannot read runbook {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid runbook {}:\n{}", path.display(), render(path, diagnostics))]
    Invalid { path: PathBuf, diagnostics: Vec<Diagnostic> },
    #[error(
        "parameter {name}: not declared by {} (its parameters: {})",
        path.display(),
        if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
    )]
    UndeclaredParam { name: String, path: PathBuf, declared: Vec<String> },
    #[error("parameter {name}: required: pass --param {name}=VALUE or set {env}")]
    MissingParam { name: String, env: String },
    #[error("parameter {name}: {error}")]
    ParamValue { name: String, error: validate::ParamValueError },
    #[error("invalid run id `{run_id}`")]
    RunId { run_id: String },
    #[error("no journal for run {run_id} at {} ({error}); `opsbook run` prints run ids", path.display())]
    NoJournal { run_id: String, path: PathBuf, error: std::io::Error },
    #[error("unreadable journal {}: {source}", path.display())]
    Journal {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} changed since run {run_id} started; start a new run instead of --resume", path.display())]
    Changed { path: PathBuf, run_id: String },
    #[error("run {run_id} already completed")]
    Completed { run_id: String },
    #[error("run {run_id} was a dry run; start a new run")]
    DryRunResumed { run_id: String },
    #[error("--from {from}: no such step (steps: {})", steps.join(", "))]
    NoSuchStep { from: String, steps: Vec<String> },
    /// A resume would have to run a step with effects again for a secret output of it that the
    /// journal does not keep.
    #[error(
        "cannot resume run {run_id}: step '{producer}' ({action}) finished, and its output `{key}` held a secret, \
         which the journal does not keep; step '{step}' needs it, and running '{producer}' again could repeat its \
         effect. Start a new run of the runbook instead"
    )]
    SecretOutput { run_id: String, producer: String, action: String, key: String, step: String },
    #[error("cannot write run state {}: {source}", path.display())]
    State { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
}

fn render(path: &Path, diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| format!("  {}:{}:{}: {}", path.display(), d.line, d.column, d.message))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Classify for RunbookError {
    fn class(&self) -> ErrorClass {
        match self {
            RunbookError::Read { .. }
            | RunbookError::Invalid { .. }
            | RunbookError::UndeclaredParam { .. }
            | RunbookError::MissingParam { .. }
            | RunbookError::ParamValue { .. }
            | RunbookError::RunId { .. }
            | RunbookError::NoJournal { .. }
            | RunbookError::Journal { .. }
            | RunbookError::Changed { .. }
            | RunbookError::Completed { .. }
            | RunbookError::DryRunResumed { .. }
            | RunbookError::NoSuchStep { .. }
            | RunbookError::SecretOutput { .. } => ErrorClass::Usage,
            RunbookError::State { .. } => ErrorClass::Failed,
            RunbookError::Lock(crate::lock::LockError::Busy { .. }) => ErrorClass::Busy,
            RunbookError::Lock(_) => ErrorClass::Failed,
        }
    }
}

/// A parsed, validated runbook.
#[derive(Debug, Clone)]
pub struct Runbook {
    pub path: PathBuf,
    pub source: String,
    /// SHA-256 of the file bytes, recorded in journals and the audit log.
    pub sha256: String,
    pub file: RunbookFile,
}

impl Runbook {
    pub fn base_dir(&self) -> PathBuf {
        self.path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
    }

    pub fn step_ids(&self) -> Vec<&str> {
        self.file.steps.iter().map(|s| s.get_ref().id.get_ref().as_str()).collect()
    }
}

/// Reads, parses and validates a runbook file.
pub fn load(path: &Path) -> Result<Runbook, RunbookError> {
    let source = std::fs::read_to_string(path).map_err(|source| RunbookError::Read { path: path.into(), source })?;
    parse(path, source)
}

/// Parses and validates runbook text (`path` is used for messages and relative paths).
pub fn parse(path: &Path, source: String) -> Result<Runbook, RunbookError> {
    let invalid = |diagnostics| RunbookError::Invalid { path: path.into(), diagnostics };
    let file: RunbookFile = toml::from_str(&source).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| crate::text::line_col(&source, s.start));
        invalid(vec![Diagnostic { line, column, message: e.message().trim().to_string() }])
    })?;
    let diagnostics = validate::check(&file, &source);
    if !diagnostics.is_empty() {
        return Err(invalid(diagnostics));
    }
    let sha256 = hex::encode(Sha256::digest(source.as_bytes()));
    Ok(Runbook { path: path.into(), source, sha256, file })
}
