//! Physical backups and expiry through pgBackRest, with the retention the profile asks for,
//! widened when needed so that the backup the newest passed PITR drill restored from (and the WAL
//! after it) is never expired: a drilled backup is the one recovery is known to work from.

use std::time::Instant;

use serde::Serialize;

use super::info::{Backup, StanzaInfo};
use super::{drill, Engine, Pitr, PitrError};

/// pgBackRest's backup types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    Full,
    Diff,
    Incr,
}

impl std::str::FromStr for BackupType {
    type Err = PitrError;
    fn from_str(s: &str) -> Result<Self, PitrError> {
        match s {
            "full" => Ok(BackupType::Full),
            "diff" => Ok(BackupType::Diff),
            "incr" => Ok(BackupType::Incr),
            other => Err(PitrError::setting("type", format!("'{other}' is not a backup type: full, diff or incr"))),
        }
    }
}

impl BackupType {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "full",
            BackupType::Diff => "diff",
            BackupType::Incr => "incr",
        }
    }
}

/// What a backup run produced.
#[derive(Debug, Clone, Serialize)]
pub struct BackupOutcome {
    pub stanza: String,
    pub backup: Backup,
    /// What was asked for (pgBackRest takes a full when there is none to build on).
    pub requested: Option<BackupType>,
    pub duration_seconds: f64,
    /// Full backups kept: the policy's, or more to keep the drilled one.
    pub retention_full: u32,
    pub protected: Option<String>,
}

/// The full-backup retention to pass pgBackRest: the policy's `keep_full`, or as many as reach
/// back to the full backup the newest passed drill depends on, with `extra_full` new fulls about
/// to be taken.
pub fn retention(p: &Pitr, info: &StanzaInfo, drilled: Option<&str>, extra_full: u32) -> (u32, Option<String>) {
    let Some(label) = drilled else { return (p.keep_full, None) };
    let Some(b) = info.backups.iter().find(|b| b.label == label) else { return (p.keep_full, None) };
    let Some(full) = b.prior.as_deref() else { return (p.keep_full, None) };
    let Some(full_stop) = info.backups.iter().find(|x| x.label == full).map(|x| x.stopped) else {
        return (p.keep_full, None);
    };
    let needed = info.backups.iter().filter(|x| x.kind == "full" && x.stopped >= full_stop).count() as u32 + extra_full;
    if needed > p.keep_full {
        (needed, Some(label.to_string()))
    } else {
        (p.keep_full, None)
    }
}

/// The backup the newest passed PITR drill restored from.
pub async fn drilled_backup(p: &Pitr) -> Option<String> {
    match drill::records(p).await {
        Ok(records) => records.into_iter().rev().find(|r| r.ok).and_then(|r| r.backup),
        Err(e) => {
            tracing::warn!("cannot read PITR drill records: {e}; retention does not protect a drilled backup");
            None
        }
    }
}

/// Takes a backup (pgBackRest expires by the retention afterwards).
pub async fn backup(p: &Pitr, engine: &Engine, kind: Option<BackupType>) -> Result<BackupOutcome, PitrError> {
    let before = engine.info().await?;
    let drilled = drilled_backup(p).await;
    let extra = u32::from(kind == Some(BackupType::Full) || before.newest(Some("full")).is_none());
    let (keep, protected) = retention(p, &before, drilled.as_deref(), extra);
    let mut args = vec![format!("--repo1-retention-full={keep}")];
    if let Some(k) = kind {
        args.push(format!("--type={}", k.as_str()));
    }
    let t = Instant::now();
    engine.run("backup", &args).await?;
    let duration_seconds = t.elapsed().as_secs_f64();
    let after = engine.info().await?;
    let known: Vec<&str> = before.backups.iter().map(|b| b.label.as_str()).collect();
    let backup = after
        .backups
        .iter()
        .filter(|b| !known.contains(&b.label.as_str()))
        .max_by_key(|b| b.stopped)
        .cloned()
        .ok_or_else(|| PitrError::Info {
            stanza: p.stanza.clone(),
            message: "the new backup is not in `pgbackrest info`".into(),
        })?;
    Ok(BackupOutcome {
        stanza: p.stanza.clone(),
        backup,
        requested: kind,
        duration_seconds,
        retention_full: keep,
        protected,
    })
}

