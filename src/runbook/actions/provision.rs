//! The `provision` action: `opsbook provision plan | apply` as a step. Apply needs the profile's
//! `admin_password_file` (a runbook has no place to show a password once) and the run's --yes or
//! a preceding `confirm` step.

use serde_json::Value;

use super::{ActionCtx, ActionError, Outputs};
use crate::provision::{self, Action, Mode, Op, ProvisionSpec};

/// The run's spec, as `opsbook provision plan | apply` takes it (the desired state is the
/// profile's `[provision]` table).
pub type Input = ProvisionSpec;

fn err(e: provision::ProvisionError) -> ActionError {
    ActionError::Provision(Box::new(e))
}

pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let mut target = crate::settings::provision::resolve(ctx.config, &input).await.map_err(err)?;
    let plan = provision::plan(&target).await.map_err(err)?;
    let mut out = Outputs::new();
    let pending: Vec<String> = plan
        .items
        .iter()
        .filter(|i| matches!(i.action, Action::Create | Action::Update))
        .map(|i| format!("{} {}", i.action.as_str(), i.resource))
        .collect();
    out.insert("changes".into(), plan.changes().into());
    out.insert("pending".into(), pending.iter().cloned().map(Value::from).collect::<Vec<_>>().into());
    if input.mode == Mode::Plan && input.expect_no_changes && plan.changes() > 0 {
        return Err(ActionError::NotProvisioned { pending });
    }
    if input.mode == Mode::Plan || ctx.dry_run || plan.changes() == 0 {
        return Ok(out);
    }
    let needs_admin = plan.items.iter().any(|i| matches!(i.op, Op::AdminPassword) && i.action != Action::None);
    if needs_admin && target.config.admin_password_file.is_none() {
        return Err(ActionError::NoAdminPasswordFile);
    }
    let report = provision::apply(&mut target, plan, ctx.reporter).await.map_err(err)?;
    out.insert("applied".into(), report.applied.len().into());
    out.insert("login_test".into(), report.login_test.into());
    Ok(out)
}
