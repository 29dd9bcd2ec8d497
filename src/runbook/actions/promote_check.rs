//! The `promote-check` action: the promotion checklist as a step; any failed (unwaived) check
//! fails the step.

use serde_json::Value;

use super::{ActionCtx, ActionError, Outputs};
use crate::promote::{self, PromoteSpec, Status};

/// The checklist's spec, as `opsbook promote-check` and `[profiles.NAME.promote]` take it; file
/// paths are relative to the runbook.
pub type Input = PromoteSpec;

pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let spec = input.relative_to(|p| ctx.resolve_path(&p.to_string_lossy()));
    let request = crate::settings::promote::resolve(ctx.config, &spec)?;
    let results = promote::run(&request).await?;
    if let Some(path) = &spec.junit {
        crate::redact::write_file(path, &promote::junit(&request.profile, &crate::redact::redacted(&results)), None)
            .map_err(|source| ActionError::WriteReport { path: path.clone(), source })?;
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
        return Err(ActionError::PromotionFailed { failed });
    }
    Ok(out)
}
