//! Sampling the media bucket: are the objects the restored database points at still there and
//! readable? Each sampled key gets a HEAD and a ranged GET of its first KiB (optionally through a
//! presigned URL, the way browsers fetch them).

use std::time::Duration;

use futures::stream::{self, StreamExt};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use super::{DrillError, InventoryCheck, ObjectCheck, ObjectProblem, ObjectsSpec};
use crate::backup::objects::inventory::{self, InventoryEntry};
use crate::backup::objects::ObjectsError;
use crate::store::{Store, StoreError};

/// Why the sampled objects cannot be compared with an object set's inventory.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error(transparent)]
    Objects(#[from] Box<ObjectsError>),
    #[error("no inventory of object set '{set}' in {store}; run `opsbook backup objects` first")]
    NoInventory { set: String, store: String },
    /// `copies` are the copies the set's inventories describe.
    #[error(
        "no inventory of object set '{set}' describes the copy {copy} (its inventories describe {}): give \
         --objects the --to of `backup objects --set {set}`",
        copies.join(", ")
    )]
    OtherCopies { set: String, copy: String, copies: Vec<String> },
}

impl From<ObjectsError> for InventoryError {
    fn from(e: ObjectsError) -> Self {
        InventoryError::Objects(Box::new(e))
    }
}

/// The newest inventory of an object set: its run id and entries by key.
pub struct Inventory {
    pub set: String,
    pub run: String,
    pub entries: std::collections::HashMap<String, InventoryEntry>,
}

/// Loads the newest inventory of `set` in the backup store that describes the copy at `copy`
/// (its `--to`): another copy's inventory says nothing about this one's objects.
pub async fn load_inventory(store: &Store, set: &str, copy: &str) -> Result<Inventory, InventoryError> {
    let runs = inventory::list_runs(store, Some(set)).await?;
    let runs: Vec<_> = runs.into_iter().filter(|r| r.summary.set == set).collect();
    if runs.is_empty() {
        return Err(InventoryError::NoInventory { set: set.to_string(), store: store.url().to_string() });
    }
    // Newest first, so the first match is the newest inventory of this copy.
    let Some(run) = runs.iter().find(|r| r.summary.to == copy).cloned() else {
        let mut copies: Vec<&str> = runs.iter().map(|r| r.summary.to.as_str()).collect();
        copies.sort();
        copies.dedup();
        return Err(InventoryError::OtherCopies {
            set: set.to_string(),
            copy: copy.to_string(),
            copies: copies.into_iter().map(String::from).collect(),
        });
    };
    let entries = inventory::read_inventory(store, &run).await?;
    Ok(Inventory {
        set: set.to_string(),
        run: run.summary.id,
        entries: entries.into_iter().map(|e| (e.key.clone(), e)).collect(),
    })
}

/// Why a sampled object does not match the inventory: unreadable, or other bytes.
#[derive(Debug, thiserror::Error)]
enum HashMismatch {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading: {error}")]
    Read { error: std::io::Error },
    #[error("{size} bytes, the inventory says {expected}")]
    Size { size: u64, expected: u64 },
    #[error("SHA-256 {actual}, the inventory says {expected}")]
    Sha256 { actual: String, expected: String },
}

/// Reads an object whole, streaming, and compares its size and SHA-256 with the inventory's.
async fn compare_hash(store: &Store, key: &str, expected: &InventoryEntry, sha256: &str) -> Result<(), HashMismatch> {
    use sha2::Digest;
    use tokio::io::AsyncReadExt;
    let mut reader = store.get_stream(key).await?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf).await.map_err(|error| HashMismatch::Read { error })?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    let actual = hex::encode(hasher.finalize());
    if size != expected.size {
        return Err(HashMismatch::Size { size, expected: expected.size });
    }
    if actual != sha256 {
        return Err(HashMismatch::Sha256 { actual, expected: sha256.to_string() });
    }
    Ok(())
}

