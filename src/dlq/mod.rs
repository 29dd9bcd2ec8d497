//! Dead-letter replay: the DLQ sources (a Postgres table, or the service's own HTTP API), the
//! filters that select dead letters, stats, the replay engine (claim with `FOR UPDATE SKIP
//! LOCKED`, deliver, remove only with the 2xx) and purge with an archive.

pub mod deliver;
pub mod rate;
pub mod replay;
pub mod sign;
pub mod source;
pub mod spec;

use std::time::Duration;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Classify, ErrorClass};

pub use replay::{plan, replay, Plan, ReplayOptions, ReplayReport};
pub use source::{HttpSource, PgSource, Source};

/// The default alert threshold of `stats` (the "DLQ > 50" alert).
pub const DEFAULT_MAX: u64 = 50;

/// The default dead-letter table `init` creates.
pub const DEFAULT_TABLE: &str = "opsbook_dead_letters";

/// Column names of the dead-letter table; every field defaults to the default table's name, and
/// "" says the table lacks the column.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    pub id: Option<String>,
    pub target_url: Option<String>,
    pub method: Option<String>,
    pub headers: Option<String>,
    pub payload: Option<String>,
    pub event_type: Option<String>,
    pub tenant: Option<String>,
    pub attempts: Option<String>,
    pub last_error: Option<String>,
    pub failed_at: Option<String>,
    /// The original event id, sent as `webhook-id` [default: none: "dlq_<id>"].
    pub event_id: Option<String>,
}

impl Columns {
    /// `self` layered over `base` (the profile's), column by column.
    pub fn over(self, base: &Columns) -> Columns {
        let b = base.clone();
        Columns {
            id: self.id.or(b.id),
            target_url: self.target_url.or(b.target_url),
            method: self.method.or(b.method),
            headers: self.headers.or(b.headers),
            payload: self.payload.or(b.payload),
            event_type: self.event_type.or(b.event_type),
            tenant: self.tenant.or(b.tenant),
            attempts: self.attempts.or(b.attempts),
            last_error: self.last_error.or(b.last_error),
            failed_at: self.failed_at.or(b.failed_at),
            event_id: self.event_id.or(b.event_id),
        }
    }
}

/// One dead-lettered delivery, whatever the source calls its fields.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub target_url: String,
    pub method: String,
    /// Serialized with credential values masked (see [`is_credential_header`]); sent as stored.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty", serialize_with = "masked_headers")]
    pub headers: serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    pub event_type: Option<String>,
    pub tenant: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub failed_at: Option<DateTime<Utc>>,
    pub event_id: Option<String>,
}

impl DeadLetter {
    /// The `webhook-id`: the original event id, stable across retries and replays — the mapped
    /// event id column, else the stored `webhook-id` header (any case), else `dlq_<row id>`.
    pub fn webhook_id(&self) -> String {
        self.event_id
            .clone()
            .filter(|v| !v.is_empty())
            .or_else(|| self.header("webhook-id"))
            .unwrap_or_else(|| format!("dlq_{}", self.id))
    }

    /// A stored header's value by name, any case (non-string JSON values as JSON text).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str().map(String::from).unwrap_or_else(|| v.to_string()))
            .filter(|v| !v.is_empty())
    }

    /// The row as one JSON line with its headers unmasked (the purge archive keeps what a later
    /// restore needs to deliver).
    pub fn archive_line(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let (Some(o), false) = (v.as_object_mut(), self.headers.is_empty()) {
            o.insert("headers".into(), serde_json::Value::Object(self.headers.clone()));
        }
        v.to_string()
    }

    /// The endpoint: scheme, host and port of the target (what breakers and per-endpoint rate
    /// limits key on).
    pub fn endpoint(&self) -> String {
        endpoint_of(&self.target_url)
    }
}

/// Whether a stored header carries a credential: its value never appears in output.
pub fn is_credential_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(n.as_str(), "authorization" | "proxy-authorization" | "cookie" | "set-cookie")
        || ["token", "key", "secret", "signature", "password"].iter().any(|w| n.contains(w))
}

fn masked_headers<S: serde::Serializer>(
    headers: &serde_json::Map<String, serde_json::Value>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(headers.len()))?;
    for (k, v) in headers {
        if is_credential_header(k) {
            map.serialize_entry(k, "***")?;
        } else {
            map.serialize_entry(k, v)?;
        }
    }
    map.end()
}

