//! What a store holds: backups (directories with a manifest), their latest verify and drill
//! records, and orphans (objects of a backup that never got its manifest).

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;

use super::layout::{self, BackupId};
use super::manifest::{DrillSummary, Manifest, VerifyRecord, MANIFEST_FILE};
use super::BackupError;
use crate::store::{ObjectMeta, Store, StoreError};

/// How many small objects (manifests, records) are fetched at once.
const FETCH_CONCURRENCY: usize = 16;

/// One complete backup.
#[derive(Debug, Clone, Serialize)]
pub struct BackupEntry {
    pub set: String,
    pub id: String,
    pub dir: String,
    pub manifest: Manifest,
    /// Every object in the backup's directory, manifest and records included.
    #[serde(skip)]
    pub objects: Vec<ObjectMeta>,
    pub last_verify: Option<VerifyRecord>,
    pub last_drill: Option<DrillSummary>,
}

impl BackupEntry {
    pub fn time(&self) -> DateTime<Utc> {
        self.manifest.started
    }
    pub fn verified(&self) -> bool {
        self.last_verify.as_ref().is_some_and(|v| v.ok)
    }
    pub fn drilled(&self) -> bool {
        self.last_drill.as_ref().is_some_and(|d| d.ok)
    }
}

/// Objects of a backup directory without a manifest: an interrupted or failed run.
#[derive(Debug, Clone, Serialize)]
pub struct Orphan {
    pub set: String,
    pub dir: String,
    pub objects: Vec<ObjectMeta>,
    pub newest: Option<DateTime<Utc>>,
}

/// A backup directory whose manifest cannot be read (truncated, not JSON, a newer format). It
/// is neither a backup (never selected, verified, drilled or counted by retention) nor an
/// orphan (never pruned): its data may be fine, and only a person can tell.
#[derive(Debug, Clone, Serialize)]
pub struct UnreadableBackup {
    pub set: String,
    pub dir: String,
    pub manifest_key: String,
    pub error: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Catalog {
    /// Newest first.
    pub backups: Vec<BackupEntry>,
    pub orphans: Vec<Orphan>,
    /// Skipped backups, by directory.
    pub unreadable: Vec<UnreadableBackup>,
}

impl Catalog {
    /// For commands given a store to read: a local store directory that does not exist is an
    /// error (a mistyped path would otherwise read as an empty store). Runbook steps and
    /// checks read a missing directory as empty, as a store an earlier step has yet to create.
    pub async fn require_existing(store: &Store) -> Result<(), BackupError> {
        if let Store::Local(local) = store {
            if !tokio::fs::try_exists(local.root()).await.unwrap_or(true) {
                return Err(BackupError::NoStoreDir { path: local.root().to_path_buf() });
            }
        }
        Ok(())
    }

    /// Reads the listing of `set` (or of every set) and the manifests and latest records.
    pub async fn load(store: &Store, set: Option<&str>) -> Result<Catalog, BackupError> {
        let prefix = set.map(|s| format!("{s}/")).unwrap_or_default();
        let listing = store.list(&prefix).await?;
        let mut dirs: BTreeMap<(String, BackupId), Vec<ObjectMeta>> = BTreeMap::new();
        for object in listing {
            if let Some((set, id, _)) = layout::parse_key(&object.key) {
                dirs.entry((set.to_string(), id)).or_default().push(object);
            }
        }
        let mut orphans = Vec::new();
        let mut complete = Vec::new();
        for ((set, id), objects) in dirs {
            let dir = layout::backup_dir(&set, &id);
            // Object copy runs (`backup objects`) live beside the backups; they are not orphans.
            if objects.iter().any(|o| file_name(&o.key) == super::objects::SUMMARY_FILE) {
                continue;
            }
            if objects.iter().any(|o| file_name(&o.key) == MANIFEST_FILE) {
                complete.push((set, id, dir, objects));
            } else {
                let newest = objects.iter().filter_map(|o| o.last_modified).max();
                orphans.push(Orphan { set, dir, objects, newest });
            }
        }
        let loaded: Vec<Result<BackupEntry, UnreadableBackup>> = stream::iter(complete)
            .map(|(set, id, dir, objects)| load_entry(store, set, id, dir, objects))
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        let (mut backups, mut unreadable) = (Vec::new(), Vec::new());
        for entry in loaded {
            match entry {
                Ok(entry) => backups.push(entry),
                Err(bad) => unreadable.push(bad),
            }
        }
        backups.sort_by(|a, b| b.time().cmp(&a.time()).then_with(|| b.id.cmp(&a.id)));
        unreadable.sort_by(|a, b| a.dir.cmp(&b.dir));
        for bad in &unreadable {
            tracing::warn!(
                "skipping backup {}: its manifest {} is unreadable ({}); it is not listed, drilled or pruned \
                 until the manifest is repaired or the directory removed by hand",
                bad.dir,
                bad.manifest_key,
                bad.error
            );
        }
        Ok(Catalog { backups, orphans, unreadable })
    }

