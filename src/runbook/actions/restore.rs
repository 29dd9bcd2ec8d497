//! The `restore` action: `opsbook restore --into` as a step. The restored backup and the new
//! database become outputs.

use super::{ActionCtx, ActionError, Outputs};
use crate::restore::{self, Pick, RestoreSpec};

/// The restore's spec, as `opsbook restore` takes it; the identity path is relative to the runbook.
pub type Input = RestoreSpec;

fn error(e: restore::RestoreError) -> ActionError {
    ActionError::Restore(Box::new(e))
}

pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let mut spec = input;
    spec.identity = spec.identity.map(|p| ctx.resolve_path(&p.to_string_lossy()));
    let request = crate::settings::restore::resolve(ctx.config, &spec).map_err(error)?;
    let mut out = Outputs::new();
    if ctx.dry_run {
        let which = match &request.pick {
            Pick::Latest => "latest".to_string(),
            Pick::Id(id) => id.clone(),
            Pick::Before(t) => format!("newest before {}", t.to_rfc3339()),
        };
        out.insert("dry_run".into(), true.into());
        out.insert(
            "would".into(),
            format!(
                "restore the {which} backup of set {} from {} into new database {} on {}",
                request.set,
                request.store_url,
                request.database,
                request.server.redacted()
            )
            .into(),
        );
        return Ok(out);
    }
    let report = restore::restore(&request, ctx.reporter).await.map_err(error)?;
    out.insert("backup_id".into(), report.backup_id.clone().into());
    out.insert("database".into(), report.database.clone().into());
    out.insert("created".into(), report.created.into());
    out.insert("dry_run".into(), report.dry_run.into());
    out.insert("rows".into(), report.tables.iter().filter_map(|t| t.restored).sum::<i64>().into());
    Ok(out)
}
