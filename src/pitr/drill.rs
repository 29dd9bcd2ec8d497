//! The PITR drill: restores the stanza with pgBackRest into a throwaway local cluster, to a time
//! or to the end of the archive, waits until recovery ends and the cluster is promoted, and proves
//! the target was reached with canary rows: every canary committed before the target is present,
//! none after it. The measured RPO is the target (or the drill's start, for `latest`) minus the
//! newest canary restored. The record goes to the dump store beside the dump drills' records.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::info::Backup;
use super::{Engine, Pitr, PitrError, CANARY_TABLE};
use crate::drill::{Outcome, SqlCheck, Step};
use crate::pg::{self, LocalCluster, PgError};

/// Where recovery stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The end of the archived WAL.
    Latest,
    Time(DateTime<Utc>),
    /// A random time within this long before the drill (and after the oldest backup), chosen
    /// when the drill starts and reported.
    Random(Duration),
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::Latest => "latest".into(),
            Target::Time(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            Target::Random(within) => format!("a random time within {}", humantime::format_duration(*within)),
        }
    }
}

/// One PITR drill.
#[derive(Debug, Clone)]
pub struct DrillRequest {
    pub pitr: Pitr,
    pub target: Target,
    /// Directory under which the throwaway cluster is made.
    pub parent: PathBuf,
    pub keep: bool,
    pub check_sql: Option<(PathBuf, String)>,
    /// Migrations to apply to the restored database (its URL replaces the settings' one).
    pub migrations: Option<crate::migrate::Settings>,
    pub rto_target: Option<Duration>,
    /// The longest the drill waits for recovery to end.
    pub recovery_timeout: Duration,
}

/// The drill's result and its stored record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillReport {
    pub tool: String,
    pub drill_id: String,
    pub kind: String,
    pub stanza: String,
    pub repo: String,
    pub started: DateTime<Utc>,
    pub time: DateTime<Utc>,
    pub ok: bool,
    pub target: String,
    pub backup: Option<String>,
    pub backup_kind: Option<String>,
    pub backup_stopped: Option<DateTime<Utc>>,
    pub steps: Vec<Step>,
    /// The newest canary in the restored cluster: the point the restore provably reached.
    pub restored_point: Option<DateTime<Utc>>,
    /// The newest canary the source holds that must have been restored.
    pub expected_canary: Option<DateTime<Utc>>,
    /// Target (or drill start) minus the newest restored canary.
    pub measured_rpo_seconds: Option<f64>,
    /// pgBackRest restore plus recovery.
    pub rto_seconds: f64,
    pub rto_target_seconds: Option<f64>,
    pub sql_checks: Vec<SqlCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The prefix of PITR drill records in the dump store.
pub fn records_dir(stanza: &str) -> String {
    format!("pitr/drills/{stanza}/")
}

/// From the source: the newest canary the restore must hold, and the first it must not.
type Expected = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

struct Run<'a> {
    req: &'a DrillRequest,
    /// The target, once a random one is chosen.
    target: Target,
    engine: &'a Engine,
    report: DrillReport,
    stage: &'static str,
    stage_started: Instant,
}

impl Run<'_> {
    fn stage(&mut self, name: &'static str) {
        self.stage = name;
        self.stage_started = Instant::now();
    }
    fn push(&mut self, outcome: Outcome, detail: impl Into<String>) {
        self.report.steps.push(Step {
            name: self.stage.into(),
            outcome,
            seconds: self.stage_started.elapsed().as_secs_f64(),
            detail: crate::redact::redact(&detail.into()).into_owned(),
        });
    }
    fn fail(&self, message: impl Into<String>) -> PitrError {
        PitrError::Drill { step: self.stage, message: message.into() }
    }
}

