//! The drill, step by step. Every step is timed and reported; the target is cleaned up on every
//! path (success, failed step, error, Ctrl-C) unless `keep`.

use std::time::Instant;

use chrono::Utc;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use super::checks::{check_sql, finish_rto, migrations, row_counts};
use super::restore::{self, RestoreJob};
use super::target::Target;
use super::{objects, DrillError, DrillReport, DrillRequest, Measure, ObjectsSpec, Outcome, Step, Which};
use crate::backup::catalog::{self, BackupEntry, Catalog};
use crate::backup::BackupError;
use crate::pg;
use crate::report::Reporter;
use crate::store::{Store, StoreOptions};

pub(super) struct Steps {
    pub(super) steps: Vec<Step>,
    /// The step under way, named in the report when an error ends the drill there.
    stage: &'static str,
    stage_started: Instant,
    /// Whether the error that ended the drill already has its failed step.
    recorded: bool,
}

impl Steps {
    pub(super) fn stage(&mut self, name: &'static str) {
        self.stage = name;
        self.stage_started = Instant::now();
    }
    /// Records the error that stopped the drill as the failure of the step under way.
    fn fail_stage(&mut self, error: &DrillError) {
        let (name, since) = (self.stage, self.stage_started);
        self.push(name, Outcome::Failed, since, crate::redact::redact(&error.to_string()));
        self.recorded = true;
    }
    pub(super) fn push(&mut self, name: &str, outcome: Outcome, since: Instant, detail: impl Into<String>) {
        self.steps.push(Step {
            name: name.into(),
            outcome,
            seconds: since.elapsed().as_secs_f64(),
            detail: detail.into(),
        });
    }
    pub(super) fn skip(&mut self, name: &str, why: &str) {
        self.steps.push(Step { name: name.into(), outcome: Outcome::Skipped, seconds: 0.0, detail: why.into() });
    }
    pub(super) fn passed_or_failed(ok: bool) -> Outcome {
        if ok {
            Outcome::Passed
        } else {
            Outcome::Failed
        }
    }
}

fn new_drill_id() -> String {
    format!("{}-{:04x}", Utc::now().format("%Y%m%dt%H%M%S"), rand::rng().random::<u16>())
}

/// Picks the backup to drill.
fn select<'a>(
    catalog: &'a Catalog,
    set: &str,
    which: &Which,
    rng: &mut StdRng,
) -> Result<&'a BackupEntry, BackupError> {
    match which {
        Which::Latest => catalog.find(set, "latest"),
        Which::Id(id) => catalog.find(set, id),
        Which::Random => {
            let in_set: Vec<&BackupEntry> = catalog.backups.iter().filter(|b| b.set == set).collect();
            in_set.choose(rng).copied().ok_or_else(|| BackupError::NotFound {
                set: set.into(),
                id: "random".into(),
                hint: "; the set has no complete backup yet (run `opsbook backup run`)".into(),
                named: false,
            })
        }
    }
}

/// A drill that ended in an error rather than a verdict: the error, and the report of the steps
/// up to it (the last failed step names where it stopped), for the report files.
#[derive(Debug)]
pub struct DrillFailure {
    pub error: DrillError,
    pub report: DrillReport,
}

/// Runs a drill and stores its record beside the backup.
pub async fn drill(req: &DrillRequest, reporter: &dyn Reporter) -> Result<DrillReport, DrillError> {
    drill_reporting(req, reporter).await.map_err(|failure| failure.error)
}