/// `scheme://host:port` of a URL, or the URL itself when it does not parse.
pub fn endpoint_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port_or_known_default()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
            (Some(h), None) => format!("{}://{h}", u.scheme()),
            _ => url.to_string(),
        },
        Err(_) => url.to_string(),
    }
}

/// Which dead letters a command works on. Empty means all.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Filter {
    pub ids: Vec<i64>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Glob on the target URL (`*` any run, `?` one character); without wildcards a substring.
    pub endpoint: Option<String>,
    pub event: Option<String>,
    pub tenant: Option<String>,
    pub limit: Option<u64>,
}

impl Filter {
    /// Whether a dead letter passes (for sources that cannot filter server-side).
    pub fn matches(&self, d: &DeadLetter) -> bool {
        (self.ids.is_empty() || self.ids.contains(&d.id))
            && self.since.is_none_or(|s| d.failed_at.is_some_and(|f| f >= s))
            && self.until.is_none_or(|u| d.failed_at.is_some_and(|f| f < u))
            && self.endpoint.as_deref().is_none_or(|p| glob_match(p, &d.target_url))
            && self.event.as_deref().is_none_or(|e| d.event_type.as_deref() == Some(e))
            && self.tenant.as_deref().is_none_or(|t| d.tenant.as_deref() == Some(t))
    }
}

/// Text that [`parse_time`] does not read as a time.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a time: give RFC 3339 (2026-11-20T08:00:00Z), a date (2026-11-20) or an age (24h, 7d)")]
pub struct NotATime(pub String);

/// A point in time given as RFC 3339 (`2026-11-20T00:00:00Z`), a date (`2026-11-20`, UTC
/// midnight) or an age (`24h`, `7d`: that long before now): [`crate::spec::parse_time`].
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, NotATime> {
    crate::spec::parse_time(text, now).ok_or_else(|| NotATime(text.trim().to_string()))
}

/// The SQL LIKE pattern of an endpoint glob (`\` escapes LIKE's own wildcards).
pub fn glob_to_like(glob: &str) -> String {
    let mut out = String::new();
    if !glob.contains(['*', '?']) {
        out.push('%');
    }
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    if !glob.contains(['*', '?']) {
        out.push('%');
    }
    out
}

/// The same matching as [`glob_to_like`], in Rust (for the http source).
pub fn glob_match(glob: &str, text: &str) -> bool {
    if !glob.contains(['*', '?']) {
        return text.contains(glob);
    }
    let p: Vec<char> = glob.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Classic iterative wildcard match with backtracking to the last '*'.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Counts for `stats`: total, by endpoint, event type and age.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub total: u64,
    pub oldest: Option<DateTime<Utc>>,
    pub by_endpoint: Vec<(String, u64)>,
    pub by_event_type: Vec<(String, u64)>,
    pub by_age: Vec<(String, u64)>,
}

/// Age buckets of `stats`, newest first: label and upper bound.
pub const AGE_BUCKETS: &[(&str, Option<Duration>)] = &[
    ("<1h", Some(Duration::from_secs(3600))),
    ("1h-24h", Some(Duration::from_secs(86_400))),
    ("1d-7d", Some(Duration::from_secs(7 * 86_400))),
    (">7d", None),
];

/// The age bucket label of a dead letter that failed `age` ago.
pub fn age_bucket(age: Duration) -> &'static str {
    AGE_BUCKETS.iter().find(|(_, upper)| upper.is_none_or(|u| age < u)).map_or(">7d", |(label, _)| label)
}

/// Tallies dead letters into [`Stats`] (the http source's path; Postgres counts in SQL).
pub fn tally(items: &[DeadLetter], now: DateTime<Utc>) -> Stats {
    use std::collections::BTreeMap;
    let mut endpoints = BTreeMap::<String, u64>::new();
    let mut events = BTreeMap::<String, u64>::new();
    let mut ages = BTreeMap::<&str, u64>::new();
    for d in items {
        *endpoints.entry(d.endpoint()).or_default() += 1;
        *events.entry(d.event_type.clone().unwrap_or_else(|| "(none)".into())).or_default() += 1;
        let age = d.failed_at.map_or(Duration::ZERO, |f| (now - f).to_std().unwrap_or_default());
        *ages.entry(age_bucket(age)).or_default() += 1;
    }
    Stats {
        total: items.len() as u64,
        oldest: items.iter().filter_map(|d| d.failed_at).min(),
        by_endpoint: sorted(endpoints.into_iter().collect()),
        by_event_type: sorted(events.into_iter().collect()),
        by_age: AGE_BUCKETS.iter().filter_map(|(l, _)| ages.get(l).map(|n| (l.to_string(), *n))).collect(),
    }
}

