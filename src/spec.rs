//! What the operations' specs share. A spec is an operation's inputs declared once, as a
//! `Deserialize + JsonSchema` struct owned by its domain: it is the runbook step's `with` table,
//! the `opsbook.toml` section, and what the command's flags convert into. This module holds the
//! groups several specs flatten (monitoring), the serde helpers for their field types (sizes,
//! durations, optional text where a runbook may interpolate an empty string), and the
//! unknown-key check for specs that flatten others (serde cannot deny unknown fields there).

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};

/// How a scheduled job is watched: a healthchecks-style heartbeat and a Prometheus textfile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MonitorSpec {
    /// Healthchecks-style ping URL: URL/start, URL on success, URL/fail with the error.
    #[serde(default, deserialize_with = "opt_text", skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    /// Prometheus textfile to update (node_exporter's textfile collector).
    #[serde(default, deserialize_with = "opt_path", skip_serializing_if = "Option::is_none")]
    pub metrics_file: Option<PathBuf>,
}

impl MonitorSpec {
    /// `self` layered over `base`: what `self` sets wins.
    pub fn over(self, base: &MonitorSpec) -> MonitorSpec {
        MonitorSpec {
            notify_url: self.notify_url.or_else(|| base.notify_url.clone()),
            metrics_file: self.metrics_file.or_else(|| base.metrics_file.clone()),
        }
    }
}

/// Optional text where an empty string (a runbook parameter interpolated empty) means unset.
pub fn opt_text<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(de)?.filter(|s| !s.trim().is_empty()))
}

/// An optional path; empty means unset.
pub fn opt_path<'de, D: Deserializer<'de>>(de: D) -> Result<Option<PathBuf>, D::Error> {
    Ok(opt_text(de)?.map(PathBuf::from))
}

/// An optional humantime duration ("30s", "26h", "1d 12h"); empty means unset.
pub fn opt_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Option<std::time::Duration>, D::Error> {
    opt_text(de)?
        .map(|s| {
            humantime::parse_duration(s.trim())
                .map_err(|e| D::Error::custom(format!("'{s}': {e} (e.g. 30s, 15m, 26h)")))
        })
        .transpose()
}

/// An optional byte size: a number of bytes, or text with a unit ("16MiB", "8M").
pub fn opt_bytes<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(de)? {
        None => Ok(None),
        Some(Raw::Number(n)) => Ok(Some(n)),
        Some(Raw::Text(s)) if s.trim().is_empty() => Ok(None),
        Some(Raw::Text(s)) => parse_bytes(&s).map(Some).map_err(D::Error::custom),
    }
}

/// Why a byte size does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("invalid size '{text}': use e.g. 16MiB, 8M or 5242880")]
    Number { text: String },
    #[error("invalid size unit '{unit}': use KiB, MiB or GiB")]
    Unit { unit: String },
    #[error("size '{text}' is too large")]
    TooLarge { text: String },
}

/// A point in time as people write it: RFC 3339 (`2026-12-07T03:10:00Z`), `YYYY-MM-DD HH:MM[:SS[.f]]`
/// (or with a `T`) with an optional zone (none means UTC), a date (UTC midnight), or an age
/// (`20m`, `24h`, `7d`: that long before `now`). None for anything else; callers name the input.
pub fn parse_time(text: &str, now: chrono::DateTime<chrono::Utc>) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%#z", "%Y-%m-%d %H:%M%#z"] {
        if let Ok(dt) = DateTime::parse_from_str(t, f) {
            return Some(dt.with_timezone(&Utc));
        }
    }
    let bare = t.trim_end_matches(['Z', 'z']);
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(bare, f) {
            return Some(dt.and_utc());
        }
    }
    if let Some(midnight) = NaiveDate::parse_from_str(t, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)) {
        return Some(midnight.and_utc());
    }
    let age = chrono::Duration::from_std(humantime::parse_duration(t).ok()?).ok()?;
    now.checked_sub_signed(age)
}

