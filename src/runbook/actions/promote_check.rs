//! The `promote-check` action: the promotion checklist as a step; any failed (unwaived) check
//! fails the step.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{ActionCtx, ActionError, Outputs};
use crate::promote::{self, Options, Status};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The API's base URL.
    pub app_url: Option<String>,
    /// The website's URL [default: app_url].
    pub web_url: Option<String>,
    /// Database URL [default: DATABASE_URL / profile].
    pub database_url: Option<String>,
    /// The environment's .env file (relative to the runbook).
    pub env_file: Option<String>,
    /// Another environment's .env file (relative to the runbook): JWT_SECRET must differ.
    pub compare_env_file: Option<String>,
    /// Backup store [default: OPSBOOK_STORE / profile].
    pub store: Option<String>,
    /// Backup set [default: main].
    pub set: Option<String>,
    /// Migrations directory (relative to the runbook).
    pub migrations: Option<String>,
    /// Only these check ids.
    #[serde(default)]
    pub only: Vec<String>,
    /// Skip these check ids.
    #[serde(default)]
    pub skip: Vec<String>,
    /// Extra CA certificate (PEM, relative to the runbook) trusted for HTTPS checks.
    pub ca_file: Option<String>,
    /// Per-check timeout, e.g. "15s".
    pub timeout: Option<String>,
    /// JUnit XML file (relative to the runbook).
    pub junit: Option<String>,
}

fn some(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.trim().is_empty())
}

pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let timeout = some(&input.timeout)
        .map(|t| humantime::parse_duration(t).map_err(|e| ActionError::Input(format!("timeout: {e}"))))
        .transpose()?;
    let options = Options {
        app_url: some(&input.app_url).map(String::from),
        web_url: some(&input.web_url).map(String::from),
        database_url: some(&input.database_url).map(String::from),
        env_file: some(&input.env_file).map(|p| ctx.resolve_path(p)),
        compare_env_file: some(&input.compare_env_file).map(|p| ctx.resolve_path(p)),
        store: some(&input.store).map(String::from),
        set: some(&input.set).map(String::from),
        migrations: some(&input.migrations).map(|p| ctx.resolve_path(p)),
        only: input.only.clone(),
        skip: input.skip.clone(),
        ca_file: some(&input.ca_file).map(|p| ctx.resolve_path(p)),
        timeout,
    };
    let request = promote::resolve(ctx.config, &options).map_err(|e| ActionError::Input(e.to_string()))?;
    let results = promote::run(&request).await.map_err(|e| ActionError::Input(e.to_string()))?;
    if let Some(p) = some(&input.junit) {
        let path = ctx.resolve_path(p);
        crate::redact::write_file(&path, &promote::junit(&request.profile, &crate::redact::redacted(&results)), None)
            .map_err(|e| ActionError::Failed(format!("write {}: {e}", path.display())))?;
    }
    let mut out = Outputs::new();
    let ids =
        |s: Status| results.iter().filter(|r| r.status == s).map(|r| Value::from(r.id.clone())).collect::<Vec<_>>();
    out.insert("failed".into(), ids(Status::Fail).into());
    out.insert("warnings".into(), ids(Status::Warn).into());
    out.insert("waived".into(), ids(Status::Waived).into());
    out.insert("passed".into(), ids(Status::Pass).len().into());
    let failed: Vec<String> =
        results.iter().filter(|r| r.status == Status::Fail).map(|r| format!("{}: {}", r.id, r.evidence)).collect();
    if !failed.is_empty() {
        return Err(ActionError::Failed(format!("promotion checks failed — {}", failed.join("; "))));
    }
    Ok(out)
}
