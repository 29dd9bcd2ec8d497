//! dlq-replay's inputs, declared once: `[profiles.NAME.dlq]` in opsbook.toml (the queue: where
//! the dead letters are, the table's layout, the alert threshold, replay pacing and signing), the
//! `with` of a runbook `dlq-replay` step (those keys, which dead letters, and this run's tuning),
//! and what `opsbook dlq-replay`'s flags convert into. `settings::dlq` resolves a spec over the
//! profile's into a source, a threshold and a replay's options.

use std::time::Duration;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{parse_time, Columns, DlqError, Filter};
use crate::spec::{opt_duration, opt_text};

/// The queue: `[profiles.NAME.dlq]`, and the same keys in a step or as flags, which win.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct QueueSpec {
    /// Dead-letter table, optionally schema-qualified [default: opsbook_dead_letters].
    #[serde(default, deserialize_with = "opt_text")]
    pub table: Option<String>,
    /// Move delivered rows here instead of deleting them (same columns, then `delivered_at`;
    /// `init` creates it).
    #[serde(default, deserialize_with = "opt_text")]
    pub history_table: Option<String>,
    /// Column names of an existing table (`[profiles.NAME.dlq.columns]`; "" for one it lacks).
    #[serde(default)]
    pub columns: Columns,
    /// The service's DLQ API base instead of a table, e.g. https://api.example.com/v1/webhooks.
    #[serde(default, deserialize_with = "opt_text")]
    pub source_url: Option<String>,
    /// Environment variable holding the API's bearer token (http source).
    #[serde(default, deserialize_with = "opt_text")]
    pub token_env: Option<String>,
    /// Header carrying `tenant` to the API [default: X-Tenant-Id].
    #[serde(default, deserialize_with = "opt_text")]
    pub tenant_header: Option<String>,
    /// replay: environment variable with the Standard Webhooks secret(s), whsec_<base64>,
    /// space-separated while rotating.
    #[serde(default, deserialize_with = "opt_text")]
    pub signing_secret_env: Option<String>,
    /// stats: fail when the DLQ holds more dead letters than this [default: 50].
    pub max: Option<u64>,
    /// replay: requests per second over all endpoints, retries included [default: unlimited].
    pub rate: Option<f64>,
    /// replay: requests per second to any one endpoint (scheme://host:port).
    pub endpoint_rate: Option<f64>,
    /// replay: deliveries in flight at once [default: 8].
    pub concurrency: Option<usize>,
}

/// Which dead letters; empty means all.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct FilterSpec {
    /// Only these ids.
    #[serde(default)]
    pub ids: Vec<i64>,
    /// Failed at or after: RFC 3339, a date, or an age such as 24h.
    #[serde(default, deserialize_with = "opt_text")]
    pub since: Option<String>,
    /// Failed before: RFC 3339, a date, or an age such as 1h.
    #[serde(default, deserialize_with = "opt_text")]
    pub until: Option<String>,
    /// Target URL glob (* and ?); without wildcards, a substring.
    #[serde(default, deserialize_with = "opt_text")]
    pub endpoint: Option<String>,
    /// Event type, exactly.
    #[serde(default, deserialize_with = "opt_text")]
    pub event: Option<String>,
    /// Tenant, exactly (also sent as the tenant header to an http source).
    #[serde(default, deserialize_with = "opt_text")]
    pub tenant: Option<String>,
    /// At most this many, oldest first.
    pub limit: Option<u64>,
}

impl FilterSpec {
    /// The filter, with `since` and `until` taken relative to `now`.
    pub fn filter(&self, now: DateTime<Utc>) -> Result<Filter, DlqError> {
        let time = |flag: &'static str, given: &Option<String>| {
            given
                .as_deref()
                .map(|text| parse_time(text, now).map_err(|source| DlqError::Time { flag, source }))
                .transpose()
        };
        Ok(Filter {
            ids: self.ids.clone(),
            since: time("--since", &self.since)?,
            until: time("--until", &self.until)?,
            endpoint: self.endpoint.clone(),
            event: self.event.clone(),
            tenant: self.tenant.clone(),
            limit: self.limit,
        })
    }
}

/// One dlq-replay run: the database, the queue's keys over the profile's, which dead letters,
/// and how hard a replay tries.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct DlqSpec {
    /// Database with the dead-letter table [default: DATABASE_URL / profile / sandbox].
    #[serde(default, deserialize_with = "opt_text")]
    pub database_url: Option<String>,
    #[serde(flatten)]
    pub queue: QueueSpec,
    #[serde(flatten)]
    pub filter: FilterSpec,
    /// replay: retries per dead letter after the first attempt (5xx, 408, 429, timeouts,
    /// connection errors) [default: 3].
    pub retries: Option<u32>,
    /// Timeout of one request, to the targets or to the http source's API, e.g. "30s"
    /// [default: 30s].
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Duration>,
    /// Connect timeout of one request [default: 5s].
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub connect_timeout: Option<Duration>,
    /// replay: consecutive failed deliveries that stop replaying to an endpoint for this run
    /// (0: never) [default: 5].
    pub breaker: Option<u32>,
}
