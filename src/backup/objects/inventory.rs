//! Inventories of object copies: one JSON Lines file per run beside the database backups
//! (`<set>/<YYYY>/<MM>/<id>/inventory.jsonl`), a summary (`objects.json`) written last, and a
//! local journal of the copies a run has finished, so an interrupted run resumes.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ObjectsError;
use crate::backup::layout::{self, BackupId};
use crate::store::{ObjectMeta, Store};

/// The summary of one run; the run's inventory counts only once this exists.
pub const SUMMARY_FILE: &str = "objects.json";
pub const INVENTORY_FILE: &str = "inventory.jsonl";
pub const FORMAT_VERSION: u32 = 1;

/// One object of the copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntry {
    pub key: String,
    pub size: u64,
    /// SHA-256 of the bytes copied; `None` only for objects found in the copy that opsbook did
    /// not write.
    pub sha256: Option<String>,
    /// The source's ETag when the object was copied (S3 sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_etag: Option<String>,
    /// The source's modification time when the object was copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_modified: Option<DateTime<Utc>>,
    pub copied_at: DateTime<Utc>,
    /// When a run first found the source gone; the copy is kept for the retention window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
}

impl InventoryEntry {
    /// An object found in the copy that no run recorded (and whose source is gone).
    pub fn foreign(copy: &ObjectMeta, now: DateTime<Utc>) -> Self {
        InventoryEntry {
            key: copy.key.clone(),
            size: copy.size,
            sha256: None,
            source_etag: None,
            source_modified: None,
            copied_at: copy.last_modified.unwrap_or(now),
            deleted_at: Some(now),
        }
    }
}

/// `objects.json`: what one run did and where its inventory is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectSetSummary {
    pub format_version: u32,
    pub kind: String,
    pub tool: String,
    pub id: String,
    pub set: String,
    pub from: String,
    pub to: String,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    /// Objects in the inventory (copies of live sources plus retained copies).
    pub objects: u64,
    pub bytes: u64,
    pub copied: u64,
    pub copied_bytes: u64,
    pub resumed: u64,
    pub retained: u64,
    pub removed: u64,
    /// Copies left for a later run by `--max-bytes`.
    pub deferred: u64,
    pub inventory_key: String,
    pub inventory_sha256: String,
}

/// A run's summary as found in the store.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectSetEntry {
    pub dir: String,
    #[serde(flatten)]
    pub summary: ObjectSetSummary,
}

fn parse_error(key: &str, message: impl std::fmt::Display) -> ObjectsError {
    ObjectsError::Inventory { key: key.to_string(), message: message.to_string() }
}

/// Every run summary of `set` (or of every set), newest first.
pub async fn list_runs(store: &Store, set: Option<&str>) -> Result<Vec<ObjectSetEntry>, ObjectsError> {
    let prefix = set.map(|s| format!("{s}/")).unwrap_or_default();
    let keys: Vec<(BackupId, String, String)> = store
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|o| {
            let (set, id, file) = layout::parse_key(&o.key)?;
            (file == SUMMARY_FILE).then(|| (id.clone(), layout::backup_dir(set, &id), o.key.clone()))
        })
        .collect();
    let mut runs: Vec<ObjectSetEntry> = stream::iter(keys)
        .map(|(_, dir, key)| async move {
            let bytes = store.get_bytes(&key).await?;
            let summary: ObjectSetSummary = serde_json::from_slice(&bytes).map_err(|e| parse_error(&key, e))?;
            Ok::<_, ObjectsError>(ObjectSetEntry { dir, summary })
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    // Ids have one-second resolution; the finish time orders runs within the same second.
    runs.sort_by(|a, b| b.summary.finished.cmp(&a.summary.finished).then_with(|| b.summary.id.cmp(&a.summary.id)));
    Ok(runs)
}

/// The newest complete run of `set` that copied to `to`, if any: a set may hold copies to
/// several destinations, and another destination's inventory says nothing about this one.
pub async fn latest(store: &Store, set: &str, to: &str) -> Result<Option<ObjectSetEntry>, ObjectsError> {
    Ok(list_runs(store, Some(set)).await?.into_iter().find(|r| r.summary.set == set && r.summary.to == to))
}

/// Reads a run's inventory and checks it against the SHA-256 its summary recorded.
pub async fn read_inventory(store: &Store, run: &ObjectSetEntry) -> Result<Vec<InventoryEntry>, ObjectsError> {
    let key = &run.summary.inventory_key;
    let bytes = store.get_bytes(key).await?;
    let digest = hex::encode(Sha256::digest(&bytes));
    if digest != run.summary.inventory_sha256 {
        return Err(parse_error(
            key,
            format!("SHA-256 is {digest}, the summary recorded {}", run.summary.inventory_sha256),
        ));
    }
    parse_lines(&bytes).map_err(|(line, e)| parse_error(key, format!("line {line}: {e}")))
}

fn parse_lines(bytes: &[u8]) -> Result<Vec<InventoryEntry>, (usize, serde_json::Error)> {
    bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(i, line)| serde_json::from_slice(line).map_err(|e| (i + 1, e)))
        .collect()
}

