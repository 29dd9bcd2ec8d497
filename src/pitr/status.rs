//! The RPO as it stands: how far WAL archiving lags, whether it is failing, what the repository
//! holds, and canary rows that let a drill measure the RPO it really achieved.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::info::{Backup, StanzaInfo};
use super::{Engine, Pitr, PitrError, CANARY_TABLE};
use crate::pg::PgError;

/// pg_stat_archiver and the WAL position, read in one query.
#[derive(Debug, Clone, Serialize)]
pub struct Archiver {
    pub archive_mode: String,
    pub archived_count: i64,
    pub last_archived_wal: Option<String>,
    pub last_archived_time: Option<DateTime<Utc>>,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    pub last_failed_time: Option<DateTime<Utc>>,
    /// WAL written since the end of the newest archived segment (bytes not yet in the
    /// repository); None when the newest archived file is not a segment (a timeline history).
    pub unarchived_bytes: Option<i64>,
    pub now: DateTime<Utc>,
}

impl Archiver {
    /// The age of the newest archived WAL when there is unarchived WAL, else zero: an idle server
    /// whose last segment is archived has nothing at risk however old that segment is.
    pub fn lag_seconds(&self) -> Option<i64> {
        if self.unarchived_bytes.is_some_and(|b| b <= 0) && self.last_archived_time.is_some() {
            return Some(0);
        }
        self.last_archived_time.map(|t| (self.now - t).num_seconds().max(0))
    }