    /// `latest`, or an id (a unique prefix of one is accepted).
    pub fn find(&self, set: &str, which: &str) -> Result<&BackupEntry, BackupError> {
        let in_set = || self.backups.iter().filter(|b| b.set == set);
        let found = if which == "latest" {
            in_set().next()
        } else {
            let matches: Vec<&BackupEntry> = in_set().filter(|b| b.id.starts_with(which)).collect();
            match matches.as_slice() {
                [one] => Some(*one),
                [] => None,
                many => return Err(BackupError::AmbiguousId { prefix: which.to_string(), count: many.len() }),
            }
        };
        if found.is_none() && which != "latest" {
            let named = |b: &&UnreadableBackup| {
                b.set == set && b.dir.trim_end_matches('/').rsplit('/').next().is_some_and(|d| d.starts_with(which))
            };
            if let Some(bad) = self.unreadable.iter().find(named) {
                return Err(BackupError::Manifest {
                    key: bad.manifest_key.clone(),
                    message: format!("{}; the backup cannot be used until its manifest is repaired", bad.error),
                });
            }
        }
        found.ok_or_else(|| BackupError::NotFound {
            set: set.into(),
            id: which.into(),
            hint: if in_set().next().is_none() {
                "; the set has no complete backup yet (run `opsbook backup run`)".into()
            } else {
                "; `opsbook backup list` shows the ids".into()
            },
            named: which != "latest",
        })
    }
}

pub fn file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

async fn load_entry(
    store: &Store,
    set: String,
    id: BackupId,
    dir: String,
    objects: Vec<ObjectMeta>,
) -> Result<Result<BackupEntry, UnreadableBackup>, BackupError> {
    let manifest_key = format!("{dir}{MANIFEST_FILE}");
    let bytes = store.get_bytes(&manifest_key).await?;
    // One bad manifest must not hide the set's other backups: it is reported, not fatal.
    let manifest = match Manifest::from_json(&bytes) {
        Ok(manifest) => manifest,
        Err(error) => return Ok(Err(UnreadableBackup { set, dir, manifest_key, error: error.to_string() })),
    };
    let last_verify = latest_record::<VerifyRecord>(store, &objects, "verify-").await?;
    let last_drill = latest_record::<DrillSummary>(store, &objects, "drill-").await?;
    Ok(Ok(BackupEntry { set, id: id.to_string(), dir, manifest, objects, last_verify, last_drill }))
}

/// Records are named `<kind>-<UTC timestamp>.json`, so the greatest name is the newest.
async fn latest_record<T: serde::de::DeserializeOwned>(
    store: &Store,
    objects: &[ObjectMeta],
    kind: &str,
) -> Result<Option<T>, BackupError> {
    match record_keys(objects, kind).max() {
        Some(key) => Ok(read_record(store, key).await?),
        None => Ok(None),
    }
}

/// The keys of a backup's `<kind>-*.json` records (verify, drill), in no order; their file
/// names ([`file_name`]) sort by time.
pub fn record_keys<'a>(objects: &'a [ObjectMeta], kind: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    objects.iter().map(|o| o.key.as_str()).filter(move |k| file_name(k).starts_with(kind) && k.ends_with(".json"))
}

/// Reads one record; an unreadable one is logged and read as none.
pub async fn read_record<T: serde::de::DeserializeOwned>(store: &Store, key: &str) -> Result<Option<T>, StoreError> {
    let bytes = store.get_bytes(key).await?;
    match serde_json::from_slice(&bytes) {
        Ok(record) => Ok(Some(record)),
        Err(e) => {
            tracing::warn!("ignoring unreadable record {key}: {e}");
            Ok(None)
        }
    }
}

/// Stores a record (verify, drill) beside a backup's manifest.
pub async fn put_record<T: Serialize>(
    store: &Store,
    dir: &str,
    kind: &str,
    time: DateTime<Utc>,
    record: &T,
) -> Result<String, BackupError> {
    let key = format!("{dir}{kind}-{}.json", time.format("%Y%m%dT%H%M%S%.3fZ"));
    let body = serde_json::to_vec_pretty(record).expect("record serializes");
    store.put_bytes(&key, Bytes::from(body)).await?;
    Ok(key)
}