/// [`drill`], keeping the report of a drill that ended in an error. Every failure after the
/// start ping pings `/fail` and updates the metrics file, as a failed check does.
pub async fn drill_reporting(req: &DrillRequest, reporter: &dyn Reporter) -> Result<DrillReport, Box<DrillFailure>> {
    let started = Utc::now();
    let seed = req.seed.unwrap_or_else(|| rand::rng().random());
    let heartbeat = crate::notify::Heartbeat::new(req.notify_url.clone());
    heartbeat.start().await;
    let mut report = DrillReport {
        tool: crate::backup::run::tool_name(),
        drill_id: new_drill_id(),
        time: started,
        started,
        ok: false,
        store: req.store_url.clone(),
        set: req.set.clone(),
        backup_id: String::new(),
        backup_snapshot: None,
        seed,
        target: String::new(),
        restore_mode: String::new(),
        restored_bytes: 0,
        steps: Vec::new(),
        tables: Vec::new(),
        row_count_method: None,
        sql_checks: Vec::new(),
        migrations: None,
        objects: None,
        rto: Measure { seconds: 0.0, target_seconds: req.rto_target.map(|d| d.as_secs_f64()), ok: true },
        rto_seconds_per_gib: None,
        rpo: Measure { seconds: 0.0, target_seconds: req.rpo_target.map(|d| d.as_secs_f64()), ok: true },
        kept: None,
        record_key: None,
        error: None,
    };
    let mut steps = Steps { steps: Vec::new(), stage: "select", stage_started: Instant::now(), recorded: false };
    match attempt(req, reporter, &mut report, &mut steps).await {
        Ok(()) => {
            if report.ok {
                heartbeat.success(format!("drill of {} passed", report.backup_id)).await;
            } else {
                let failed: Vec<String> = report.failed_steps().map(|s| format!("{}: {}", s.name, s.detail)).collect();
                heartbeat.fail(failed.join("; ")).await;
            }
            if let Some(path) = &req.metrics_file {
                write_metrics(path, &report);
            }
            Ok(report)
        }
        Err(error) => {
            if !steps.recorded {
                steps.fail_stage(&error);
            }
            report.steps = steps.steps;
            report.ok = false;
            report.time = Utc::now();
            report.error = Some(crate::redact::redact(&error.to_string()).into_owned());
            heartbeat.fail(format!("drill of set {} failed: {error}", req.set)).await;
            if let Some(path) = &req.metrics_file {
                write_metrics(path, &report);
            }
            Err(Box::new(DrillFailure { error, report }))
        }
    }
}

/// The drill proper: fills `report`; an error leaves the steps so far in `steps`.
async fn attempt(
    req: &DrillRequest,
    reporter: &dyn Reporter,
    report: &mut DrillReport,
    steps: &mut Steps,
) -> Result<(), DrillError> {
    let mut rng = StdRng::seed_from_u64(report.seed);
    let drill_id = report.drill_id.clone();

    let t = Instant::now();
    steps.stage("select");
    let store = Store::open_url(&req.store_url, &StoreOptions::default()).await?;
    report.store = store.url().to_string();
    let catalog = Catalog::load(&store, Some(&req.set)).await?;
    let entry = select_backup(req, &catalog, &mut rng, report, steps, t)?;
    let newest_snapshot = catalog.backups.iter().filter(|b| b.set == req.set).map(|b| b.manifest.snapshot_time).max();
    let (tools, target) = create_target(req, entry, &drill_id, report, steps).await?;

    let run = DrillRun {
        req,
        store: &store,
        entry,
        tools: &tools,
        target: &target,
        drill_id: &drill_id,
        reporter,
        rng: &mut rng,
        steps,
        report,
    };
    let outcome = run.run_interruptible().await;
    clean_up(req, target, outcome, report, steps).await?;

    measure_rpo(report, steps, newest_snapshot);
    steps.stage("record");
    report.steps = steps.steps.clone();
    report.ok = report.steps.iter().all(|s| s.outcome != Outcome::Failed);
    report.time = Utc::now();
    report.record_key = Some(catalog::put_record(&store, &entry.dir, "drill", report.time, &*report).await?);
    Ok(())
}

