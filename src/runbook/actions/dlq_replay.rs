//! The `dlq-replay` action: DLQ stats (failing above `max`), a listing, or a replay as a step.
//! A dry run plans the replay and sends nothing; a failed delivery fails the step. Ctrl-C lets
//! in-flight deliveries finish (the engine does not drop this action) and fails the step as
//! interrupted when rows were left, so a resume replays them.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{ActionCtx, ActionError, Outputs};
use crate::dlq::resolve::{self, DeliveryOptions, SourceOptions};
use crate::dlq::{self, DlqError, Filter, ReplayOptions};

#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Stats,
    List,
    #[default]
    Replay,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// stats, list or replay [default: replay].
    #[serde(default)]
    pub mode: Mode,
    /// Database with the dead-letter table [default: DATABASE_URL / profile].
    pub database_url: Option<String>,
    /// The service's DLQ API base instead of a table.
    pub source_url: Option<String>,
    /// Environment variable with the API's bearer token.
    pub token_env: Option<String>,
    /// Dead-letter table [default: the profile's, else opsbook_dead_letters].
    pub table: Option<String>,
    #[serde(default)]
    pub ids: Vec<i64>,
    /// RFC 3339, a date or an age (24h).
    pub since: Option<String>,
    pub until: Option<String>,
    /// Target URL glob.
    pub endpoint: Option<String>,
    pub event: Option<String>,
    pub tenant: Option<String>,
    pub limit: Option<u64>,
    /// stats: fail the step when the DLQ holds more [default: the profile's max, else 50].
    pub max: Option<u64>,
    /// replay: requests per second overall and per endpoint.
    pub rate: Option<f64>,
    pub endpoint_rate: Option<f64>,
    /// replay: deliveries in flight [default: 8].
    pub concurrency: Option<usize>,
    pub retries: Option<u32>,
    /// replay: environment variable with the Standard Webhooks secret(s).
    pub signing_secret_env: Option<String>,
}

fn some(v: &Option<String>) -> Option<String> {
    v.as_deref().filter(|s| !s.trim().is_empty()).map(String::from)
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
    let source = resolve::source(
        ctx.config,
        &SourceOptions {
            database_url: some(&input.database_url),
            source_url: some(&input.source_url),
            token_env: some(&input.token_env),
            tenant_header: None,
            tenant: some(&input.tenant),
            table: some(&input.table),
            ..Default::default()
        },
    )
    .map_err(classify)?;
    let now = chrono::Utc::now();
    let time = |v: &Option<String>| some(v).map(|t| dlq::parse_time(&t, now).map_err(ActionError::Input)).transpose();
    let filter = Filter {
        ids: input.ids.clone(),
        since: time(&input.since)?,
        until: time(&input.until)?,
        endpoint: some(&input.endpoint),
        event: some(&input.event),
        tenant: some(&input.tenant),
        limit: input.limit,
    };
    let mut out = Outputs::new();
    match input.mode {
        Mode::Stats => {
            let stats = source.stats(&filter).await.map_err(classify)?;
            let max = input.max.or(ctx.config.profile.dlq.max).unwrap_or(dlq::DEFAULT_MAX);
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
            let delivery = resolve::delivery(
                ctx.config,
                &DeliveryOptions {
                    rate: input.rate,
                    endpoint_rate: input.endpoint_rate,
                    retries: input.retries,
                    signing_secret_env: some(&input.signing_secret_env),
                    ..Default::default()
                },
            )
            .map_err(classify)?;
            let plan = dlq::plan(&source, &filter, delivery.rate).await.map_err(classify)?;
            out.insert("planned".into(), plan.count.into());
            if ctx.dry_run {
                return Ok(out);
            }
            let concurrency = input.concurrency.or(ctx.config.profile.dlq.concurrency).unwrap_or(8).max(1);
            let report = dlq::replay(&source, plan, &ReplayOptions { concurrency, delivery }, ctx.reporter)
                .await
                .map_err(classify)?;
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