/// JSON Lines, sorted by key.
pub fn encode(entries: &mut [InventoryEntry]) -> Bytes {
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    let mut out = Vec::with_capacity(entries.len() * 160);
    for entry in entries.iter() {
        serde_json::to_writer(&mut out, entry).expect("inventory entries serialize");
        out.push(b'\n');
    }
    Bytes::from(out)
}

/// Stores the inventory, then the summary: the run exists once the summary is written.
pub async fn write_run(
    store: &Store,
    id: &BackupId,
    mut summary: ObjectSetSummary,
    entries: &mut [InventoryEntry],
) -> Result<ObjectSetSummary, ObjectsError> {
    let dir = layout::backup_dir(&summary.set, id);
    let inventory = encode(entries);
    summary.inventory_key = format!("{dir}{INVENTORY_FILE}");
    summary.inventory_sha256 = hex::encode(Sha256::digest(&inventory));
    store.put_bytes(&summary.inventory_key, inventory).await?;
    let json = serde_json::to_vec_pretty(&summary).expect("summary serializes");
    store.put_bytes(&format!("{dir}{SUMMARY_FILE}"), Bytes::from(json)).await?;
    Ok(summary)
}

/// Copies finished by runs that did not complete, appended one JSON line per copy.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl Journal {
    /// The journal of copies from `from` to `to` for `set`, in the state directory.
    pub fn at(state_dir: &Path, from: &str, to: &str, set: &str) -> Journal {
        let digest = hex::encode(&Sha256::digest(format!("{from}\n{to}\n{set}").as_bytes())[..8]);
        Journal { path: state_dir.join("objects").join(format!("{set}-{digest}.jsonl")), file: None }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entries a previous, unfinished run recorded. A torn last line (a crash mid-write)
    /// is ignored.
    pub fn load(&self) -> Result<Vec<InventoryEntry>, ObjectsError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(ObjectsError::Journal { path: self.path.clone(), source }),
        };
        Ok(bytes
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect())
    }

    /// Appends one finished copy.
    pub fn record(&mut self, entry: &InventoryEntry) -> Result<(), ObjectsError> {
        let io = |source| ObjectsError::Journal { path: self.path.clone(), source };
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(io)?;
            self.file = Some(file);
        }
        let mut line = serde_json::to_vec(entry).expect("inventory entries serialize");
        line.push(b'\n');
        let file = self.file.as_mut().expect("opened above");
        file.write_all(&line).map_err(io)
    }

    /// Flushes what was recorded to disk (before a run reports failure).
    pub fn sync(&mut self) {
        if let Some(file) = &self.file {
            if let Err(e) = file.sync_data() {
                tracing::warn!("cannot sync {}: {e}", self.path.display());
            }
        }
    }

    /// Removes the journal once an inventory holds everything it recorded.
    pub fn clear(mut self) -> Result<(), ObjectsError> {
        self.file = None;
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ObjectsError::Journal { path: self.path.clone(), source: e })
            }
            _ => Ok(()),
        }
    }
}

/// Records of the newest inventory with the journal's newer entries over them.
pub fn merge(inventory: Vec<InventoryEntry>, journal: Vec<InventoryEntry>) -> HashMap<String, InventoryEntry> {
    let mut records: HashMap<String, InventoryEntry> = inventory.into_iter().map(|e| (e.key.clone(), e)).collect();
    for entry in journal {
        records.insert(entry.key.clone(), entry);
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str) -> InventoryEntry {
        InventoryEntry {
            key: key.into(),
            size: 3,
            sha256: Some("ab".into()),
            source_etag: Some("e".into()),
            source_modified: None,
            copied_at: Utc::now(),
            deleted_at: None,
        }
    }

    #[test]
    fn inventory_round_trips_sorted() {
        let mut entries = vec![entry("b"), entry("a")];
        let bytes = encode(&mut entries);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with("{\"key\":\"a\""), "{text}");
        assert_eq!(parse_lines(&bytes).unwrap(), entries);
    }

    #[test]
    fn journal_survives_a_torn_line_and_overrides_the_inventory() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::at(dir.path(), "s3://a", "s3://b", "media");
        let mut newer = entry("a");
        newer.size = 9;
        journal.record(&newer).unwrap();
        drop(journal);
        let journal = Journal::at(dir.path(), "s3://a", "s3://b", "media");
        let mut file = std::fs::OpenOptions::new().append(true).open(journal.path()).unwrap();
        file.write_all(b"{\"key\":\"tor").unwrap();
        let loaded = journal.load().unwrap();
        assert_eq!(loaded, vec![newer.clone()]);
        let records = merge(vec![entry("a"), entry("b")], loaded);
        assert_eq!(records["a"].size, 9);
        assert_eq!(records.len(), 2);
        journal.clear().unwrap();
    }
}