    /// Archiving fails now: the newest attempt failed.
    pub fn failing(&self) -> bool {
        match (self.last_failed_time, self.last_archived_time) {
            (Some(f), Some(a)) => f > a,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// Reads pg_stat_archiver through `p.db`.
pub async fn archiver(p: &Pitr) -> Result<Archiver, PitrError> {
    let mut conn = crate::pg::connect(&p.db).await?;
    let sql = "SELECT current_setting('archive_mode') AS mode, archived_count, last_archived_wal, last_archived_time, \
               failed_count, last_failed_wal, last_failed_time, now() AS now, \
               (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS lsn, \
               (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size') AS segment_size \
               FROM pg_stat_archiver";
    let row = sqlx::query(sql)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| PgError::query("read pg_stat_archiver", p.db.redacted(), e))?;
    let last_archived_wal: Option<String> = row.get("last_archived_wal");
    let unarchived = last_archived_wal
        .as_deref()
        .and_then(|w| segment_end(w, row.get("segment_size")))
        .map(|end| row.get::<i64, _>("lsn") - end);
    Ok(Archiver {
        archive_mode: row.get("mode"),
        archived_count: row.get("archived_count"),
        last_archived_wal,
        last_archived_time: row.get("last_archived_time"),
        failed_count: row.get("failed_count"),
        last_failed_wal: row.get("last_failed_wal"),
        last_failed_time: row.get("last_failed_time"),
        unarchived_bytes: unarchived,
        now: row.get("now"),
    })
}

/// The LSN (as bytes) where the WAL segment `name` (`TTTTTTTTXXXXXXXXYYYYYYYY`, possibly with a
/// `.partial` or `.backup` suffix) ends; None for other archived files (timeline history).
fn segment_end(name: &str, segment_size: i64) -> Option<i64> {
    let hex = name.get(..24).filter(|h| h.chars().all(|c| c.is_ascii_hexdigit()))?;
    let log = i64::from_str_radix(&hex[8..16], 16).ok()?;
    let seg = i64::from_str_radix(&hex[16..24], 16).ok()?;
    Some(log * (1 << 32) + (seg + 1) * segment_size)
}

/// Writes a canary row (the current time) and switches WAL so it is archived promptly.
pub async fn write_canary(p: &Pitr) -> Result<DateTime<Utc>, PitrError> {
    let mut conn = crate::pg::connect(&p.db).await?;
    let q = |op: &'static str| move |e| PgError::query(op, p.db.redacted(), e);
    sqlx::Executor::execute(
        &mut conn,
        sqlx::raw_sql(&format!(
            "CREATE TABLE IF NOT EXISTS {CANARY_TABLE} (id bigserial PRIMARY KEY, \
             written_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )),
    )
    .await
    .map_err(q("create the canary table"))?;
    let at: DateTime<Utc> =
        sqlx::query_scalar(&format!("INSERT INTO {CANARY_TABLE} DEFAULT VALUES RETURNING written_at"))
            .fetch_one(&mut conn)
            .await
            .map_err(q("write a canary"))?;
    sqlx::query("SELECT pg_switch_wal()").execute(&mut conn).await.map_err(q("switch WAL"))?;
    Ok(at)
}

/// One problem `status` found.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub check: &'static str,
    pub message: String,
}

/// The whole status report.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub stanza: String,
    pub repo: String,
    pub archiver: Archiver,
    pub lag_seconds: Option<i64>,
    pub rpo_target_seconds: u64,
    pub wal_min: Option<String>,
    pub wal_max: Option<String>,
    pub newest_full: Option<Backup>,
    pub newest_diff: Option<Backup>,
    pub newest_incr: Option<Backup>,
    /// The newest point a drill restored to (from the last passed PITR drill).
    pub restorable_point: Option<DateTime<Utc>>,
    pub canary: Option<DateTime<Utc>>,
    pub problems: Vec<Problem>,
}

/// Reads everything `pitr status` reports; `full_check` also asks for a recent full backup
/// (what `pitr check` adds).
pub fn assess(p: &Pitr, archiver: Archiver, info: &StanzaInfo, full_check: bool) -> Status {
    let mut problems = Vec::new();
    let lag = archiver.lag_seconds();
    if archiver.archive_mode != "on" && archiver.archive_mode != "always" {
        problems.push(Problem {
            check: "archive_mode",
            message: format!("archive_mode is {}: run `opsbook pitr setup`", archiver.archive_mode),
        });
    }
    if archiver.failing() {
        problems.push(Problem {
            check: "archiving",
            message: format!(
                "archiving fails: WAL {} could not be archived ({} failures so far, the last at {}); see the server log \
                 and {}",
                archiver.last_failed_wal.as_deref().unwrap_or("?"),
                archiver.failed_count,
                archiver.last_failed_time.map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string()).unwrap_or_default(),
                p.dir.join("log").display()
            ),
        });
    }
    match lag {
        Some(l) if l as u64 > p.rpo_target.as_secs() => problems.push(Problem {
            check: "lag",
            message: format!(
                "the newest archived WAL is {} old, over the RPO target of {}",
                dur(l as u64),
                dur(p.rpo_target.as_secs())
            ),
        }),
        None if problems.is_empty() => problems.push(Problem {
            check: "lag",
            message: "no WAL has been archived yet: run `opsbook pitr setup` (its check archives one)".into(),
        }),
        _ => {}
    }
    let newest_full = info.newest(Some("full")).cloned();
    if full_check {
        match &newest_full {
            None => problems.push(Problem {
                check: "full-backup",
                message: "no full backup in the repository: run `opsbook pitr backup --type full`".into(),
            }),
            Some(b) if (archiver.now - b.stopped).num_seconds() as u64 > p.full_interval.as_secs() => {
                problems.push(Problem {
                    check: "full-backup",
                    message: format!(
                        "the newest full backup ({}) is {} old, over the interval of {}",
                        b.label,
                        dur((archiver.now - b.stopped).num_seconds() as u64),
                        dur(p.full_interval.as_secs())
                    ),
                })
            }
            Some(_) => {}
        }
    }
    Status {
        stanza: p.stanza.clone(),
        repo: p.repo.display(),
        lag_seconds: lag,
        rpo_target_seconds: p.rpo_target.as_secs(),
        wal_min: info.wal_min.clone(),
        wal_max: info.wal_max.clone(),
        newest_full,
        newest_diff: info.newest(Some("diff")).cloned(),
        newest_incr: info.newest(Some("incr")).cloned(),
        restorable_point: None,
        canary: None,
        problems,
        archiver,
    }
}

/// Everything `pitr status` (or, with `full_check`, `pitr check`) reports, read now: archiving,
/// the repository, the newest restorable point a drill reached, and (with `canary`) a canary
/// written first.
pub async fn report(p: &Pitr, canary: bool, full_check: bool) -> Result<Status, PitrError> {
    let engine = Engine::new(p)?;
    let canary_at = if canary { Some(write_canary(p).await?) } else { None };
    let archiver = archiver(p).await?;
    let info = engine.info_or_empty().await?;
    let mut status = assess(p, archiver, &info, full_check);
    status.canary = canary_at;
    status.restorable_point = super::drill::records(p)
        .await
        .ok()
        .and_then(|r| r.into_iter().rev().find(|r| r.ok))
        .and_then(|r| r.restored_point);
    if full_check {
        if let Err(e) = engine.run("check", &[]).await {
            status.problems.push(Problem { check: "pgbackrest-check", message: e.to_string() });
        }
    }
    Ok(status)
}

impl Engine {
    /// `info` that treats a missing configuration as an empty stanza (before setup).
    pub async fn info_or_empty(&self) -> Result<StanzaInfo, PitrError> {
        if !self.conf.is_file() {
            return Ok(StanzaInfo { status_code: 1, status: "not set up".into(), ..Default::default() });
        }
        self.info().await
    }
}

fn dur(secs: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    /// Nothing is at risk when everything written is archived, however old the segment; a
    /// history file as the newest archived file says nothing, so the lag is its age.
    #[test]
    fn lag_is_zero_only_when_everything_written_is_archived() {
        let now = chrono::Utc::now();
        let a = |unarchived: Option<i64>| super::Archiver {
            archive_mode: "on".into(),
            archived_count: 3,
            last_archived_wal: Some("000000010000000000000003".into()),
            last_archived_time: Some(now - chrono::Duration::seconds(600)),
            failed_count: 0,
            last_failed_wal: None,
            last_failed_time: None,
            unarchived_bytes: unarchived,
            now,
        };
        assert_eq!(a(Some(0)).lag_seconds(), Some(0));
        assert_eq!(a(Some(8192)).lag_seconds(), Some(600));
        assert_eq!(a(None).lag_seconds(), Some(600));
        assert!(!a(Some(0)).failing());
    }

    #[test]
    fn segment_ends() {
        let mb16 = 16 << 20;
        assert_eq!(super::segment_end("000000010000000000000003", mb16), Some(4 * mb16));
        assert_eq!(super::segment_end("000000020000000100000000", mb16), Some((1 << 32) + mb16));
        assert_eq!(super::segment_end("000000010000000000000004.00000028.backup", mb16), Some(5 * mb16));
        assert_eq!(super::segment_end("00000002.history", mb16), None);
    }
}