/// Runs the drill; the report is returned whether it passed or failed, with the error that
/// stopped it (if any) in `error`. The throwaway cluster is removed unless `keep`.
pub async fn run(req: &DrillRequest) -> Result<DrillReport, PitrError> {
    let engine = Engine::new(&req.pitr)?;
    let started = Utc::now();
    let drill_id = format!("{}-{:04x}", started.format("%Y%m%dT%H%M%SZ"), rand::random::<u16>());
    let mut run = Run {
        req,
        target: req.target,
        engine: &engine,
        report: DrillReport {
            tool: crate::backup::run::tool_name(),
            drill_id: drill_id.clone(),
            kind: "pitr".into(),
            stanza: req.pitr.stanza.clone(),
            repo: req.pitr.repo.display(),
            started,
            time: started,
            ok: false,
            target: req.target.describe(),
            backup: None,
            backup_kind: None,
            backup_stopped: None,
            steps: Vec::new(),
            restored_point: None,
            expected_canary: None,
            measured_rpo_seconds: None,
            rto_seconds: 0.0,
            rto_target_seconds: req.rto_target.map(|d| d.as_secs_f64()),
            sql_checks: Vec::new(),
            kept: None,
            record_key: None,
            error: None,
        },
        stage: "select",
        stage_started: Instant::now(),
    };
    let dir = req.parent.join(format!("drill-pitr-{drill_id}"));
    let mut cluster = None;
    let result = tokio::select! {
        r = run.attempt(&dir, &mut cluster) => r,
        _ = crate::signal::interrupted() => Err(PitrError::Interrupted),
    };
    if let Err(e) = &result {
        if !matches!(e, PitrError::Drill { .. }) {
            let detail = e.to_string();
            run.push(Outcome::Failed, detail);
        }
        run.report.error = Some(crate::redact::redact(&e.to_string()).into_owned());
    }
    run.report.ok = result.is_ok() && run.report.steps.iter().all(|s| s.outcome != Outcome::Failed);
    run.report.time = Utc::now();
    run.report.kept = cleanup(cluster, &dir, req.keep).await;
    if !matches!(result, Err(PitrError::Interrupted)) {
        run.report.record_key = store_record(&req.pitr, &run.report).await.ok();
    }
    match result {
        Err(PitrError::Interrupted) => Err(PitrError::Interrupted),
        _ => Ok(run.report),
    }
}

