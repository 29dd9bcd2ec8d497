//! Settings resolution shared by `opsbook dlq-replay` and the `dlq-replay` runbook action:
//! flags > environment > `[profiles.NAME.dlq]` > defaults.

use std::time::Duration;

use super::deliver::DeliveryConfig;
use super::sign::Signer;
use super::source::{HttpSource, PgSource, Source};
use super::DlqError;
use crate::config::Config;
use crate::pg::DbUrl;

/// Default tenant header of the http source.
pub const DEFAULT_TENANT_HEADER: &str = "X-Tenant-Id";

/// Where to find the dead letters, as given on the command line or in a step.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    pub database_url: Option<String>,
    pub source_url: Option<String>,
    /// Environment variable with the API's bearer token.
    pub token_env: Option<String>,
    pub tenant_header: Option<String>,
    /// Sent as the tenant header to the http source (and a filter for both sources).
    pub tenant: Option<String>,
    pub table: Option<String>,
    /// Request and connect timeouts of the http source's API calls [default: 30s, 5s].
    pub timeout: Option<Duration>,
    pub connect_timeout: Option<Duration>,
}

/// Opens the source: an explicit --source-url, else an explicit --database-url, else the
/// profile's source_url, else the database URL chain (DATABASE_URL, profile, sandbox).
pub fn source(config: &Config, opts: &SourceOptions) -> Result<Source, DlqError> {
    let dlq = &config.profile.dlq;
    let source_url = match (&opts.source_url, &opts.database_url) {
        (Some(u), _) => Some(u.clone()),
        (None, Some(_)) => None,
        (None, None) => {
            dlq.source_url.as_deref().map(|raw| config.resolve("dlq.source_url", raw)).transpose().map_err(input)?
        }
    };
    if let Some(url) = source_url {
        let token_env = opts.token_env.as_deref().or(dlq.token_env.as_deref());
        let token = match token_env {
            Some(var) => Some(std::env::var(var).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
                DlqError::Input(format!("the API token variable {var} is not set; export it or pass --token-env NAME"))
            })?),
            None => None,
        };
        let header = opts.tenant_header.as_deref().or(dlq.tenant_header.as_deref()).unwrap_or(DEFAULT_TENANT_HEADER);
        let tenant = opts.tenant.clone().map(|t| (header.to_string(), t));
        let defaults = DeliveryConfig::default();
        let timeout = nonzero("--timeout", opts.timeout)?.unwrap_or(defaults.timeout);
        let connect_timeout = nonzero("--connect-timeout", opts.connect_timeout)?.unwrap_or(defaults.connect_timeout);
        if opts.table.is_some() {
            return Err(DlqError::Input(
                "--table applies to a dead-letter table; the http source (--source-url) has none".into(),
            ));
        }
        return Ok(Source::Http(HttpSource::new(&url, token, tenant, timeout, connect_timeout)?));
    }
    for (flag, given) in [("--token-env", &opts.token_env), ("--tenant-header", &opts.tenant_header)] {
        if given.is_some() {
            return Err(DlqError::Input(format!(
                "{flag} applies to the http source only: add --source-url URL, or drop {flag}"
            )));
        }
    }
    let url = config.database_url(opts.database_url.as_deref(), None).map_err(input)?;
    let url = DbUrl::parse(&url)?;
    let table = opts.table.as_deref().or(dlq.table.as_deref());
    Ok(Source::Postgres(Box::new(PgSource::new(url, table, &dlq.columns, dlq.history_table.as_deref())?)))
}

/// A zero timeout would send each request and then count it as timed out: refused, as a zero
/// rate is.
fn nonzero(name: &str, value: Option<Duration>) -> Result<Option<Duration>, DlqError> {
    match value {
        Some(d) if d.is_zero() => Err(DlqError::Input(format!("{name} must be longer than 0s (e.g. 30s)"))),
        other => Ok(other),
    }
}

fn input(e: crate::config::ConfigError) -> DlqError {
    DlqError::Input(e.to_string())
}

/// Replay tuning as given; `None` takes the profile's value or the default.
#[derive(Debug, Clone, Default)]
pub struct DeliveryOptions {
    pub rate: Option<f64>,
    pub endpoint_rate: Option<f64>,
    pub retries: Option<u32>,
    pub timeout: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub breaker: Option<u32>,
    pub signing_secret_env: Option<String>,
}

pub fn delivery(config: &Config, opts: &DeliveryOptions) -> Result<DeliveryConfig, DlqError> {
    let dlq = &config.profile.dlq;
    let defaults = DeliveryConfig::default();
    let positive = |name: &str, v: Option<f64>| match v {
        Some(r) if !(r > 0.0 && r.is_finite()) => {
            Err(DlqError::Input(format!("{name} must be a positive number of requests per second, got {r}")))
        }
        other => Ok(other),
    };
    let signer = match opts.signing_secret_env.as_deref().or(dlq.signing_secret_env.as_deref()) {
        Some(var) => {
            let value = std::env::var(var).map_err(|_| {
                DlqError::Input(format!(
                    "the signing secret variable {var} is not set; export {var}=whsec_<base64> (several separated by spaces while rotating)"
                ))
            })?;
            Some(Signer::parse(&value, var).map_err(DlqError::Input)?)
        }
        None => None,
    };
    Ok(DeliveryConfig {
        rate: positive("--rate", opts.rate.or(dlq.rate))?,
        endpoint_rate: positive("--endpoint-rate", opts.endpoint_rate.or(dlq.endpoint_rate))?,
        retries: opts.retries.unwrap_or(defaults.retries),
        timeout: nonzero("--timeout", opts.timeout)?.unwrap_or(defaults.timeout),
        connect_timeout: nonzero("--connect-timeout", opts.connect_timeout)?.unwrap_or(defaults.connect_timeout),
        breaker_threshold: opts.breaker.unwrap_or(defaults.breaker_threshold),
        signer,
        ..defaults
    })
}
