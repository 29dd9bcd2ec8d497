//! The `wait` runbook action: pause for a fixed time, or poll until a URL answers 2xx
//! (`until_http`) or a query returns true (`until_sql`). Ctrl-C ends the wait at once.

use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::http::{describe_error, display_url, parse_duration, parse_url};
use super::{ActionCtx, ActionError, Outputs};

/// Pause between polls when `interval` is not given.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
/// How long to poll when `timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The longest a single poll (one request or query) may take.
const POLL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Pause this long (e.g. 30s, 5m). Give exactly one of `duration`, `until_http`, `until_sql`.
    #[serde(default)]
    pub duration: Option<String>,
    /// Poll this URL with GET until it answers 2xx.
    #[serde(default)]
    pub until_http: Option<String>,
    /// Poll this query until the first column of its first row is true (or a non-zero number).
    #[serde(default)]
    pub until_sql: Option<String>,
    /// PostgreSQL URL for `until_sql`. Default: the database URL of the run.
    #[serde(default)]
    pub database_url: Option<String>,
    /// Pause between polls (default 2s).
    #[serde(default)]
    pub interval: Option<String>,
    /// Give up polling after this long (default 5m); the step then fails.
    #[serde(default)]
    pub timeout: Option<String>,
}

enum Mode {
    Sleep(Duration),
    Http(reqwest::Url),
    Sql(String),
}

fn interrupted_error(what: String, started: Instant) -> ActionError {
    ActionError::WaitInterrupted { what, elapsed: elapsed(started) }
}

fn elapsed(started: Instant) -> String {
    let d = started.elapsed();
    humantime::format_duration(if d >= Duration::from_secs(1) {
        Duration::from_secs(d.as_secs())
    } else {
        Duration::from_millis(d.as_millis() as u64)
    })
    .to_string()
}

/// Sleeps, returning false when interrupted.
async fn pause(d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = crate::signal::interrupted() => false,
    }
}

pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let mode = match (&input.duration, &input.until_http, &input.until_sql) {
        (Some(d), None, None) => Mode::Sleep(parse_duration("duration", d)?),
        (None, Some(u), None) => Mode::Http(parse_url("until_http", u)?),
        (None, None, Some(q)) if q.trim().is_empty() => {
            return Err(ActionError::Empty { input: "until_sql" });
        }
        (None, None, Some(q)) => Mode::Sql(q.clone()),
        _ => {
            return Err(ActionError::Neither {
                choices: "exactly one of `duration`, `until_http` (a URL) or `until_sql` (a query)",
            })
        }
    };
    if matches!(mode, Mode::Sleep(_)) {
        for (key, given) in
            [("interval", &input.interval), ("timeout", &input.timeout), ("database_url", &input.database_url)]
        {
            if given.is_some() {
                return Err(ActionError::NotApplicable { input: key, modes: "until_http / until_sql" });
            }
        }
    }
    if matches!(mode, Mode::Http(_)) && input.database_url.is_some() {
        return Err(ActionError::NotApplicable { input: "database_url", modes: "until_sql" });
    }
    let interval =
        input.interval.as_deref().map(|s| parse_duration("interval", s)).transpose()?.unwrap_or(DEFAULT_INTERVAL);
    let timeout =
        input.timeout.as_deref().map(|s| parse_duration("timeout", s)).transpose()?.unwrap_or(DEFAULT_TIMEOUT);

    if ctx.dry_run {
        let would = match &mode {
            Mode::Sleep(d) => format!("wait {}", humantime::format_duration(*d)),
            Mode::Http(url) => format!(
                "poll GET {} every {} until it answers 2xx (up to {})",
                display_url(url),
                humantime::format_duration(interval),
                humantime::format_duration(timeout)
            ),
            Mode::Sql(q) => format!(
                "poll `{}` every {} until it returns true (up to {})",
                super::sql::summary(q),
                humantime::format_duration(interval),
                humantime::format_duration(timeout)
            ),
        };
        let mut out = Outputs::new();
        out.insert("dry_run".into(), Value::Bool(true));
        out.insert("would".into(), Value::String(would));
        return Ok(out);
    }

    let started = Instant::now();
    let mut out = Outputs::new();
    match mode {
        Mode::Sleep(d) => {
            if !pause(d).await {
                return Err(interrupted_error(format!("waiting {}", humantime::format_duration(d)), started));
            }
        }
        Mode::Http(url) => {
            let attempts =
                poll(ctx, &format!("GET {}", display_url(&url)), "answer 2xx", interval, timeout, started, || {
                    http_ready(&url)
                })
                .await?;
            out.insert("attempts".into(), Value::from(attempts));
        }
        Mode::Sql(query) => {
            let db = super::sql::database_url(input.database_url.as_deref(), ctx)?;
            let what = format!("`{}` on {}", super::sql::summary(&query), db.redacted());
            let attempts =
                poll(ctx, &what, "return true", interval, timeout, started, || sql_ready(&db, &query)).await?;
            out.insert("attempts".into(), Value::from(attempts));
        }
    }
    out.insert("waited_ms".into(), Value::from(started.elapsed().as_millis() as u64));
    Ok(out)
}