impl Run<'_> {
    async fn attempt(&mut self, dir: &std::path::Path, cluster: &mut Option<LocalCluster>) -> Result<(), PitrError> {
        let backup = self.select().await?;
        let expected = self.source_canaries().await;
        self.stage("restore");
        let t0 = Instant::now();
        self.restore(&backup, dir).await?;
        self.stage("recovery");
        let adopted = {
            let d = dir.to_path_buf();
            tokio::task::spawn_blocking(move || -> Result<LocalCluster, PgError> {
                let c = LocalCluster::adopt(&d, "postgres")?;
                c.start_recovery()?;
                Ok(c)
            })
            .await
            .map_err(|e| self.fail(format!("cluster task: {e}")))??
        };
        crate::redact::register(adopted.password());
        *cluster = Some(adopted.clone());
        self.wait_for_promotion(&adopted).await?;
        self.report.rto_seconds = t0.elapsed().as_secs_f64();
        self.push(Outcome::Passed, format!("recovered and promoted in {:.1}s", self.report.rto_seconds));
        let db = self.req.pitr.db.database().unwrap_or_else(|| "postgres".into());
        let url = adopted.url(&db);
        self.canaries(&url, expected).await?;
        self.check_sql(&url).await?;
        self.migrations(&url).await;
        self.stage("rto");
        match self.req.rto_target {
            Some(target) => {
                let ok = self.report.rto_seconds <= target.as_secs_f64();
                let detail = format!("{:.1}s against a target of {}s", self.report.rto_seconds, target.as_secs());
                self.push(if ok { Outcome::Passed } else { Outcome::Failed }, detail);
            }
            None => self.push(Outcome::Skipped, "no --rto-target"),
        }
        Ok(())
    }

    /// The backup to restore from: the newest that finished before the target.
    async fn select(&mut self) -> Result<Backup, PitrError> {
        self.stage("select");
        let info = self.engine.info().await?;
        if let Target::Random(within) = self.target {
            // After the oldest backup and at least a minute back, so the WAL is archived.
            let newest = Utc::now() - chrono::Duration::seconds(60);
            let oldest = info.backups.iter().filter(|b| !b.error).map(|b| b.stopped).min().unwrap_or(newest);
            let from = oldest.max(Utc::now() - chrono::Duration::from_std(within).unwrap_or_default());
            let span = (newest - from).num_milliseconds().max(0);
            let t = from + chrono::Duration::milliseconds(if span > 0 { rand::random_range(0..span) } else { 0 });
            self.target = Target::Time(t);
            self.report.target = self.target.describe();
        }
        let usable = info.backups.iter().filter(|b| !b.error);
        let chosen = match self.target {
            Target::Latest | Target::Random(_) => usable.max_by_key(|b| b.stopped),
            Target::Time(t) => usable.filter(|b| b.stopped <= t).max_by_key(|b| b.stopped),
        };
        let Some(b) = chosen.cloned() else {
            let oldest = info.backups.iter().map(|b| b.stopped).min();
            let why = match (self.target, oldest) {
                (_, None) => format!("stanza {} has no backup yet: run `opsbook pitr backup`", self.req.pitr.stanza),
                (Target::Time(t), Some(o)) => format!(
                    "no backup of stanza {} finished before {} (the oldest finished at {}): pick a later --target-time",
                    self.req.pitr.stanza,
                    fmt(t),
                    fmt(o)
                ),
                (Target::Latest | Target::Random(_), Some(_)) => "every backup is marked as failed".into(),
            };
            let e = self.fail(why.clone());
            self.push(Outcome::Failed, why);
            return Err(e);
        };
        self.report.backup = Some(b.label.clone());
        self.report.backup_kind = Some(b.kind.clone());
        self.report.backup_stopped = Some(b.stopped);
        self.push(
            Outcome::Passed,
            format!("{} backup {} (finished {})", b.kind, b.label, b.stopped.format("%Y-%m-%d %H:%M:%SZ")),
        );
        Ok(b)
    }

    /// The source's canaries that the restore must hold (and, for a time target, the first
    /// one it must not): None when the source cannot be read (a real disaster).
    async fn source_canaries(&mut self) -> Option<Expected> {
        let p = &self.req.pitr;
        let mut conn = pg::connect(&p.db).await.ok()?;
        // A canary is committed a moment after its timestamp: allow a second either side.
        let (must, must_not) = match self.target {
            Target::Time(t) => (Some(t - chrono::Duration::seconds(1)), Some(t)),
            Target::Latest | Target::Random(_) => {
                let archived: Option<DateTime<Utc>> =
                    sqlx::query_scalar("SELECT last_archived_time FROM pg_stat_archiver")
                        .fetch_one(&mut conn)
                        .await
                        .ok()?;
                (archived.map(|a| a - chrono::Duration::seconds(1)), None)
            }
        };
        let newest_before: Option<DateTime<Utc>> =
            sqlx::query_scalar(&format!("SELECT max(written_at) FROM {CANARY_TABLE} WHERE written_at <= $1"))
                .bind(must)
                .fetch_one(&mut conn)
                .await
                .ok()?;
        let first_after: Option<DateTime<Utc>> = match must_not {
            Some(t) => sqlx::query_scalar(&format!("SELECT min(written_at) FROM {CANARY_TABLE} WHERE written_at > $1"))
                .bind(t)
                .fetch_one(&mut conn)
                .await
                .ok()?,
            None => None,
        };
        self.report.expected_canary = newest_before;
        Some((newest_before, first_after))
    }

    async fn restore(&mut self, backup: &Backup, dir: &std::path::Path) -> Result<(), PitrError> {
        let data = prepare_dir(dir, self.engine)?;
        let mut args = vec![
            format!("--pg1-path={}", data.display()),
            format!("--set={}", backup.label),
            "--archive-mode=off".into(),
        ];
        match self.target {
            Target::Latest | Target::Random(_) => args.push("--type=default".into()),
            Target::Time(t) => {
                args.push("--type=time".into());
                args.push(format!("--target={}", t.format("%Y-%m-%d %H:%M:%S%.6f+00")));
                args.push("--target-action=promote".into());
            }
        }
        self.engine.run("restore", &args).await?;
        self.push(Outcome::Passed, format!("pgbackrest restore of {} into {}", backup.label, dir.display()));
        Ok(())
    }

    async fn wait_for_promotion(&mut self, cluster: &LocalCluster) -> Result<(), PitrError> {
        let started = Instant::now();
        let deadline = started + self.req.recovery_timeout;
        loop {
            match cluster.claim().await {
                Ok(()) => return Ok(()),
                // Still starting or recovering: no connections yet.
                Err(PgError::Connect { .. }) => {}
                Err(e) => {
                    self.push(Outcome::Failed, e.to_string());
                    return Err(e.into());
                }
            }
            let c = cluster.clone();
            let running = tokio::task::spawn_blocking(move || c.is_running()).await.unwrap_or(false);
            // `pg_ctl start -W` returns before the server writes its pid file: only a server
            // gone after a grace period, or one that logged a fatal error, has stopped.
            let log = std::fs::read_to_string(cluster.log_path()).unwrap_or_default();
            let fatal = log.contains("FATAL:") || log.contains("PANIC:");
            if !running && (fatal || started.elapsed() > Duration::from_secs(15)) {
                // The server stops when recovery cannot reach the target.
                let c = cluster.clone();
                let tail = tokio::task::spawn_blocking(move || c.log_tail(12)).await.unwrap_or_default();
                let reason = tail
                    .lines()
                    .rev()
                    .find(|l| l.contains("FATAL") || l.contains("PANIC"))
                    .unwrap_or("the server stopped")
                    .to_string();
                let message =
                    format!("recovery did not complete: {reason} (server log: {})", cluster.log_path().display());
                self.push(Outcome::Failed, message.clone());
                return Err(self.fail(message));
            }
            if Instant::now() > deadline {
                let message = format!(
                    "recovery still running after {}s (see {})",
                    self.req.recovery_timeout.as_secs(),
                    cluster.log_path().display()
                );
                self.push(Outcome::Failed, message.clone());
                return Err(self.fail(message));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn canaries(&mut self, url: &pg::DbUrl, expected: Option<Expected>) -> Result<(), PitrError> {
        self.stage("canaries");
        let mut conn = pg::connect(url).await?;
        let present: Result<Option<DateTime<Utc>>, _> =
            sqlx::query_scalar(&format!("SELECT max(written_at) FROM {CANARY_TABLE}")).fetch_one(&mut conn).await;
        let restored = match present {
            Ok(r) => r,
            Err(_) => {
                self.push(
                    Outcome::Failed,
                    format!(
                        "no {CANARY_TABLE} table in the restored database: run `opsbook pitr status --canary` on the \
                         source regularly (e.g. every 5 minutes) so drills can prove the point they reach"
                    ),
                );
                return Ok(());
            }
        };
        self.report.restored_point = restored;
        let reference = match self.target {
            Target::Time(t) => t,
            Target::Latest | Target::Random(_) => self.report.started,
        };
        self.report.measured_rpo_seconds =
            restored.map(|r| ((reference - r).num_milliseconds().max(0) as f64) / 1000.0);
        let mut bad = Vec::new();
        let Some(restored_at) = restored else {
            self.push(Outcome::Failed, "the canary table is empty: no canary was restored");
            return Ok(());
        };
        if let Some((must, must_not)) = expected {
            if let Some(m) = must.filter(|m| *m > restored_at) {
                bad.push(format!(
                    "the canary written at {} is missing (newest restored: {})",
                    fmt(m),
                    fmt(restored_at)
                ));
            }
            if let (Some(after), Target::Time(t)) = (must_not, self.target) {
                let mut conn = pg::connect(url).await?;
                let leaked: i64 =
                    sqlx::query_scalar(&format!("SELECT count(*) FROM {CANARY_TABLE} WHERE written_at > $1"))
                        .bind(t)
                        .fetch_one(&mut conn)
                        .await
                        .map_err(|e| PgError::query("count canaries after the target", url.redacted(), e))?;
                if leaked > 0 {
                    bad.push(format!(
                        "{leaked} canary row(s) written after the target are present (the first at {})",
                        fmt(after)
                    ));
                }
            }
        }
        let rpo = self.report.measured_rpo_seconds.unwrap_or(0.0);
        if bad.is_empty() {
            let source = if expected.is_some() { "" } else { " (source unreachable: not compared)" };
            self.push(Outcome::Passed, format!("reached {}; measured RPO {rpo:.1}s{source}", fmt(restored_at)));
        } else {
            self.push(Outcome::Failed, bad.join("; "));
        }
        Ok(())
    }

    async fn check_sql(&mut self, url: &pg::DbUrl) -> Result<(), PitrError> {
        let Some((path, text)) = &self.req.check_sql else { return Ok(()) };
        self.stage("check sql");
        let mut conn = pg::connect(url).await?;
        let (checks, ok, detail) = crate::drill::checks::run_sql_checks(&mut conn, path, text).await;
        self.report.sql_checks = checks;
        self.push(if ok { Outcome::Passed } else { Outcome::Failed }, detail);
        Ok(())
    }
}

impl Run<'_> {
    /// Newer migrations must apply cleanly to the restored database.
    async fn migrations(&mut self, url: &pg::DbUrl) {
        let Some(base) = &self.req.migrations else { return };
        self.stage("migrations");
        let mut settings = base.clone();
        settings.database_url = url.clone();
        let opts = crate::migrate::engine::UpOptions { target: None, allow_unsafe: true, ignore_missing: false };
        match crate::migrate::up(&settings, opts, &crate::report::Silent).await {
            Ok(up) => {
                let n = up.applied.len();
                self.push(Outcome::Passed, format!("{n} newer migration(s) applied cleanly"));
            }
            Err(e) => self.push(Outcome::Failed, e.to_string()),
        }
    }
}

fn fmt(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string()
}

/// Creates the drill directory and its empty data directory, owned by pgBackRest's user, and
/// marks it as this process's so a later drill removes it if this one is killed.
fn prepare_dir(dir: &std::path::Path, engine: &Engine) -> Result<PathBuf, PitrError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| PitrError::io("create directory", parent, e))?;
        crate::drill::target::sweep_abandoned(parent);
    }
    let data = dir.join("data");
    for d in [dir, data.as_path()] {
        std::fs::create_dir_all(d).map_err(|e| PitrError::io("create directory", d, e))?;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| PitrError::io("chmod", d, e))?;
        if let Some(o) = &engine.owner {
            std::os::unix::fs::chown(d, Some(o.uid), Some(o.gid)).map_err(|e| PitrError::io("chown", d, e))?;
        }
    }
    let owner = format!("{} {}", std::process::id(), crate::lock::hostname());
    std::fs::write(dir.join(crate::drill::target::OWNER_FILE), owner)
        .map_err(|e| PitrError::io("write", dir.join(crate::drill::target::OWNER_FILE), e))?;
    Ok(data)
}

