//! The `restore-drill` action: `opsbook restore-drill` as a step. A failed verification fails the
//! step; the drill's figures become outputs.

use super::{ActionCtx, ActionError, Outputs};
use crate::drill::{self, DrillSpec};

/// The drill's spec, as `opsbook restore-drill` takes it; file paths are relative to the runbook.
pub type Input = DrillSpec;

pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let spec = input.relative_to(|p| ctx.resolve_path(&p.to_string_lossy()));
    let request = crate::settings::drill::resolve(ctx.config, &spec).map_err(|e| ActionError::Drill(Box::new(e)))?;
    let mut out = Outputs::new();
    if ctx.dry_run {
        out.insert("dry_run".into(), true.into());
        out.insert(
            "would".into(),
            format!(
                "restore the {} backup of set {} from {}",
                spec.backup.as_deref().unwrap_or("latest"),
                request.set,
                request.store_url
            )
            .into(),
        );
        return Ok(out);
    }
    let report = drill::drill(&request, ctx.reporter).await.map_err(|e| ActionError::Drill(Box::new(e)))?;
    drill::render::write_files(&spec, &report).map_err(|e| ActionError::Drill(Box::new(e)))?;
    out.insert("backup_id".into(), report.backup_id.clone().into());
    out.insert("drill_id".into(), report.drill_id.clone().into());
    out.insert("ok".into(), report.ok.into());
    out.insert("rto_seconds".into(), report.rto.seconds.into());
    out.insert("rpo_seconds".into(), report.rpo.seconds.into());
    out.insert("rows".into(), report.tables.iter().filter_map(|t| t.restored).sum::<i64>().into());
    out.insert("seed".into(), report.seed.into());
    if let Some(kept) = &report.kept {
        out.insert("kept".into(), kept.clone().into());
    }
    if !report.ok {
        let failed: Vec<String> = report.failed_steps().map(|s| format!("{}: {}", s.name, s.detail)).collect();
        return Err(ActionError::DrillFailed { backup_id: report.backup_id.clone(), failed });
    }
    Ok(out)
}