/// Picks the backup and checks that the drill can restore it (an identity for an encrypted
/// one, a data object): the "select" step, started at `t`.
fn select_backup<'a>(
    req: &DrillRequest,
    catalog: &'a Catalog,
    rng: &mut StdRng,
    report: &mut DrillReport,
    steps: &mut Steps,
    t: Instant,
) -> Result<&'a BackupEntry, DrillError> {
    let entry = select(catalog, &req.set, &req.which, rng)?;
    let manifest = &entry.manifest;
    report.backup_id = entry.id.clone();
    report.backup_snapshot = Some(manifest.snapshot_time);
    if manifest.encryption.is_some() && req.identities.is_empty() {
        return Err(DrillError::NeedsIdentity { id: entry.id.clone() });
    }
    manifest.data().ok_or_else(|| DrillError::NoDataObject { id: entry.id.clone() })?;
    steps.push(
        "select",
        Outcome::Passed,
        t,
        format!("backup {} of set {} (snapshot {})", entry.id, req.set, manifest.snapshot_time.to_rfc3339()),
    );
    Ok(entry)
}

/// The "target" step: the client tools for the backup's pg_dump version, and the scratch
/// database or cluster the drill restores into.
async fn create_target(
    req: &DrillRequest,
    entry: &BackupEntry,
    drill_id: &str,
    report: &mut DrillReport,
    steps: &mut Steps,
) -> Result<(pg::PgTools, Target), DrillError> {
    // pg_restore at least as new as the pg_dump that wrote the archive.
    steps.stage("target");
    let dump_major = entry.manifest.pg_dump_version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
    let tools = pg::discover(dump_major)?;

    let t = Instant::now();
    let target = Target::create(&req.target, drill_id).await?;
    steps.push("target", Outcome::Passed, t, target.describe());
    report.target = target.describe();
    Ok((tools, target))
}

/// The "cleanup" step, whatever the drill's `outcome` (None: interrupted): removes the scratch
/// database or cluster unless `--keep`. The drill's error comes first, then cleanup's.
async fn clean_up(
    req: &DrillRequest,
    target: Target,
    outcome: Option<Result<(), DrillError>>,
    report: &mut DrillReport,
    steps: &mut Steps,
) -> Result<(), DrillError> {
    steps.stage("cleanup");
    let t = Instant::now();
    let cleanup = target.cleanup(req.keep).await;
    match &cleanup {
        Ok(kept) => {
            report.kept = kept.clone();
            let what = if req.keep { "kept (--keep)" } else { "scratch database or cluster removed" };
            steps.push("cleanup", Outcome::Passed, t, what);
        }
        Err(e) => {
            steps.push("cleanup", Outcome::Failed, t, e.to_string());
            steps.recorded = true;
        }
    }
    match outcome {
        None => return Err(DrillError::Interrupted),
        Some(Err(e)) => return Err(e),
        Some(Ok(())) => {}
    }
    cleanup?;
    Ok(())
}

/// The "rpo" step: how old the newest restorable state is.
fn measure_rpo(report: &mut DrillReport, steps: &mut Steps, newest_snapshot: Option<chrono::DateTime<Utc>>) {
    if let Some(newest) = newest_snapshot {
        report.rpo.seconds = (Utc::now() - newest).num_milliseconds() as f64 / 1000.0;
    }
    report.rpo.ok = report.rpo.target_seconds.is_none_or(|t| report.rpo.seconds <= t);
    let t = Instant::now();
    steps.push(
        "rpo",
        Steps::passed_or_failed(report.rpo.ok),
        t,
        format!(
            "{:.0}s since the newest backup's snapshot{}",
            report.rpo.seconds,
            report.rpo.target_seconds.map(|t| format!(" (target {t:.0}s)")).unwrap_or_default()
        ),
    );
}