/// Hashes the readable sampled keys the inventory lists.
async fn check_inventory(store: &Store, readable: &[String], inv: &Inventory) -> InventoryCheck {
    // Owned items: the drill's future must stay Send for any lifetime (runbook actions).
    let listed: Vec<(String, InventoryEntry, String)> = readable
        .iter()
        .filter_map(|k| inv.entries.get(k).and_then(|e| e.sha256.clone().map(|h| (k.clone(), e.clone(), h))))
        .collect();
    let not_in_inventory = readable.len() - listed.len();
    let checked = listed.len();
    let results: Vec<Option<ObjectProblem>> = stream::iter(listed)
        .map(|(key, entry, sha256)| async move {
            compare_hash(store, &key, &entry, &sha256).await.err().map(|e| ObjectProblem { key, error: e.to_string() })
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut mismatched: Vec<ObjectProblem> = results.into_iter().flatten().collect();
    mismatched.sort_by(|a, b| a.key.cmp(&b.key));
    InventoryCheck { set: inv.set.clone(), run: inv.run.clone(), checked, not_in_inventory, mismatched }
}

const CONCURRENCY: usize = 8;
const PROBE_BYTES: u64 = 1024;

/// Why `--objects-query` gave no keys.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("{}", crate::pg::query::describe_sql_error(error))]
    Query { error: sqlx::Error },
    #[error(transparent)]
    Column(sqlx::Error),
    /// The first column is not text.
    #[error("{error}")]
    NotText { error: sqlx::error::BoxDynError },
}

/// Keys from the restored database: the first column of each row of `query`, non-empty.
pub async fn keys_from_query(conn: &mut sqlx::PgConnection, query: &str) -> Result<Vec<String>, KeysError> {
    use futures::TryStreamExt;
    use sqlx::Row;
    let mut rows = sqlx::Executor::fetch_many(&mut *conn, sqlx::raw_sql(query));
    let mut keys = Vec::new();
    while let Some(item) = rows.try_next().await.map_err(|error| KeysError::Query { error })? {
        if let sqlx::Either::Right(row) = item {
            let raw = row.try_get_raw(0).map_err(KeysError::Column)?;
            if sqlx::ValueRef::is_null(&raw) {
                continue;
            }
            let key = raw.as_str().map(str::to_string).map_err(|error| KeysError::NotText { error })?;
            let key = key.trim().trim_start_matches('/').to_string();
            if !key.is_empty() {
                keys.push(key);
            }
        }
    }
    Ok(keys)
}

/// Why a sampled object failed: gone, or there but unreadable.
enum ProbeError {
    Missing,
    Unreadable(String),
}

fn unreadable(e: impl std::fmt::Display) -> ProbeError {
    ProbeError::Unreadable(e.to_string())
}

async fn probe(store: &Store, key: &str, presign: bool, http: &reqwest::Client) -> Result<(), ProbeError> {
    let meta = match store.head(key).await {
        Ok(Some(meta)) => meta,
        Ok(None) => return Err(ProbeError::Missing),
        Err(e) if e.is_not_found() => return Err(ProbeError::Missing),
        Err(e) => return Err(unreadable(e)),
    };
    if meta.size == 0 {
        return Ok(());
    }
    let len = meta.size.min(PROBE_BYTES);
    if presign {
        let url = store.presign_get(key, Duration::from_secs(300)).await.map_err(unreadable)?;
        let response = http
            .get(&url)
            .header(reqwest::header::RANGE, format!("bytes=0-{}", len - 1))
            .send()
            .await
            .map_err(|e| unreadable(format!("presigned GET: {}", e.without_url())))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(ProbeError::Missing);
        }
        if !status.is_success() {
            return Err(unreadable(format!("presigned GET: HTTP {status}")));
        }
        let body =
            response.bytes().await.map_err(|e| unreadable(format!("presigned GET body: {}", e.without_url())))?;
        if body.len() as u64 != len {
            return Err(unreadable(format!("presigned GET returned {} bytes, expected {len}", body.len())));
        }
        return Ok(());
    }
    let body = store.get_range(key, 0, len).await.map_err(|e| {
        if e.is_not_found() {
            ProbeError::Missing
        } else {
            unreadable(e)
        }
    })?;
    if body.len() as u64 != len {
        return Err(unreadable(format!("ranged GET returned {} bytes, expected {len}", body.len())));
    }
    Ok(())
}

