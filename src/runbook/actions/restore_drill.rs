//! The `restore-drill` action: `opsbook restore-drill` as a step. A failed verification fails the
//! step; the drill's figures become outputs.

use super::{ActionCtx, ActionError, Outputs};
use crate::drill::{self, DrillSpec};

/// The drill's spec, as `opsbook restore-drill` takes it; file paths are relative to the runbook.
pub type Input = DrillSpec;

pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let spec = input.relative_to(|p| ctx.resolve_path(&p.to_string_lossy()));
    if spec.pitr {
        return pitr(&spec, ctx).await;
    }
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

/// `pitr = true`: the PITR drill (`restore-drill --pitr`).
async fn pitr(spec: &DrillSpec, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let request = crate::settings::pitr::drill_request(ctx.config, spec)?;
    let mut out = Outputs::new();
    if ctx.dry_run {
        out.insert("dry_run".into(), true.into());
        out.insert(
            "would".into(),
            format!("restore stanza {} to {} in a throwaway cluster", request.pitr.stanza, request.target.describe())
                .into(),
        );
        return Ok(out);
    }
    let report = crate::pitr::drill::run(&request).await?;
    out.insert("drill_id".into(), report.drill_id.clone().into());
    out.insert("ok".into(), report.ok.into());
    let tenths = |s: f64| (s * 10.0).round() / 10.0;
    out.insert("rto_seconds".into(), tenths(report.rto_seconds).into());
    if let Some(rpo) = report.measured_rpo_seconds {
        out.insert("rpo_seconds".into(), tenths(rpo).into());
    }
    if let Some(b) = &report.backup {
        out.insert("backup_id".into(), b.clone().into());
    }
    if !report.ok {
        let failed: Vec<String> = report
            .steps
            .iter()
            .filter(|s| s.outcome == drill::Outcome::Failed)
            .map(|s| format!("{}: {}", s.name, s.detail))
            .collect();
        return Err(ActionError::PitrDrillFailed { target: report.target.clone(), failed });
    }
    Ok(out)
}
