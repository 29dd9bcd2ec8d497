//! Where a backup's objects live: `<set>/<YYYY>/<MM>/<timestamp>-<id>/…` under the store prefix.

use chrono::{DateTime, NaiveDateTime, Utc};
use rand::Rng;

use super::manifest::MANIFEST_FILE;

const TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// A backup id: UTC start time plus 8 random hex digits, e.g. `20261122T214500Z-3fa9c01b`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupId(String);

impl BackupId {
    pub fn new(at: DateTime<Utc>) -> Self {
        let random: u32 = rand::rng().random();
        BackupId(format!("{}-{random:08x}", at.format(TIME_FORMAT)))
    }

    /// Parses an id, checking that it has the timestamp form.
    pub fn parse(s: &str) -> Option<Self> {
        let (time, suffix) = s.split_once('-')?;
        NaiveDateTime::parse_from_str(time, TIME_FORMAT).ok()?;
        (!suffix.is_empty() && suffix.chars().all(|c| c.is_ascii_hexdigit())).then(|| BackupId(s.to_string()))
    }

    pub fn time(&self) -> DateTime<Utc> {
        let time = self.0.split_once('-').map_or(self.0.as_str(), |(t, _)| t);
        NaiveDateTime::parse_from_str(time, TIME_FORMAT).map(|t| t.and_utc()).unwrap_or_default()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BackupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The directory (key prefix, ending in '/') of one backup.
pub fn backup_dir(set: &str, id: &BackupId) -> String {
    let t = id.time();
    format!("{set}/{}/{}/{id}/", t.format("%Y"), t.format("%m"))
}

pub fn manifest_key(set: &str, id: &BackupId) -> String {
    format!("{}{MANIFEST_FILE}", backup_dir(set, id))
}

/// Splits a store key into (set, backup id, file name) when it lies inside a backup directory.
pub fn parse_key(key: &str) -> Option<(&str, BackupId, &str)> {
    let mut parts = key.rsplitn(5, '/');
    let file = parts.next()?;
    let id = BackupId::parse(parts.next()?)?;
    let month = parts.next()?;
    let year = parts.next()?;
    let set = parts.next()?;
    let ok = year.len() == 4 && month.len() == 2 && year.chars().chain(month.chars()).all(|c| c.is_ascii_digit());
    (ok && !set.is_empty()).then_some((set, id, file))
}

/// Why a name cannot be a set's name.
#[derive(Debug, thiserror::Error)]
pub enum SetNameError {
    #[error(
        "invalid set name '{name}': use letters, digits, '-', '_' or '.' (one path segment, at most 64 characters)"
    )]
    Invalid { name: String },
    #[error(transparent)]
    Secret(#[from] crate::redact::SecretInIdentifier),
}

/// Checks a set name: one plain path segment ([`valid_set_name`]) that holds no secret;
/// `what` names it in the second error ("set name", "object set name").
pub fn check_set_name(name: &str, what: &str) -> Result<(), SetNameError> {
    if !valid_set_name(name) {
        return Err(SetNameError::Invalid { name: name.to_string() });
    }
    crate::redact::check_identifier(what, name)?;
    Ok(())
}

/// A set name must be one plain path segment.
pub fn valid_set_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let at = DateTime::parse_from_rfc3339("2026-11-22T21:45:00Z").unwrap().with_timezone(&Utc);
        let id = BackupId::new(at);
        assert!(id.as_str().starts_with("20261122T214500Z-"));
        assert_eq!(id.time(), at);
        let key = manifest_key("shop", &id);
        assert!(key.starts_with("shop/2026/11/20261122T214500Z-"));
        let (set, parsed, file) = parse_key(&key).unwrap();
        assert_eq!((set, &parsed, file), ("shop", &id, "manifest.json"));
        assert!(parse_key("shop/2026/11/not-an-id/manifest.json").is_none());
        assert!(parse_key("a/b/shop/2026/11/20261122T214500Z-00ff/x").is_some());
    }

    #[test]
    fn set_names() {
        assert!(valid_set_name("shop-prod_1"));
        assert!(!valid_set_name("../etc"));
        assert!(!valid_set_name("a/b"));
        assert!(!valid_set_name(""));
    }
}
