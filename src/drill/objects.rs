//! Sampling the media bucket: are the objects the restored database points at still there and
//! readable? Each sampled key gets a HEAD and a ranged GET of its first KiB (optionally through a
//! presigned URL, the way browsers fetch them).

use std::time::Duration;

use futures::stream::{self, StreamExt};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use super::{DrillError, ObjectCheck, ObjectProblem, ObjectsSpec};
use crate::store::Store;

const CONCURRENCY: usize = 8;
const PROBE_BYTES: u64 = 1024;

/// Keys from the restored database: the first column of each row of `query`, non-empty.
pub async fn keys_from_query(conn: &mut sqlx::PgConnection, query: &str) -> Result<Vec<String>, String> {
    use futures::TryStreamExt;
    use sqlx::Row;
    let mut rows = sqlx::Executor::fetch_many(&mut *conn, sqlx::raw_sql(query));
    let mut keys = Vec::new();
    while let Some(item) = rows.try_next().await.map_err(|e| crate::pg::query::describe_sql_error(&e))? {
        if let sqlx::Either::Right(row) = item {
            let raw = row.try_get_raw(0).map_err(|e| e.to_string())?;
            if sqlx::ValueRef::is_null(&raw) {
                continue;
            }
            let key = raw.as_str().map(str::to_string).map_err(|e| e.to_string())?;
            let key = key.trim().trim_start_matches('/').to_string();
            if !key.is_empty() {
                keys.push(key);
            }
        }
    }
    Ok(keys)
}

async fn probe(store: &Store, key: &str, presign: bool, http: &reqwest::Client) -> Result<(), (bool, String)> {
    let meta = match store.head(key).await {
        Ok(Some(meta)) => meta,
        Ok(None) => return Err((true, "no such object".into())),
        Err(e) if e.is_not_found() => return Err((true, "no such object".into())),
        Err(e) => return Err((false, e.to_string())),
    };
    if meta.size == 0 {
        return Ok(());
    }
    let len = meta.size.min(PROBE_BYTES);
    if presign {
        let url = store.presign_get(key, Duration::from_secs(300)).await.map_err(|e| (false, e.to_string()))?;
        let response = http
            .get(&url)
            .header(reqwest::header::RANGE, format!("bytes=0-{}", len - 1))
            .send()
            .await
            .map_err(|e| (false, format!("presigned GET: {}", e.without_url())))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err((true, "presigned GET: 404".into()));
        }
        if !status.is_success() {
            return Err((false, format!("presigned GET: HTTP {status}")));
        }
        let body = response.bytes().await.map_err(|e| (false, format!("presigned GET body: {}", e.without_url())))?;
        if body.len() as u64 != len {
            return Err((false, format!("presigned GET returned {} bytes, expected {len}", body.len())));
        }
        return Ok(());
    }
    let body = store.get_range(key, 0, len).await.map_err(|e| (e.is_not_found(), e.to_string()))?;
    if body.len() as u64 != len {
        return Err((false, format!("ranged GET returned {} bytes, expected {len}", body.len())));
    }
    Ok(())
}

/// Samples `spec.sample` keys (from `keys`, or from a listing of the store when None) and probes
/// each.
pub async fn check(
    spec: &ObjectsSpec,
    store: &Store,
    keys: Option<Vec<String>>,
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
    let results: Vec<(String, Result<(), (bool, String)>)> = stream::iter(sample.iter().cloned())
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
    let mut unreadable = Vec::new();
    let mut readable = 0;
    for (key, result) in results {
        match result {
            Ok(()) => readable += 1,
            Err((true, _)) => missing.push(key),
            Err((false, error)) => unreadable.push(ObjectProblem { key, error }),
        }
    }
    missing.sort();
    unreadable.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(ObjectCheck {
        source: store.url().to_string(),
        sampled_from: sampled_from.into(),
        candidates: unique.len(),
        sampled: sample.len(),
        readable,
        missing,
        unreadable,
        presigned: spec.presign,
    })
}
