//! `backup objects`: an incremental copy of an object store (the media bucket) to a second
//! provider or a local directory, with a per-run inventory beside the database backups.
//!
//! Flow: lock → heartbeat → list both sides → plan against the newest inventory and the local
//! journal → copy (bounded concurrency, streamed, hashed, retried) → retain or remove copies of
//! deleted sources → inventory, then summary → metrics and heartbeat.

pub mod copy;
pub mod inventory;
pub mod plan;
pub mod spec;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde::Serialize;

use self::copy::{CopyFailure, RetryPolicy};
use self::inventory::{InventoryEntry, Journal, ObjectSetSummary};
use self::plan::{CopyReason, Deletion, PlannedCopy};
use super::layout::BackupId;
use crate::error::{Classify, ErrorClass};
use crate::notify::{self, Heartbeat, Sample};
use crate::report::Reporter;
use crate::store::{Store, StoreError, StoreOptions, StoreUrl, UploadConfig};

pub use inventory::{ObjectSetEntry, SUMMARY_FILE};

/// The set used when none is named.
pub const DEFAULT_SET: &str = "media";

#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error(transparent)]
    SetName(#[from] crate::backup::layout::SetNameError),
    #[error("--concurrency must be at least 1")]
    NoConcurrency,
    #[error("--part-size {size} is below 5 MiB, the S3 minimum for multipart parts")]
    PartSize { size: usize },
    #[error("--multipart-threshold {threshold} is above 5 GiB, the S3 limit for one PutObject")]
    MultipartThreshold { threshold: u64 },
    /// `flag` names the store (`--from`, `--to`, `--store`).
    #[error("{flag} is empty: give a store URL or a configured store name")]
    EmptyStore { flag: &'static str },
    #[error("{flag}: {error}")]
    StoreUrl { flag: &'static str, error: StoreError },
    /// A --from directory that does not exist or is not a directory: a mistyped --from, not an
    /// empty source. `why` says which; `hint` what the name given may have meant.
    #[error(
        "--from {url}: the source directory {} {why}{}; check --from (a store URL, a directory, or the name of a \
         [profiles.NAME.stores.STORE] table)",
        root.display(),
        hint.as_deref().map(|h| format!(" and {h}")).unwrap_or_default()
    )]
    NoSource { url: String, root: PathBuf, why: &'static str, hint: Option<String> },
    #[error(
        "--to {to} and the backup store {store} overlap: the copy would list the inventories as objects; give the \
         copy its own prefix or bucket"
    )]
    Overlap { to: String, store: String },
    #[error("--from and --to are the same store ({url})")]
    SameStore { url: String },
    #[error("invalid inventory {key}: {message}")]
    Inventory { key: String, message: String },
    #[error("cannot use the resume journal {path}: {source}")]
    Journal { path: PathBuf, source: std::io::Error },
    #[error(
        "{failed} of {planned} copies failed (first: {first} after {attempts} attempt(s)); {done} finished copies \
         are in the journal and the next run resumes from there; no inventory was written"
    )]
    Copies { failed: usize, planned: usize, done: usize, attempts: u32, first: StoreError },
    #[error("interrupted; {done} finished copies are in the journal and the next run resumes from there")]
    Interrupted { done: usize },
    /// The delete guard: the plan would mark or remove most of the copy.
    #[error(transparent)]
    Refused(#[from] plan::GuardRefusal),
}

impl Classify for ObjectsError {
    fn class(&self) -> ErrorClass {
        match self {
            ObjectsError::Store(e) => e.class(),
            ObjectsError::Config(_)
            | ObjectsError::SetName(_)
            | ObjectsError::NoConcurrency
            | ObjectsError::PartSize { .. }
            | ObjectsError::MultipartThreshold { .. }
            | ObjectsError::EmptyStore { .. }
            | ObjectsError::StoreUrl { .. }
            | ObjectsError::NoSource { .. }
            | ObjectsError::Overlap { .. }
            | ObjectsError::SameStore { .. } => ErrorClass::Usage,
            ObjectsError::Lock(e) => e.class(),
            ObjectsError::Copies { first, .. } => first.class(),
            ObjectsError::Interrupted { .. } => ErrorClass::Interrupted,
            ObjectsError::Inventory { .. } | ObjectsError::Journal { .. } | ObjectsError::Refused(_) => {
                ErrorClass::Failed
            }
        }
    }
}

/// A store to open: its URL and the connection settings for it.
#[derive(Debug, Clone)]
pub struct StoreSpec {
    pub url: String,
    pub options: StoreOptions,
    /// Said when the store is a local directory that does not exist, e.g. that the name given
    /// is not one of the profile's stores.
    pub hint: Option<String>,
}