/// Largest count first, then by name.
pub fn sorted(mut v: Vec<(String, u64)>) -> Vec<(String, u64)> {
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// The profile or the environment cannot give a value (no database URL, an unset `env:`
    /// variable); the configuration error names the key and the fix (exit 2).
    #[error(transparent)]
    Config(Box<dyn std::error::Error + Send + Sync>),
    /// A table or column name that is not a plain SQL name (exit 2).
    #[error("[dlq] {key} = \"{value}\" is not a plain SQL name (letters, digits, _; optionally schema.name)")]
    Identifier { key: String, value: String },
    /// A column replay cannot do without is mapped to "" (exit 2).
    #[error("[dlq] columns.{key} cannot be empty: replay needs it")]
    RequiredColumn { key: &'static str },
    /// A filter or purge needs a column mapped to "" (exit 2).
    #[error("{what} needs the {column} column, which [dlq] columns maps to \"\"")]
    UnmappedColumn { what: &'static str, column: &'static str },
    /// The DLQ table is not there (exit 2).
    #[error(
        "{op} on {table} failed: {cause}; create the default table with `opsbook dlq-replay init`, \
         or name an existing one with --table or `[profiles.NAME.dlq] table` in opsbook.toml"
    )]
    NoTable { op: String, table: String, cause: String },
    /// A mapped column is not there (exit 2).
    #[error(
        "{op} on {table} failed: {cause}; map the table's column names under \
         `[profiles.NAME.dlq.columns]` in opsbook.toml (\"\" for a column the table lacks)"
    )]
    NoColumn { op: String, table: String, cause: String },
    /// --source-url does not parse (exit 2).
    #[error("--source-url `{url}` is not a URL: {source} (e.g. https://api.example.com/v1/webhooks)")]
    SourceUrl {
        url: String,
        #[source]
        source: url::ParseError,
    },
    /// --source-url is not HTTP (exit 2).
    #[error("--source-url `{url}` must be http:// or https://")]
    SourceScheme { url: String },
    /// An HTTP client cannot be built (exit 2).
    #[error("HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// The http source's list is not JSON (exit 2).
    #[error("GET {url} did not answer JSON ({source}): {body}")]
    NotJson {
        url: String,
        #[source]
        source: serde_json::Error,
        body: String,
    },
    /// An item of the http source's list is not a dead letter (exit 2).
    #[error("GET {url}: item #{index} has no numeric `id` and `target_url` (or `url`): {item}")]
    NotADeadLetter { url: String, index: usize, item: String },
    /// The http source's token variable is not set (exit 2).
    #[error("the API token variable {var} is not set; export it or pass --token-env NAME")]
    NoToken { var: String },
    /// A flag of the http source given for a table (exit 2).
    #[error("{flag} applies to the http source only: add --source-url URL, or drop {flag}")]
    HttpSourceOnly { flag: &'static str },
    /// A table given for the http source (exit 2).
    #[error("--table applies to a dead-letter table; the http source (--source-url) has none")]
    TableOfHttpSource,
    /// Signing asked of the http source, which signs its replays itself (exit 2).
    #[error("--signing-secret-env applies to the Postgres source: the service signs what it replays itself")]
    SigningHttpSource,
    /// The signing secret variable is not set (exit 2).
    #[error(
        "the signing secret variable {var} is not set; export {var}=whsec_<base64> (several separated by \
         spaces while rotating)"
    )]
    NoSigningSecret { var: String },
    /// The signing secret variable does not hold usable secrets (exit 2).
    #[error(transparent)]
    Signing(#[from] sign::SignError),
    /// A zero timeout would count every request as timed out (exit 2).
    #[error("{flag} must be longer than 0s (e.g. 30s)")]
    ZeroTimeout { flag: &'static str },
    /// A rate that is not a positive number (exit 2).
    #[error("{flag} must be a positive number of requests per second, got {value}")]
    Rate { flag: &'static str, value: f64 },
    /// No delivery could ever be in flight (exit 2).
    #[error("--concurrency must be at least 1")]
    ZeroConcurrency,
    /// --since or --until is not a time (exit 2).
    #[error("{flag}: {source}")]
    Time {
        flag: &'static str,
        #[source]
        source: NotATime,
    },
    /// The DLQ source (database or API) is unreachable (exit 3).
    #[error("{op}: {target} is unavailable: {cause}")]
    Unavailable { op: String, target: String, cause: String },
    /// A statement on the DLQ table failed.
    #[error("{op} on {table} failed: {cause}")]
    Query { op: String, table: String, cause: String },
    /// The API answered with an error.
    #[error("{op} {url}: HTTP {status}: {body}")]
    Api { op: String, url: String, status: u16, body: String },
    #[error(transparent)]
    Pg(#[from] crate::pg::PgError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl DlqError {
    /// A failed statement on the DLQ table, classified: a missing table or column is a
    /// configuration problem (exit 2, with the fix), a lost connection is unavailability (exit 3).
    pub(crate) fn query(op: &str, table: &str, e: sqlx::Error) -> Self {
        let cause = crate::pg::query::describe_sql_error(&e);
        let code = e.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned());
        let (op, table) = (op.to_string(), table.to_string());
        match code.as_deref() {
            Some("42P01") => DlqError::NoTable { op, table, cause },
            Some("42703") => DlqError::NoColumn { op, table, cause },
            Some(c) if c.starts_with("08") || c.starts_with("57P") => {
                DlqError::Unavailable { op: format!("{op} on {table}"), target: "the database".into(), cause }
            }
            _ if is_connection_error(&e) => {
                DlqError::Unavailable { op: format!("{op} on {table}"), target: "the database".into(), cause }
            }
            _ => DlqError::Query { op, table, cause },
        }
    }
}

/// The connection is gone or never came up (not a statement's own error).
pub(crate) fn is_connection_error(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_)
    )
}

