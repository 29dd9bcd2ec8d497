//! promote-check's inputs, declared once: `[profiles.NAME.promote]` in opsbook.toml (what the
//! checklist expects of the environment), the `with` of a runbook `promote-check` step (those
//! keys and this run's), and what `opsbook promote-check`'s flags convert into.
//! `settings::promote` layers a given spec over the profile's and resolves it into a `Request`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::Waiver;
use crate::spec::{opt_duration, opt_path, opt_text};

/// What the checklist expects of the environment: `[profiles.NAME.promote]`, and the same keys in
/// a step. `rpo_target` and `drill_interval` stay text until resolution, so a bad value is an
/// error of promote-check naming where it was written, not of every command loading the file.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct ChecklistSpec {
    /// "prod" (or "production") makes some checks stricter: verify-full TLS, rotation evidence
    /// required [default: the profile's name].
    #[serde(default, deserialize_with = "opt_text")]
    pub environment: Option<String>,
    /// The API's base URL (health, metrics, CORS, rate limits).
    #[serde(default, deserialize_with = "opt_text")]
    pub app_url: Option<String>,
    /// The website's URL (CSP, HSTS, security headers) [default: app_url].
    #[serde(default, deserialize_with = "opt_text")]
    pub web_url: Option<String>,
    /// The environment's .env file (JWT_SECRET, required variables, OTLP endpoint).
    #[serde(default, deserialize_with = "opt_path")]
    pub env_file: Option<PathBuf>,
    /// Another environment's .env file (e.g. staging's): its JWT_SECRET must differ.
    #[serde(default, deserialize_with = "opt_path")]
    pub compare_env_file: Option<PathBuf>,
    /// Health endpoint path [default: /health].
    #[serde(default, deserialize_with = "opt_text")]
    pub health_path: Option<String>,
    /// A substring the health endpoint's body must contain.
    #[serde(default, deserialize_with = "opt_text")]
    pub health_body: Option<String>,
    /// Metrics endpoint path [default: /metrics].
    #[serde(default, deserialize_with = "opt_text")]
    pub metrics_path: Option<String>,
    /// Origins the API may allow (CORS).
    #[serde(default)]
    pub cors_allowlist: Vec<String>,
    /// Variables that must be set, non-empty and not placeholders.
    #[serde(default)]
    pub required_env: Vec<String>,
    /// The newest backup must be younger than this, e.g. "26h" [default: 26h].
    #[serde(default, deserialize_with = "opt_text")]
    pub rpo_target: Option<String>,
    /// A restore drill must have passed within this, e.g. "8d" [default: 8d].
    #[serde(default, deserialize_with = "opt_text")]
    pub drill_interval: Option<String>,
    /// Rate-limit probe: a cheap path of the API, requested in a burst.
    #[serde(default, deserialize_with = "opt_text")]
    pub rate_limit_path: Option<String>,
    /// The burst within which a 429 must appear [default: 100].
    pub rate_limit_burst: Option<usize>,
    /// OTLP endpoint when OTEL_EXPORTER_OTLP_ENDPOINT is not set.
    #[serde(default, deserialize_with = "opt_text")]
    pub otel_endpoint: Option<String>,
    /// Failed checks accepted until a day: `{ check, reason, expires = "YYYY-MM-DD" }`.
    #[serde(default)]
    pub waivers: Vec<Waiver>,
}

impl ChecklistSpec {
    /// `self` layered over `base` (the profile's): what `self` sets wins; a list `self` gives
    /// replaces the profile's.
    pub fn over(self, base: &ChecklistSpec) -> ChecklistSpec {
        fn list<T: Clone>(given: Vec<T>, base: &[T]) -> Vec<T> {
            if given.is_empty() {
                base.to_vec()
            } else {
                given
            }
        }
        ChecklistSpec {
            environment: self.environment.or_else(|| base.environment.clone()),
            app_url: self.app_url.or_else(|| base.app_url.clone()),
            web_url: self.web_url.or_else(|| base.web_url.clone()),
            env_file: self.env_file.or_else(|| base.env_file.clone()),
            compare_env_file: self.compare_env_file.or_else(|| base.compare_env_file.clone()),
            health_path: self.health_path.or_else(|| base.health_path.clone()),
            health_body: self.health_body.or_else(|| base.health_body.clone()),
            metrics_path: self.metrics_path.or_else(|| base.metrics_path.clone()),
            cors_allowlist: list(self.cors_allowlist, &base.cors_allowlist),
            required_env: list(self.required_env, &base.required_env),
            rpo_target: self.rpo_target.or_else(|| base.rpo_target.clone()),
            drill_interval: self.drill_interval.or_else(|| base.drill_interval.clone()),
            rate_limit_path: self.rate_limit_path.or_else(|| base.rate_limit_path.clone()),
            rate_limit_burst: self.rate_limit_burst.or(base.rate_limit_burst),
            otel_endpoint: self.otel_endpoint.or_else(|| base.otel_endpoint.clone()),
            waivers: list(self.waivers, &base.waivers),
        }
    }
}

/// One promote-check run: the checklist's expectations and where to look, which checks, how long
/// each may take, and where the JUnit report goes.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct PromoteSpec {
    #[serde(flatten)]
    pub checklist: ChecklistSpec,
    /// Database URL [default: DATABASE_URL / profile / sandbox].
    #[serde(default, deserialize_with = "opt_text")]
    pub database_url: Option<String>,
    /// Backup store for backup-retention [default: OPSBOOK_STORE / profile / sandbox].
    #[serde(default, deserialize_with = "opt_text")]
    pub store: Option<String>,
    /// Backup set for backup-retention [default: main].
    #[serde(default, deserialize_with = "opt_text")]
    pub set: Option<String>,
    /// Migrations directory for migrations-applied [default: the profile's migrate.migrations].
    #[serde(default, deserialize_with = "opt_path")]
    pub migrations: Option<PathBuf>,
    /// Only these check ids.
    #[serde(default)]
    pub only: Vec<String>,
    /// Skip these check ids.
    #[serde(default)]
    pub skip: Vec<String>,
    /// Extra CA certificate (PEM) trusted for HTTPS checks.
    #[serde(default, deserialize_with = "opt_path")]
    pub ca_file: Option<PathBuf>,
    /// Per-check timeout, e.g. "15s" [default: 15s].
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Duration>,
    /// JUnit XML file (one test case per check).
    #[serde(default, deserialize_with = "opt_path")]
    pub junit: Option<PathBuf>,
}

impl PromoteSpec {
    /// The spec with its file paths taken relative to `base` (a runbook's directory).
    pub fn relative_to(mut self, base: impl Fn(&Path) -> PathBuf) -> PromoteSpec {
        for path in [
            &mut self.checklist.env_file,
            &mut self.checklist.compare_env_file,
            &mut self.migrations,
            &mut self.ca_file,
            &mut self.junit,
        ] {
            if let Some(p) = path.as_mut() {
                *p = base(p);
            }
        }
        self
    }
}
