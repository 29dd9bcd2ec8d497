//! `promote-check`: the environment promotion checklist as concurrent checks, each with status
//! (pass / warn / fail / skip), evidence and how to fix, waivers with an expiry, and reports as a
//! table, JSON or JUnit.

mod checks;
mod web;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Classify, ErrorClass};

/// `[profiles.NAME.promote]` in opsbook.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteConfig {
    /// "prod" makes some checks stricter (verify-full TLS, rotation evidence required).
    pub environment: Option<String>,
    pub app_url: Option<String>,
    pub web_url: Option<String>,
    pub env_file: Option<PathBuf>,
    /// Another environment's .env file (e.g. staging's): its JWT_SECRET must differ.
    pub compare_env_file: Option<PathBuf>,
    /// Health endpoint path [default: /health] and an expected substring of its body.
    pub health_path: Option<String>,
    pub health_body: Option<String>,
    /// Metrics endpoint path [default: /metrics].
    pub metrics_path: Option<String>,
    /// Origins the API may allow (CORS).
    #[serde(default)]
    pub cors_allowlist: Vec<String>,
    /// Variables that must be set, non-empty and not placeholders.
    #[serde(default)]
    pub required_env: Vec<String>,
    /// Newest backup must be younger than this [default: 26h].
    pub rpo_target: Option<String>,
    /// A drill must have passed within this [default: 8d].
    pub drill_interval: Option<String>,
    /// Rate-limit probe: a cheap path and the burst within which a 429 must appear.
    pub rate_limit_path: Option<String>,
    pub rate_limit_burst: Option<usize>,
    /// OTLP endpoint when not in OTEL_EXPORTER_OTLP_ENDPOINT.
    pub otel_endpoint: Option<String>,
    #[serde(default)]
    pub waivers: Vec<Waiver>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Waiver {
    pub check: String,
    pub reason: String,
    /// YYYY-MM-DD; the waiver stops applying after this day.
    pub expires: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Fail,
    Warn,
    Waived,
    Pass,
    Skip,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Fail => "fail",
            Status::Warn => "warn",
            Status::Waived => "waived",
            Status::Pass => "pass",
            Status::Skip => "skip",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResult {
    pub id: String,
    pub title: String,
    pub status: Status,
    pub evidence: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fix: String,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiver: Option<Waiver>,
}

/// What a check found, before waivers.
pub(crate) struct Finding {
    status: Status,
    evidence: String,
    fix: String,
}

impl Finding {
    pub(crate) fn pass(evidence: impl Into<String>) -> Finding {
        Finding { status: Status::Pass, evidence: evidence.into(), fix: String::new() }
    }
    pub(crate) fn skip(evidence: impl Into<String>) -> Finding {
        Finding { status: Status::Skip, evidence: evidence.into(), fix: String::new() }
    }
    pub(crate) fn warn(evidence: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { status: Status::Warn, evidence: evidence.into(), fix: fix.into() }
    }
    pub(crate) fn fail(evidence: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { status: Status::Fail, evidence: evidence.into(), fix: fix.into() }
    }
}

/// Every check: id and title, in report order.
pub const CHECKS: &[(&str, &str)] = &[
    ("jwt-secret", "JWT secret is strong"),
    ("db-credentials-rotated", "Database credentials rotated within policy"),
    ("db-ssl", "Database connections use TLS and SCRAM"),
    ("csp", "Content-Security-Policy is strict"),
    ("hsts", "HTTPS with HSTS"),
    ("cors", "CORS does not reflect foreign origins"),
    ("security-headers", "Security headers present"),
    ("otel", "OpenTelemetry endpoint reachable or disabled"),
    ("rate-limits", "Rate limiting answers a burst with 429"),
    ("backup-retention", "Backups fresh, retained and drilled"),
    ("migrations-applied", "Migrations applied, no drift"),
    ("health", "Health endpoint answers"),
    ("metrics", "Metrics endpoint serves Prometheus text"),
    ("pg-stat-statements", "pg_stat_statements installed and preloaded"),
    ("required-env", "Required environment variables set"),
];

/// Inputs resolved from flags, environment and the profile.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub profile: String,
    pub prod: bool,
    pub config: PromoteConfig,
    pub database_url: Option<String>,
    pub store_url: Option<String>,
    pub set: String,
    /// `rpo_target` and `drill_interval` from the profile, parsed (defaults 26h and 8d).
    pub rpo_target: Duration,
    pub drill_interval: Duration,
    pub migrations: Option<crate::migrate::Settings>,
    /// KEY → value from the env file (and the process environment for missing keys).
    pub env: BTreeMap<String, String>,
    /// The other environment's env file and its entries (only the file, not the process env).
    pub compare_env: Option<(PathBuf, BTreeMap<String, String>)>,
    pub ca_file: Option<PathBuf>,
    pub only: Vec<String>,
    pub skip: Vec<String>,
    pub timeout: Duration,
    pub app_config: Config,
}