/// Samples `spec.sample` keys (from `keys`, or from a listing of the store when None) and probes
/// each.
pub async fn check(
    spec: &ObjectsSpec,
    store: &Store,
    keys: Option<Vec<String>>,
    inventory: Option<&Inventory>,
    rng: &mut StdRng,
) -> Result<ObjectCheck, DrillError> {
    let (sampled_from, candidates) = match keys {
        Some(keys) => ("query", keys),
        None => ("listing", store.list("").await?.into_iter().map(|o| o.key).collect()),
    };
    let mut unique = candidates.clone();
    unique.sort();
    unique.dedup();
    let sample: Vec<String> = unique.choose_multiple(rng, spec.sample.min(unique.len())).cloned().collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| DrillError::Io { op: "build HTTP client".into(), source: std::io::Error::other(e) })?;
    let results: Vec<(String, Result<(), ProbeError>)> = stream::iter(sample.iter().cloned())
        .map(|key| {
            let http = &http;
            async move {
                let r = probe(store, &key, spec.presign, http).await;
                (key, r)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut missing = Vec::new();
    let mut problems = Vec::new();
    let mut readable_keys = Vec::new();
    for (key, result) in results {
        match result {
            Ok(()) => readable_keys.push(key),
            Err(ProbeError::Missing) => missing.push(key),
            Err(ProbeError::Unreadable(error)) => problems.push(ObjectProblem { key, error }),
        }
    }
    missing.sort();
    problems.sort_by(|a, b| a.key.cmp(&b.key));
    let readable = readable_keys.len();
    let inventory = match inventory {
        Some(inv) => Some(check_inventory(store, &readable_keys, inv).await),
        None => None,
    };
    Ok(ObjectCheck {
        source: store.url().to_string(),
        sampled_from: sampled_from.into(),
        candidates: unique.len(),
        sampled: sample.len(),
        readable,
        missing,
        unreadable: problems,
        presigned: spec.presign,
        inventory,
    })
}

/// The objects step's detail: how many sampled objects were readable, which were missing,
/// unreadable or different from the inventory.
pub(super) fn detail(check: &super::ObjectCheck) -> String {
    let mut detail = format!(
        "{}/{} sampled objects readable (from {} {} keys)",
        check.readable, check.sampled, check.candidates, check.sampled_from
    );
    let problems = |list: &[super::ObjectProblem]| -> String {
        list.iter().map(|p| format!("{} ({})", p.key, p.error)).collect::<Vec<_>>().join(", ")
    };
    if !check.missing.is_empty() {
        detail.push_str(&format!("; missing: {}", check.missing.join(", ")));
    }
    if !check.unreadable.is_empty() {
        detail.push_str(&format!("; unreadable: {}", problems(&check.unreadable)));
    }
    if let Some(inv) = &check.inventory {
        detail.push_str(&format!(
            "; {} matched inventory {} of set {}",
            inv.checked - inv.mismatched.len(),
            inv.run,
            inv.set
        ));
        if inv.not_in_inventory > 0 {
            detail.push_str(&format!(" ({} not in it)", inv.not_in_inventory));
        }
        if inv.checked == 0 {
            detail.push_str(": no sampled object could be compared with the inventory");
        }
        if !inv.mismatched.is_empty() {
            detail.push_str(&format!("; differ from the inventory: {}", problems(&inv.mismatched)));
        }
    }
    detail
}
