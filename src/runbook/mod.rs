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
    #[error("parameter {name}: {message}")]
    Param { name: String, message: String },
    #[error("{0}")]
    Resume(String),
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
            | RunbookError::Param { .. }
            | RunbookError::Resume(_) => ErrorClass::Usage,
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
