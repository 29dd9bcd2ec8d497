//! The incremental plan: which source objects to copy, which copies to keep as they are, and
//! which copies whose source is gone to retain or remove. Pure: listings and records in, plan out.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::inventory::InventoryEntry;
use crate::store::ObjectMeta;

/// Why a source object is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyReason {
    /// Not in the copy and never recorded.
    New,
    /// The source's size, ETag or modification time differs from the recorded copy.
    Changed,
    /// Recorded, but the copy is missing or has the wrong size.
    Missing,
    /// In the copy, but without a record (no hash to check it against).
    Unrecorded,
}

#[derive(Debug, Clone)]
pub struct PlannedCopy {
    pub source: ObjectMeta,
    pub reason: CopyReason,
    /// The record of the current copy, kept when the copy is deferred by the byte budget.
    pub previous: Option<InventoryEntry>,
}

/// What a run does.
#[derive(Debug, Default)]
pub struct Plan {
    pub copy: Vec<PlannedCopy>,
    /// Copies that match their source: carried into the new inventory as they are.
    pub unchanged: Vec<InventoryEntry>,
    /// Copies whose source is gone, kept for the retention window (`deleted_at` set).
    pub retained: Vec<InventoryEntry>,
    /// Copies whose source has been gone for longer than the window (with `--delete-extraneous`).
    pub remove: Vec<InventoryEntry>,
}

/// How copies of deleted sources are treated.
#[derive(Debug, Clone, Copy)]
pub struct Deletion {
    /// Remove copies whose source has been gone for at least `window`.
    pub delete_extraneous: bool,
    pub window: Duration,
}

/// Compares the listings by key, size and ETag (or modification time for sources without
/// ETags, i.e. local directories) against the records of earlier runs.
pub fn plan(
    source: Vec<ObjectMeta>,
    dest: &[ObjectMeta],
    records: &HashMap<String, InventoryEntry>,
    deletion: Deletion,
    now: DateTime<Utc>,
) -> Plan {
    let dest: HashMap<&str, &ObjectMeta> = dest.iter().map(|o| (o.key.as_str(), o)).collect();
    let mut plan = Plan::default();
    let mut in_source = std::collections::HashSet::new();
    for object in source {
        in_source.insert(object.key.clone());
        let record = records.get(&object.key);
        let copy = dest.get(object.key.as_str());
        let reason = match (copy, record) {
            (None, None) => Some(CopyReason::New),
            (None, Some(_)) => Some(CopyReason::Missing),
            (Some(_), None) => Some(CopyReason::Unrecorded),
            (Some(copy), Some(record)) if copy.size != record.size => Some(CopyReason::Missing),
            (Some(_), Some(record)) if source_changed(&object, record) => Some(CopyReason::Changed),
            (Some(_), Some(record)) => {
                plan.unchanged.push(InventoryEntry { deleted_at: None, ..record.clone() });
                None
            }
        };
        if let Some(reason) = reason {
            let previous = record.filter(|r| copy.is_some_and(|c| c.size == r.size)).cloned();
            plan.copy.push(PlannedCopy { source: object, reason, previous });
        }
    }
    let mut gone: Vec<&ObjectMeta> = dest.values().filter(|o| !in_source.contains(&o.key)).copied().collect();
    gone.sort_by(|a, b| a.key.cmp(&b.key));
    for copy in gone {
        let entry = match records.get(&copy.key) {
            Some(record) => InventoryEntry { deleted_at: Some(record.deleted_at.unwrap_or(now)), ..record.clone() },
            None => InventoryEntry::foreign(copy, now),
        };
        let since = entry.deleted_at.unwrap_or(now);
        let expired = (now - since).to_std().unwrap_or_default() >= deletion.window;
        if deletion.delete_extraneous && expired {
            plan.remove.push(entry);
        } else {
            plan.retained.push(entry);
        }
    }
    plan
}

fn source_changed(source: &ObjectMeta, record: &InventoryEntry) -> bool {
    if source.size != record.size {
        return true;
    }
    match (&source.etag, &record.source_etag) {
        (Some(now), Some(then)) => now != then,
        _ => source.last_modified != record.source_modified,
    }
}

/// Copies of fewer objects than this are not guarded: a handful of deletions is no accident.
pub const GUARD_MIN_OBJECTS: usize = 10;

/// The delete guard, as `backup prune` has one: refuses, without `force`, a plan that marks as
/// deleted at the source or removes more than half of the `total` objects in the copy — what an
/// emptied or wrong source looks like.
pub fn check_guard(marked: usize, total: usize, force: bool) -> Result<(), GuardRefusal> {
    if force || total < GUARD_MIN_OBJECTS || marked * 2 <= total {
        return Ok(());
    }
    Err(GuardRefusal { marked, total })
}

/// The delete guard's refusal. In reports (a dry run's `refused`), the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to mark or remove {marked} of the {total} objects in the copy as deleted at the source (more than \
     half): check --from, preview with --dry-run, or use --force to go ahead anyway"
)]
pub struct GuardRefusal {
    pub marked: usize,
    pub total: usize,
}

