//! The replay engine: a plan (count, sample, estimated duration), then workers that claim one
//! row at a time (`SELECT … FOR UPDATE SKIP LOCKED` in its own transaction), deliver it, and
//! in that same transaction either delete it (2xx) or count the failure. A crash rolls the
//! transaction back, so every row is either delivered-and-removed or still in the DLQ.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use super::deliver::{Deliverer, DeliveryConfig, Outcome, SkipReason};
use super::source::{HttpSource, PgSource, Source};
use super::{DeadLetter, DlqError, Filter};
use crate::report::Reporter;

/// How many dead letters a plan shows.
const SAMPLE: usize = 5;

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub concurrency: usize,
    pub delivery: DeliveryConfig,
}

/// What a replay would do.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub count: u64,
    pub sample: Vec<DeadLetter>,
    pub by_endpoint: Vec<(String, u64)>,
    /// count ÷ rate when a rate is set; unknown otherwise.
    pub estimated_seconds: Option<f64>,
    #[serde(skip)]
    items: Vec<(i64, String)>,
}

/// One dead letter that could not be delivered.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub id: i64,
    pub target_url: String,
    pub error: String,
    pub tries: u32,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayReport {
    pub planned: u64,
    pub delivered: u64,
    pub failed: u64,
    pub skipped: u64,
    pub skipped_by_reason: BTreeMap<SkipReason, u64>,
    pub failures: Vec<Failure>,
    /// HTTP requests sent, retries included.
    pub requests: u64,
    pub elapsed_seconds: f64,
    pub interrupted: bool,
}

impl ReplayReport {
    fn skip(&mut self, reason: SkipReason) {
        self.skipped += 1;
        *self.skipped_by_reason.entry(reason).or_default() += 1;
    }

    fn record(&mut self, d_id: i64, target: &str, outcome: Outcome) {
        match outcome {
            Outcome::Delivered { tries, .. } => {
                self.delivered += 1;
                self.requests += u64::from(tries);
            }
            Outcome::Failed { error, tries, .. } => {
                self.failed += 1;
                self.requests += u64::from(tries);
                self.failures.push(Failure { id: d_id, target_url: target.to_string(), error, tries });
            }
        }
    }
}

/// Selects the dead letters a replay would send.
pub async fn plan(source: &Source, filter: &Filter, rate: Option<f64>) -> Result<Plan, DlqError> {
    let items = source.list(filter, false).await?;
    let mut endpoints = BTreeMap::<String, u64>::new();
    for d in &items {
        *endpoints.entry(d.endpoint()).or_default() += 1;
    }
    let count = items.len() as u64;
    Ok(Plan {
        count,
        sample: items.iter().take(SAMPLE).cloned().collect(),
        by_endpoint: super::sorted(endpoints.into_iter().collect()),
        estimated_seconds: rate.filter(|r| *r > 0.0).map(|r| count as f64 / r),
        items: items.iter().map(|d| (d.id, d.endpoint())).collect(),
    })
}

struct Shared<'a> {
    queue: Mutex<VecDeque<(i64, String)>>,
    report: Mutex<ReplayReport>,
    deliverer: Deliverer,
    reporter: &'a dyn Reporter,
}

impl Shared<'_> {
    fn next(&self) -> Option<(i64, String)> {
        if crate::signal::is_interrupted() {
            return None;
        }
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
    }

    fn with_report(&self, f: impl FnOnce(&mut ReplayReport)) {
        f(&mut self.report.lock().unwrap_or_else(|e| e.into_inner()));
        self.reporter.advance(1);
    }
}

/// Replays the plan's dead letters with `concurrency` workers. Ctrl-C stops claiming; in-flight
/// deliveries finish and the rest count as skipped.
pub async fn replay(
    source: &Source,
    plan: Plan,
    opts: &ReplayOptions,
    reporter: &dyn Reporter,
) -> Result<ReplayReport, DlqError> {
    let started = Instant::now();
    let workers = opts.concurrency.max(1).min(plan.items.len().max(1));
    let shared = Shared {
        queue: Mutex::new(plan.items.into_iter().collect()),
        report: Mutex::new(ReplayReport { planned: plan.count, ..Default::default() }),
        deliverer: Deliverer::new(opts.delivery.clone())?,
        reporter,
    };
    reporter.phase("replay", Some(plan.count));
    let results = match source {
        Source::Postgres(pg) => {
            let conns = futures::future::try_join_all((0..workers).map(|_| pg.connect())).await?;
            futures::future::join_all(conns.into_iter().map(|conn| pg_worker(pg, conn, &shared))).await
        }
        Source::Http(http) => futures::future::join_all((0..workers).map(|_| http_worker(http, &shared))).await,
    };
    reporter.finish();
    let mut report = shared.report.into_inner().unwrap_or_else(|e| e.into_inner());
    for _ in shared.queue.into_inner().unwrap_or_else(|e| e.into_inner()) {
        report.skip(SkipReason::Interrupted);
    }
    report.interrupted = crate::signal::is_interrupted();
    report.failures.sort_by_key(|f| f.id);
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(report)
}

async fn pg_worker(source: &PgSource, mut conn: sqlx::PgConnection, shared: &Shared<'_>) -> Result<(), DlqError> {
    let table = source.table.clone();
    while let Some((id, endpoint)) = shared.next() {
        if let Some(reason) = shared.deliverer.blocked(&endpoint) {
            shared.with_report(|r| r.skip(reason));
            continue;
        }
        let mut tx = sqlx::Connection::begin(&mut conn).await.map_err(|e| DlqError::query("begin", &table, e))?;
        let Some(d) = source.claim(&mut tx, id).await? else {
            shared.with_report(|r| r.skip(SkipReason::Claimed));
            continue;
        };
        let outcome = shared.deliverer.deliver(&d).await;
        match &outcome {
            Outcome::Delivered { .. } => source.remove(&mut tx, id).await?,
            Outcome::Failed { error, .. } => source.record_failure(&mut tx, id, error).await?,
        }
        tx.commit().await.map_err(|e| DlqError::query("commit", &table, e))?;
        shared.with_report(|r| r.record(id, &d.target_url, outcome));
    }
    Ok(())
}

async fn http_worker(source: &HttpSource, shared: &Shared<'_>) -> Result<(), DlqError> {
    while let Some((id, endpoint)) = shared.next() {
        if let Some(reason) = shared.deliverer.blocked(&endpoint) {
            shared.with_report(|r| r.skip(reason));
            continue;
        }
        let path = format!("/dlq/{id}/replay");
        let outcome = shared.deliverer.send(&endpoint, || source.request(reqwest::Method::POST, &path)).await;
        let target = format!("{}{path}", source.base);
        shared.with_report(|r| r.record(id, &target, outcome));
    }
    Ok(())
}
