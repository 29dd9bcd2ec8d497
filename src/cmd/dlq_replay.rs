//! `opsbook dlq-replay init | list | stats | replay | purge`.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{Ctx, Result};
use crate::cli::{DatabaseArgs, StoreArgs};
use crate::dlq::spec::{DlqSpec, FilterSpec, QueueSpec};
use crate::dlq::{self, DeadLetter, Filter, Plan, ReplayReport, Source};
use crate::error::Failure;
use crate::exit::ExitStatus;
use crate::ui::{progress, table};

#[derive(Debug, Args)]
pub struct DlqReplayArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Create the default dead-letter table (opsbook_dead_letters) if it does not exist.
    Init(InitArgs),
    /// List dead letters (oldest first) matching the filters.
    List(ListArgs),
    /// Counts by endpoint, event type and age; with --max, exit 1 when the DLQ holds more (the
    /// alert for cron).
    Stats(StatsArgs),
    /// Replay dead letters: a plan first, confirmation above --confirm-above on a terminal
    /// (--yes otherwise), rate-limited concurrent deliveries with retries, a final report; exit 1
    /// when any delivery failed.
    Replay(Box<ReplayArgs>),
    /// Delete dead letters older than --older-than, after archiving them as JSON Lines to the
    /// store. Destructive: confirmed on a terminal, --yes otherwise.
    Purge(PurgeArgs),
}

impl DlqCommand {
    pub fn name(&self) -> &'static str {
        match self {
            DlqCommand::Init(_) => "init",
            DlqCommand::List(_) => "list",
            DlqCommand::Stats(_) => "stats",
            DlqCommand::Replay(_) => "replay",
            DlqCommand::Purge(_) => "purge",
        }
    }
}

/// Where the dead letters are.
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// The service's DLQ API base instead of a table, e.g. https://api.example.com/v1/webhooks
    /// (lists GET …/dlq, replays POST …/dlq/:id/replay).
    #[arg(long, value_name = "URL")]
    pub source_url: Option<String>,
    /// Environment variable holding the API's bearer token (http source).
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    /// Header carrying --tenant to the API [default: X-Tenant-Id].
    #[arg(long, value_name = "NAME")]
    pub tenant_header: Option<String>,
    /// Dead-letter table, optionally schema-qualified [default: the profile's, else
    /// opsbook_dead_letters].
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
}