impl StoreSpec {
    async fn open(&self, flag: &'static str) -> Result<Store, ObjectsError> {
        let parsed = StoreUrl::parse(&self.url).map_err(|error| ObjectsError::StoreUrl { flag, error })?;
        Ok(Store::open(&parsed, &self.options).await?)
    }
}

/// What `backup objects` was asked to do, fully resolved.
#[derive(Debug, Clone)]
pub struct ObjectsRequest {
    pub from: StoreSpec,
    pub to: StoreSpec,
    /// Where inventories go: the backup store.
    pub store: StoreSpec,
    pub set: String,
    /// Objects copied at once.
    pub concurrency: usize,
    pub deletion: Deletion,
    pub dry_run: bool,
    /// Stop starting copies once this many bytes are planned; the rest waits for the next run.
    pub max_bytes: Option<u64>,
    pub part_size: usize,
    /// Largest object streamed in one PutObject where the destination allows it.
    pub multipart_threshold: u64,
    pub retry: RetryPolicy,
    pub notify_url: Option<String>,
    pub metrics_file: Option<PathBuf>,
    /// Carry out a plan that marks or removes more than half of the copy.
    pub force: bool,
}

/// One planned or finished copy, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct CopyLine {
    pub key: String,
    pub size: u64,
    pub reason: CopyReason,
}

/// What a run did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct ObjectsReport {
    pub set: String,
    pub from: String,
    pub to: String,
    pub dry_run: bool,
    /// The run id; `None` for a dry run.
    pub id: Option<String>,
    pub source_objects: u64,
    pub source_bytes: u64,
    pub copied: u64,
    pub copied_bytes: u64,
    /// Copies taken over from the journal of an interrupted run.
    pub resumed: u64,
    pub unchanged: u64,
    pub retained: u64,
    pub removed: u64,
    pub deferred: u64,
    pub duration_seconds: f64,
    pub inventory_key: Option<String>,
    pub copies: Vec<CopyLine>,
    pub removals: Vec<String>,
    /// Dry runs only: why the real run would refuse this plan (and that `--force` allows it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<plan::GuardRefusal>,
}

/// A source directory that does not exist is a mistyped --from, not an empty source: read as
/// empty, it would mark (or, with --delete-extraneous, remove) the whole copy.
fn require_source(from: &Store, spec: &StoreSpec) -> Result<(), ObjectsError> {
    let Store::Local(local) = from else { return Ok(()) };
    let root = local.root();
    if root.is_dir() {
        return Ok(());
    }
    let why = if root.exists() { "is not a directory" } else { "does not exist" };
    Err(ObjectsError::NoSource { url: spec.url.clone(), root: root.to_path_buf(), why, hint: spec.hint.clone() })
}

fn check_overlap(to: &str, store: &str) -> Result<(), ObjectsError> {
    let nested = |a: &str, b: &str| a == b || a.strip_prefix(b).is_some_and(|r| r.starts_with('/'));
    if nested(to, store) || nested(store, to) {
        return Err(ObjectsError::Overlap { to: to.to_string(), store: store.to_string() });
    }
    Ok(())
}

/// Lock, heartbeat, copy, metrics: the whole job, as `backup objects` and the `backup-objects`
/// runbook action run it.
pub async fn run_job(req: &ObjectsRequest, reporter: &dyn Reporter) -> Result<ObjectsReport, ObjectsError> {
    let from = req.from.open("--from").await?;
    require_source(&from, &req.from)?;
    let to = req.to.open("--to").await?;
    let store = req.store.open("--store").await?;
    check_overlap(&to.url().to_string(), &store.url().to_string())?;
    if from.url() == to.url() {
        return Err(ObjectsError::SameStore { url: from.url().to_string() });
    }
    let _lock = crate::lock::try_lock(
        "backup-objects",
        &format!("object copy to {}", to.url()),
        &format!("backup objects --set {}", req.set),
    )?;
    if req.dry_run {
        return run(req, &from, &to, &store, reporter).await;
    }
    let heartbeat = Heartbeat::new(req.notify_url.clone());
    heartbeat.start().await;
    let started = Instant::now();
    let outcome = run(req, &from, &to, &store, reporter).await;
    write_metrics(req, outcome.as_ref().ok(), started.elapsed().as_secs_f64());
    match &outcome {
        Ok(r) => {
            heartbeat
                .success(format!(
                    "object copy {} of set {}: {} copied ({} bytes), {} objects in the copy",
                    r.id.as_deref().unwrap_or("-"),
                    r.set,
                    r.copied,
                    r.copied_bytes,
                    r.unchanged + r.copied + r.resumed + r.retained
                ))
                .await
        }
        Err(e) => heartbeat.fail(format!("object copy of set {} to {} failed: {e}", req.set, to.url())).await,
    }
    outcome
}

