//! The `backup-objects` action: the same library call as `opsbook backup objects`.

use super::{ActionCtx, ActionError, Outputs};
use crate::backup::objects;
use crate::backup::objects::spec::ObjectsSpec;

/// The copy's spec, as `opsbook backup objects` takes it; `metrics_file` is relative to the
/// runbook. A step never passes the delete guard (`--force` is for a person).
pub type Input = ObjectsSpec;

impl From<objects::ObjectsError> for ActionError {
    fn from(e: objects::ObjectsError) -> Self {
        ActionError::Objects(Box::new(e))
    }
}

pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let mut spec = input;
    spec.monitor.metrics_file = spec.monitor.metrics_file.map(|p| ctx.resolve_path(&p.to_string_lossy()));
    let request = crate::settings::objects::resolve(ctx.config, &spec, ctx.dry_run)?;
    let mut out = Outputs::new();
    out.insert("set".into(), request.set.clone().into());
    if ctx.dry_run {
        out.insert("dry_run".into(), true.into());
        out.insert(
            "would".into(),
            format!(
                "copy new and changed objects from {} to {} (set {})",
                request.from.url, request.to.url, request.set
            )
            .into(),
        );
        return Ok(out);
    }
    let report = objects::run_job(&request, ctx.reporter).await?;
    out.insert("run_id".into(), report.id.clone().into());
    out.insert("copied".into(), report.copied.into());
    out.insert("copied_bytes".into(), report.copied_bytes.into());
    out.insert("unchanged".into(), report.unchanged.into());
    out.insert("resumed".into(), report.resumed.into());
    out.insert("retained".into(), report.retained.into());
    out.insert("removed".into(), report.removed.into());
    out.insert("deferred".into(), report.deferred.into());
    out.insert("inventory_key".into(), report.inventory_key.clone().into());
    Ok(out)
}
