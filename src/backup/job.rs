//! A backup job for one set, from its resolved `JobSettings` (see `settings::backup`): lock →
//! heartbeat → dump → metrics → optional prune. The `backup run` command and the runbook `backup`
//! action both run exactly this.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use super::manifest::Manifest;
use super::prune::{self, PruneOptions, PrunePlan};
use super::retention::RetentionPolicy;
use super::{BackupError, BackupRequest};
use crate::notify::{self, Heartbeat, Sample};
use crate::report::Reporter;
use crate::store::{Store, StoreOptions};

/// The set used when none is named.
pub const DEFAULT_SET: &str = "main";

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

/// Checks a set name: one plain path segment.
pub fn set_name(given: Option<&str>) -> Result<String, BackupError> {
    let name = given.unwrap_or(DEFAULT_SET);
    super::layout::check_set_name(name, "set name")?;
    Ok(name.to_string())
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
        return Err(BackupError::PruneWithoutPolicy { set });
    }
    let store = Store::open_url(&s.store_url, &StoreOptions::default()).await?;
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
