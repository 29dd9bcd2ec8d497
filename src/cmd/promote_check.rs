//! `opsbook promote-check`: the promotion checklist.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{Ctx, Result};
use crate::error::Context;
use crate::exit::ExitStatus;
use crate::promote::{self, CheckResult, ChecklistSpec, PromoteSpec, Status};
use crate::ui::table;

#[derive(Debug, Args)]
pub struct PromoteCheckArgs {
    /// The API's base URL (health, metrics, CORS, rate limits).
    #[arg(long, value_name = "URL")]
    pub app_url: Option<String>,
    /// The website's URL (CSP, HSTS, security headers) [default: --app-url].
    #[arg(long, value_name = "URL")]
    pub web_url: Option<String>,
    #[command(flatten)]
    pub db: crate::cli::DatabaseArgs,
    /// The environment's .env file (JWT_SECRET, required variables, OTLP endpoint).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Another environment's .env file (e.g. staging's): jwt-secret fails when its JWT_SECRET
    /// is the same (compared by fingerprint, never printed).
    #[arg(long, value_name = "FILE")]
    pub compare_env_file: Option<PathBuf>,
    #[command(flatten)]
    pub store: crate::cli::StoreArgs,
    /// Backup set for backup-retention [default: main].
    #[arg(long, value_name = "NAME")]
    pub set: Option<String>,
    /// For the migrations-applied check.
    #[command(flatten)]
    pub migrations: crate::cli::MigrationsArg,
    /// Only these checks (comma-separated ids).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Skip these checks (comma-separated ids).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Extra CA certificate (PEM) trusted for HTTPS checks.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Per-check timeout.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "15s")]
    pub timeout: Duration,
    /// Write JUnit XML here (one test case per check).
    #[arg(long, value_name = "FILE.xml")]
    pub junit: Option<PathBuf>,
}

impl PromoteCheckArgs {
    /// The flags as a promote-check spec.
    fn spec(&self) -> PromoteSpec {
        PromoteSpec {
            checklist: ChecklistSpec {
                app_url: self.app_url.clone(),
                web_url: self.web_url.clone(),
                env_file: self.env_file.clone(),
                compare_env_file: self.compare_env_file.clone(),
                ..Default::default()
            },
            database_url: self.db.database_url.clone(),
            store: self.store.store.clone(),
            set: self.set.clone(),
            migrations: self.migrations.migrations.clone(),
            only: self.only.clone(),
            skip: self.skip.clone(),
            ca_file: self.ca_file.clone(),
            timeout: Some(self.timeout),
            junit: self.junit.clone(),
        }
    }
}

pub async fn run(ctx: &Ctx<'_>, args: PromoteCheckArgs) -> Result<ExitStatus> {
    let spec = args.spec();
    let request = crate::settings::promote::resolve(&ctx.config, &spec)?;
    let mut results = promote::run(&request).await?;
    results.sort_by_key(|r| r.status);
    let failed = results.iter().filter(|r| r.status == Status::Fail).count();
    let status = if failed > 0 { ExitStatus::Failure } else { ExitStatus::Success };
    if let Some(path) = &spec.junit {
        crate::redact::write_file(path, &promote::junit(&request.profile, &crate::redact::redacted(&results)), None)
            .with_context(|| format!("write the JUnit report {}", path.display()))?;
    }
    if ctx.printer.is_json() {
        ctx.printer.report(status, &serde_json::json!({ "profile": request.profile, "checks": results }))?;
        return Ok(status);
    }
    ctx.printer.table(&checks_table(&results))?;
    let count = |s: Status| results.iter().filter(|r| r.status == s).count();
    ctx.printer.line(format!(
        "profile '{}': {} failed, {} warnings, {} waived, {} passed, {} skipped",
        request.profile,
        failed,
        count(Status::Warn),
        count(Status::Waived),
        count(Status::Pass),
        count(Status::Skip)
    ))?;
    Ok(status)
}

/// A row a check: status, id, evidence (with its waiver) and the fix.
pub(crate) fn checks_table(results: &[CheckResult]) -> table::Table {
    let mut t = table::new(&["status", "check", "evidence", "fix"]);
    for r in results {
        let evidence = match &r.waiver {
            Some(w) => format!("{} (waived until {}: {})", r.evidence, w.expires, w.reason),
            None => r.evidence.clone(),
        };
        t.add_row(vec![r.status.as_str().to_uppercase(), r.id.clone(), evidence, r.fix.clone()]);
    }
    t
}
