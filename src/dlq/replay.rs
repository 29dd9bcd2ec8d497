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
    items: Vec<Item>,
}

/// A planned dead letter: what the workers need before claiming it.
#[derive(Debug, Clone)]
struct Item {
    id: i64,
    endpoint: String,
    target_url: String,
    /// The Idempotency-Key of the http source's replay call.
    key: String,
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
    /// The DLQ database was lost: a worker could not reconnect, and the rows it left were not
    /// replayed (exit 3, not a failed delivery).
    pub fn source_lost(&self) -> bool {
        self.skipped_by_reason.contains_key(&SkipReason::SourceUnavailable)
    }

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
            Outcome::Interrupted { tries } => {
                self.requests += u64::from(tries);
                self.skip(SkipReason::Interrupted);
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
        items: items
            .iter()
            .map(|d| Item {
                id: d.id,
                endpoint: d.endpoint(),
                target_url: d.target_url.clone(),
                key: super::deliver::idempotency_key(d),
            })
            .collect(),
    })
}

struct Shared<'a> {
    queue: Mutex<VecDeque<Item>>,
    report: Mutex<ReplayReport>,
    deliverer: Deliverer,
    reporter: &'a dyn Reporter,
}

impl Shared<'_> {
    fn next(&self) -> Option<Item> {
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
    match source {
        Source::Postgres(pg) => {
            let conns = futures::future::try_join_all((0..workers).map(|_| pg.connect())).await?;
            futures::future::join_all(conns.into_iter().map(|conn| pg_worker(pg, conn, &shared))).await;
        }
        Source::Http(http) => {
            futures::future::join_all((0..workers).map(|_| http_worker(http, &shared))).await;
        }
    }
    reporter.finish();
    let mut report = shared.report.into_inner().unwrap_or_else(|e| e.into_inner());
    report.interrupted = crate::signal::is_interrupted();
    // Rows left in the queue: Ctrl-C stopped claiming, or every worker lost the database.
    let left = if report.interrupted { SkipReason::Interrupted } else { SkipReason::SourceUnavailable };
    for _ in shared.queue.into_inner().unwrap_or_else(|e| e.into_inner()) {
        report.skip(left);
    }
    report.failures.sort_by_key(|f| f.id);
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// One worker on the Postgres source. A database error on a row (claim, removal, commit) is
/// recorded as that row's failure and the worker reconnects and goes on; it stops only when the
/// database cannot be reached again (the rows left are reported as skipped).
async fn pg_worker(source: &PgSource, conn: sqlx::PgConnection, shared: &Shared<'_>) {
    let mut conn = Some(conn);
    while let Some(item) = shared.next() {
        if let Some(reason) = shared.deliverer.blocked(&item.endpoint, &item.target_url) {
            shared.with_report(|r| r.skip(reason));
            continue;
        }
        let mut c = match conn.take() {
            Some(c) => c,
            None => match source.connect().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "replay worker stops: the DLQ database is unreachable");
                    shared.with_report(|r| r.skip(SkipReason::SourceUnavailable));
                    return;
                }
            },
        };
        match pg_row(source, &mut c, &item, shared).await {
            Ok(()) => conn = Some(c),
            Err(RowError { error, outcome }) => {
                let error = match &outcome {
                    Some(Outcome::Delivered { .. }) => format!("delivered, removal failed: will be re-sent ({error})"),
                    Some(Outcome::Failed { error: e, .. }) => format!("{e}; recording the failure failed: {error}"),
                    Some(Outcome::Interrupted { .. }) | None => format!("not claimed: {error}"),
                };
                let tries = match outcome {
                    Some(
                        Outcome::Delivered { tries, .. }
                        | Outcome::Failed { tries, .. }
                        | Outcome::Interrupted { tries },
                    ) => tries,
                    None => 0,
                };
                shared.with_report(|r| {
                    r.failed += 1;
                    r.requests += u64::from(tries);
                    r.failures.push(Failure { id: item.id, target_url: item.target_url.clone(), error, tries });
                });
                // The transaction was rolled back (dropped) with its connection, which may be
                // broken: the next row gets a fresh one.
            }
        }
    }
}

struct RowError {
    error: DlqError,
    /// What the delivery did before the database failed.
    outcome: Option<Outcome>,
}

/// Claims, delivers and settles one row in one transaction.
async fn pg_row(
    source: &PgSource,
    conn: &mut sqlx::PgConnection,
    item: &Item,
    shared: &Shared<'_>,
) -> Result<(), RowError> {
    let table = source.table.clone();
    let db = |error: DlqError| RowError { error, outcome: None };
    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(|e| db(DlqError::query("begin", &table, e)))?;
    let Some(d) = source.claim(&mut tx, item.id).await.map_err(db)? else {
        shared.with_report(|r| r.skip(SkipReason::Claimed));
        return Ok(());
    };
    let outcome = shared.deliverer.deliver(&d).await;
    let settled = match &outcome {
        Outcome::Delivered { .. } => source.remove(&mut tx, item.id).await,
        Outcome::Failed { error, ambiguous, .. } => source.record_failure(&mut tx, &d, error, *ambiguous).await,
        Outcome::Interrupted { .. } => {
            // Nothing is recorded: the claim is rolled back and the row stays as it was.
            drop(tx);
            shared.with_report(|r| r.record(item.id, &d.target_url, outcome));
            return Ok(());
        }
    };
    let settled = match settled {
        Ok(()) => tx.commit().await.map_err(|e| DlqError::query("commit", &table, e)),
        Err(e) => Err(e),
    };
    if let Err(error) = settled {
        return Err(RowError { error, outcome: Some(outcome) });
    }
    shared.with_report(|r| r.record(item.id, &d.target_url, outcome));
    Ok(())
}

async fn http_worker(source: &HttpSource, shared: &Shared<'_>) {
    while let Some(item) = shared.next() {
        if let Some(reason) = shared.deliverer.blocked(&item.endpoint, &item.target_url) {
            shared.with_report(|r| r.skip(reason));
            continue;
        }
        let path = format!("/dlq/{}/replay", item.id);
        let target = format!("{}{path}", source.base);
        // The same key on every retry of this call (a timeout may hide a replay that happened).
        let outcome = shared
            .deliverer
            .send(&item.endpoint, &item.target_url, || {
                source.request(reqwest::Method::POST, &path).header("idempotency-key", &item.key)
            })
            .await;
        if let Outcome::Failed { status: Some(404), tries, .. } = outcome {
            shared.with_report(|r| {
                r.requests += u64::from(tries);
                r.skip(SkipReason::NotFound);
            });
            continue;
        }
        shared.with_report(|r| r.record(item.id, &target, outcome));
    }
}