#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error("{0}")]
    Input(String),
}

impl Classify for PromoteError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Usage
    }
}

impl Request {
    pub fn env(&self, key: &str) -> Option<&str> {
        self.env.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// Reads the env file (if any) over the process environment.
pub fn load_env(file: Option<&std::path::Path>) -> Result<BTreeMap<String, String>, PromoteError> {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    if let Some(path) = file {
        let f = crate::secrets::EnvFile::load(path).map_err(|e| PromoteError::Input(e.to_string()))?;
        if !path.exists() {
            return Err(PromoteError::Input(format!("--env-file {}: no such file", path.display())));
        }
        for (k, v) in f.entries() {
            crate::redact::register_urls_in(&v);
            env.insert(k, v);
        }
    }
    Ok(env)
}

/// The entries of another environment's env file, which must exist; values are registered as
/// secrets so they are never printed.
fn load_compare_env(path: &std::path::Path) -> Result<BTreeMap<String, String>, PromoteError> {
    if !path.is_file() {
        return Err(PromoteError::Input(format!(
            "--compare-env-file {}: no such file (give the other environment's .env file)",
            path.display()
        )));
    }
    let f = crate::secrets::EnvFile::load(path).map_err(|e| PromoteError::Input(e.to_string()))?;
    let entries = f.entries();
    for v in entries.values() {
        crate::redact::register_urls_in(v);
    }
    Ok(entries)
}

fn check_ids(list: &[String], flag: &str) -> Result<(), PromoteError> {
    for id in list {
        if !CHECKS.iter().any(|(c, _)| c == id) {
            return Err(PromoteError::Input(format!(
                "{flag}: unknown check `{id}`; checks are {}",
                CHECKS.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    Ok(())
}

fn waiver_for(req: &Request, id: &str, today: NaiveDate) -> Result<Option<Waiver>, PromoteError> {
    for w in req.config.waivers.iter().filter(|w| w.check == id) {
        let expires = NaiveDate::parse_from_str(&w.expires, "%Y-%m-%d").map_err(|e| {
            PromoteError::Input(format!("waiver for `{id}`: expires `{}`: {e} (use YYYY-MM-DD)", w.expires))
        })?;
        if expires >= today {
            return Ok(Some(w.clone()));
        }
    }
    Ok(None)
}

/// Runs the selected checks concurrently, each under the timeout.
pub async fn run(req: &Request) -> Result<Vec<CheckResult>, PromoteError> {
    check_ids(&req.only, "--only")?;
    check_ids(&req.skip, "--skip")?;
    for w in &req.config.waivers {
        check_ids(std::slice::from_ref(&w.check), "waiver")?;
    }
    let today = chrono::Utc::now().date_naive();
    let selected: Vec<(&str, &str)> = CHECKS
        .iter()
        .copied()
        .filter(|(id, _)| {
            (req.only.is_empty() || req.only.iter().any(|o| o == id)) && !req.skip.iter().any(|s| s == id)
        })
        .collect();
    let futures = selected.iter().map(|(id, title)| async move {
        let start = Instant::now();
        let finding = match tokio::time::timeout(req.timeout, run_check(req, id)).await {
            Ok(f) => f,
            Err(_) => Finding::fail(
                format!("no answer within {}s", req.timeout.as_secs()),
                "make the dependency answer, or raise --timeout",
            ),
        };
        (*id, *title, finding, start.elapsed())
    });
    let mut results = Vec::new();
    for (id, title, f, elapsed) in futures::future::join_all(futures).await {
        let mut status = f.status;
        let waiver = waiver_for(req, id, today)?;
        if status == Status::Fail && waiver.is_some() {
            status = Status::Waived;
        }
        results.push(CheckResult {
            id: id.into(),
            title: title.into(),
            status,
            evidence: f.evidence,
            fix: f.fix,
            seconds: elapsed.as_secs_f64(),
            waiver: waiver.filter(|_| status == Status::Waived),
        });
    }
    Ok(results)
}

async fn run_check(req: &Request, id: &str) -> Finding {
    match id {
        "jwt-secret" => checks::jwt_secret(req),
        "db-credentials-rotated" => checks::credentials_rotated(req).await,
        "db-ssl" => checks::db_ssl(req).await,
        "csp" => web::csp(req).await,
        "hsts" => web::hsts(req).await,
        "cors" => web::cors(req).await,
        "security-headers" => web::security_headers(req).await,
        "otel" => web::otel(req).await,
        "rate-limits" => web::rate_limits(req).await,
        "backup-retention" => checks::backup_retention(req).await,
        "migrations-applied" => checks::migrations_applied(req).await,
        "health" => web::health(req).await,
        "metrics" => web::metrics(req).await,
        "pg-stat-statements" => checks::pg_stat_statements(req).await,
        "required-env" => checks::required_env(req),
        other => Finding::fail(format!("unknown check {other}"), ""),
    }
}

/// JUnit XML: one test case per check; fail is a failure, skip and waived are skipped.
pub fn junit(profile: &str, results: &[CheckResult]) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut suite = TestSuite::new(format!("promote-check {profile}"));
    for r in results {
        let status = match r.status {
            Status::Pass | Status::Warn => TestCaseStatus::success(),
            Status::Skip | Status::Waived => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(r.evidence.clone());
                s
            }
            Status::Fail => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(r.evidence.clone());
                s.set_description(r.fix.clone());
                s
            }
        };
        let mut case = TestCase::new(r.id.clone(), status);
        case.set_classname(format!("opsbook.promote-check.{profile}"));
        case.set_time(Duration::from_secs_f64(r.seconds.max(0.0)));
        suite.add_test_case(case);
    }
    let mut report = Report::new(format!("opsbook promote-check {profile}"));
    report.add_test_suite(suite);
    report.to_string().unwrap_or_default()
}

/// Flags (or a runbook step's inputs), before resolution.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub app_url: Option<String>,
    pub web_url: Option<String>,
    pub database_url: Option<String>,
    pub env_file: Option<PathBuf>,
    pub compare_env_file: Option<PathBuf>,
    pub store: Option<String>,
    pub set: Option<String>,
    pub migrations: Option<PathBuf>,
    pub only: Vec<String>,
    pub skip: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Option<Duration>,
}

/// Flags > environment > the profile's `[promote]` table; missing inputs make their checks skip.
pub fn resolve(config: &Config, o: &Options) -> Result<Request, PromoteError> {
    let mut pc = config.profile.promote.clone().unwrap_or_default();
    if o.app_url.is_some() {
        pc.app_url = o.app_url.clone();
    }
    if o.web_url.is_some() {
        pc.web_url = o.web_url.clone();
    }
    for (flag, url) in [("--app-url", &pc.app_url), ("--web-url", &pc.web_url)] {
        if let Some(u) = url {
            url::Url::parse(u).map_err(|e| PromoteError::Input(format!("{flag} `{u}`: {e}")))?;
        }
    }
    let env_file = o.env_file.clone().or_else(|| pc.env_file.clone());
    let env = load_env(env_file.as_deref())?;
    let compare_env = match o.compare_env_file.clone().or_else(|| pc.compare_env_file.clone()) {
        None => None,
        Some(path) => Some((path.clone(), load_compare_env(&path)?)),
    };
    let database_url = config.database_url(o.database_url.as_deref(), None).ok();
    if let Some(url) = &database_url {
        crate::pg::DbUrl::parse_named(
            &source_of(config, o.database_url.is_some(), "DATABASE_URL", "database_url"),
            url,
        )
        .map_err(|e| PromoteError::Input(e.to_string()))?;
    }
    let store_url = config.store_url(o.store.as_deref(), None).ok();
    if let Some(url) = &store_url {
        check_store_url(&source_of(config, o.store.is_some(), "OPSBOOK_STORE", "store"), url)?;
    }
    let rpo_target = config_duration(config, "rpo_target", pc.rpo_target.as_deref(), "26h")?;
    let drill_interval = config_duration(config, "drill_interval", pc.drill_interval.as_deref(), "8d")?;
    let set = crate::backup::job::set_name(o.set.as_deref()).map_err(|e| PromoteError::Input(e.to_string()))?;
    let migrations = match (&o.migrations, &config.profile.migrate.migrations, &database_url) {
        (None, None, _) | (_, _, None) => None,
        (dir, _, Some(db)) => Some(
            crate::settings::migrate::resolve(
                config,
                Some(db),
                &crate::migrate::spec::MigrateSpec { migrations: dir.clone(), ..Default::default() },
            )
            .map_err(|e| PromoteError::Input(e.to_string()))?,
        ),
    };
    let prod = pc
        .environment
        .as_deref()
        .is_some_and(|e| e.eq_ignore_ascii_case("prod") || e.eq_ignore_ascii_case("production"))
        || config.profile_name == "prod"
        || config.profile_name == "production";
    Ok(Request {
        profile: config.profile_name.clone(),
        prod,
        config: pc,
        database_url,
        store_url,
        set,
        rpo_target,
        drill_interval,
        migrations,
        env,
        compare_env,
        ca_file: o.ca_file.clone(),
        only: o.only.clone(),
        skip: o.skip.clone(),
        timeout: o.timeout.unwrap_or(Duration::from_secs(15)),
        app_config: config.clone(),
    })
}

/// Where a URL came from, for errors: the flag (which clap also fills from `env`), the variable
/// (read by runbook steps), the profile key, or the sandbox.
fn source_of(config: &Config, given: bool, env: &str, key: &str) -> String {
    if given {
        return format!("--{} (or {env})", key.replace('_', "-"));
    }
    if std::env::var(env).is_ok_and(|v| !v.is_empty()) {
        return env.to_string();
    }
    let profile = &config.profile;
    let configured = if key == "store" { profile.store.is_some() } else { profile.database_url.is_some() };
    match (&config.path, configured) {
        (Some(path), true) => format!("{key} in {} [profiles.{}]", path.display(), config.profile_name),
        _ => format!("the sandbox's {env}"),
    }
}

/// A store URL that cannot be opened is a usage error before any check runs: it must parse, and
/// an `s3://` URL without a bucket needs R2_BUCKET (as `Store::open` fills it in).
fn check_store_url(what: &str, url: &str) -> Result<(), PromoteError> {
    let parsed = crate::store::StoreUrl::parse(url).map_err(|e| PromoteError::Input(format!("{what}: {e}")))?;
    let r2_bucket = std::env::var("R2_BUCKET").is_ok_and(|v| !v.trim().is_empty());
    if matches!(&parsed, crate::store::StoreUrl::S3 { bucket, .. } if bucket.is_empty()) && !r2_bucket {
        return Err(PromoteError::Input(format!(
            "{what} `{url}` names no bucket and R2_BUCKET is not set: give s3://BUCKET/prefix"
        )));
    }
    Ok(())
}

/// A duration from the profile's `[promote]` table, or `default` when it is not set. A value
/// that does not parse is an error naming the key, the file and the value: silently using the
/// default would pass a check against a target nobody chose.
fn config_duration(config: &Config, key: &str, raw: Option<&str>, default: &str) -> Result<Duration, PromoteError> {
    let Some(raw) = raw else {
        return Ok(humantime::parse_duration(default).expect("valid default duration"));
    };
    humantime::parse_duration(raw.trim()).map_err(|e| {
        let file = config.path.as_ref().map_or_else(|| "opsbook.toml".into(), |p| p.display().to_string());
        PromoteError::Input(format!(
            "{key} = \"{raw}\" in {file} [profiles.{}.promote] is not a duration ({e}); \
             write it like \"{default}\" (units: s, m, h, d, w)",
            config.profile_name
        ))
    })
}
