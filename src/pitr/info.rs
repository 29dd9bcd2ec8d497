//! What `pgbackrest info --output=json` says about a stanza: its backups (label, type, times,
//! sizes, WAL range) and the WAL held in the repository.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::{Engine, PitrError};

/// One physical backup in the repository.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Backup {
    pub label: String,
    /// full, diff or incr.
    pub kind: String,
    pub started: DateTime<Utc>,
    /// The backup is consistent from this time on (a restore to a point before it needs an
    /// older backup).
    pub stopped: DateTime<Utc>,
    /// Database size.
    pub size: u64,
    /// Size in the repository (compressed; for diff/incr only what changed).
    pub repo_size: u64,
    /// The full backup this one depends on (itself for a full).
    pub prior: Option<String>,
    pub wal_start: Option<String>,
    pub wal_stop: Option<String>,
    pub error: bool,
}

/// A stanza's state.
#[derive(Debug, Clone, Serialize, Default)]
pub struct StanzaInfo {
    /// pgBackRest's status: 0 ok, 1 missing stanza path, 2 no valid backups, …
    pub status_code: i64,
    pub status: String,
    pub backups: Vec<Backup>,
    /// Oldest and newest WAL segment in the repository.
    pub wal_min: Option<String>,
    pub wal_max: Option<String>,
    pub cipher: String,
}

impl StanzaInfo {
    /// True when the stanza exists in the repository.
    pub fn exists(&self) -> bool {
        self.status_code != 1
    }

    pub fn newest(&self, kind: Option<&str>) -> Option<&Backup> {
        self.backups.iter().filter(|b| kind.is_none_or(|k| b.kind == k)).max_by_key(|b| b.stopped)
    }
}

#[derive(Deserialize)]
struct RawStanza {
    #[serde(default)]
    archive: Vec<RawArchive>,
    #[serde(default)]
    backup: Vec<RawBackup>,
    #[serde(default)]
    cipher: String,
    status: RawStatus,
}

#[derive(Deserialize)]
struct RawArchive {
    min: Option<String>,
    max: Option<String>,
}

#[derive(Deserialize)]
struct RawStatus {
    code: i64,
    message: String,
}

#[derive(Deserialize)]
struct RawBackup {
    label: String,
    #[serde(rename = "type")]
    kind: String,
    timestamp: RawTimes,
    info: RawSizes,
    prior: Option<String>,
    archive: Option<RawWal>,
    #[serde(default)]
    error: bool,
}

#[derive(Deserialize)]
struct RawTimes {
    start: i64,
    stop: i64,
}

#[derive(Deserialize)]
struct RawSizes {
    size: u64,
    repository: RawRepoSize,
}

#[derive(Deserialize)]
struct RawRepoSize {
    delta: u64,
}

#[derive(Deserialize)]
struct RawWal {
    start: Option<String>,
    stop: Option<String>,
}

/// Parses `pgbackrest info --output=json` for one stanza.
pub fn parse(stanza: &str, json: &str) -> Result<StanzaInfo, PitrError> {
    let bad = |message: String| PitrError::Info { stanza: stanza.to_string(), message };
    let all: Vec<RawStanza> = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    let Some(raw) = all.into_iter().next() else {
        return Err(bad("no stanza in the output".into()));
    };
    let time = |secs: i64| Utc.timestamp_opt(secs, 0).single().ok_or_else(|| bad(format!("bad timestamp {secs}")));
    let mut backups = Vec::new();
    for b in raw.backup {
        let prior_full = b.prior.as_ref().map(|p| p.split('_').next().unwrap_or(p).to_string());
        backups.push(Backup {
            started: time(b.timestamp.start)?,
            stopped: time(b.timestamp.stop)?,
            size: b.info.size,
            repo_size: b.info.repository.delta,
            prior: if b.kind == "full" { Some(b.label.clone()) } else { prior_full },
            wal_start: b.archive.as_ref().and_then(|a| a.start.clone()),
            wal_stop: b.archive.as_ref().and_then(|a| a.stop.clone()),
            label: b.label,
            kind: b.kind,
            error: b.error,
        });
    }
    let wal_min = raw.archive.iter().filter_map(|a| a.min.clone()).min();
    let wal_max = raw.archive.iter().filter_map(|a| a.max.clone()).max();
    Ok(StanzaInfo {
        status_code: raw.status.code,
        status: raw.status.message,
        backups,
        wal_min,
        wal_max,
        cipher: raw.cipher,
    })
}

impl Engine {
    /// `pgbackrest info` for this stanza.
    pub async fn info(&self) -> Result<StanzaInfo, PitrError> {
        let out = self.run("info", &["--output=json".to_string()]).await?;
        parse(&self.stanza, &out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_backups_and_wal_range() {
        let json = r#"[{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1","max":"000000010000000000000005","min":"000000010000000000000001"}],
          "backup":[{"archive":{"start":"000000010000000000000002","stop":"000000010000000000000003"},"error":false,
            "info":{"delta":22992598,"repository":{"delta":2811794,"size":2811794},"size":22992598},"label":"20261207-230051F",
            "prior":null,"reference":null,"timestamp":{"start":1796684451,"stop":1796684457},"type":"full"},
            {"archive":{"start":"000000010000000000000005","stop":"000000010000000000000005"},"error":false,
            "info":{"delta":8192,"repository":{"delta":512,"size":512},"size":22992598},"label":"20261207-230051F_20261207-231000I",
            "prior":"20261207-230051F","reference":["20261207-230051F"],"timestamp":{"start":1796685000,"stop":1796685003},"type":"incr"}],
          "cipher":"none","db":[{"id":1,"repo-key":1,"system-id":7716700919178545859,"version":"15"}],"name":"app",
          "status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]"#;
        let info = super::parse("app", json).unwrap();
        assert!(info.exists());
        assert_eq!(info.backups.len(), 2);
        assert_eq!(info.newest(None).unwrap().kind, "incr");
        assert_eq!(info.newest(Some("full")).unwrap().label, "20261207-230051F");
        assert_eq!(info.backups[1].prior.as_deref(), Some("20261207-230051F"));
        assert_eq!(info.wal_max.as_deref(), Some("000000010000000000000005"));
        let missing = r#"[{"archive":[],"backup":[],"cipher":"none","db":[],"name":"app","status":{"code":1,"message":"missing stanza path"}}]"#;
        assert!(!super::parse("app", missing).unwrap().exists());
    }
}
