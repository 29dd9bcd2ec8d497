//! The `pitr-setup`, `pitr-backup` and `pitr-status` actions: the same library calls as
//! `opsbook pitr setup | backup | status`. Their inputs are the profile's `[pitr]` table (any key
//! given overrides it) plus the action's own choices.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{ActionCtx, ActionError, Outputs};
use crate::pitr::backup::BackupType;
use crate::pitr::{setup as setup_lib, Engine, PitrSpec};

fn resolve(ctx: &ActionCtx<'_>, mut spec: PitrSpec) -> Result<crate::pitr::Pitr, ActionError> {
    spec.monitor.metrics_file = spec.monitor.metrics_file.map(|p| ctx.resolve_path(&p.to_string_lossy()));
    Ok(crate::settings::pitr::resolve(ctx.config, spec)?)
}

pub mod setup {
    use super::*;

    /// `pitr-setup`: configure pgBackRest and archiving (idempotent), then `pgbackrest check`.
    #[derive(Debug, Deserialize, JsonSchema)]
    pub struct Input {
        /// Restart PostgreSQL when archive_mode needs it (asks for confirmation, or --yes).
        #[serde(default)]
        pub restart: bool,
        #[serde(flatten)]
        pub spec: PitrSpec,
    }

    pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
        let p = resolve(ctx, input.spec)?;
        let engine = Engine::new(&p)?;
        let plan = setup_lib::plan(&p, &engine).await?;
        let mut out = Outputs::new();
        out.insert("stanza".into(), p.stanza.clone().into());
        out.insert("changes".into(), plan.changes().into());
        out.insert("restart_needed".into(), plan.restart_needed.into());
        if ctx.dry_run {
            out.insert("dry_run".into(), true.into());
            return Ok(out);
        }
        if plan.restart_needed && input.restart && !ctx.assume_yes {
            let question = format!("Restart PostgreSQL ({}) to turn archiving on?", p.pg_path.display());
            if !ctx.interaction.can_prompt() {
                return Err(ActionError::DestructiveNoTerminal { step: ctx.step_id.to_string() });
            }
            if !ctx.interaction.confirm(&question) {
                return Err(ActionError::NotConfirmed { step: ctx.step_id.to_string() });
            }
        }
        let applied = setup_lib::apply(&p, &engine, &plan, input.restart).await?;
        out.insert("restarted".into(), applied.restarted.into());
        Ok(out)
    }
}

pub mod backup {
    use super::*;

    /// `pitr-backup`: a physical backup under the stanza's lock, with pings and metrics.
    #[derive(Debug, Deserialize, JsonSchema)]
    pub struct Input {
        /// full, diff or incr [default: incr, or full when there is none to build on].
        #[serde(rename = "type", default)]
        pub kind: Option<String>,
        #[serde(flatten)]
        pub spec: PitrSpec,
    }

    pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
        let kind = input.kind.as_deref().filter(|k| !k.trim().is_empty()).map(str::parse::<BackupType>).transpose()?;
        let p = resolve(ctx, input.spec)?;
        let mut out = Outputs::new();
        out.insert("stanza".into(), p.stanza.clone().into());
        if ctx.dry_run {
            out.insert("dry_run".into(), true.into());
            let what = kind.map_or("a", BackupType::as_str);
            out.insert(
                "would".into(),
                format!("take {what} backup of stanza {} into {}", p.stanza, p.repo.display()).into(),
            );
            return Ok(out);
        }
        let o = crate::pitr::backup::job(&p, kind).await?;
        out.insert("label".into(), o.backup.label.clone().into());
        out.insert("type".into(), o.backup.kind.clone().into());
        out.insert("repo_bytes".into(), o.backup.repo_size.into());
        out.insert("duration_seconds".into(), ((o.duration_seconds * 10.0).round() / 10.0).into());
        Ok(out)
    }
}

pub mod status {
    use super::*;

    /// `pitr-status`: archive lag and failures; fails the step when archiving fails, lags past
    /// rpo_target, or (with `check`) the newest full backup is too old.
    #[derive(Debug, Deserialize, JsonSchema)]
    pub struct Input {
        /// First write a canary row and switch WAL (for later PITR drills).
        #[serde(default)]
        pub canary: bool,
        /// Also require a full backup within full_interval and run `pgbackrest check`.
        #[serde(default)]
        pub check: bool,
        #[serde(flatten)]
        pub spec: PitrSpec,
    }

    pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
        let p = resolve(ctx, input.spec)?;
        let mut out = Outputs::new();
        if ctx.dry_run {
            out.insert("dry_run".into(), true.into());
            return Ok(out);
        }
        let status = crate::pitr::status::report(&p, input.canary, input.check).await?;
        if let Some(at) = status.canary {
            out.insert("canary".into(), at.to_rfc3339().into());
        }
        if let Some(lag) = status.lag_seconds {
            out.insert("lag_seconds".into(), lag.into());
        }
        if !status.problems.is_empty() {
            let problems: Vec<String> = status.problems.iter().map(|p| format!("{}: {}", p.check, p.message)).collect();
            return Err(ActionError::PitrProblems { stanza: p.stanza.clone(), problems });
        }
        Ok(out)
    }
}