/// What expiry did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct ExpireOutcome {
    pub stanza: String,
    pub dry_run: bool,
    pub retention_full: u32,
    pub protected: Option<String>,
    pub expired: Vec<String>,
    pub kept: Vec<String>,
}

pub async fn expire(p: &Pitr, engine: &Engine, dry_run: bool) -> Result<ExpireOutcome, PitrError> {
    let before = engine.info().await?;
    let drilled = drilled_backup(p).await;
    let (keep, protected) = retention(p, &before, drilled.as_deref(), 0);
    let mut args = vec![format!("--repo1-retention-full={keep}")];
    let expired: Vec<String> = if dry_run {
        args.push("--dry-run".into());
        args.push("--log-level-console=info".into());
        let out = engine.run("expire", &args).await?;
        // "[DRY-RUN] ... expire full backup set 2026...F, 2026...F_2026...I"
        out.lines()
            .filter(|l| l.contains("expire") && l.contains("backup set"))
            .flat_map(|l| l.rsplit("backup set").next().unwrap_or("").split(',').map(|s| s.trim().to_string()))
            .filter(|s| !s.is_empty())
            .collect()
    } else {
        engine.run("expire", &args).await?;
        let after = engine.info().await?;
        before
            .backups
            .iter()
            .filter(|b| !after.backups.iter().any(|a| a.label == b.label))
            .map(|b| b.label.clone())
            .collect()
    };
    let kept = before.backups.iter().map(|b| b.label.clone()).filter(|l| !expired.contains(l)).collect();
    Ok(ExpireOutcome { stanza: p.stanza.clone(), dry_run, retention_full: keep, protected, expired, kept })
}

/// A scheduled backup as a job: the stanza's lock (runs never overlap), the heartbeat pings and
/// the Prometheus textfile of the profile's monitoring, around [`backup`].
pub async fn job(p: &Pitr, kind: Option<BackupType>) -> Result<BackupOutcome, PitrError> {
    let engine = Engine::new(p)?;
    let _lock =
        crate::lock::try_lock("pitr", &format!("stanza {}", p.stanza), &format!("pitr backup of stanza {}", p.stanza))?;
    let heartbeat = crate::notify::Heartbeat::new(p.monitor.notify_url.clone());
    heartbeat.start().await;
    let result = backup(p, &engine, kind).await;
    match &result {
        Ok(o) => {
            heartbeat
                .success(format!(
                    "{} backup {} of stanza {} in {:.1}s",
                    o.backup.kind, o.backup.label, o.stanza, o.duration_seconds
                ))
                .await
        }
        Err(e) => heartbeat.fail(format!("pitr backup of stanza {} failed: {e}", p.stanza)).await,
    }
    if let Some(path) = &p.monitor.metrics_file {
        if let Err(e) = crate::notify::update_textfile(path, &samples(p, &result)) {
            tracing::warn!("cannot update metrics file {}: {e}", path.display());
        }
    }
    result
}

fn samples(p: &Pitr, result: &Result<BackupOutcome, PitrError>) -> Vec<crate::notify::Sample> {
    use crate::notify::Sample;
    let labels = vec![("stanza", p.stanza.clone())];
    let now = chrono::Utc::now().timestamp() as f64;
    let mut out = vec![
        Sample {
            name: "opsbook_pitr_backup_last_run_timestamp_seconds",
            help: "Unix time the last PITR backup ended.",
            labels: labels.clone(),
            value: now,
        },
        Sample {
            name: "opsbook_pitr_backup_last_run_success",
            help: "1 when the last PITR backup succeeded, else 0.",
            labels: labels.clone(),
            value: if result.is_ok() { 1.0 } else { 0.0 },
        },
    ];
    if let Ok(o) = result {
        let typed = vec![("stanza", p.stanza.clone()), ("type", o.backup.kind.clone())];
        out.extend([
            Sample {
                name: "opsbook_pitr_backup_last_success_timestamp_seconds",
                help: "Unix time the newest PITR backup of each type finished.",
                labels: typed.clone(),
                value: o.backup.stopped.timestamp() as f64,
            },
            Sample {
                name: "opsbook_pitr_backup_duration_seconds",
                help: "Wall time of the last PITR backup of each type.",
                labels: typed.clone(),
                value: o.duration_seconds,
            },
            Sample {
                name: "opsbook_pitr_backup_repo_bytes",
                help: "Repository bytes the last PITR backup of each type added.",
                labels: typed,
                value: o.backup.repo_size as f64,
            },
        ]);
    }
    out
}
