//! The `dlq-replay` action: DLQ stats (failing above `max`), a listing, or a replay as a step.
//! A dry run plans the replay and sends nothing; a failed delivery fails the step. Ctrl-C lets
//! in-flight deliveries finish (the engine does not drop this action) and fails the step as
//! interrupted when rows were left, so a resume replays them.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{ActionCtx, ActionError, Outputs};
use crate::dlq::spec::DlqSpec;
use crate::dlq::{self, Filter};
use crate::settings;

#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Stats,
    List,
    #[default]
    Replay,
}

/// What the step does, and the spec `opsbook dlq-replay` and `[profiles.NAME.dlq]` take.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Input {
    /// stats, list or replay [default: replay].
    #[serde(default)]
    pub mode: Mode,
    #[serde(flatten)]
    pub spec: DlqSpec,
}

pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let spec = &input.spec;
    let source = settings::dlq::source(ctx.config, spec)?;
    let filter = spec.filter.filter(chrono::Utc::now())?;
    let mut out = Outputs::new();
    match input.mode {
        Mode::Stats => {
            let stats = source.stats(&filter).await?;
            let max = settings::dlq::max(ctx.config, spec);
            out.insert("total".into(), stats.total.into());
            out.insert("by_endpoint".into(), serde_json::to_value(&stats.by_endpoint).unwrap_or_default());
            out.insert("by_event_type".into(), serde_json::to_value(&stats.by_event_type).unwrap_or_default());
            if stats.total > max {
                return Err(ActionError::TooManyDeadLetters { total: stats.total, max });
            }
        }
        Mode::List => {
            let filter = Filter { limit: filter.limit.or(Some(100)), ..filter };
            let items = source.list(&filter, false).await?;
            out.insert("count".into(), items.len().into());
            out.insert("ids".into(), items.iter().map(|d| Value::from(d.id)).collect::<Vec<_>>().into());
        }
        Mode::Replay => {
            let opts = settings::dlq::replay(ctx.config, spec, &source)?;
            let plan = dlq::plan(&source, &filter, opts.delivery.rate).await?;
            out.insert("planned".into(), plan.count.into());
            if ctx.dry_run {
                return Ok(out);
            }
            let report = dlq::replay(&source, plan, &opts, ctx.reporter).await?;
            out.insert("delivered".into(), report.delivered.into());
            out.insert("failed".into(), report.failed.into());
            out.insert("skipped".into(), report.skipped.into());
            if report.interrupted && report.skipped > 0 {
                // In-flight deliveries finished and were recorded; the rest stay for --resume.
                return Err(ActionError::ReplayInterrupted {
                    delivered: report.delivered,
                    planned: report.planned,
                    failed: report.failed,
                    skipped: report.skipped,
                    run_id: ctx.run_id.to_string(),
                });
            }
            if report.source_lost() {
                return Err(ActionError::DeadLetterSourceLost {
                    delivered: report.delivered,
                    planned: report.planned,
                    run_id: ctx.run_id.to_string(),
                });
            }
            if report.failed > 0 {
                let first =
                    report.failures.iter().take(3).map(|f| format!("#{}: {}", f.id, f.error)).collect::<Vec<_>>();
                return Err(ActionError::Undelivered { failed: report.failed, planned: report.planned, first });
            }
        }
    }
    Ok(out)
}
