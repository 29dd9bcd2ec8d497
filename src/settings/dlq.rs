//! Resolves a dead-letter spec (flags or a runbook step) over the profile's `[dlq]` into what
//! `dlq` runs: the source, the stats threshold, and a replay's options. Flags > environment >
//! `[profiles.NAME.dlq]` > defaults.

use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::dlq::deliver::DeliveryConfig;
use crate::dlq::sign::Signer;
use crate::dlq::source::{HttpSource, PgSource, Source};
use crate::dlq::spec::DlqSpec;
use crate::dlq::{DlqError, ReplayOptions, DEFAULT_MAX};
use crate::pg::DbUrl;

/// Default tenant header of the http source.
pub const DEFAULT_TENANT_HEADER: &str = "X-Tenant-Id";
/// Default deliveries in flight.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// Opens the source: a given source_url, else a given database_url, else the profile's
/// source_url, else the database URL chain (DATABASE_URL, profile, sandbox). The spec's
/// `filter.tenant` goes to the http source as its tenant header.
pub fn source(config: &Config, spec: &DlqSpec) -> Result<Source, DlqError> {
    let (given, profile) = (&spec.queue, &config.profile.dlq);
    let source_url = match (&given.source_url, &spec.database_url) {
        (Some(u), _) => Some(u.clone()),
        (None, Some(_)) => None,
        (None, None) => {
            profile.source_url.as_deref().map(|raw| config.resolve("dlq.source_url", raw)).transpose().map_err(boxed)?
        }
    };
    if let Some(url) = source_url {
        let token = match given.token_env.as_deref().or(profile.token_env.as_deref()) {
            Some(var) => Some(
                std::env::var(var)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| DlqError::NoToken { var: var.to_string() })?,
            ),
            None => None,
        };
        let header =
            given.tenant_header.as_deref().or(profile.tenant_header.as_deref()).unwrap_or(DEFAULT_TENANT_HEADER);
        let tenant = spec.filter.tenant.clone().map(|t| (header.to_string(), t));
        let defaults = DeliveryConfig::default();
        let timeout = nonzero("--timeout", spec.timeout)?.unwrap_or(defaults.timeout);
        let connect_timeout = nonzero("--connect-timeout", spec.connect_timeout)?.unwrap_or(defaults.connect_timeout);
        if given.table.is_some() {
            return Err(DlqError::TableOfHttpSource);
        }
        return Ok(Source::Http(HttpSource::new(&url, token, tenant, timeout, connect_timeout)?));
    }
    for (flag, value) in [("--token-env", &given.token_env), ("--tenant-header", &given.tenant_header)] {
        if value.is_some() {
            return Err(DlqError::HttpSourceOnly { flag });
        }
    }
    let url = config.database_url(spec.database_url.as_deref(), None).map_err(boxed)?;
    let url = DbUrl::parse(&url)?;
    let table = given.table.as_deref().or(profile.table.as_deref());
    let history = given.history_table.as_deref().or(profile.history_table.as_deref());
    let columns = given.columns.clone().over(&profile.columns);
    Ok(Source::Postgres(Box::new(PgSource::new(url, table, &columns, history)?)))
}

/// The stats alert threshold: given, else the profile's, else 50.
pub fn max(config: &Config, spec: &DlqSpec) -> u64 {
    spec.queue.max.or(config.profile.dlq.max).unwrap_or(DEFAULT_MAX)
}

/// A replay's options from `source` (opened by [`source`]): pacing, retries, timeouts, the
/// breaker and the signer, each given, else the profile's, else the default.
pub fn replay(config: &Config, spec: &DlqSpec, source: &Source) -> Result<ReplayOptions, DlqError> {
    let (given, profile) = (&spec.queue, &config.profile.dlq);
    if matches!(source, Source::Http(_)) && given.signing_secret_env.is_some() {
        return Err(DlqError::SigningHttpSource);
    }
    let signer = match given.signing_secret_env.as_deref().or(profile.signing_secret_env.as_deref()) {
        Some(var) => {
            let value = std::env::var(var).map_err(|_| DlqError::NoSigningSecret { var: var.to_string() })?;
            Some(Signer::parse(&value, var)?)
        }
        None => None,
    };
    let defaults = DeliveryConfig::default();
    let delivery = DeliveryConfig {
        rate: positive("--rate", given.rate.or(profile.rate))?,
        endpoint_rate: positive("--endpoint-rate", given.endpoint_rate.or(profile.endpoint_rate))?,
        retries: spec.retries.unwrap_or(defaults.retries),
        timeout: nonzero("--timeout", spec.timeout)?.unwrap_or(defaults.timeout),
        connect_timeout: nonzero("--connect-timeout", spec.connect_timeout)?.unwrap_or(defaults.connect_timeout),
        breaker_threshold: spec.breaker.unwrap_or(defaults.breaker_threshold),
        signer,
        ..defaults
    };
    let concurrency = given.concurrency.or(profile.concurrency).unwrap_or(DEFAULT_CONCURRENCY);
    if concurrency == 0 {
        return Err(DlqError::ZeroConcurrency);
    }
    Ok(ReplayOptions { concurrency, delivery })
}

/// A zero timeout would send each request and then count it as timed out: refused, as a zero
/// rate is.
fn nonzero(flag: &'static str, value: Option<Duration>) -> Result<Option<Duration>, DlqError> {
    match value {
        Some(d) if d.is_zero() => Err(DlqError::ZeroTimeout { flag }),
        other => Ok(other),
    }
}

fn positive(flag: &'static str, value: Option<f64>) -> Result<Option<f64>, DlqError> {
    match value {
        Some(r) if !(r > 0.0 && r.is_finite()) => Err(DlqError::Rate { flag, value: r }),
        other => Ok(other),
    }
}

fn boxed(e: ConfigError) -> DlqError {
    DlqError::Config(Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::spec::QueueSpec;

    #[test]
    fn a_step_overrides_the_profiles_queue() {
        let mut config = Config::default();
        config.profile.dlq =
            QueueSpec { table: Some("hooks.dead".into()), rate: Some(2.0), concurrency: Some(3), ..Default::default() };
        let mut spec = DlqSpec { database_url: Some("postgres://localhost/app".into()), ..Default::default() };
        let table = |spec: &DlqSpec| match source(&config, spec).unwrap() {
            Source::Postgres(pg) => pg.table,
            Source::Http(_) => panic!("a table was given"),
        };
        assert_eq!(table(&spec), "hooks.dead");
        let pg = source(&config, &spec).unwrap();
        let opts = replay(&config, &spec, &pg).unwrap();
        assert_eq!((opts.delivery.rate, opts.concurrency, max(&config, &spec)), (Some(2.0), 3, DEFAULT_MAX));

        spec.queue = QueueSpec { table: Some("other".into()), rate: Some(5.0), max: Some(9), ..Default::default() };
        assert_eq!(table(&spec), "other");
        let opts = replay(&config, &spec, &pg).unwrap();
        assert_eq!((opts.delivery.rate, opts.concurrency, max(&config, &spec)), (Some(5.0), 3, 9));

        spec.queue.concurrency = Some(0);
        assert!(matches!(replay(&config, &spec, &pg), Err(DlqError::ZeroConcurrency)));
        spec.queue.token_env = Some("API_TOKEN".into());
        assert!(matches!(source(&config, &spec), Err(DlqError::HttpSourceOnly { flag: "--token-env" })));
    }
}
