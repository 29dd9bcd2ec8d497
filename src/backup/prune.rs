//! `backup prune`: apply a retention policy to a set, remove orphans (objects of runs that never
//! wrote a manifest) and stale multipart uploads. Manifests are deleted before data, so an
//! interrupted prune never leaves a listed backup without its data.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::catalog::Catalog;
use super::retention::{self, Candidate, RetentionPolicy, Verdict};
use super::BackupError;
use crate::store::{PendingUpload, Store};

/// Orphans and stale uploads younger than this may belong to a run still in progress.
pub const ORPHAN_AGE: Duration = Duration::days(1);

#[derive(Debug, Clone)]
pub struct PruneOptions {
    pub policy: RetentionPolicy,
    pub tz: chrono_tz::Tz,
    pub force: bool,
    /// Only plan: a plan the delete guard would refuse is still shown, with `refused` set.
    pub dry_run: bool,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrphanPlan {
    pub dir: String,
    pub objects: usize,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StaleUpload {
    pub key: String,
    pub initiated: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub pending: PendingUpload,
}

/// What a prune will do (or did).
#[derive(Debug, Clone, Serialize)]
pub struct PrunePlan {
    pub set: String,
    pub time_zone: String,
    pub backups: Vec<Verdict>,
    pub orphans: Vec<OrphanPlan>,
    pub stale_uploads: Vec<StaleUpload>,
    /// Why stale uploads were not looked for (the provider lacks ListMultipartUploads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_uploads_skipped: Option<String>,
    /// Dry runs only: why the real run would refuse this plan (and that `--force` allows it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<retention::RetentionError>,
    /// Bytes the deleted backups and orphans free.
    pub reclaim_bytes: u64,
    #[serde(skip)]
    deletions: Vec<Vec<String>>,
}

impl PrunePlan {
    pub fn kept(&self) -> usize {
        self.backups.iter().filter(|v| v.keep).count()
    }
    pub fn deleted(&self) -> usize {
        self.backups.len() - self.kept()
    }
}

/// Computes the plan; refuses an empty policy and, without `force`, deleting more than half
/// (a dry run shows such a plan, with the refusal in `refused`).
pub async fn plan(store: &Store, set: &str, opts: &PruneOptions) -> Result<PrunePlan, BackupError> {
    let catalog = Catalog::load(store, Some(set)).await?;
    let candidates: Vec<Candidate> = catalog
        .backups
        .iter()
        .map(|b| Candidate { id: b.id.clone(), time: b.time(), verified: b.verified(), drilled: b.drilled() })
        .collect();
    let verdicts = retention::plan(&opts.policy, &candidates, opts.tz, opts.now)?;
    let refused = match retention::check_guard(&verdicts, opts.force) {
        Err(e) if opts.dry_run => Some(e),
        guard => guard.map(|()| None)?,
    };

    let mut reclaim_bytes = 0;
    let mut deletions = Vec::new();
    for verdict in verdicts.iter().filter(|v| !v.keep) {
        let entry = catalog.backups.iter().find(|b| b.id == verdict.id).expect("verdict for a listed backup");
        // Manifest first: once it is gone the backup no longer exists, whatever happens next.
        let manifest_key = format!("{}{}", entry.dir, super::manifest::MANIFEST_FILE);
        let mut keys = vec![manifest_key.clone()];
        keys.extend(entry.objects.iter().map(|o| o.key.clone()).filter(|k| *k != manifest_key));
        reclaim_bytes += entry.objects.iter().map(|o| o.size).sum::<u64>();
        deletions.push(keys);
    }
    let cutoff = opts.now - ORPHAN_AGE;
    let mut orphans = Vec::new();
    for orphan in catalog.orphans.iter().filter(|o| o.newest.is_some_and(|t| t < cutoff)) {
        let bytes = orphan.objects.iter().map(|o| o.size).sum::<u64>();
        reclaim_bytes += bytes;
        orphans.push(OrphanPlan { dir: orphan.dir.clone(), objects: orphan.objects.len(), bytes });
        deletions.push(orphan.objects.iter().map(|o| o.key.clone()).collect());
    }
    // Stale uploads are housekeeping: a provider without the listing API (s3s-fs, some
    // S3-compatible servers) must not stop the retention policy from being applied.
    let (stale_uploads, stale_uploads_skipped) = match store.stale_uploads(&format!("{set}/"), cutoff).await {
        Ok(pending) => (
            pending
                .into_iter()
                .map(|p| StaleUpload { key: p.key.clone(), initiated: p.initiated, pending: p })
                .collect(),
            None,
        ),
        Err(e) => match e.unsupported() {
            Some(why) => (Vec::new(), Some(format!("not supported by this provider ({why})"))),
            None => return Err(e.into()),
        },
    };
    Ok(PrunePlan {
        set: set.into(),
        time_zone: opts.tz.name().into(),
        backups: verdicts,
        orphans,
        stale_uploads,
        stale_uploads_skipped,
        refused,
        reclaim_bytes,
        deletions,
    })
}

/// Carries out a plan: backups (manifest first), orphans, stale uploads.
pub async fn apply(store: &Store, plan: &PrunePlan) -> Result<(), BackupError> {
    if let Some(why) = &plan.refused {
        return Err(BackupError::Retention(why.clone()));
    }
    for keys in &plan.deletions {
        for key in keys {
            store.delete(key).await?;
        }
    }
    for stale in &plan.stale_uploads {
        store.abort_pending(&stale.pending).await?;
    }
    Ok(())
}