/// A byte count: a number with an optional unit (B, KiB, MiB, GiB; K/KB, M/MB, G/GB alike).
pub fn parse_bytes(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| SizeError::Number { text: s.to_string() })?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(SizeError::Unit { unit: other.to_string() }),
    };
    n.checked_mul(mult).ok_or_else(|| SizeError::TooLarge { text: s.to_string() })
}

/// The top-level field names of a spec, from its JSON Schema (flattened groups included).
pub fn field_names<T: JsonSchema>() -> Vec<String> {
    let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default();
    schema["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default()
}

/// Deserializes a table of specs (`[profiles.NAME.sets.SET]`), refusing keys the spec does not
/// have, as `deny_unknown_fields` would were the spec not built of flattened groups.
pub fn strict_map<'de, D, T>(de: D) -> Result<BTreeMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + JsonSchema,
{
    let raw = BTreeMap::<String, serde_json::Value>::deserialize(de)?;
    let known = field_names::<T>();
    raw.into_iter()
        .map(|(name, value)| {
            if let Some(unknown) = unknown_key(&value, &known) {
                return Err(D::Error::custom(format!(
                    "unknown field `{unknown}` in `{name}`, expected {}",
                    list(&known)
                )));
            }
            let spec = serde_json::from_value(value).map_err(|e| D::Error::custom(format!("in `{name}`: {e}")))?;
            Ok((name, spec))
        })
        .collect()
}

/// Deserializes one spec table, refusing keys the spec does not have: for a config section whose
/// spec is flattened into a runbook step's (where it cannot deny unknown fields itself).
pub fn strict<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + JsonSchema,
{
    let value = serde_json::Value::deserialize(de)?;
    let known = field_names::<T>();
    if let Some(unknown) = unknown_key(&value, &known) {
        return Err(D::Error::custom(format!("unknown field `{unknown}`, expected {}", list(&known))));
    }
    serde_json::from_value(value).map_err(D::Error::custom)
}

fn unknown_key<'a>(value: &'a serde_json::Value, known: &[String]) -> Option<&'a String> {
    value.as_object()?.keys().find(|k| !known.contains(k))
}

fn list(known: &[String]) -> String {
    format!("one of {}", known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_people_write_them() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-08T12:00:00Z").unwrap().with_timezone(&chrono::Utc);
        let t = |s: &str| parse_time(s, now).map(|t| t.to_rfc3339());
        let at = Some("2026-12-07T03:10:00+00:00".to_string());
        for text in [
            "2026-12-07T03:10:00Z",
            "2026-12-07 03:10:00",
            "2026-12-07 03:10",
            "2026-12-07T03:10",
            "2026-12-07 04:10:00+01:00",
            "2026-12-07 03:10:00Z",
            " 2026-12-07 03:10 ",
        ] {
            assert_eq!(t(text), at, "{text}");
        }
        assert_eq!(t("2026-11-20"), Some("2026-11-20T00:00:00+00:00".into()));
        assert_eq!(t("24h"), Some("2026-12-07T12:00:00+00:00".into()));
        assert_eq!(t("yesterday"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("16MiB"), Ok(16 << 20));
        assert_eq!(parse_bytes("8M"), Ok(8 << 20));
        assert_eq!(parse_bytes("5242880"), Ok(5_242_880));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
    }

    #[derive(Debug, Deserialize, JsonSchema)]
    struct Spec {
        #[serde(default, deserialize_with = "opt_text")]
        name: Option<String>,
        #[serde(flatten)]
        monitor: MonitorSpec,
    }

    #[derive(Debug, Deserialize)]
    struct File {
        #[serde(deserialize_with = "strict_map")]
        specs: BTreeMap<String, Spec>,
    }

    #[test]
    fn strict_maps_refuse_unknown_keys_of_flattened_specs() {
        let ok: File = toml::from_str("[specs.a]\nname = \"\"\nnotify_url = \"https://hc/1\"\n").unwrap();
        assert_eq!(ok.specs["a"].name, None, "empty text is unset");
        assert_eq!(ok.specs["a"].monitor.notify_url.as_deref(), Some("https://hc/1"));
        let err = toml::from_str::<File>("[specs.a]\nnotify_ur = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `notify_ur` in `a`") && err.contains("`notify_url`"), "{err}");
    }
}
