//! A backup job for one set: settings resolved from overrides (flags or a runbook step),
//! environment and opsbook.toml, then lock → heartbeat → dump → metrics → optional prune. The
//! `backup run` command and the runbook `backup` action both run exactly this.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use super::manifest::{Manifest, RowCountMethod};
use super::prune::{self, PruneOptions, PrunePlan};
use super::retention::RetentionPolicy;
use super::{codec, BackupError, BackupRequest, Globals};
use crate::config::{Config, ConfigError, SetConfig};
use crate::notify::{self, Heartbeat, Sample};
use crate::pg::DbUrl;
use crate::report::Reporter;
use crate::store::{Store, StoreOptions};

/// The set used when none is named.
pub const DEFAULT_SET: &str = "main";

/// Values given for this run; `None` falls back to the set's config, then the profile.
#[derive(Debug, Clone, Default)]
pub struct JobOverrides {
    pub database_url: Option<String>,
    pub store: Option<String>,
    pub compression: Option<String>,
    pub encrypt_to: Vec<String>,
    pub globals: bool,
    pub globals_with_passwords: bool,
    /// "exact", "estimate" or "off".
    pub row_counts: Option<String>,
    pub part_size: Option<usize>,
    pub upload_concurrency: Option<usize>,
    pub notify_url: Option<String>,
    pub metrics_file: Option<PathBuf>,
    pub retention: RetentionPolicy,
    pub time_zone: Option<String>,
    /// Allow prune to delete more than half of the set.
    pub force: bool,
}

/// Fully resolved settings of one set's job.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub request: BackupRequest,
    pub store_url: String,
    pub notify_url: Option<String>,
    pub metrics_file: Option<PathBuf>,
    pub policy: RetentionPolicy,
    pub tz: chrono_tz::Tz,
    pub force: bool,
}

fn input(message: String) -> BackupError {
    BackupError::Input(message)
}

/// Checks a set name: one plain path segment.
pub fn set_name(given: Option<&str>) -> Result<String, BackupError> {
    let name = given.unwrap_or(DEFAULT_SET);
    if !super::layout::valid_set_name(name) {
        return Err(input(format!(
            "invalid set name '{name}': use letters, digits, '-', '_' or '.' (one path segment, at most 64 characters)"
        )));
    }
    crate::redact::check_identifier("set name", name).map_err(|e| input(e.to_string()))?;
    Ok(name.to_string())
}

/// Opens a store from its URL with the standard environment.
pub async fn open_store(url: &str) -> Result<Store, BackupError> {
    open_store_with(url, &StoreOptions::default()).await
}

/// The same with endpoint and credential overrides (`[profiles.X.stores]`).
pub async fn open_store_with(url: &str, options: &StoreOptions) -> Result<Store, BackupError> {
    Ok(Store::open_url(url, options).await?)
}

/// Resolves one set's settings. With `per_set` (running every set of the profile), a set's own
/// database_url/store are more specific than a global override or environment variable.
pub fn resolve(config: &Config, o: &JobOverrides, set: &str, per_set: bool) -> Result<JobSettings, BackupError> {
    let cfg = config.set(set);
    let own_db = cfg.and_then(|c| c.database_url.as_deref()).filter(|_| per_set);
    let own_store = cfg.and_then(|c| c.store.as_deref()).filter(|_| per_set);
    let database_url = match own_db {
        Some(own) => config.pick(None, Some(own), "database URL", "")?,
        None => config.database_url(o.database_url.as_deref(), cfg)?,
    };
    let database_url = DbUrl::parse_named("--database-url", &database_url)?;
    let store_url = match own_store {
        Some(own) => config.pick(None, Some(own), "store", "")?,
        None => config.store_url(o.store.as_deref(), cfg)?,
    };
    let compression =
        o.compression.clone().or_else(|| cfg.and_then(|c| c.compression.clone())).unwrap_or_else(|| "zstd".into());
    let codec = codec::Codec::parse(&compression).map_err(|e| input(format!("--compression: {e}")))?;
    let recipients = if o.encrypt_to.is_empty() {
        cfg.map(|c| c.encrypt_to.clone()).unwrap_or_default()
    } else {
        o.encrypt_to.clone()
    };
    codec::parse_recipients(&recipients).map_err(|e| input(format!("--encrypt-to: {e}")))?;
    let globals = match (o.globals || cfg.and_then(|c| c.globals).unwrap_or(false), o.globals_with_passwords) {
        (false, _) => Globals::Off,
        (true, false) => Globals::WithoutPasswords,
        (true, true) => Globals::WithPasswords,
    };
    let row_counts = match o.row_counts.as_deref().or(cfg.and_then(|c| c.row_counts.as_deref())) {
        None | Some("exact") => Some(RowCountMethod::Exact),
        Some("estimate") => Some(RowCountMethod::Estimate),
        Some("off") => None,
        Some(other) => return Err(input(format!("row counts '{other}' for set '{set}': use exact, estimate or off"))),
    };
    let in_flight = o.upload_concurrency.unwrap_or(2);
    if in_flight == 0 {
        return Err(input("--upload-concurrency must be at least 1".into()));
    }
    let notify_url = o.notify_url.clone().or_else(|| cfg.and_then(|c| c.notify_url.clone()));
    if let Some(url) = &notify_url {
        notify::check_url(url).map_err(|e| input(format!("--notify-url for set '{set}': {e}")))?;
    }
    Ok(JobSettings {
        request: BackupRequest {
            set: set.to_string(),
            database_url,
            codec,
            recipients,
            globals,
            row_counts,
            part_size: o.part_size,
            in_flight,
        },
        store_url,
        notify_url,
        metrics_file: o.metrics_file.clone().or_else(|| cfg.and_then(|c| c.metrics_file.clone())),
        policy: policy(&o.retention, cfg)?,
        tz: config.time_zone(o.time_zone.as_deref())?,
        force: o.force,
    })
}