/// The copy itself, under the caller's lock.
// Long by design: list → plan → guard → copy → inventory, each stage using what the ones before it built.
pub async fn run(
    req: &ObjectsRequest,
    from: &Store,
    to: &Store,
    store: &Store,
    reporter: &dyn Reporter,
) -> Result<ObjectsReport, ObjectsError> {
    let started_at = chrono::Utc::now();
    let started = Instant::now();
    reporter.phase("list", None);
    let to_url = to.url().to_string();
    let (source, dest, previous) =
        tokio::join!(from.list(""), to.list(""), inventory::latest(store, &req.set, &to_url));
    reporter.finish();
    let (source, dest) = (source?, dest?);
    let previous = match previous? {
        Some(run) => inventory::read_inventory(store, &run).await?,
        None => Vec::new(),
    };
    let mut journal = Journal::at(&crate::state::state_dir(), &from.url().to_string(), &to.url().to_string(), &req.set);
    let journaled = journal.load()?;
    let journaled_keys: std::collections::HashSet<String> = journaled.iter().map(|e| e.key.clone()).collect();
    let records = inventory::merge(previous, journaled);

    let source_objects = source.len() as u64;
    let source_bytes = source.iter().map(|o| o.size).sum();
    let now = chrono::Utc::now();
    let mut planned = plan::plan(source, &dest, &records, req.deletion, now);
    let resumed = planned.unchanged.iter().filter(|e| journaled_keys.contains(&e.key)).count() as u64;
    let (copies, deferred) = plan::take_budget(std::mem::take(&mut planned.copy), req.max_bytes);

    let mut report = ObjectsReport {
        set: req.set.clone(),
        from: from.url().to_string(),
        to: to.url().to_string(),
        dry_run: req.dry_run,
        id: None,
        source_objects,
        source_bytes,
        copied: copies.len() as u64,
        copied_bytes: copies.iter().map(|c| c.source.size).sum(),
        resumed,
        unchanged: planned.unchanged.len() as u64 - resumed,
        retained: planned.retained.len() as u64,
        removed: planned.remove.len() as u64,
        deferred: deferred.len() as u64,
        duration_seconds: 0.0,
        inventory_key: None,
        copies: copies
            .iter()
            .map(|c| CopyLine { key: c.source.key.clone(), size: c.source.size, reason: c.reason })
            .collect(),
        removals: planned.remove.iter().map(|e| e.key.clone()).collect(),
        refused: None,
    };
    // Only what this run newly finds gone from the source: copies marked in an earlier run
    // (which passed the guard then) and now past --retain-deleted are routine removals.
    let newly_gone = |e: &&InventoryEntry| e.deleted_at == Some(now);
    let marked = planned.remove.iter().filter(newly_gone).count() + planned.retained.iter().filter(newly_gone).count();
    match plan::check_guard(marked, dest.len(), req.force) {
        Err(why) if req.dry_run => report.refused = Some(why),
        guard => guard?,
    }
    if req.dry_run {
        report.duration_seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }

    reporter.phase("copy", Some(report.copied_bytes));
    let copied = copy_all(req, from, to, copies, &mut journal, reporter).await;
    reporter.finish();
    let copied = match copied {
        Ok(copied) => copied,
        Err(e) => {
            journal.sync();
            return Err(e);
        }
    };

    for entry in &planned.remove {
        to.delete(&entry.key).await?;
    }
    let mut entries = planned.unchanged;
    entries.extend(copied);
    entries.extend(planned.retained);
    entries.extend(deferred.into_iter().filter_map(|c| c.previous));

    let summary = write_inventory(store, &report, started_at, &mut entries).await?;
    journal.clear()?;
    report.id = Some(summary.id);
    report.inventory_key = Some(summary.inventory_key);
    report.duration_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Stores the run's inventory, `entries` (what the copy now holds), and its summary.
async fn write_inventory(
    store: &Store,
    report: &ObjectsReport,
    started_at: chrono::DateTime<chrono::Utc>,
    entries: &mut [InventoryEntry],
) -> Result<ObjectSetSummary, ObjectsError> {
    let id = BackupId::new(started_at);
    let summary = ObjectSetSummary {
        format_version: inventory::FORMAT_VERSION,
        kind: "objects".into(),
        tool: super::run::tool_name(),
        id: id.to_string(),
        set: report.set.clone(),
        from: report.from.clone(),
        to: report.to.clone(),
        started: started_at,
        finished: chrono::Utc::now(),
        objects: entries.len() as u64,
        bytes: entries.iter().map(|e| e.size).sum(),
        copied: report.copied,
        copied_bytes: report.copied_bytes,
        resumed: report.resumed,
        retained: report.retained,
        removed: report.removed,
        deferred: report.deferred,
        inventory_key: String::new(),
        inventory_sha256: String::new(),
    };
    inventory::write_run(store, &id, summary, entries).await
}

/// Runs the copies, `concurrency` at a time; each finished copy goes to the journal at once.
/// A copy that fails after its retries, or an interrupt, stops new copies from starting (a
/// store that keeps failing is not hammered object by object); copies in flight finish and are
/// journaled.
async fn copy_all(
    req: &ObjectsRequest,
    from: &Store,
    to: &Store,
    copies: Vec<PlannedCopy>,
    journal: &mut Journal,
    reporter: &dyn Reporter,
) -> Result<Vec<InventoryEntry>, ObjectsError> {
    let planned = copies.len();
    let shape = copy::CopyShape {
        upload: UploadConfig { part_size: req.part_size, in_flight: 2 },
        stream_up_to: to.streams_puts().then_some(req.multipart_threshold),
    };
    let mut done = Vec::with_capacity(planned);
    let mut failures: Vec<CopyFailure> = Vec::new();
    let mut interrupted = false;
    let stop = Arc::new(AtomicBool::new(false));
    let retry = req.retry;
    // Each copy is a task of its own, so hashing and buffering spread over the runtime's
    // threads instead of all being polled from this one.
    let mut results = stream::iter(copies)
        .map(|c| {
            let (from, to, stop) = (from.clone(), to.clone(), stop.clone());
            tokio::spawn(async move {
                if crate::signal::is_interrupted() || stop.load(Ordering::Relaxed) {
                    return None;
                }
                Some(copy::copy_with_retries(&from, &to, &c.source, shape, retry).await)
            })
        })
        .buffer_unordered(req.concurrency.max(1));
    while let Some(joined) = results.next().await {
        // A copy task only ends by finishing or panicking; a panic stays a panic.
        let result = joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        match result {
            None => interrupted |= crate::signal::is_interrupted(),
            Some(Ok(entry)) => {
                reporter.advance(entry.size);
                journal.record(&entry)?;
                done.push(entry);
            }
            Some(Err(failure)) => {
                tracing::warn!("copy failed after {} attempt(s): {}", failure.attempts, failure.error);
                failures.push(failure);
                stop.store(true, Ordering::Relaxed);
            }
        }
    }
    if interrupted || crate::signal::is_interrupted() {
        return Err(ObjectsError::Interrupted { done: done.len() });
    }
    if let Some(first) = failures.first() {
        let attempts = first.attempts;
        let failed = failures.len();
        let first = failures.swap_remove(0).error;
        return Err(ObjectsError::Copies { failed, planned, done: done.len(), attempts, first });
    }
    Ok(done)
}

fn write_metrics(req: &ObjectsRequest, report: Option<&ObjectsReport>, duration: f64) {
    let Some(path) = &req.metrics_file else { return };
    let labels = vec![("set", req.set.clone())];
    let now = chrono::Utc::now().timestamp() as f64;
    let sample = |name, help, value| Sample { name, help, labels: labels.clone(), value };
    let mut samples = vec![
        sample("opsbook_objects_last_run_timestamp_seconds", "Unix time the last object copy run ended.", now),
        sample(
            "opsbook_objects_last_run_success",
            "1 when the last object copy run succeeded, else 0.",
            if report.is_some() { 1.0 } else { 0.0 },
        ),
        sample("opsbook_objects_last_run_duration_seconds", "Duration of the last object copy run.", duration),
    ];
    if let Some(r) = report {
        samples.extend([
            sample("opsbook_objects_last_success_timestamp_seconds", "Unix time the last successful copy ended.", now),
            sample(
                "opsbook_objects_last_success_copied",
                "Objects copied by the last successful run.",
                r.copied as f64,
            ),
            sample(
                "opsbook_objects_last_success_copied_bytes",
                "Bytes copied by the last successful run.",
                r.copied_bytes as f64,
            ),
            sample(
                "opsbook_objects_source_objects",
                "Objects in the source at the last successful run.",
                r.source_objects as f64,
            ),
            sample("opsbook_objects_retained", "Copies kept after their source was deleted.", r.retained as f64),
            sample("opsbook_objects_deferred", "Copies left for a later run by --max-bytes.", r.deferred as f64),
        ]);
    }
    if let Err(e) = notify::update_textfile(path, &samples) {
        tracing::warn!("cannot write metrics file {}: {e}", path.display());
    }
}

/// The retention window for copies of deleted sources when none is given.
pub const DEFAULT_RETAIN_DELETED: Duration = Duration::from_secs(30 * 24 * 3600);

#[cfg(test)]
mod tests {
    #[test]
    fn overlapping_prefixes_are_refused() {
        assert!(super::check_overlap("s3://b/media", "s3://b/media/backups").is_err());
        assert!(super::check_overlap("s3://b/media", "s3://b/media").is_err());
        assert!(super::check_overlap("s3://b/backups", "s3://b").is_err());
        assert!(super::check_overlap("s3://b/media-copy", "s3://b/media").is_ok());
    }
}
