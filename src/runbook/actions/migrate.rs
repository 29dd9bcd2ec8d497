//! The `migrate` action: `opsbook migrate up | check | dry-run | lint` as a step.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ActionCtx, ActionError, Outputs};
use crate::migrate::engine::{self, DryOutcome, UpOptions};
use crate::migrate::spec::MigrateSpec;
use crate::migrate::{self, lint, source, Rules, Settings};

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Apply pending migrations.
    #[default]
    Up,
    /// Fail when anything is pending, changed, missing or failed.
    Check,
    /// Run pending migrations in a rolled-back transaction; fail when one fails.
    DryRun,
    /// Lint migrations; fail on lint errors.
    Lint,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Only migrations the database has not applied yet.
    #[default]
    Pending,
    /// Every migration file.
    All,
}

/// The step's mode and its options, plus the [`MigrateSpec`] shared with `[profiles.NAME.migrate]`
/// (its `migrations` directory resolves against the runbook's directory).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Input {
    /// up (default), check, dry-run or lint.
    #[serde(default)]
    pub mode: Mode,
    /// Database URL [default: DATABASE_URL / profile / sandbox].
    #[serde(default, deserialize_with = "crate::spec::opt_text")]
    pub database_url: Option<String>,
    /// up / dry-run: stop at this version.
    pub target: Option<i64>,
    /// up: apply even with lint errors.
    #[serde(default)]
    pub allow_unsafe: bool,
    /// lint: pending (default) or all files.
    #[serde(default)]
    pub scope: Scope,
    /// check: only fail on drift (changed, missing or failed migrations), not on pending ones.
    #[serde(default)]
    pub allow_pending: bool,
    #[serde(flatten)]
    pub spec: MigrateSpec,
}

fn settings(input: &Input, ctx: &ActionCtx<'_>) -> Result<Settings, ActionError> {
    let mut spec = input.spec.clone();
    spec.migrations = spec.migrations.map(|d| ctx.resolve_path(&d.to_string_lossy()));
    Ok(crate::settings::migrate::resolve(ctx.config, input.database_url.as_deref(), &spec)?)
}

pub(crate) fn finding_lines(findings: &[lint::Finding]) -> String {
    findings
        .iter()
        .filter(|f| f.severity == lint::Severity::Error)
        .map(|f| format!("{}:{}: {} ({})", f.file, f.line, f.message, f.rule))
        .collect::<Vec<_>>()
        .join("; ")
}

pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let settings = settings(&input, ctx)?;
    let mut out = Outputs::new();
    out.insert("mode".into(), serde_json::to_value(input.mode).unwrap_or_default());
    let status = migrate::status(&settings).await?;
    let pending: Vec<String> = status
        .entries
        .iter()
        .filter(|e| e.state == engine::State::Pending)
        .map(|e| format!("{} {}", e.version.map_or_else(|| "R".into(), |v| v.to_string()), e.description))
        .collect();
    out.insert("pending".into(), pending.len().into());
    out.insert("head".into(), status.head.map_or(Value::Null, Value::from));
    match input.mode {
        Mode::Check => {
            let problems: Vec<String> = status
                .problems()
                .filter(|e| !(input.allow_pending && e.state == engine::State::Pending))
                .map(|e| format!("{} {} ({})", e.version.unwrap_or_default(), e.description, e.state.as_str()))
                .collect();
            if !problems.is_empty() {
                return Err(ActionError::NotUpToDate { problems });
            }
        }
        Mode::Lint => {
            let rules = Rules::new(&settings.lint)?;
            let src = source::load(&settings.dir)?;
            let files: Vec<&migrate::MigrationFile> = match input.scope {
                Scope::Pending => engine::pending(&src, &status, None),
                Scope::All => src.all().collect(),
            };
            let findings: Vec<lint::Finding> =
                engine::lint_files(&rules, &files).into_iter().flat_map(|(_, f)| f).collect();
            out.insert("files".into(), files.len().into());
            out.insert(
                "warnings".into(),
                findings.iter().filter(|f| f.severity == lint::Severity::Warning).count().into(),
            );
            if lint::has_errors(&findings) {
                return Err(ActionError::LintErrors { findings });
            }
        }
        Mode::DryRun | Mode::Up if ctx.dry_run => {
            out.insert("dry_run".into(), true.into());
            out.insert("would".into(), format!("apply {} migration(s): {}", pending.len(), pending.join(", ")).into());
        }
        Mode::DryRun => {
            let report = migrate::dry_run(&settings, input.target).await?;
            let locks: Vec<String> = report
                .migrations
                .iter()
                .flat_map(|m| {
                    m.locks
                        .iter()
                        .filter(|l| !l.new_object)
                        .map(move |l| format!("{}: {} on {}", m.version.unwrap_or_default(), l.mode, l.relation))
                })
                .collect();
            out.insert("locks".into(), locks.into());
            if let Some(failed) = report.migrations.iter().find(|m| m.outcome == DryOutcome::Failed) {
                return Err(ActionError::DryRunFailed {
                    file: failed.file.clone(),
                    error: failed.error.clone().unwrap_or_else(|| "unknown error".into()),
                });
            }
        }
        Mode::Up => {
            let opts = UpOptions { target: input.target, allow_unsafe: input.allow_unsafe, ignore_missing: false };
            let report = migrate::up(&settings, opts, ctx.reporter).await?;
            out.insert("applied".into(), report.applied.len().into());
            out.insert(
                "versions".into(),
                report.applied.iter().filter_map(|a| a.version).map(Value::from).collect::<Vec<_>>().into(),
            );
            out.insert("head".into(), report.head.map_or(Value::Null, Value::from));
        }
    }
    Ok(out)
}