/// The retention policy: overrides over the set's configured policy.
pub fn policy(over: &RetentionPolicy, cfg: Option<&SetConfig>) -> Result<RetentionPolicy, BackupError> {
    let configured = match cfg {
        Some(c) => RetentionPolicy {
            keep_last: c.keep_last,
            keep_hourly: c.keep_hourly,
            keep_daily: c.keep_daily,
            keep_weekly: c.keep_weekly,
            keep_monthly: c.keep_monthly,
            keep_yearly: c.keep_yearly,
            keep_within: c.keep_within.as_deref().map(humantime::parse_duration).transpose().map_err(|e| {
                BackupError::Config(ConfigError::Invalid { key: "keep_within".into(), message: e.to_string() })
            })?,
            min_keep: c.min_keep.unwrap_or(0),
        },
        None => RetentionPolicy::default(),
    };
    let mut over = over.clone();
    if over.min_keep == 0 {
        over.min_keep = configured.min_keep;
    }
    Ok(over.merge_over(&configured))
}

/// What one set's job did.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub set: String,
    pub store: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<Manifest>,
    pub duration_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<PrunePlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Lock, heartbeat, back up, metrics, then (with `then_prune`) prune — for one set.
pub async fn run_job(s: &JobSettings, then_prune: bool, reporter: &dyn Reporter) -> Result<JobReport, BackupError> {
    let set = s.request.set.clone();
    if then_prune && s.policy.is_empty() {
        return Err(input(format!(
            "pruning needs a retention policy for set '{set}': give --keep-* flags or keep_* in opsbook.toml"
        )));
    }
    let store = open_store(&s.store_url).await?;
    let store_name = store.url().to_string();
    let _lock =
        crate::lock::try_lock("backup", &format!("set {set} in {store_name}"), &format!("backup run --set {set}"))?;
    let heartbeat = Heartbeat::new(s.notify_url.clone());
    heartbeat.start().await;
    let started = Instant::now();
    tracing::info!(set = %set, store = %store_name, "backup started");
    let outcome = super::run::run(&store, &s.request, reporter).await;
    let duration = started.elapsed().as_secs_f64();
    write_metrics(s, outcome.as_ref().ok(), duration);
    let manifest = match outcome {
        Ok(m) => m,
        Err(err) => {
            heartbeat.fail(format!("backup of set {set} to {store_name} failed: {err}")).await;
            return Err(err);
        }
    };
    tracing::info!(set = %set, id = %manifest.id, bytes = manifest.stored_size(), "backup complete");
    let prune = if then_prune {
        let opts = PruneOptions {
            policy: s.policy.clone(),
            tz: s.tz,
            force: s.force,
            dry_run: false,
            now: chrono::Utc::now(),
        };
        let pruned = async {
            let plan = prune::plan(&store, &set, &opts).await?;
            prune::apply(&store, &plan).await?;
            Ok::<_, BackupError>(plan)
        };
        match pruned.await {
            Ok(plan) => Some(plan),
            Err(source) => {
                let err = BackupError::PruneAfterBackup {
                    set: set.clone(),
                    id: manifest.id.clone(),
                    source: Box::new(source),
                };
                heartbeat.fail(err.to_string()).await;
                return Err(err);
            }
        }
    } else {
        None
    };
    heartbeat
        .success(format!("backup {} of set {set}: {} bytes in {duration:.1}s", manifest.id, manifest.stored_size()))
        .await;
    Ok(JobReport { set, store: store_name, backup: Some(manifest), duration_seconds: duration, prune, error: None })
}

fn write_metrics(s: &JobSettings, manifest: Option<&Manifest>, duration: f64) {
    let Some(path) = &s.metrics_file else { return };
    let labels = vec![("set", s.request.set.clone())];
    let now = chrono::Utc::now().timestamp() as f64;
    let sample = |name, help, value| Sample { name, help, labels: labels.clone(), value };
    let mut samples = vec![
        sample("opsbook_backup_last_run_timestamp_seconds", "Unix time the last backup run ended.", now),
        sample(
            "opsbook_backup_last_run_success",
            "1 when the last backup run succeeded, else 0.",
            if manifest.is_some() { 1.0 } else { 0.0 },
        ),
        sample("opsbook_backup_last_run_duration_seconds", "Duration of the last backup run.", duration),
    ];
    if let Some(m) = manifest {
        samples.extend([
            sample("opsbook_backup_last_success_timestamp_seconds", "Unix time the last successful backup ended.", now),
            sample(
                "opsbook_backup_last_success_bytes",
                "Stored bytes of the last successful backup.",
                m.stored_size() as f64,
            ),
            sample(
                "opsbook_backup_last_success_raw_bytes",
                "Dump bytes before compression of the last successful backup.",
                m.objects.iter().map(|o| o.raw_size).sum::<u64>() as f64,
            ),
            sample(
                "opsbook_backup_last_success_rows",
                "Rows counted in the last successful backup.",
                m.row_counts.as_ref().map_or(0, |r| r.total()) as f64,
            ),
        ]);
    }
    if let Err(e) = notify::update_textfile(path, &samples) {
        tracing::warn!("cannot write metrics file {}: {e}", path.display());
    }
}
