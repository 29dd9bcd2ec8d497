//! `promote-check`: the environment promotion checklist as concurrent checks, each with status
//! (pass / warn / fail / skip), evidence and how to fix, waivers with an expiry, and reports as a
//! table, JSON or JUnit.

mod checks;
pub mod spec;
mod web;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Classify, ErrorClass};
pub use spec::{ChecklistSpec, PromoteSpec};

/// The newest backup must be younger than this unless `rpo_target` says otherwise (26h).
pub const DEFAULT_RPO_TARGET: Duration = Duration::from_secs(26 * 3600);
/// A drill must have passed within this unless `drill_interval` says otherwise (8d).
pub const DEFAULT_DRILL_INTERVAL: Duration = Duration::from_secs(8 * 86_400);
/// Each check's time unless the spec gives `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// A failed check accepted until a day.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Waiver {
    /// The check's id.
    pub check: String,
    /// Why the failure is accepted (shown with the result).
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
    ("pitr", "Point-in-time recovery archiving, within its RPO"),
    ("migrations-applied", "Migrations applied, no drift"),
    ("health", "Health endpoint answers"),
    ("metrics", "Metrics endpoint serves Prometheus text"),
    ("pg-stat-statements", "pg_stat_statements installed and preloaded"),
    ("required-env", "Required environment variables set"),
];

/// A promote-check run, resolved from its spec, the profile and the environment
/// (`settings::promote`).
#[derive(Debug)]
pub struct Request {
    pub profile: String,
    pub prod: bool,
    /// What the checks expect: the given spec's expectations over the profile's `[promote]`.
    pub checklist: ChecklistSpec,
    pub database_url: Option<String>,
    pub store_url: Option<String>,
    pub set: String,
    /// `rpo_target` and `drill_interval`, parsed (defaults 26h and 8d).
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
    /// What rotate-secrets rotates with, or why there is none (db-credentials-rotated's evidence).
    pub rotation: Result<crate::secrets::rotate::Context, crate::secrets::rotate::RotateError>,
    /// Whether the profile gives `set` a retention policy.
    pub retention_configured: bool,
    /// The profile's PITR configuration, when it has a `[pitr]` table (or why it cannot be used).
    pub pitr: Option<Result<crate::pitr::Pitr, crate::pitr::PitrError>>,
}

/// Why promote-check cannot run: every variant is a usage error (exit 2), found before any
/// check runs (or, for waivers, before any result is reported).
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// An env file that exists but cannot be read or parsed.
    #[error("{flag}: {source}")]
    EnvFile {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: crate::secrets::SecretsError,
    },
    /// An env file that is not there.
    #[error("{flag} {}: no such file{hint}", path.display())]
    NoEnvFile { flag: &'static str, path: PathBuf, hint: &'static str },
    /// --app-url or --web-url does not parse.
    #[error("{flag} `{url}`: {source}")]
    Url {
        flag: &'static str,
        url: String,
        #[source]
        source: url::ParseError,
    },
    /// The database URL does not parse; the cause names where it came from.
    #[error("{source}")]
    DatabaseUrl {
        origin: String,
        #[source]
        source: crate::pg::PgError,
    },
    /// The store URL does not parse.
    #[error("{origin}: {source}")]
    StoreUrl {
        origin: String,
        url: String,
        #[source]
        source: Box<crate::store::StoreError>,
    },
    /// An `s3://` store URL without a bucket, and no R2_BUCKET to fill it in.
    #[error("{origin} `{url}` names no bucket and R2_BUCKET is not set: give s3://BUCKET/prefix")]
    StoreBucket { origin: String, url: String },
    /// `rpo_target` or `drill_interval` is not a duration: silently using the default would pass
    /// a check against a target nobody chose.
    #[error(
        "{key} = \"{value}\" in {origin} is not a duration ({source}); write it like \"{example}\" \
         (units: s, m, h, d, w)"
    )]
    Duration {
        key: &'static str,
        value: String,
        origin: String,
        example: &'static str,
        #[source]
        source: Box<humantime::DurationError>,
    },
    /// The backup set's name is not usable.
    #[error("{source}")]
    Set {
        name: String,
        #[source]
        source: crate::backup::BackupError,
    },
    /// The migrations-applied check's settings cannot be resolved.
    #[error("{source}")]
    Migrations {
        dir: Option<PathBuf>,
        #[source]
        source: Box<crate::migrate::MigrateError>,
    },
    /// --only, --skip or a waiver names a check that does not exist.
    #[error("{flag}: unknown check `{id}`; checks are {}", CHECKS.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", "))]
    UnknownCheck { flag: &'static str, id: String },
    /// A waiver's expiry is not a date.
    #[error("waiver for `{check}`: expires `{expires}`: {source} (use YYYY-MM-DD)")]
    WaiverExpiry {
        check: String,
        expires: String,
        #[source]
        source: chrono::ParseError,
    },
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

fn check_ids(list: &[String], flag: &'static str) -> Result<(), PromoteError> {
    match list.iter().find(|id| !CHECKS.iter().any(|(c, _)| c == id)) {
        Some(id) => Err(PromoteError::UnknownCheck { flag, id: id.clone() }),
        None => Ok(()),
    }
}

fn waiver_for(req: &Request, id: &str, today: NaiveDate) -> Result<Option<Waiver>, PromoteError> {
    for w in req.checklist.waivers.iter().filter(|w| w.check == id) {
        let expires = NaiveDate::parse_from_str(&w.expires, "%Y-%m-%d").map_err(|source| {
            PromoteError::WaiverExpiry { check: id.to_string(), expires: w.expires.clone(), source }
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
    for w in &req.checklist.waivers {
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
        "pitr" => checks::pitr(req).await,
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