/// Which dead letters.
#[derive(Debug, Clone, Args)]
pub struct FilterArgs {
    /// Only these ids (repeatable).
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<i64>,
    /// Failed at or after: RFC 3339, a date, or an age such as 24h.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Failed before: RFC 3339, a date, or an age such as 1h.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Target URL glob (* and ?); without wildcards, a substring.
    #[arg(long, value_name = "PATTERN")]
    pub endpoint: Option<String>,
    /// Event type, exactly.
    #[arg(long, value_name = "TYPE")]
    pub event: Option<String>,
    /// Tenant, exactly (also sent as the tenant header to an http source).
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// At most this many, oldest first.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

impl SourceArgs {
    /// The flags as a spec's source.
    fn spec(&self) -> DlqSpec {
        DlqSpec {
            database_url: self.db.database_url.clone(),
            queue: QueueSpec {
                source_url: self.source_url.clone(),
                token_env: self.token_env.clone(),
                tenant_header: self.tenant_header.clone(),
                table: self.table.clone(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// The flags as a spec's source and filter.
    fn spec_with(&self, filter: &FilterArgs) -> DlqSpec {
        DlqSpec { filter: filter.spec(), ..self.spec() }
    }
}

impl FilterArgs {
    fn spec(&self) -> FilterSpec {
        FilterSpec {
            ids: self.ids.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            endpoint: self.endpoint.clone(),
            event: self.event.clone(),
            tenant: self.tenant.clone(),
            limit: self.limit,
        }
    }
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Include payloads (JSON output only; they may hold personal data).
    #[arg(long)]
    pub payloads: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Exit 1 when the DLQ holds more than N dead letters [default: the profile's max, else 50].
    #[arg(long, value_name = "N")]
    pub max: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Requests per second over all endpoints (retries included) [default: unlimited].
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Requests per second to any one endpoint (scheme://host:port).
    #[arg(long, value_name = "R")]
    pub endpoint_rate: Option<f64>,
    /// Deliveries in flight at once (each holds a database connection) [default: 8].
    #[arg(long, value_name = "C")]
    pub concurrency: Option<usize>,
    /// Retries per dead letter after the first attempt (5xx, 408, 429, timeouts, connection errors).
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Timeout of one request (to the targets, or to the http source's API).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Connect timeout of one request.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub connect_timeout: Option<Duration>,
    /// Consecutive failed deliveries that stop replaying to an endpoint for this run (0: never).
    #[arg(long, value_name = "N")]
    pub breaker: Option<u32>,
    /// Environment variable with the Standard Webhooks secret(s), whsec_<base64>, several
    /// separated by spaces while rotating: signs every delivery.
    #[arg(long, value_name = "VAR")]
    pub signing_secret_env: Option<String>,
    /// Ask for confirmation when more than N dead letters would be replayed.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub confirm_above: u64,
    /// Show the plan and send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Delete dead letters that failed longer ago than this, e.g. 30d.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub older_than: Duration,
}

impl ReplayArgs {
    /// The flags as a replay's spec.
    fn spec(&self) -> DlqSpec {
        let mut spec = self.source.spec_with(&self.filter);
        spec.queue.rate = self.rate;
        spec.queue.endpoint_rate = self.endpoint_rate;
        spec.queue.concurrency = self.concurrency;
        spec.queue.signing_secret_env = self.signing_secret_env.clone();
        DlqSpec {
            retries: self.retries,
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
            breaker: self.breaker,
            ..spec
        }
    }
}

pub async fn run(ctx: &Ctx<'_>, args: DlqReplayArgs) -> Result<ExitStatus> {
    match args.command {
        DlqCommand::Init(a) => init(ctx, a).await,
        DlqCommand::List(a) => list(ctx, a).await,
        DlqCommand::Stats(a) => stats(ctx, a).await,
        DlqCommand::Replay(a) => replay(ctx, *a).await,
        DlqCommand::Purge(a) => purge(ctx, a).await,
    }
}

fn open(ctx: &Ctx<'_>, spec: &DlqSpec) -> Result<Source> {
    Ok(crate::settings::dlq::source(&ctx.config, spec)?)
}

fn postgres_only<'a>(source: &'a Source, what: &str) -> Result<&'a dlq::PgSource> {
    match source {
        Source::Postgres(pg) => Ok(pg),
        Source::Http(_) => Err(Failure::usage(format!(
            "{what} works on the Postgres table; the http source's API has no such endpoint (use --database-url)"
        ))),
    }
}

async fn init(ctx: &Ctx<'_>, a: InitArgs) -> Result<ExitStatus> {
    let source = open(ctx, &a.source.spec())?;
    let pg = postgres_only(&source, "init")?;
    let created = pg.init().await?;
    if ctx.printer.is_json() {
        ctx.printer.report(ExitStatus::Success, &json!({ "table": pg.table, "created": created }))?;
    } else if created.is_empty() {
        ctx.printer.line(format!("table {} already exists; nothing changed", pg.table))?;
    } else {
        for table in &created {
            ctx.printer.line(format!("created table {table}"))?;
        }
    }
    Ok(ExitStatus::Success)
}

fn short(text: &str, n: usize) -> String {
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > n {
        format!("{}…", one.chars().take(n).collect::<String>())
    } else {
        one
    }
}

fn items_table(items: &[DeadLetter]) -> table::Table {
    let now = chrono::Utc::now();
    let mut t = table::new(&["id", "age", "event", "tenant", "attempts", "target", "last error"]);
    for d in items {
        t.add_row(vec![
            d.id.to_string(),
            d.failed_at.map_or_else(|| "-".into(), |f| table::age((now - f).num_seconds())),
            d.event_type.clone().unwrap_or_else(|| "-".into()),
            d.tenant.clone().unwrap_or_else(|| "-".into()),
            d.attempts.to_string(),
            d.target_url.clone(),
            short(d.last_error.as_deref().unwrap_or("-"), 60),
        ]);
    }
    t
}

async fn list(ctx: &Ctx<'_>, a: ListArgs) -> Result<ExitStatus> {
    let spec = a.source.spec_with(&a.filter);
    let source = open(ctx, &spec)?;
    let filter = Filter { limit: a.filter.limit.or(Some(100)), ..spec.filter.filter(chrono::Utc::now())? };
    let items = source.list(&filter, a.payloads && ctx.printer.is_json()).await?;
    if ctx.printer.is_json() {
        ctx.printer.report(ExitStatus::Success, &json!({ "source": source.describe(), "items": items }))?;
    } else if items.is_empty() {
        ctx.printer.line("no dead letters match")?;
    } else {
        ctx.printer.table(&items_table(&items))?;
        ctx.printer.line(format!("{} dead letter(s) shown (--limit {})", items.len(), filter.limit.unwrap_or(0)))?;
    }
    Ok(ExitStatus::Success)
}

async fn stats(ctx: &Ctx<'_>, a: StatsArgs) -> Result<ExitStatus> {
    let mut spec = a.source.spec_with(&a.filter);
    spec.queue.max = a.max;
    let source = open(ctx, &spec)?;
    let stats = source.stats(&spec.filter.filter(chrono::Utc::now())?).await?;
    let max = crate::settings::dlq::max(&ctx.config, &spec);
    let over = stats.total > max;
    let status = if over { ExitStatus::Failure } else { ExitStatus::Success };
    if ctx.printer.is_json() {
        ctx.printer
            .report(status, &json!({ "source": source.describe(), "max": max, "over_max": over, "stats": stats }))?;
        return Ok(status);
    }
    let oldest = stats
        .oldest
        .map_or_else(String::new, |o| format!(", oldest {} ago", table::age((chrono::Utc::now() - o).num_seconds())));
    ctx.printer.line(format!("{} dead letter(s){oldest}", stats.total))?;
    for (title, rows) in
        [("endpoint", &stats.by_endpoint), ("event type", &stats.by_event_type), ("age", &stats.by_age)]
    {
        if rows.is_empty() {
            continue;
        }
        let mut t = table::new(&[title, "count"]);
        for (k, n) in rows {
            t.add_row(vec![k.clone(), n.to_string()]);
        }
        ctx.printer.table(&t)?;
    }
    if over {
        ctx.printer
            .warn(format!("the DLQ holds {} dead letters, more than --max {max}: review and replay", stats.total));
    }
    Ok(status)
}

fn print_plan(ctx: &Ctx<'_>, plan: &Plan, rate: Option<f64>) -> Result<()> {
    let estimate = match (plan.estimated_seconds, rate) {
        (Some(s), Some(r)) => {
            format!(", about {} at {r}/s", humantime::format_duration(Duration::from_secs(s.ceil() as u64)))
        }
        _ => String::new(),
    };
    ctx.printer.line(format!("{} dead letter(s) to replay{estimate}", plan.count))?;
    if !plan.by_endpoint.is_empty() {
        let mut t = table::new(&["endpoint", "count"]);
        for (e, n) in &plan.by_endpoint {
            t.add_row(vec![e.clone(), n.to_string()]);
        }
        ctx.printer.table(&t)?;
    }
    if !plan.sample.is_empty() {
        ctx.printer.line("sample:")?;
        ctx.printer.table(&items_table(&plan.sample))?;
    }
    Ok(())
}

fn confirm(ctx: &Ctx<'_>, question: &str, refusal: &str) -> Result<()> {
    Ok(crate::ui::prompt::confirm(ctx.printer, ctx.global.yes, question, refusal)?)
}

async fn replay(ctx: &Ctx<'_>, a: ReplayArgs) -> Result<ExitStatus> {
    let spec = a.spec();
    let source = open(ctx, &spec)?;
    let opts = crate::settings::dlq::replay(&ctx.config, &spec, &source)?;
    let plan = dlq::plan(&source, &spec.filter.filter(chrono::Utc::now())?, opts.delivery.rate).await?;
    if a.dry_run {
        if ctx.printer.is_json() {
            ctx.printer.report(ExitStatus::Success, &json!({ "dry_run": true, "plan": plan }))?;
        } else {
            print_plan(ctx, &plan, opts.delivery.rate)?;
            ctx.printer.line("dry run: nothing was sent")?;
        }
        return Ok(ExitStatus::Success);
    }
    if plan.count == 0 {
        if ctx.printer.is_json() {
            ctx.printer.report(ExitStatus::Success, &json!({ "plan": plan, "report": ReplayReport::default() }))?;
        } else {
            ctx.printer.line("no dead letters match; nothing to replay")?;
        }
        return Ok(ExitStatus::Success);
    }
    if !ctx.printer.is_json() {
        print_plan(ctx, &plan, opts.delivery.rate)?;
    }
    if plan.count > a.confirm_above {
        confirm(
            ctx,
            &format!("Replay {} dead letter(s) from {}?", plan.count, source.describe()),
            &format!(
                "replaying {} dead letters (more than --confirm-above {}) needs confirmation: pass --yes without a terminal",
                plan.count, a.confirm_above
            ),
        )?;
    }
    let reporter = progress::items(ctx.printer, "dlq");
    let result = dlq::replay(&source, plan.clone(), &opts, reporter.as_ref()).await;
    reporter.finish();
    let report = result?;
    let status = if report.interrupted {
        ExitStatus::Interrupted
    } else if report.source_lost() {
        ExitStatus::Unavailable
    } else if report.failed > 0 {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    };
    if ctx.printer.is_json() {
        ctx.printer.report(status, &json!({ "plan": plan, "report": report }))?;
        return Ok(status);
    }
    if !report.failures.is_empty() {
        let mut t = table::new(&["id", "tries", "target", "error"]);
        for f in report.failures.iter().take(20) {
            t.add_row(vec![f.id.to_string(), f.tries.to_string(), f.target_url.clone(), short(&f.error, 80)]);
        }
        ctx.printer.table(&t)?;
        if report.failures.len() > 20 {
            ctx.printer.line(format!("… and {} more (--output json lists all)", report.failures.len() - 20))?;
        }
    }
    let skipped =
        report.skipped_by_reason.iter().map(|(r, n)| format!("{n} {}", r.as_str())).collect::<Vec<_>>().join(", ");
    ctx.printer.line(format!(
        "delivered {}, failed {}, skipped {}{} in {:.1}s ({} requests)",
        report.delivered,
        report.failed,
        report.skipped,
        if skipped.is_empty() { String::new() } else { format!(" ({skipped})") },
        report.elapsed_seconds,
        report.requests
    ))?;
    if report.interrupted {
        ctx.printer.warn("interrupted: claiming stopped, in-flight deliveries finished; the rest is still in the DLQ");
    } else if report.source_lost() {
        ctx.printer.warn(
            "the DLQ database became unreachable: the rows not replayed are still in the DLQ; run the replay again \
             once it is back",
        );
    }
    Ok(status)
}

async fn purge(ctx: &Ctx<'_>, a: PurgeArgs) -> Result<ExitStatus> {
    let source = open(ctx, &a.source.spec())?;
    let pg = postgres_only(&source, "purge")?;
    let cutoff = chrono::Utc::now()
        - chrono::Duration::from_std(a.older_than).map_err(|e| Failure::usage(format!("--older-than: {e}")))?;
    let store_url = ctx.config.store_url(a.store.store.as_deref(), None)?;
    let count = pg.count_older(cutoff).await?;
    if count == 0 {
        if ctx.printer.is_json() {
            ctx.printer.report(ExitStatus::Success, &json!({ "purged": 0, "archive": null }))?;
        } else {
            ctx.printer.line("no dead letters older than that; nothing to purge")?;
        }
        return Ok(ExitStatus::Success);
    }
    confirm(
        ctx,
        &format!(
            "Delete {count} dead letter(s) older than {} from {} (archived to {store_url} first)?",
            humantime::format_duration(a.older_than),
            pg.table
        ),
        &format!("purging {count} dead letters deletes them: pass --yes to confirm without a terminal"),
    )?;
    let store = crate::store::Store::open(&crate::store::StoreUrl::parse(&store_url)?, &Default::default()).await?;
    let key = format!("dlq-archive/{}/{}.jsonl", pg.table, chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
    let purged = pg.purge(cutoff, &store, &key).await?;
    if ctx.printer.is_json() {
        ctx.printer
            .report(ExitStatus::Success, &json!({ "purged": purged, "archive": format!("{store_url}/{key}") }))?;
    } else {
        ctx.printer.line(format!("purged {purged} dead letter(s); archived to {store_url}/{key}"))?;
    }
    Ok(ExitStatus::Success)
}