impl serde::Serialize for GuardRefusal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Splits the copies into those that fit in `budget` bytes (in plan order; the first copy
/// always runs so a budget smaller than one object still makes progress) and the deferred rest.
pub fn take_budget(copies: Vec<PlannedCopy>, budget: Option<u64>) -> (Vec<PlannedCopy>, Vec<PlannedCopy>) {
    let Some(budget) = budget else { return (copies, Vec::new()) };
    let mut used = 0u64;
    let mut now = Vec::new();
    let mut later = Vec::new();
    for copy in copies {
        if later.is_empty() && (now.is_empty() || used + copy.source.size <= budget) {
            used += copy.source.size;
            now.push(copy);
        } else {
            later.push(copy);
        }
    }
    (now, later)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: &str, size: u64, etag: &str) -> ObjectMeta {
        ObjectMeta { key: key.into(), size, last_modified: None, etag: Some(etag.into()) }
    }

    fn record(key: &str, size: u64, etag: &str) -> InventoryEntry {
        InventoryEntry {
            key: key.into(),
            size,
            sha256: Some("00".into()),
            source_etag: Some(etag.into()),
            source_modified: None,
            copied_at: Utc::now(),
            deleted_at: None,
        }
    }

    const KEEP: Deletion = Deletion { delete_extraneous: false, window: Duration::from_secs(3600) };

    fn records(entries: &[InventoryEntry]) -> HashMap<String, InventoryEntry> {
        entries.iter().map(|e| (e.key.clone(), e.clone())).collect()
    }

    #[test]
    fn new_changed_missing_unchanged() {
        let source = vec![meta("a", 1, "e1"), meta("b", 2, "e2"), meta("c", 3, "e3"), meta("d", 4, "e4")];
        let dest = [meta("b", 2, "x"), meta("c", 3, "x"), meta("d", 9, "x")];
        let recs = records(&[record("b", 2, "e2"), record("c", 3, "old"), record("d", 4, "e4")]);
        let p = plan(source, &dest, &recs, KEEP, Utc::now());
        let reasons: Vec<(&str, CopyReason)> = p.copy.iter().map(|c| (c.source.key.as_str(), c.reason)).collect();
        assert_eq!(reasons, [("a", CopyReason::New), ("c", CopyReason::Changed), ("d", CopyReason::Missing)]);
        assert_eq!(p.unchanged.len(), 1);
        assert_eq!(p.unchanged[0].key, "b");
    }

    #[test]
    fn an_unrecorded_copy_is_copied_again() {
        let p = plan(vec![meta("a", 1, "e")], &[meta("a", 1, "x")], &HashMap::new(), KEEP, Utc::now());
        assert_eq!(p.copy[0].reason, CopyReason::Unrecorded);
    }

    #[test]
    fn without_etags_the_modification_time_decides() {
        let t0 = Utc::now();
        let src = ObjectMeta { key: "a".into(), size: 1, last_modified: Some(t0), etag: None };
        let mut rec = record("a", 1, "ignored");
        rec.source_etag = None;
        rec.source_modified = Some(t0);
        let p = plan(vec![src.clone()], &[meta("a", 1, "x")], &records(&[rec.clone()]), KEEP, t0);
        assert!(p.copy.is_empty());
        let touched = ObjectMeta { last_modified: Some(t0 + chrono::Duration::seconds(1)), ..src };
        let p = plan(vec![touched], &[meta("a", 1, "x")], &records(&[rec]), KEEP, t0);
        assert_eq!(p.copy[0].reason, CopyReason::Changed);
    }

    #[test]
    fn deleted_sources_are_retained_for_the_window() {
        let t0 = Utc::now();
        let dest = [meta("gone", 1, "x")];
        let p = plan(vec![], &dest, &records(&[record("gone", 1, "e")]), KEEP, t0);
        assert_eq!(p.retained[0].deleted_at, Some(t0));
        assert!(p.remove.is_empty());

        let delete = Deletion { delete_extraneous: true, window: Duration::from_secs(3600) };
        let recs = records(&p.retained);
        let p = plan(vec![], &dest, &recs, delete, t0 + chrono::Duration::minutes(59));
        assert_eq!(p.retained.len(), 1, "inside the window");
        assert_eq!(p.retained[0].deleted_at, Some(t0), "the first sighting is kept");
        let p = plan(vec![], &dest, &recs, delete, t0 + chrono::Duration::minutes(60));
        assert_eq!(p.remove.len(), 1);
        assert!(p.retained.is_empty());
    }

    #[test]
    fn a_source_that_returns_is_no_longer_deleted() {
        let mut rec = record("a", 1, "e");
        rec.deleted_at = Some(Utc::now());
        let p = plan(vec![meta("a", 1, "e")], &[meta("a", 1, "x")], &records(&[rec]), KEEP, Utc::now());
        assert_eq!(p.unchanged[0].deleted_at, None);
    }

    #[test]
    fn budget_defers_the_rest_but_always_makes_progress() {
        let copies = |sizes: &[u64]| -> Vec<PlannedCopy> {
            sizes
                .iter()
                .enumerate()
                .map(|(i, s)| PlannedCopy {
                    source: meta(&i.to_string(), *s, "e"),
                    reason: CopyReason::New,
                    previous: None,
                })
                .collect()
        };
        let (now, later) = take_budget(copies(&[5, 5, 5]), Some(10));
        assert_eq!((now.len(), later.len()), (2, 1));
        let (now, later) = take_budget(copies(&[50, 1]), Some(10));
        assert_eq!((now.len(), later.len()), (1, 1));
        let (now, later) = take_budget(copies(&[50, 1]), None);
        assert_eq!((now.len(), later.len()), (2, 0));
    }
}
