//! The backup manifest: the versioned JSON record that makes a backup exist. Written last,
//! deleted first, never modified (verify and drill results are separate objects beside it).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Bumped when a field changes meaning; readers refuse newer versions.
pub const FORMAT_VERSION: u32 = 1;

pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format_version: u32,
    /// "opsbook <version>" that wrote it.
    pub tool: String,
    pub id: String,
    pub set: String,
    /// The moment the dump's snapshot was taken: what the backup contains is the database as of then.
    pub snapshot_time: DateTime<Utc>,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub database: String,
    pub server_version: String,
    pub pg_dump_version: String,
    pub compression: Compression,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// Multipart part size used for the upload, in bytes.
    pub part_size: u64,
    pub objects: Vec<StoredObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_counts: Option<RowCounts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_head: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Compression {
    pub algorithm: String,
    pub level: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Encryption {
    pub scheme: String,
    pub recipients: Vec<String>,
}

/// What a stored object holds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ObjectRole {
    /// `pg_dump --format=custom` archive.
    Data,
    /// `pg_dumpall --globals-only` SQL script.
    Globals,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredObject {
    pub role: ObjectRole,
    /// Store key, relative to the store's prefix.
    pub key: String,
    /// Stored (compressed, encrypted) size in bytes.
    pub size: u64,
    /// SHA-256 of the stored bytes, hex.
    pub sha256: String,
    /// Size of the tool's output before compression.
    pub raw_size: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RowCountMethod {
    /// `count(*)` per table inside the dump's snapshot: exactly what the dump holds.
    Exact,
    /// Planner statistics (`pg_class.reltuples`): cheap, approximate.
    Estimate,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RowCounts {
    pub method: RowCountMethod,
    /// `schema.table` (quoted where needed) → rows.
    pub tables: BTreeMap<String, i64>,
}

impl RowCounts {
    pub fn total(&self) -> i64 {
        self.tables.values().sum()
    }
}

impl Manifest {
    pub fn data(&self) -> Option<&StoredObject> {
        self.objects.iter().find(|o| o.role == ObjectRole::Data)
    }

    pub fn globals(&self) -> Option<&StoredObject> {
        self.objects.iter().find(|o| o.role == ObjectRole::Globals)
    }

    pub fn stored_size(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("manifest serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Parses a manifest, refusing versions this build does not understand.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let value: serde_json::Value = serde_json::from_slice(bytes)?;
        let version = value.get("format_version").and_then(|v| v.as_u64()).unwrap_or(0);
        if version > u64::from(FORMAT_VERSION) {
            return Err(ManifestError::TooNew { version });
        }
        Ok(serde_json::from_value(value)?)
    }
}

/// Why a manifest cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("manifest format {version} is newer than this opsbook understands ({FORMAT_VERSION}); upgrade opsbook")]
    TooNew { version: u64 },
}

/// The result of a `backup verify`, stored beside the manifest as `verify-<time>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VerifyRecord {
    pub tool: String,
    pub backup_id: String,
    pub time: DateTime<Utc>,
    pub deep: bool,
    pub ok: bool,
    pub checks: Vec<VerifyCheck>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VerifyCheck {
    pub object: String,
    pub check: String,
    pub ok: bool,
    pub detail: String,
}

/// The minimal shape of a drill record (written by restore-drill) that listing and retention need.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DrillSummary {
    pub time: DateTime<Utc>,
    pub ok: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_format_is_refused() {
        let err = Manifest::from_json(br#"{"format_version": 99}"#).unwrap_err();
        assert!(err.to_string().contains("upgrade opsbook"), "{err}");
    }
}
