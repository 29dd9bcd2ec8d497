//! Actions that involve people or the local sandbox: `confirm`, `manual`, `sandbox`.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{ActionCtx, ActionError, Outputs};

pub mod confirm {
    use super::*;

    /// `confirm`: ask a yes/no question before going on.
    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct Input {
        /// The question.
        pub message: String,
    }

    pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
        let mut out = Outputs::new();
        if ctx.dry_run {
            out.insert("dry_run".into(), true.into());
            out.insert("would".into(), format!("ask: {}", input.message).into());
            return Ok(out);
        }
        let by = if ctx.assume_yes {
            "--yes".to_string()
        } else if ctx.interaction.can_prompt() {
            if !tokio::task::block_in_place(|| ctx.interaction.confirm(&input.message)) {
                return Err(ActionError::Declined { question: input.message });
            }
            crate::runbook::journal::actor()
        } else {
            return Err(ActionError::NoTerminal { step: ctx.step_id.to_string(), question: input.message });
        };
        out.insert("confirmed_by".into(), by.into());
        Ok(out)
    }
}

pub mod manual {
    use super::*;

    /// `manual`: a human checklist item. On a terminal it shows the instructions and records
    /// who confirmed; without one the run stops (exit 5) unless acknowledged with --ack STEP.
    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct Input {
        /// What the person must do.
        pub instructions: String,
        /// Items to tick off, shown as a list.
        #[serde(default)]
        pub checklist: Vec<String>,
    }

    pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
        let mut out = Outputs::new();
        out.insert("instructions".into(), input.instructions.clone().into());
        if ctx.acks.iter().any(|a| a == ctx.step_id) {
            out.insert(
                "acknowledged_by".into(),
                format!("--ack {} ({})", ctx.step_id, crate::runbook::journal::actor()).into(),
            );
            return Ok(out);
        }
        if ctx.dry_run {
            out.insert("dry_run".into(), true.into());
            return Ok(out);
        }
        if !ctx.interaction.can_prompt() {
            return Err(ActionError::NeedsPerson { step: ctx.step_id.to_string() });
        }
        let mut text = input.instructions.clone();
        for item in &input.checklist {
            text.push_str(&format!("\n  [ ] {item}"));
        }
        text.push_str("\nDone?");
        if !tokio::task::block_in_place(|| ctx.interaction.confirm(&text)) {
            return Err(ActionError::ManualNotConfirmed { step: ctx.step_id.to_string() });
        }
        out.insert("acknowledged_by".into(), crate::runbook::journal::actor().into());
        Ok(out)
    }
}

pub mod sandbox {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum Command {
        Up,
        Down,
        Status,
    }

    /// `sandbox`: the throwaway local Postgres + store. Outputs `database_url` and `store`.
    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct Input {
        /// up | down | status.
        pub command: Command,
        /// Sandbox directory [default: $OPSBOOK_SANDBOX_DIR or .opsbook/sandbox].
        pub dir: Option<String>,
    }

    pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
        let dir = input
            .dir
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("OPSBOOK_SANDBOX_DIR").map(Into::into))
            .unwrap_or_else(|| ".opsbook/sandbox".into());
        let mut out = Outputs::new();
        let command = if ctx.dry_run { Command::Status } else { input.command };
        let info = match command {
            Command::Up => Some(crate::sandbox::up(&dir).await?),
            Command::Status => crate::sandbox::status(&dir).await?,
            Command::Down => {
                out.insert("removed".into(), crate::sandbox::down(&dir).await?.into());
                None
            }
        };
        if ctx.dry_run {
            out.insert("dry_run".into(), true.into());
            out.insert(
                "would".into(),
                format!("sandbox {:?} in {}", input.command, dir.display()).to_lowercase().into(),
            );
        }
        if let Some(info) = info {
            out.insert("database_url".into(), info.database_url.into());
            out.insert("store".into(), info.store.into());
            out.insert("port".into(), info.port.into());
            out.insert("running".into(), info.running.into());
        }
        Ok(out)
    }
}
