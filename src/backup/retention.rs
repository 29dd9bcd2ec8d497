//! Retention planning for `opsbook backup prune`: a pure, restic-style keep/delete decision.
//!
//! [`plan`] takes a [`RetentionPolicy`] and the backups that exist and returns one [`Verdict`] per
//! backup, newest first, each saying whether to keep it and why. Nothing here does I/O; the
//! command layer lists the backups, calls [`plan`], shows the verdicts and, after [`check_guard`],
//! deletes.
//!
//! # Semantics
//!
//! Backups are sorted newest first (ties broken by id, so the result never depends on the input
//! order). A backup is kept when at least one rule keeps it, and every rule that keeps it is listed
//! in its reasons, in this order:
//!
//! * `keep_last N` keeps the N newest backups (`"last N"`).
//! * `keep_hourly`, `keep_daily`, `keep_weekly`, `keep_monthly`, `keep_yearly N` each walk the
//!   backups newest to oldest and keep the newest backup of every distinct period until N periods
//!   are kept (`"hourly 2026-11-20T13"`, `"daily 2026-11-20"`, `"weekly 2026-W47"`,
//!   `"monthly 2026-11"`, `"yearly 2026"`). Periods are computed on the wall clock of the given
//!   time zone, so a backup at 23:30 UTC belongs to the next day in Europe/Berlin; weeks are ISO
//!   8601 weeks (Monday first, the week-year may differ from the calendar year around New Year).
//!   Only periods that contain a backup count: a gap of missing days does not use up `keep_daily`.
//! * `keep_within D` keeps every backup taken strictly less than D before the **newest backup**,
//!   not before `now` (restic's semantics: a repository whose backups stopped running does not
//!   lose its history just because time passed). Like restic, the newest backup that is not in
//!   the future relative to `now` is the anchor, so one backup with a clock-skewed future
//!   timestamp cannot push the window forward; if every backup is in the future the newest one is
//!   the anchor. The reason reads `"within 30d"`.
//! * The newest backup whose restore was verified and the newest one that passed a restore drill
//!   are always kept (`"newest verified"`, `"newest drilled"`).
//! * `min_keep M` is a floor: the M newest backups are always kept (`"min-keep M"`).
//!
//! A backup no rule keeps gets the single reason `"no rule keeps it"`.
//!
//! A count of 0 (`keep_daily = 0`) is the same as not setting the rule. A policy without any
//! keep rule is refused with [`RetentionError::EmptyPolicy`] rather than deleting everything (or,
//! as restic does, silently keeping everything); `min_keep` alone is not a policy.
//!
//! Differences from restic: there is no "keep all" (`-1`) count, no tag rules, no
//! `keep_within_{hourly,…}` rules, and a bucketed rule that runs out of backups before it has
//! used up its count does not additionally keep the oldest backup (restic does), so each bucket
//! reason names exactly one period. Around a daylight-saving fall-back the repeated local hour is
//! one hourly period.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Datelike, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::error::{Classify, ErrorClass};

/// Which backups `opsbook backup prune` keeps. Deserialized from the `keep_*` keys in
/// `opsbook.toml` and built from the `--keep-*` flags; see the module documentation for the
/// meaning of each rule.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct RetentionPolicy {
    /// Keep the N newest backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the N most recent hours that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the N most recent days that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the N most recent ISO weeks that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the N most recent months that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the N most recent years that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// Keep every backup taken within this duration of the newest backup. Written as a humantime
    /// string such as `"30d"` or `"1d 12h"`.
    #[serde(default, with = "humantime_opt", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub keep_within: Option<Duration>,
    /// Floor: the newest `min_keep` backups are always kept.
    #[serde(default)]
    pub min_keep: u32,
}

impl RetentionPolicy {
    /// True when no keep rule is set (or every rule is zero). `min_keep` alone does not count.
    pub fn is_empty(&self) -> bool {
        let counts =
            [self.keep_last, self.keep_hourly, self.keep_daily, self.keep_weekly, self.keep_monthly, self.keep_yearly];
        counts.iter().all(|c| c.unwrap_or(0) == 0) && self.keep_within.is_none_or(|d| d.is_zero())
    }

    /// Layers `self` over `base`: every field set in `self` wins, the rest come from `base`. Used
    /// for command-line flags over the config file. `min_keep` counts as set when it is non-zero.
    /// An explicit zero count (`--keep-daily 0`) is "set", so it switches the config's rule off.
    pub fn merge_over(self, base: &RetentionPolicy) -> RetentionPolicy {
        RetentionPolicy {
            keep_last: self.keep_last.or(base.keep_last),
            keep_hourly: self.keep_hourly.or(base.keep_hourly),
            keep_daily: self.keep_daily.or(base.keep_daily),
            keep_weekly: self.keep_weekly.or(base.keep_weekly),
            keep_monthly: self.keep_monthly.or(base.keep_monthly),
            keep_yearly: self.keep_yearly.or(base.keep_yearly),
            keep_within: self.keep_within.or(base.keep_within),
            min_keep: if self.min_keep != 0 { self.min_keep } else { base.min_keep },
        }
    }
}

/// A backup that prune may keep or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    /// When the backup was taken.
    pub time: DateTime<Utc>,
    /// A restore of this backup was verified.
    pub verified: bool,
    /// This backup passed a restore drill.
    pub drilled: bool,
}

/// The decision for one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub id: String,
    pub time: DateTime<Utc>,
    pub keep: bool,
    /// Every rule that keeps the backup, or `["no rule keeps it"]`.
    pub reasons: Vec<String>,
}

