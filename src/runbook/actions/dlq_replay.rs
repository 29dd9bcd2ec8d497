//! The `dlq-replay` action: DLQ stats (failing above `max`), a listing, or a replay as a step.
//! A dry run plans the replay and sends nothing; a failed delivery fails the step. Ctrl-C lets
//! in-flight deliveries finish (the engine does not drop this action) and fails the step as
//! interrupted when rows were left, so a resume replays them.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{ActionCtx, ActionError, Outputs};
use crate::dlq::spec::DlqSpec;
use crate::dlq::{self, DlqError, Filter};
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

fn classify(e: DlqError) -> ActionError {
    let message = e.to_string();
    match crate::error::Classify::class(&e) {
        crate::error::ErrorClass::Usage => ActionError::Input(message),
        crate::error::ErrorClass::Unavailable => ActionError::Unavailable(message),
        _ => ActionError::Failed(message),
    }
}

pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let spec = &input.spec;
    let source = settings::dlq::source(ctx.config, spec).map_err(classify)?;
    let filter = spec.filter.filter(chrono::Utc::now()).map_err(classify)?;
    let mut out = Outputs::new();
    match input.mode {
        Mode::Stats => {
            let stats = source.stats(&filter).await.map_err(classify)?;
            let max = settings::dlq::max(ctx.config, spec);
            out.insert("total".into(), stats.total.into());
            out.insert("by_endpoint".into(), serde_json::to_value(&stats.by_endpoint).unwrap_or_default());
            out.insert("by_event_type".into(), serde_json::to_value(&stats.by_event_type).unwrap_or_default());
            if stats.total > max {
                return Err(ActionError::Failed(format!(
                    "the DLQ holds {} dead letters, more than {max}",
                    stats.total
                )));
            }
        }
        Mode::List => {
            let filter = Filter { limit: filter.limit.or(Some(100)), ..filter };
            let items = source.list(&filter, false).await.map_err(classify)?;
            out.insert("count".into(), items.len().into());
            out.insert("ids".into(), items.iter().map(|d| Value::from(d.id)).collect::<Vec<_>>().into());
        }
        Mode::Replay => {
            let opts = settings::dlq::replay(ctx.config, spec, &source).map_err(classify)?;
            let plan = dlq::plan(&source, &filter, opts.delivery.rate).await.map_err(classify)?;
            out.insert("planned".into(), plan.count.into());
            if ctx.dry_run {
                return Ok(out);
            }
            let report = dlq::replay(&source, plan, &opts, ctx.reporter).await.map_err(classify)?;
            out.insert("delivered".into(), report.delivered.into());
            out.insert("failed".into(), report.failed.into());
            out.insert("skipped".into(), report.skipped.into());
            if report.interrupted && report.skipped > 0 {
                // In-flight deliveries finished and were recorded; the rest stay for --resume.
                return Err(ActionError::Interrupted(format!(
                    "interrupted: {} of {} dead letters delivered, {} failed, {} not attempted and still in \
                     the DLQ; `opsbook run --resume {}` replays them",
                    report.delivered, report.planned, report.failed, report.skipped, ctx.run_id
                )));
            }
            if report.source_lost() {
                return Err(ActionError::Unavailable(format!(
                    "the DLQ database became unreachable: {} of {} dead letters delivered; the rest are still in \
                     the DLQ (`opsbook run --resume {}` once it is back)",
                    report.delivered, report.planned, ctx.run_id
                )));
            }
            if report.failed > 0 {
                let first =
                    report.failures.iter().take(3).map(|f| format!("#{}: {}", f.id, f.error)).collect::<Vec<_>>();
                return Err(ActionError::Failed(format!(
                    "{} of {} dead letters could not be delivered and stay in the DLQ ({})",
                    report.failed,
                    report.planned,
                    first.join("; ")
                )));
            }
        }
    }
    Ok(out)
}