async fn cleanup(cluster: Option<LocalCluster>, dir: &std::path::Path, keep: bool) -> Option<String> {
    if keep {
        let _ = std::fs::remove_file(dir.join(crate::drill::target::OWNER_FILE));
        return Some(match &cluster {
            Some(c) => format!(
                "cluster in {} serving {} (password in {}/cluster.json; stop it with `{}`, then remove the directory)",
                dir.display(),
                c.url("postgres").redacted(),
                dir.display(),
                c.stop_command()
            ),
            None => format!("{} (the restore did not complete)", dir.display()),
        });
    }
    let d = dir.to_path_buf();
    let removed = tokio::task::spawn_blocking(move || match cluster {
        Some(c) => c.destroy().map_err(|e| e.to_string()),
        // Interrupted between starting the server and handing it over: it may be running.
        None if LocalCluster::exists(&d) => {
            LocalCluster::open(&d).and_then(LocalCluster::destroy).map_err(|e| e.to_string())
        }
        None => std::fs::remove_dir_all(&d)
            .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
            .map_err(|e| e.to_string()),
    })
    .await;
    if let Ok(Err(e)) | Err(e) = removed.map_err(|e| e.to_string()) {
        tracing::warn!("could not remove the drill cluster in {}: {e}", dir.display());
    }
    None
}