/// One drill between selecting its backup and measuring its RPO: what it works with, and the
/// steps and report it fills in. One method per step.
struct DrillRun<'a> {
    req: &'a DrillRequest,
    store: &'a Store,
    entry: &'a BackupEntry,
    tools: &'a pg::PgTools,
    target: &'a Target,
    drill_id: &'a str,
    reporter: &'a dyn Reporter,
    rng: &'a mut StdRng,
    steps: &'a mut Steps,
    report: &'a mut DrillReport,
}

impl DrillRun<'_> {
    /// [`DrillRun::body`], stopped by Ctrl-C (None); the error that stops it fails the step
    /// under way.
    async fn run_interruptible(mut self) -> Option<Result<(), DrillError>> {
        let outcome = tokio::select! {
            r = self.body() => Some(r),
            _ = crate::signal::interrupted() => None,
        };
        match &outcome {
            None => self.steps.fail_stage(&DrillError::Interrupted),
            Some(Err(e)) => self.steps.fail_stage(e),
            Some(Ok(())) => {}
        }
        outcome
    }

    /// Globals, restore, then the checks on the restored database; a failed check is a failed
    /// step, not an error.
    async fn body(&mut self) -> Result<(), DrillError> {
        let rto_start = Instant::now();
        let owners = self.globals().await?;
        if !self.restore(owners, rto_start).await? {
            return Ok(());
        }
        self.steps.stage("row counts");
        let url = self.target.url();
        let mut conn = pg::connect(url).await?;
        row_counts(self.entry, &mut conn, self.steps, self.report).await;
        check_sql(self.req, &mut conn, self.steps, self.report).await;
        migrations(self.req, self.entry.manifest.migration_head.as_deref(), url, self.steps, self.report).await;
        finish_rto(self.req, self.report, self.steps, rto_start);
        if let Some(spec) = &self.req.objects {
            self.objects(spec, &mut conn).await?;
        }
        Ok(())
    }

    /// Restores the backup's roles first when asked to and the target can take them; says
    /// whether owners and grants can then be kept.
    async fn globals(&mut self) -> Result<bool, DrillError> {
        let (req, steps) = (self.req, &mut *self.steps);
        match (self.entry.manifest.globals(), req.globals, self.target.is_ephemeral()) {
            (Some(globals), true, true) => {
                steps.stage("globals");
                let t = Instant::now();
                let psql = self.tools.psql();
                match restore::restore_globals(self.store, globals, &psql, self.target.url(), &req.identities).await? {
                    Ok(detail) => {
                        steps.push("globals", Outcome::Passed, t, detail);
                        return Ok(true);
                    }
                    Err(e) => steps.push("globals", Outcome::Failed, t, e.to_string()),
                }
            }
            (Some(_), true, false) => {
                steps.skip("globals", "roles are cluster-wide: restored only into --ephemeral targets")
            }
            (None, true, _) => steps.skip("globals", "the backup has no globals object"),
            _ => {}
        }
        Ok(false)
    }

    /// Downloads and restores the data object; false (with the later steps skipped) when
    /// nothing was restored.
    async fn restore(&mut self, owners: bool, rto_start: Instant) -> Result<bool, DrillError> {
        let req = self.req;
        let job = RestoreJob {
            store: self.store,
            object: self.entry.manifest.data().expect("checked by the caller"),
            pg_restore: self.tools.pg_restore(),
            target: self.target.url(),
            jobs: req.jobs.max(1),
            spool_dir: req.spool_dir.clone().unwrap_or_else(std::env::temp_dir),
            drill_id: self.drill_id,
            identities: &req.identities,
            keep_owners: owners,
            application: "restore-drill",
        };
        self.steps.stage("restore");
        let restored = restore::run(&job, self.reporter).await?;
        self.report.restore_mode = restored.mode.clone();
        self.report.restored_bytes = restored.raw_bytes;
        let (d, r) = (&restored.download, &restored.restore);
        let steps = &mut self.steps.steps;
        let outcome = Steps::passed_or_failed(d.ok);
        steps.push(Step { name: "download".into(), outcome, seconds: d.seconds, detail: d.detail.clone() });
        let outcome = if d.ok { Steps::passed_or_failed(r.ok) } else { Outcome::Skipped };
        steps.push(Step { name: "restore".into(), outcome, seconds: r.seconds, detail: r.detail.clone() });
        if r.ok && d.ok {
            return Ok(true);
        }
        for name in ["row counts", "check sql", "migrations", "objects"] {
            self.steps.skip(name, "the restore did not succeed");
        }
        // Nothing was recovered, so there is no recovery time to hold against the target.
        self.report.rto.seconds = rto_start.elapsed().as_secs_f64();
        self.report.rto.ok = false;
        self.steps.skip("rto", "nothing was restored");
        Ok(false)
    }

    /// Samples the media bucket (from a listing or a query over the restored database) and
    /// checks the sampled objects, against an object copy's inventory when one is named.
    async fn objects(&mut self, spec: &ObjectsSpec, conn: &mut sqlx::PgConnection) -> Result<(), DrillError> {
        self.steps.stage("objects");
        let t = Instant::now();
        let keys = match &spec.query {
            Some(q) => match objects::keys_from_query(conn, q).await {
                Ok(keys) => Some(keys),
                Err(e) => {
                    self.steps.push("objects", Outcome::Failed, t, format!("--objects-query failed: {e}"));
                    return Ok(());
                }
            },
            None => None,
        };
        let media = Store::open_url(&spec.url, &spec.options).await?;
        let inventory = match &spec.inventory {
            None => None,
            Some(set) => match objects::load_inventory(self.store, set, &media.url().to_string()).await {
                Ok(inventory) => Some(inventory),
                Err(e) => {
                    self.steps.push("objects", Outcome::Failed, t, format!("--objects-inventory {set}: {e}"));
                    return Ok(());
                }
            },
        };
        let check = objects::check(spec, &media, keys, inventory.as_ref(), self.rng).await?;
        // An inventory check that compared nothing proved nothing.
        let hashes_ok = check.inventory.as_ref().is_none_or(|i| i.mismatched.is_empty() && i.checked > 0);
        let ok = check.missing.is_empty()
            && check.unreadable.is_empty()
            && hashes_ok
            && (check.sampled > 0 || check.candidates == 0);
        self.steps.push("objects", Steps::passed_or_failed(ok), t, objects::detail(&check));
        self.report.objects = Some(check);
        Ok(())
    }
}