/// One poll's outcome.
enum Poll {
    Ready,
    /// Not yet, with what was seen (for the final message).
    NotYet(String),
    /// Retrying cannot help (e.g. a syntax error).
    Fatal(ActionError),
}

/// Calls `check` until it is ready, the timeout passes, or Ctrl-C. Returns the number of polls.
async fn poll<F, Fut>(
    ctx: &ActionCtx<'_>,
    what: &str,
    goal: &'static str,
    interval: Duration,
    timeout: Duration,
    started: Instant,
    check: F,
) -> Result<u64, ActionError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Poll>,
{
    ctx.reporter.note(&format!("waiting up to {} for {what} to {goal}", humantime::format_duration(timeout)));
    let deadline = started + timeout;
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let outcome = tokio::select! {
            p = tokio::time::timeout(remaining.clamp(Duration::from_millis(100), POLL_TIMEOUT), check()) => {
                p.unwrap_or_else(|_| Poll::NotYet(format!("no answer within {}", humantime::format_duration(remaining.min(POLL_TIMEOUT)))))
            }
            _ = crate::signal::interrupted() => return Err(interrupted_error(format!("waiting for {what}"), started)),
        };
        let last = match outcome {
            Poll::Ready => return Ok(attempts),
            Poll::Fatal(e) => return Err(e),
            Poll::NotYet(last) => last,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(ActionError::GaveUp { what: what.to_string(), goal, timeout, attempts, last });
        }
        if !pause(interval.min(deadline - now)).await {
            return Err(interrupted_error(format!("waiting for {what}"), started));
        }
    }
}

async fn http_ready(url: &reqwest::Url) -> Poll {
    let client = match super::http::client(POLL_TIMEOUT) {
        Ok(c) => c,
        Err(e) => return Poll::Fatal(e),
    };
    match client.get(url.clone()).send().await {
        Ok(resp) if resp.status().is_success() => Poll::Ready,
        Ok(resp) => {
            let status = resp.status();
            let mut resp = resp;
            let body = super::http::read_body(&mut resp, 4096).await.unwrap_or_default();
            Poll::NotYet(format!("status {status}{}", super::http::body_note(&String::from_utf8_lossy(&body))))
        }
        Err(e) => Poll::NotYet(describe_error(&e, POLL_TIMEOUT)),
    }
}

async fn sql_ready(db: &crate::pg::DbUrl, query: &str) -> Poll {
    // A fresh connection per poll: the server may be restarting.
    let mut conn = match crate::pg::conn::connect_timeout(db, POLL_TIMEOUT).await {
        Ok(c) => c,
        Err(e) => return Poll::NotYet(e.to_string()),
    };
    match crate::pg::query::execute(&mut conn, query).await {
        Ok(result) => match result.value.as_deref().and_then(crate::pg::query::truth) {
            Some(true) => Poll::Ready,
            _ => Poll::NotYet(match result.value {
                Some(v) => format!("returned `{}`", super::http::redacted_excerpt(&v)),
                None if result.rows == 0 => "returned no rows".into(),
                None => "returned NULL".into(),
            }),
        },
        // A syntax error will not fix itself; anything else (a missing table, a lock) may.
        Err(sqlx::Error::Database(db_err)) if db_err.code().as_deref() == Some("42601") => {
            Poll::Fatal(ActionError::PollQuery {
                query: super::sql::summary(query),
                database: db.redacted(),
                error: sqlx::Error::Database(db_err),
            })
        }
        Err(e) => Poll::NotYet(crate::pg::query::describe_sql_error(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Classify, ErrorClass};

    #[test]
    fn input_needs_exactly_one_mode() {
        let i: Input = serde_json::from_value(serde_json::json!({"duration": "1s", "until_http": "http://x"})).unwrap();
        assert_eq!(mode_error(i).map(|e| e.class()), Some(ErrorClass::Usage));
        let i: Input = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(mode_error(i).map(|e| e.class()), Some(ErrorClass::Usage));
        let i: Input = serde_json::from_value(serde_json::json!({"duration": "1s", "timeout": "5s"})).unwrap();
        assert_eq!(mode_error(i).map(|e| e.class()), Some(ErrorClass::Usage));
        let i: Input = serde_json::from_value(serde_json::json!({"duration": "soon"})).unwrap();
        assert_eq!(mode_error(i).map(|e| e.class()), Some(ErrorClass::Usage));
    }

    fn mode_error(i: Input) -> Option<ActionError> {
        let config = crate::config::Config::default();
        struct Never;
        impl super::super::Interaction for Never {
            fn can_prompt(&self) -> bool {
                false
            }
            fn confirm(&self, _: &str) -> bool {
                false
            }
            fn type_name(&self, _: &str, _: &str) -> bool {
                false
            }
            fn ask(&self, _: &str, _: bool) -> Option<String> {
                None
            }
        }
        let ctx = ActionCtx {
            config: &config,
            dry_run: true,
            assume_yes: false,
            acks: &[],
            reporter: &crate::report::Silent,
            interaction: &Never,
            base_dir: std::path::PathBuf::from("."),
            step_id: "w",
            run_id: "r",
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(i, &ctx)).err()
    }
}