impl Classify for DlqError {
    fn class(&self) -> ErrorClass {
        match self {
            DlqError::Config(_)
            | DlqError::Identifier { .. }
            | DlqError::RequiredColumn { .. }
            | DlqError::UnmappedColumn { .. }
            | DlqError::NoTable { .. }
            | DlqError::NoColumn { .. }
            | DlqError::SourceUrl { .. }
            | DlqError::SourceScheme { .. }
            | DlqError::HttpClient(_)
            | DlqError::NotJson { .. }
            | DlqError::NotADeadLetter { .. }
            | DlqError::NoToken { .. }
            | DlqError::HttpSourceOnly { .. }
            | DlqError::TableOfHttpSource
            | DlqError::SigningHttpSource
            | DlqError::NoSigningSecret { .. }
            | DlqError::Signing(_)
            | DlqError::ZeroTimeout { .. }
            | DlqError::Rate { .. }
            | DlqError::ZeroConcurrency
            | DlqError::Time { .. } => ErrorClass::Usage,
            DlqError::Unavailable { .. } => ErrorClass::Unavailable,
            DlqError::Query { .. } => ErrorClass::Failed,
            DlqError::Api { status, .. } if *status == 401 || *status == 403 || *status == 404 => ErrorClass::Usage,
            DlqError::Api { status, .. } if *status >= 500 => ErrorClass::Unavailable,
            DlqError::Api { .. } => ErrorClass::Failed,
            DlqError::Pg(e) => e.class(),
            DlqError::Store(e) => e.class(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_in_sql_and_rust_agree() {
        assert_eq!(glob_to_like("*hooks.example.com*"), "%hooks.example.com%");
        assert_eq!(glob_to_like("gateway"), "%gateway%");
        assert_eq!(glob_to_like("a_b%"), "%a\\_b\\%%");
        assert!(glob_match("*example.com/wh*", "https://example.com/wh/1"));
        assert!(!glob_match("https://a.*", "https://b.example"));
        assert!(glob_match("gateway", "https://gateway.local/x"));
        assert!(glob_match("http://h?st/*", "http://host/p"));
        assert!(!glob_match("*x", "xy"));
    }

    #[test]
    fn times_and_ages() {
        let now = DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_time("24h", now).unwrap().to_rfc3339(), "2026-11-22T12:00:00+00:00");
        assert_eq!(parse_time("2026-11-20", now).unwrap().to_rfc3339(), "2026-11-20T00:00:00+00:00");
        assert!(parse_time("yesterday", now).unwrap_err().to_string().contains("RFC 3339"));
        assert_eq!(age_bucket(Duration::from_secs(10)), "<1h");
        assert_eq!(age_bucket(Duration::from_secs(7200)), "1h-24h");
        assert_eq!(age_bucket(Duration::from_secs(30 * 86_400)), ">7d");
    }

    #[test]
    fn endpoints_key_on_origin() {
        assert_eq!(endpoint_of("https://h.example/a/b?x=1"), "https://h.example:443");
        assert_eq!(endpoint_of("http://127.0.0.1:8080/x"), "http://127.0.0.1:8080");
    }
}