fn write_metrics(path: &std::path::Path, report: &DrillReport) {
    use crate::notify::Sample;
    let labels = vec![("set", report.set.clone())];
    let sample = |name, help, value| Sample { name, help, labels: labels.clone(), value };
    let mut samples = vec![
        sample(
            "opsbook_drill_last_run_timestamp_seconds",
            "Unix time the last restore drill ended.",
            report.time.timestamp() as f64,
        ),
        sample(
            "opsbook_drill_last_run_success",
            "1 when the last restore drill passed, else 0.",
            if report.ok { 1.0 } else { 0.0 },
        ),
    ];
    // A drill that stopped on an error measured neither: the last measured values stay.
    if report.error.is_none() {
        samples.extend([
            sample(
                "opsbook_drill_rto_seconds",
                "Download + restore + verify time of the last drill.",
                report.rto.seconds,
            ),
            sample(
                "opsbook_drill_rpo_seconds",
                "Age of the newest backup's snapshot at the last drill.",
                report.rpo.seconds,
            ),
        ]);
    }
    if report.ok {
        samples.push(sample(
            "opsbook_drill_last_success_timestamp_seconds",
            "Unix time of the last passing restore drill.",
            report.time.timestamp() as f64,
        ));
    }
    if let Err(e) = crate::notify::update_textfile(path, &samples) {
        tracing::warn!("cannot write metrics file {}: {e}", path.display());
    }
}