/// Why a prune plan was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    #[error(
        "no retention rule given, so prune cannot tell what to keep: pass a --keep-* flag \
         (for example --keep-daily 7) or set keep_* in opsbook.toml (min_keep alone is not a rule)"
    )]
    EmptyPolicy,
    #[error(
        "refusing to delete {delete} of {total} backups (more than half): check the policy, \
         preview with --dry-run, or use --force to delete them anyway"
    )]
    TooManyDeletions { delete: usize, total: usize },
}

/// In reports (a dry run's `refused`), the message.
impl serde::Serialize for RetentionError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Classify for RetentionError {
    fn class(&self) -> ErrorClass {
        match self {
            RetentionError::EmptyPolicy => ErrorClass::Usage,
            RetentionError::TooManyDeletions { .. } => ErrorClass::Failed,
        }
    }
}

/// The reason given to a backup that no rule keeps.
pub const NO_RULE: &str = "no rule keeps it";

/// Decides, for every candidate, whether to keep it. Returns one verdict per candidate, newest
/// first. Pure: `now` is only used to ignore future-dated backups when anchoring `keep_within`.
// Long by design: one block per rule, in the documented order, each adding its reason to the same list.
pub fn plan(
    policy: &RetentionPolicy,
    candidates: &[Candidate],
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<Vec<Verdict>, RetentionError> {
    if policy.is_empty() {
        return Err(RetentionError::EmptyPolicy);
    }

    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    // Newest first; the remaining keys only make the order total so the plan is deterministic.
    sorted.sort_by(|a, b| {
        b.time
            .cmp(&a.time)
            .then_with(|| a.id.cmp(&b.id))
            .then_with(|| b.verified.cmp(&a.verified))
            .then_with(|| b.drilled.cmp(&a.drilled))
    });

    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); sorted.len()];

    if let Some(n) = policy.keep_last.filter(|&n| n > 0) {
        for r in reasons.iter_mut().take(n as usize) {
            r.push(format!("last {n}"));
        }
    }

    for period in Period::ALL {
        let Some(n) = period.count(policy).filter(|&n| n > 0) else {
            continue;
        };
        let mut seen = HashSet::new();
        for (c, r) in sorted.iter().zip(reasons.iter_mut()) {
            if seen.len() >= n as usize {
                break;
            }
            let label = period.label(c.time, tz);
            if !seen.contains(&label) {
                r.push(format!("{} {label}", period.name()));
                seen.insert(label);
            }
        }
    }

    if let Some(within) = policy.keep_within.filter(|d| !d.is_zero()) {
        if let Some(anchor) = within_anchor(&sorted, now) {
            // A window longer than chrono can represent reaches back past every backup.
            let cutoff = TimeDelta::from_std(within).ok().and_then(|d| anchor.checked_sub_signed(d));
            let reason = format!("within {}", format_duration(within));
            for (c, r) in sorted.iter().zip(reasons.iter_mut()) {
                if cutoff.is_none_or(|cutoff| c.time > cutoff) {
                    r.push(reason.clone());
                }
            }
        }
    }

    if let Some(i) = sorted.iter().position(|c| c.verified) {
        reasons[i].push("newest verified".to_string());
    }
    if let Some(i) = sorted.iter().position(|c| c.drilled) {
        reasons[i].push("newest drilled".to_string());
    }

    let min_keep = policy.min_keep;
    for r in reasons.iter_mut().take(min_keep as usize) {
        r.push(format!("min-keep {min_keep}"));
    }

    Ok(sorted
        .into_iter()
        .zip(reasons)
        .map(|(c, reasons)| {
            let keep = !reasons.is_empty();
            Verdict {
                id: c.id.clone(),
                time: c.time,
                keep,
                reasons: if keep { reasons } else { vec![NO_RULE.to_string()] },
            }
        })
        .collect())
}

/// Refuses a plan that deletes more than half of the backups unless `force` is given. Deleting
/// exactly half is allowed.
pub fn check_guard(verdicts: &[Verdict], force: bool) -> Result<(), RetentionError> {
    let total = verdicts.len();
    let delete = verdicts.iter().filter(|v| !v.keep).count();
    if !force && delete * 2 > total {
        return Err(RetentionError::TooManyDeletions { delete, total });
    }
    Ok(())
}

/// The newest backup not in the future, or the newest backup when all are in the future.
/// `sorted` is newest first.
fn within_anchor(sorted: &[&Candidate], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    sorted.iter().find(|c| c.time <= now).or(sorted.first()).map(|c| c.time)
}

/// The calendar periods of the bucketed rules, in the order their reasons are listed.
#[derive(Debug, Clone, Copy)]
enum Period {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    const ALL: [Period; 5] = [Period::Hour, Period::Day, Period::Week, Period::Month, Period::Year];

    fn count(self, policy: &RetentionPolicy) -> Option<u32> {
        match self {
            Period::Hour => policy.keep_hourly,
            Period::Day => policy.keep_daily,
            Period::Week => policy.keep_weekly,
            Period::Month => policy.keep_monthly,
            Period::Year => policy.keep_yearly,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Period::Hour => "hourly",
            Period::Day => "daily",
            Period::Week => "weekly",
            Period::Month => "monthly",
            Period::Year => "yearly",
        }
    }

    /// The period containing `time` on the wall clock of `tz`; equal labels are the same period.
    fn label(self, time: DateTime<Utc>, tz: Tz) -> String {
        let local = time.with_timezone(&tz);
        match self {
            Period::Hour => local.format("%Y-%m-%dT%H").to_string(),
            Period::Day => local.format("%Y-%m-%d").to_string(),
            Period::Week => {
                let week = local.iso_week();
                format!("{:04}-W{:02}", week.year(), week.week())
            }
            Period::Month => local.format("%Y-%m").to_string(),
            Period::Year => local.format("%Y").to_string(),
        }
    }
}