/// Stores the record in the dump store under `pitr/drills/<stanza>/`.
async fn store_record(p: &Pitr, report: &DrillReport) -> Result<String, PitrError> {
    let store = crate::store::Store::open_url(&p.records, &p.records_options).await?;
    let key = format!("{}drill-{}.json", records_dir(&p.stanza), report.time.format("%Y%m%dT%H%M%S%.3fZ"));
    let body = crate::redact::to_json(report, true)
        .map_err(|e| PitrError::Info { stanza: p.stanza.clone(), message: e.to_string() })?;
    store.put_bytes(&key, bytes::Bytes::from(body)).await?;
    Ok(key)
}

/// The stored PITR drill records of a stanza, oldest first.
pub async fn records(p: &Pitr) -> Result<Vec<DrillReport>, PitrError> {
    let store = crate::store::Store::open_url(&p.records, &p.records_options).await?;
    let mut out = Vec::new();
    for obj in store.list(&records_dir(&p.stanza)).await? {
        if !obj.key.ends_with(".json") {
            continue;
        }
        let body = store.get_bytes(&obj.key).await?;
        if let Ok(r) = serde_json::from_slice::<DrillReport>(&body) {
            out.push(r);
        }
    }
    out.sort_by_key(|r| r.time);
    Ok(out)
}
