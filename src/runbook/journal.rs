//! The run journal (saved after every step, so a crash or Ctrl-C leaves a resumable run) and
//! the append-only audit log. Both pass through secret redaction before they touch disk.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::actions::Outputs;
use super::RunbookError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    Ok,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub id: String,
    pub name: Option<String>,
    pub action: String,
    pub status: StepStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    pub attempts: u32,
    #[serde(default)]
    pub outputs: Outputs,
    /// Output keys whose values held a secret and are masked in the saved journal. A resume
    /// runs the step again when a step still to run needs one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How the failure maps onto the exit codes: failed, usage, unavailable, busy, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<crate::error::ErrorClass>,
    /// Why a step was skipped, or who confirmed a manual step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Ok,
    Failed,
    Interrupted,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunJournal {
    pub run_id: String,
    pub runbook: String,
    pub path: PathBuf,
    pub sha256: String,
    pub started: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub dry_run: bool,
    /// Parameter values; secret ones are not stored and must be given again on --resume.
    pub params: BTreeMap<String, Value>,
    pub steps: Vec<StepRecord>,
}

/// Where journals live: `<state dir>/runs/<run-id>.json`.
pub fn runs_dir() -> PathBuf {
    crate::state::state_dir().join("runs")
}

pub fn journal_path(run_id: &str) -> PathBuf {
    runs_dir().join(format!("{run_id}.json"))
}

impl StepRecord {
    /// Whether output `key` was loaded masked from a journal, so it must not be used.
    pub fn output_masked(&self, key: &str) -> bool {
        self.masked.iter().any(|k| k == key)
    }
}

impl RunJournal {
    /// Writes the journal atomically (0600), secrets masked; each step lists the outputs that
    /// lost their value to the mask.
    pub fn save(&self) -> Result<(), RunbookError> {
        let path = journal_path(&self.run_id);
        let mut saved = self.clone();
        for step in &mut saved.steps {
            for (key, value) in &step.outputs {
                let text = value.to_string();
                if crate::redact::redact(&text) != text && !step.masked.contains(key) {
                    step.masked.push(key.clone());
                }
            }
        }
        let text = crate::redact::to_json(&saved, true).expect("journal serializes");
        crate::redact::write_file(&path, &text, Some(0o600)).map_err(|source| RunbookError::State { path, source })
    }

    pub fn load(run_id: &str) -> Result<RunJournal, RunbookError> {
        if !run_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(RunbookError::RunId { run_id: run_id.to_string() });
        }
        let path = journal_path(run_id);
        let text = std::fs::read_to_string(&path).map_err(|error| RunbookError::NoJournal {
            run_id: run_id.to_string(),
            path: path.clone(),
            error,
        })?;
        let mut journal: RunJournal =
            serde_json::from_str(&text).map_err(|source| RunbookError::Journal { path, source })?;
        // Journals written before `masked` existed: recognise the mask itself (`***`, as
        // `redact` writes it).
        for step in journal.steps.iter_mut().filter(|s| s.masked.is_empty()) {
            step.masked =
                step.outputs.iter().filter(|(_, v)| v.to_string().contains("***")).map(|(k, _)| k.clone()).collect();
        }
        Ok(journal)
    }
}

/// One line of the audit log.
#[derive(Debug, Serialize)]
pub struct AuditEvent<'a> {
    pub time: DateTime<Utc>,
    pub event: &'a str,
    pub run_id: &'a str,
    pub who: String,
    pub host: String,
    pub runbook: &'a str,
    pub path: &'a std::path::Path,
    pub sha256: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<&'a BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<&'a StepRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
}

/// The user behind the run: $OPSBOOK_ACTOR (CI can name the pipeline), else $USER.
pub fn actor() -> String {
    ["OPSBOOK_ACTOR", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()))
}

/// Appends one event to `<state dir>/audit.jsonl` (or $OPSBOOK_AUDIT_LOG).
pub fn audit(event: &AuditEvent<'_>) -> Result<(), RunbookError> {
    let path = std::env::var_os("OPSBOOK_AUDIT_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::state::state_dir().join("audit.jsonl"));
    crate::redact::append_json_line(&path, event, 0o600).map_err(|source| RunbookError::State { path, source })
}