/// Formats a duration compactly in units humantime parses back: `30d`, `1d 12h`, `90s` → `1m 30s`.
fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3_600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
        (u64::from(nanos / 1_000_000), "ms"),
        (u64::from(nanos / 1_000 % 1_000), "us"),
        (u64::from(nanos % 1_000), "ns"),
    ];
    parts.iter().filter(|(v, _)| *v > 0).map(|(v, unit)| format!("{v}{unit}")).collect::<Vec<_>>().join(" ")
}

/// Serde for `Option<Duration>` as a humantime string (`"30d"`), absent or `null` for `None`.
mod humantime_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, ser: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => ser.serialize_str(&super::format_duration(*d)),
            None => ser.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(de)?.filter(|s| !s.trim().is_empty()) {
            None => Ok(None),
            Some(s) => humantime::parse_duration(s.trim()).map(Some).map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {s:?} ({e}): write it like \"30d\", \"12h\" or \"1d 12h\""
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    const DAY: u64 = 86_400;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cand(id: &str, time: &str) -> Candidate {
        Candidate { id: id.to_string(), time: at(time), verified: false, drilled: false }
    }

    /// One backup per day at 02:00 UTC, `n` days ending 2026-11-20; id `d{days back}`.
    fn daily_backups(n: u32) -> Vec<Candidate> {
        let newest = at("2026-11-20T02:00:00Z");
        (0..n)
            .map(|i| Candidate {
                id: format!("d{i:03}"),
                time: newest - TimeDelta::days(i64::from(i)),
                verified: false,
                drilled: false,
            })
            .collect()
    }

    fn now() -> DateTime<Utc> {
        at("2026-11-21T00:00:00Z")
    }

    fn run(policy: &RetentionPolicy, cands: &[Candidate]) -> Vec<Verdict> {
        plan(policy, cands, Tz::UTC, now()).unwrap()
    }

    fn kept(verdicts: &[Verdict]) -> Vec<&str> {
        verdicts.iter().filter(|v| v.keep).map(|v| v.id.as_str()).collect()
    }

    fn reasons_of<'a>(verdicts: &'a [Verdict], id: &str) -> &'a [String] {
        &verdicts.iter().find(|v| v.id == id).unwrap().reasons
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let p = RetentionPolicy { keep_last: Some(3), ..Default::default() };
        let v = run(&p, &daily_backups(10));
        assert_eq!(v.len(), 10);
        assert_eq!(kept(&v), ["d000", "d001", "d002"]);
        assert_eq!(reasons_of(&v, "d000"), ["last 3"]);
        assert_eq!(reasons_of(&v, "d003"), [NO_RULE]);
    }

    #[test]
    fn output_is_newest_first_with_ties_broken_by_id() {
        let cands = vec![
            cand("b", "2026-11-20T10:00:00Z"),
            cand("old", "2026-11-01T10:00:00Z"),
            cand("a", "2026-11-20T10:00:00Z"),
            cand("new", "2026-11-20T11:00:00Z"),
        ];
        let p = RetentionPolicy { keep_last: Some(2), ..Default::default() };
        let v = run(&p, &cands);
        let ids: Vec<_> = v.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["new", "a", "b", "old"]);
        assert_eq!(kept(&v), ["new", "a"]);
    }

    #[test]
    fn keep_hourly_keeps_newest_of_each_hour() {
        let cands = vec![
            cand("h13b", "2026-11-20T13:50:00Z"),
            cand("h13a", "2026-11-20T13:10:00Z"),
            cand("h12", "2026-11-20T12:30:00Z"),
            cand("h10", "2026-11-20T10:30:00Z"),
            cand("h09", "2026-11-20T09:30:00Z"),
        ];
        let p = RetentionPolicy { keep_hourly: Some(3), ..Default::default() };
        let v = run(&p, &cands);
        assert_eq!(kept(&v), ["h13b", "h12", "h10"]);
        assert_eq!(reasons_of(&v, "h13b"), ["hourly 2026-11-20T13"]);
        assert_eq!(reasons_of(&v, "h10"), ["hourly 2026-11-20T10"]);
    }

    #[test]
    fn keep_daily_keeps_newest_of_each_day_and_skips_gaps() {
        let cands = vec![
            cand("20pm", "2026-11-20T20:00:00Z"),
            cand("20am", "2026-11-20T08:00:00Z"),
            cand("19", "2026-11-19T08:00:00Z"),
            // 18th and 17th missing: gaps do not use up the count.
            cand("16", "2026-11-16T08:00:00Z"),
            cand("15", "2026-11-15T08:00:00Z"),
        ];
        let p = RetentionPolicy { keep_daily: Some(3), ..Default::default() };
        let v = run(&p, &cands);
        assert_eq!(kept(&v), ["20pm", "19", "16"]);
        assert_eq!(reasons_of(&v, "20pm"), ["daily 2026-11-20"]);
        assert_eq!(reasons_of(&v, "16"), ["daily 2026-11-16"]);
        assert_eq!(reasons_of(&v, "20am"), [NO_RULE]);
    }

    #[test]
    fn keep_weekly_uses_iso_weeks() {
        // 2026-11-16 is a Monday (W47), 2026-11-22 a Sunday (W47), 2026-11-15 a Sunday (W46).
        let cands = vec![
            cand("sun47", "2026-11-22T08:00:00Z"),
            cand("mon47", "2026-11-16T08:00:00Z"),
            cand("sun46", "2026-11-15T08:00:00Z"),
            cand("mon46", "2026-11-09T08:00:00Z"),
            cand("w45", "2026-11-05T08:00:00Z"),
        ];
        let p = RetentionPolicy { keep_weekly: Some(2), ..Default::default() };
        let v = plan(&p, &cands, Tz::UTC, at("2026-11-23T00:00:00Z")).unwrap();
        assert_eq!(kept(&v), ["sun47", "sun46"]);
        assert_eq!(reasons_of(&v, "sun47"), ["weekly 2026-W47"]);
        assert_eq!(reasons_of(&v, "sun46"), ["weekly 2026-W46"]);
    }

    #[test]
    fn keep_monthly_keeps_newest_of_each_month() {
        let cands = vec![
            cand("nov20", "2026-11-20T08:00:00Z"),
            cand("nov01", "2026-11-01T08:00:00Z"),
            cand("oct31", "2026-10-31T08:00:00Z"),
            cand("oct01", "2026-10-01T08:00:00Z"),
            cand("aug", "2026-08-15T08:00:00Z"),
            cand("jul", "2026-07-15T08:00:00Z"),
        ];
        let p = RetentionPolicy { keep_monthly: Some(3), ..Default::default() };
        let v = run(&p, &cands);
        assert_eq!(kept(&v), ["nov20", "oct31", "aug"]);
        assert_eq!(reasons_of(&v, "oct31"), ["monthly 2026-10"]);
    }

    #[test]
    fn keep_yearly_keeps_newest_of_each_year() {
        let cands = vec![
            cand("26b", "2026-11-20T08:00:00Z"),
            cand("26a", "2026-01-01T08:00:00Z"),
            cand("25", "2025-12-31T08:00:00Z"),
            cand("23", "2023-06-01T08:00:00Z"),
            cand("22", "2022-06-01T08:00:00Z"),
        ];
        let p = RetentionPolicy { keep_yearly: Some(3), ..Default::default() };
        let v = run(&p, &cands);
        assert_eq!(kept(&v), ["26b", "25", "23"]);
        assert_eq!(reasons_of(&v, "23"), ["yearly 2023"]);
    }

    #[test]
    fn daily_periods_follow_the_time_zone() {
        // 23:30 UTC on the 20th is 00:30 on the 21st in Berlin (CET, UTC+1).
        let cands = vec![cand("late", "2026-11-20T23:30:00Z"), cand("early", "2026-11-20T22:00:00Z")];
        let p = RetentionPolicy { keep_daily: Some(2), ..Default::default() };
        let now = at("2026-11-22T00:00:00Z");

        let berlin = plan(&p, &cands, chrono_tz::Europe::Berlin, now).unwrap();
        assert_eq!(kept(&berlin), ["late", "early"]);
        assert_eq!(reasons_of(&berlin, "late"), ["daily 2026-11-21"]);
        assert_eq!(reasons_of(&berlin, "early"), ["daily 2026-11-20"]);

        let utc = plan(&p, &cands, Tz::UTC, now).unwrap();
        assert_eq!(kept(&utc), ["late"]);
        assert_eq!(reasons_of(&utc, "late"), ["daily 2026-11-20"]);
    }

    #[test]
    fn hourly_periods_follow_the_time_zone() {
        let cands = vec![cand("a", "2026-11-20T12:40:00Z")];
        let p = RetentionPolicy { keep_hourly: Some(1), ..Default::default() };
        let v = plan(&p, &cands, chrono_tz::Asia::Kolkata, now()).unwrap();
        // UTC+05:30: 12:40 UTC is 18:10 local.
        assert_eq!(reasons_of(&v, "a"), ["hourly 2026-11-20T18"]);
    }

    #[test]
    fn repeated_hour_at_dst_fall_back_is_one_period() {
        // Berlin falls back on 2026-10-25 at 01:00 UTC: 00:30Z is 02:30 CEST and 01:30Z is
        // 02:30 CET, the same wall-clock hour.
        let cands = vec![
            cand("cet", "2026-10-25T01:30:00Z"),
            cand("cest", "2026-10-25T00:30:00Z"),
            cand("before", "2026-10-24T23:30:00Z"),
        ];
        let p = RetentionPolicy { keep_hourly: Some(5), ..Default::default() };
        let v = plan(&p, &cands, chrono_tz::Europe::Berlin, now()).unwrap();
        assert_eq!(kept(&v), ["cet", "before"]);
        assert_eq!(reasons_of(&v, "cet"), ["hourly 2026-10-25T02"]);
        assert_eq!(reasons_of(&v, "before"), ["hourly 2026-10-25T01"]);
    }

    #[test]
    fn monthly_and_yearly_boundary_in_time_zone() {
        // 2026-12-31T23:30Z is already 2027-01-01 in Berlin.
        let cands = vec![cand("ny", "2026-12-31T23:30:00Z"), cand("dec", "2026-12-31T12:00:00Z")];
        let p = RetentionPolicy { keep_yearly: Some(5), keep_monthly: Some(5), ..Default::default() };
        let now = at("2027-01-02T00:00:00Z");
        let v = plan(&p, &cands, chrono_tz::Europe::Berlin, now).unwrap();
        assert_eq!(reasons_of(&v, "ny"), ["monthly 2027-01", "yearly 2027"]);
        assert_eq!(reasons_of(&v, "dec"), ["monthly 2026-12", "yearly 2026"]);
        let v = plan(&p, &cands, Tz::UTC, now).unwrap();
        assert_eq!(kept(&v), ["ny"]);
    }

    #[test]
    fn iso_week_edges_around_new_year() {
        // 2025-12-29 (Mon) and 2026-01-01 (Thu) are both in 2026-W01.
        // 2026-12-31 (Thu) and 2027-01-03 (Sun) are both in 2026-W53; 2027-01-04 (Mon) is 2027-W01.
        let cands = vec![
            cand("2027mon", "2027-01-04T08:00:00Z"),
            cand("2027sun", "2027-01-03T08:00:00Z"),
            cand("2026thu", "2026-12-31T08:00:00Z"),
            cand("2026w52", "2026-12-27T08:00:00Z"),
            cand("2026jan1", "2026-01-01T08:00:00Z"),
            cand("2025dec29", "2025-12-29T08:00:00Z"),
            cand("2025dec28", "2025-12-28T08:00:00Z"),
        ];
        let p = RetentionPolicy { keep_weekly: Some(10), ..Default::default() };
        let v = plan(&p, &cands, Tz::UTC, at("2027-01-05T00:00:00Z")).unwrap();
        assert_eq!(kept(&v), ["2027mon", "2027sun", "2026w52", "2026jan1", "2025dec28"]);
        assert_eq!(reasons_of(&v, "2027mon"), ["weekly 2027-W01"]);
        assert_eq!(reasons_of(&v, "2027sun"), ["weekly 2026-W53"]);
        assert_eq!(reasons_of(&v, "2026thu"), [NO_RULE]);
        assert_eq!(reasons_of(&v, "2026w52"), ["weekly 2026-W52"]);
        assert_eq!(reasons_of(&v, "2026jan1"), ["weekly 2026-W01"]);
        assert_eq!(reasons_of(&v, "2025dec29"), [NO_RULE]);
        assert_eq!(reasons_of(&v, "2025dec28"), ["weekly 2025-W52"]);
    }

    #[test]
    fn iso_week_follows_the_time_zone() {
        // Sunday 2027-01-03T23:30Z is Monday 2027-01-04 in Berlin: W01 there, W53 in UTC.
        let cands = vec![cand("a", "2027-01-03T23:30:00Z")];
        let p = RetentionPolicy { keep_weekly: Some(1), ..Default::default() };
        let now = at("2027-01-05T00:00:00Z");
        let v = plan(&p, &cands, chrono_tz::Europe::Berlin, now).unwrap();
        assert_eq!(reasons_of(&v, "a"), ["weekly 2027-W01"]);
        let v = plan(&p, &cands, Tz::UTC, now).unwrap();
        assert_eq!(reasons_of(&v, "a"), ["weekly 2026-W53"]);
    }

    #[test]
    fn keep_within_is_relative_to_the_newest_backup_not_now() {
        let p = RetentionPolicy { keep_within: Some(Duration::from_secs(3 * DAY)), ..Default::default() };
        // Backups stopped long ago: `now` is a year later, yet the last three days of backups stay.
        let v = plan(&p, &daily_backups(10), Tz::UTC, at("2027-11-20T00:00:00Z")).unwrap();
        // Exactly 3 days older than the newest is not "within" (strict, as in restic).
        assert_eq!(kept(&v), ["d000", "d001", "d002"]);
        assert_eq!(reasons_of(&v, "d002"), ["within 3d"]);
        assert_eq!(reasons_of(&v, "d003"), [NO_RULE]);
    }

    #[test]
    fn keep_within_ignores_future_backups_for_the_anchor() {
        let mut cands = daily_backups(10);
        // Clock skew: one backup claims to be from next year.
        cands.push(cand("future", "2027-06-01T00:00:00Z"));
        let p = RetentionPolicy { keep_within: Some(Duration::from_secs(2 * DAY)), ..Default::default() };
        let v = run(&p, &cands);
        assert_eq!(kept(&v), ["future", "d000", "d001"]);

        // All in the future: the newest is the anchor.
        let v = plan(&p, &cands, Tz::UTC, at("2000-01-01T00:00:00Z")).unwrap();
        assert_eq!(kept(&v), ["future"]);
    }

    #[test]
    fn keep_within_huge_duration_keeps_everything() {
        let p = RetentionPolicy { keep_within: Some(Duration::from_secs(u64::MAX)), ..Default::default() };
        let v = run(&p, &daily_backups(5));
        assert_eq!(kept(&v).len(), 5);
        assert!(reasons_of(&v, "d004")[0].starts_with("within "));
    }

    #[test]
    fn newest_verified_and_drilled_are_always_kept() {
        let mut cands = daily_backups(10);
        cands[6].verified = true; // d006
        cands[8].verified = true; // d008 (older: not protected)
        cands[9].drilled = true; // d009
        let p = RetentionPolicy { keep_last: Some(1), ..Default::default() };
        let v = run(&p, &cands);
        assert_eq!(kept(&v), ["d000", "d006", "d009"]);
        assert_eq!(reasons_of(&v, "d006"), ["newest verified"]);
        assert_eq!(reasons_of(&v, "d009"), ["newest drilled"]);
        assert_eq!(reasons_of(&v, "d008"), [NO_RULE]);
    }

    #[test]
    fn min_keep_is_a_floor() {
        let p = RetentionPolicy { keep_within: Some(Duration::from_secs(DAY)), min_keep: 3, ..Default::default() };
        let v = run(&p, &daily_backups(6));
        assert_eq!(kept(&v), ["d000", "d001", "d002"]);
        assert_eq!(reasons_of(&v, "d000"), ["within 1d", "min-keep 3"]);
        assert_eq!(reasons_of(&v, "d002"), ["min-keep 3"]);
        // More than there are backups: keeps them all.
        let p = RetentionPolicy { keep_last: Some(1), min_keep: 50, ..Default::default() };
        assert_eq!(kept(&run(&p, &daily_backups(4))).len(), 4);
    }

    #[test]
    fn every_rule_that_keeps_a_backup_is_listed() {
        let mut cands = daily_backups(3);
        cands[0].verified = true;
        cands[0].drilled = true;
        let p = RetentionPolicy {
            keep_last: Some(2),
            keep_hourly: Some(1),
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: Some(12),
            keep_yearly: Some(3),
            keep_within: Some(Duration::from_secs(30 * DAY)),
            min_keep: 1,
        };
        let v = run(&p, &cands);
        assert_eq!(
            reasons_of(&v, "d000"),
            [
                "last 2",
                "hourly 2026-11-20T02",
                "daily 2026-11-20",
                "weekly 2026-W47",
                "monthly 2026-11",
                "yearly 2026",
                "within 30d",
                "newest verified",
                "newest drilled",
                "min-keep 1",
            ]
        );
        assert_eq!(reasons_of(&v, "d001"), ["last 2", "daily 2026-11-19", "within 30d"]);
        assert_eq!(reasons_of(&v, "d002"), ["daily 2026-11-18", "within 30d"]);
    }

    #[test]
    fn restic_style_combined_policy() {
        // 60 daily backups, keep 7 daily + 4 weekly + 2 monthly.
        let p =
            RetentionPolicy { keep_daily: Some(7), keep_weekly: Some(4), keep_monthly: Some(2), ..Default::default() };
        let v = run(&p, &daily_backups(60));
        // Dailies: d000..d006 (Nov 20 back to Nov 14). Weekly: W47 (d000, Fri 20th), W46 (Sun
        // 15th = d005), W45 (Sun 8th = d012), W44 (Sun 1st = d019). Monthly: Nov (d000), Oct 31 (d020).
        assert_eq!(kept(&v), ["d000", "d001", "d002", "d003", "d004", "d005", "d006", "d012", "d019", "d020"]);
        assert_eq!(reasons_of(&v, "d005"), ["daily 2026-11-15", "weekly 2026-W46"]);
        assert_eq!(reasons_of(&v, "d020"), ["monthly 2026-10"]);
    }

    #[test]
    fn empty_policy_is_refused() {
        let cands = daily_backups(3);
        let err = plan(&RetentionPolicy::default(), &cands, Tz::UTC, now()).unwrap_err();
        assert_eq!(err, RetentionError::EmptyPolicy);
        assert_eq!(err.class(), ErrorClass::Usage);
        let msg = err.to_string();
        assert!(msg.contains("--keep-") && msg.contains("opsbook.toml"), "{msg}");

        // min_keep alone, zero counts and a zero duration are not rules either.
        let p = RetentionPolicy {
            keep_last: Some(0),
            keep_daily: Some(0),
            keep_within: Some(Duration::ZERO),
            min_keep: 5,
            ..Default::default()
        };
        assert!(p.is_empty());
        assert_eq!(plan(&p, &cands, Tz::UTC, now()), Err(RetentionError::EmptyPolicy));
        // Even with nothing to prune.
        assert_eq!(plan(&p, &[], Tz::UTC, now()), Err(RetentionError::EmptyPolicy));
    }

    #[test]
    fn no_candidates_is_an_empty_plan() {
        let p = RetentionPolicy { keep_last: Some(1), ..Default::default() };
        assert_eq!(plan(&p, &[], Tz::UTC, now()), Ok(vec![]));
        assert_eq!(check_guard(&[], false), Ok(()));
    }

    #[test]
    fn is_empty_sees_every_rule() {
        let rules = [
            RetentionPolicy { keep_last: Some(1), ..Default::default() },
            RetentionPolicy { keep_hourly: Some(1), ..Default::default() },
            RetentionPolicy { keep_daily: Some(1), ..Default::default() },
            RetentionPolicy { keep_weekly: Some(1), ..Default::default() },
            RetentionPolicy { keep_monthly: Some(1), ..Default::default() },
            RetentionPolicy { keep_yearly: Some(1), ..Default::default() },
            RetentionPolicy { keep_within: Some(Duration::from_secs(1)), ..Default::default() },
        ];
        for p in rules {
            assert!(!p.is_empty(), "{p:?}");
        }
        assert!(RetentionPolicy::default().is_empty());
        assert!(RetentionPolicy { min_keep: 3, ..Default::default() }.is_empty());
    }

    #[test]
    fn guard_refuses_deleting_more_than_half() {
        let verdict = |keep: bool| Verdict { id: "x".into(), time: now(), keep, reasons: vec![] };
        let half = vec![verdict(true), verdict(false), verdict(true), verdict(false)];
        assert_eq!(check_guard(&half, false), Ok(()));

        let most = vec![verdict(true), verdict(false), verdict(false)];
        let err = check_guard(&most, false).unwrap_err();
        assert_eq!(err, RetentionError::TooManyDeletions { delete: 2, total: 3 });
        assert_eq!(err.class(), ErrorClass::Failed);
        let msg = err.to_string();
        assert!(msg.contains("2 of 3") && msg.contains("--force") && msg.contains("--dry-run"), "{msg}");
        assert_eq!(check_guard(&most, true), Ok(()));

        let all = vec![verdict(false)];
        assert!(check_guard(&all, false).is_err());
        assert_eq!(check_guard(&all, true), Ok(()));
    }

    #[test]
    fn guard_on_a_real_plan() {
        let p = RetentionPolicy { keep_last: Some(2), ..Default::default() };
        let v = run(&p, &daily_backups(10));
        assert_eq!(check_guard(&v, false), Err(RetentionError::TooManyDeletions { delete: 8, total: 10 }));
        let p = RetentionPolicy { keep_last: Some(5), ..Default::default() };
        assert_eq!(check_guard(&run(&p, &daily_backups(10)), false), Ok(()));
    }

    #[test]
    fn merge_over_lets_flags_override_config() {
        let config = RetentionPolicy {
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_within: Some(Duration::from_secs(DAY)),
            min_keep: 2,
            ..Default::default()
        };
        let flags = RetentionPolicy { keep_daily: Some(14), keep_last: Some(3), ..Default::default() };
        let merged = flags.merge_over(&config);
        assert_eq!(
            merged,
            RetentionPolicy {
                keep_last: Some(3),
                keep_daily: Some(14),
                keep_weekly: Some(4),
                keep_within: Some(Duration::from_secs(DAY)),
                min_keep: 2,
                ..Default::default()
            }
        );
        let flags = RetentionPolicy { keep_weekly: Some(0), min_keep: 5, ..Default::default() };
        let merged = flags.merge_over(&config);
        assert_eq!(merged.keep_weekly, Some(0));
        assert_eq!(merged.keep_daily, Some(7));
        assert_eq!(merged.min_keep, 5);
        assert_eq!(RetentionPolicy::default().merge_over(&config), config);
    }

    #[test]
    fn serde_uses_humantime_strings() {
        let p: RetentionPolicy = toml::from_str("keep_daily = 7\nkeep_within = \"30d\"\nmin_keep = 2\n").unwrap();
        assert_eq!(
            p,
            RetentionPolicy {
                keep_daily: Some(7),
                keep_within: Some(Duration::from_secs(30 * DAY)),
                min_keep: 2,
                ..Default::default()
            }
        );
        let out = toml::to_string(&p).unwrap();
        assert!(out.contains("keep_within = \"30d\""), "{out}");
        assert!(!out.contains("keep_last"), "{out}");
        assert_eq!(toml::from_str::<RetentionPolicy>(&out).unwrap(), p);

        let p: RetentionPolicy = toml::from_str("keep_within = \"1d 12h\"").unwrap();
        assert_eq!(p.keep_within, Some(Duration::from_secs(36 * 3600)));
        assert_eq!(toml::from_str::<RetentionPolicy>("").unwrap(), RetentionPolicy::default());

        let json =
            serde_json::to_value(RetentionPolicy { keep_within: Some(Duration::from_secs(90)), ..Default::default() })
                .unwrap();
        assert_eq!(json, serde_json::json!({"keep_within": "1m 30s", "min_keep": 0}));
        let back: RetentionPolicy = serde_json::from_value(json).unwrap();
        assert_eq!(back.keep_within, Some(Duration::from_secs(90)));
        let null: RetentionPolicy = serde_json::from_str(r#"{"keep_within": null}"#).unwrap();
        assert_eq!(null.keep_within, None);

        let err = toml::from_str::<RetentionPolicy>("keep_within = \"thirty days\"").unwrap_err();
        assert!(err.to_string().contains("30d"), "{err}");
    }

    #[test]
    fn verdict_serializes_for_json_reports() {
        let p = RetentionPolicy { keep_last: Some(1), ..Default::default() };
        let v = run(&p, &[cand("a", "2026-11-20T02:00:00Z")]);
        assert_eq!(
            serde_json::to_value(&v).unwrap(),
            serde_json::json!([{
                "id": "a",
                "time": "2026-11-20T02:00:00Z",
                "keep": true,
                "reasons": ["last 1"],
            }])
        );
    }

    #[test]
    fn format_duration_round_trips_through_humantime() {
        for (secs, nanos, text) in [
            (0, 0, "0s"),
            (30 * DAY, 0, "30d"),
            (36 * 3600, 0, "1d 12h"),
            (3600 + 61, 0, "1h 1m 1s"),
            (0, 1_500_000, "1ms 500us"),
            (1, 7, "1s 7ns"),
        ] {
            let d = Duration::new(secs, nanos);
            assert_eq!(format_duration(d), text);
            assert_eq!(humantime::parse_duration(text).unwrap(), d);
        }
    }

    // ---- property tests ----

    const ZONES: [Tz; 6] = [
        Tz::UTC,
        chrono_tz::Europe::Berlin,
        chrono_tz::America::New_York,
        chrono_tz::Asia::Kolkata,
        chrono_tz::Pacific::Chatham,
        chrono_tz::Australia::Lord_Howe,
    ];

    fn base() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
    }

    /// Up to 40 backups spread over about three years (minute resolution, so some share a
    /// timestamp), with random verified/drilled flags; ids are unique.
    fn candidates() -> impl Strategy<Value = Vec<Candidate>> {
        prop::collection::vec((0i64..1_600_000, any::<bool>(), any::<bool>()), 0..40).prop_map(|raw| {
            raw.into_iter()
                .enumerate()
                .map(|(i, (minutes, verified, drilled))| Candidate {
                    id: format!("b{i:02}"),
                    time: base() + TimeDelta::minutes(minutes),
                    verified: verified && minutes % 3 == 0,
                    drilled: drilled && minutes % 5 == 0,
                })
                .collect()
        })
    }

    fn count() -> impl Strategy<Value = Option<u32>> {
        prop::option::of(0u32..8)
    }

    fn policy() -> impl Strategy<Value = RetentionPolicy> {
        (
            (count(), count(), count(), count(), count(), count()),
            prop::option::of((0u64..200).prop_map(|h| Duration::from_secs(h * 3600))),
            0u32..6,
        )
            .prop_map(|((last, hourly, daily, weekly, monthly, yearly), within, min_keep)| RetentionPolicy {
                keep_last: last,
                keep_hourly: hourly,
                keep_daily: daily,
                keep_weekly: weekly,
                keep_monthly: monthly,
                keep_yearly: yearly,
                keep_within: within,
                min_keep,
            })
    }

    fn zone() -> impl Strategy<Value = Tz> {
        prop::sample::select(ZONES.to_vec())
    }

    /// `now` anywhere from before the first backup to after the last one.
    fn now_strategy() -> impl Strategy<Value = DateTime<Utc>> {
        (-10_000i64..1_700_000).prop_map(|m| base() + TimeDelta::minutes(m))
    }

    fn newest_first(cands: &[Candidate]) -> Vec<Candidate> {
        let mut sorted = cands.to_vec();
        sorted.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| a.id.cmp(&b.id)));
        sorted
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn prop_plan_invariants(
            cands in candidates(),
            p in policy(),
            tz in zone(),
            now in now_strategy(),
        ) {
            let result = plan(&p, &cands, tz, now);
            if p.is_empty() {
                prop_assert_eq!(result, Err(RetentionError::EmptyPolicy));
                return Ok(());
            }
            let v = result.unwrap();
            let sorted = newest_first(&cands);

            // A permutation of the input: same ids, nothing lost or duplicated, newest first.
            prop_assert_eq!(v.len(), cands.len());
            let out_ids: Vec<_> = v.iter().map(|v| v.id.clone()).collect();
            let want_ids: Vec<_> = sorted.iter().map(|c| c.id.clone()).collect();
            prop_assert_eq!(&out_ids, &want_ids);
            for (verdict, c) in v.iter().zip(&sorted) {
                prop_assert_eq!(verdict.time, c.time);
            }

            // The newest verified and newest drilled are never deleted.
            if let Some(c) = sorted.iter().find(|c| c.verified) {
                let verdict = v.iter().find(|v| v.id == c.id).unwrap();
                prop_assert!(verdict.keep);
                prop_assert!(verdict.reasons.contains(&"newest verified".to_string()));
            }
            if let Some(c) = sorted.iter().find(|c| c.drilled) {
                let verdict = v.iter().find(|v| v.id == c.id).unwrap();
                prop_assert!(verdict.keep);
                prop_assert!(verdict.reasons.contains(&"newest drilled".to_string()));
            }

            // The min_keep newest are kept.
            let kept_count = v.iter().filter(|v| v.keep).count();
            let floor = (p.min_keep as usize).min(cands.len());
            prop_assert!(kept_count >= floor);
            prop_assert!(v.iter().take(floor).all(|v| v.keep));

            // keep_last N keeps the N newest.
            let last = p.keep_last.unwrap_or(0) as usize;
            prop_assert!(v.iter().take(last).all(|v| v.keep));

            // Reasons are never empty; deletions carry exactly the "no rule" reason.
            for verdict in &v {
                if verdict.keep {
                    prop_assert!(!verdict.reasons.is_empty());
                    prop_assert!(!verdict.reasons.iter().any(|r| r == NO_RULE));
                } else {
                    prop_assert_eq!(&verdict.reasons, &vec![NO_RULE.to_string()]);
                }
            }

            // Deterministic, and independent of the input order.
            prop_assert_eq!(plan(&p, &cands, tz, now).unwrap(), v.clone());
            let mut reversed = cands.clone();
            reversed.reverse();
            prop_assert_eq!(plan(&p, &reversed, tz, now).unwrap(), v.clone());

            // The guard agrees with the counts.
            let deletes = v.len() - kept_count;
            prop_assert_eq!(check_guard(&v, false).is_ok(), deletes * 2 <= v.len());
            prop_assert!(check_guard(&v, true).is_ok());
        }

        #[test]
        fn prop_keep_daily_bounded(
            cands in candidates(),
            n in 1u32..10,
            min_keep in 0u32..4,
            tz in zone(),
            now in now_strategy(),
        ) {
            let p = RetentionPolicy { keep_daily: Some(n), min_keep, ..Default::default() };
            let v = plan(&p, &cands, tz, now).unwrap();
            let kept_count = v.iter().filter(|v| v.keep).count();
            // N days + newest verified + newest drilled + the min_keep floor.
            let specials = 2 + min_keep as usize;
            prop_assert!(kept_count <= n as usize + specials);

            // The daily-kept backups are in distinct local days, at most N of them.
            let daily: Vec<_> = v
                .iter()
                .flat_map(|v| v.reasons.iter().filter(|r| r.starts_with("daily ")))
                .collect();
            prop_assert!(daily.len() <= n as usize);
            let distinct: HashSet<_> = daily.iter().collect();
            prop_assert_eq!(distinct.len(), daily.len());
            // ... and as many as there are distinct days, up to N.
            let days: HashSet<_> = cands
                .iter()
                .map(|c| c.time.with_timezone(&tz).date_naive())
                .collect();
            prop_assert_eq!(daily.len(), days.len().min(n as usize));
        }

        #[test]
        fn prop_keep_last_only(cands in candidates(), n in 1u32..50) {
            let cands: Vec<_> = cands
                .into_iter()
                .map(|c| Candidate { verified: false, drilled: false, ..c })
                .collect();
            let p = RetentionPolicy { keep_last: Some(n), ..Default::default() };
            let v = plan(&p, &cands, Tz::UTC, base()).unwrap();
            let expect = (n as usize).min(cands.len());
            prop_assert!(v.iter().take(expect).all(|v| v.keep));
            prop_assert!(v.iter().skip(expect).all(|v| !v.keep));
        }

        #[test]
        fn prop_merge_over_is_field_wise(a in policy(), b in policy()) {
            let m = a.clone().merge_over(&b);
            prop_assert_eq!(m.keep_last, a.keep_last.or(b.keep_last));
            prop_assert_eq!(m.keep_within, a.keep_within.or(b.keep_within));
            prop_assert_eq!(m.min_keep, if a.min_keep != 0 { a.min_keep } else { b.min_keep });
            prop_assert_eq!(RetentionPolicy::default().merge_over(&b), b.clone());
            // Serde round trip through TOML.
            let text = toml::to_string(&m).unwrap();
            prop_assert_eq!(toml::from_str::<RetentionPolicy>(&text).unwrap(), m);
        }
    }
}
