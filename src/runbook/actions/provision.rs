//! The `provision` action: `opsbook provision plan | apply` as a step. Apply needs the profile's
//! `admin_password_file` (a runbook has no place to show a password once) and the run's --yes or
//! a preceding `confirm` step.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{ActionCtx, ActionError, Outputs};
use crate::provision::{self, Action, Op};

#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Compare only.
    #[default]
    Plan,
    /// Apply the plan.
    Apply,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// plan (default) or apply.
    #[serde(default)]
    pub mode: Mode,
    /// Admin connection [default: ADMIN_DATABASE_URL / the profile's admin_database_url].
    pub admin_database_url: Option<String>,
    /// plan: fail when the plan still has changes (a check after apply).
    #[serde(default)]
    pub expect_no_changes: bool,
}

fn err(e: provision::ProvisionError) -> ActionError {
    ActionError::Provision(Box::new(e))
}

pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let from_env = std::env::var("ADMIN_DATABASE_URL").ok().filter(|v| !v.is_empty());
    let admin = input.admin_database_url.clone().or(from_env);
    let mut target = provision::target(ctx.config, admin.as_deref()).await.map_err(err)?;
    let plan = provision::plan(&target).await.map_err(err)?;
    let mut out = Outputs::new();
    out.insert("changes".into(), plan.changes().into());
    out.insert(
        "pending".into(),
        plan.items
            .iter()
            .filter(|i| matches!(i.action, Action::Create | Action::Update))
            .map(|i| Value::from(format!("{} {}", i.action.as_str(), i.resource)))
            .collect::<Vec<_>>()
            .into(),
    );
    if input.mode == Mode::Plan && input.expect_no_changes && plan.changes() > 0 {
        return Err(ActionError::Failed(format!("the environment still differs from the profile: {}", out["pending"])));
    }
    if input.mode == Mode::Plan || ctx.dry_run || plan.changes() == 0 {
        return Ok(out);
    }
    let needs_admin = plan.items.iter().any(|i| matches!(i.op, Op::AdminPassword) && i.action != Action::None);
    if needs_admin && target.config.admin_password_file.is_none() {
        return Err(ActionError::Input(
            "provision apply in a runbook needs admin_password_file in the profile's [provision] table: the \
             one-time admin password has nowhere else to go"
                .into(),
        ));
    }
    let report = provision::apply(&mut target, plan, ctx.reporter).await.map_err(err)?;
    out.insert("applied".into(), report.applied.len().into());
    out.insert("login_test".into(), report.login_test.into());
    Ok(out)
}
