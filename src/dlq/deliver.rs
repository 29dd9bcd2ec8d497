//! Delivery: the HTTP client (connect and request timeouts), retries with exponential backoff
//! and full jitter (Retry-After honoured on 429/503), 410 Gone, a per-endpoint circuit breaker,
//! the rate limiter, Standard Webhooks signing and the Idempotency-Key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use super::rate::Limiter;
use super::sign::Signer;
use super::DeadLetter;

/// Headers we set ourselves; stored copies of them are not replayed.
const OWN_HEADERS: &[&str] =
    &["webhook-id", "webhook-timestamp", "webhook-signature", "idempotency-key", "content-length", "host"];

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// Retries after the first attempt, for retryable outcomes only.
    pub retries: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// The longest Retry-After we wait for; a longer one ends the delivery as failed.
    pub max_retry_after: Duration,
    /// Consecutive failed deliveries to one endpoint that open its breaker (0: never).
    pub breaker_threshold: u32,
    pub rate: Option<f64>,
    pub endpoint_rate: Option<f64>,
    pub signer: Option<Signer>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            retries: 3,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            breaker_threshold: 5,
            rate: None,
            endpoint_rate: None,
            signer: None,
        }
    }
}

/// How one delivery ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Delivered {
        status: u16,
        tries: u32,
    },
    /// `status`: the last HTTP status when the last attempt got an answer. `ambiguous`: some
    /// attempt timed out or lost its connection, so the target may have processed it.
    Failed {
        error: String,
        tries: u32,
        gone: bool,
        status: Option<u16>,
        ambiguous: bool,
    },
    /// Ctrl-C while waiting on the rate limiter or before a retry: the claim is rolled back,
    /// nothing more is sent and no failure is recorded.
    Interrupted {
        tries: u32,
    },
}

impl Outcome {
    fn failed(error: String, tries: u32) -> Outcome {
        Outcome::Failed { error, tries, gone: false, status: None, ambiguous: false }
    }
}

/// Why a dead letter was not attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Another replay holds the row, or it was delivered meanwhile.
    Claimed,
    /// The endpoint answered 410 Gone earlier in this run.
    EndpointGone,
    /// The endpoint's breaker opened after consecutive failures.
    BreakerOpen,
    /// Ctrl-C: claiming stopped.
    Interrupted,
    /// The http source's API answered 404 to the replay call.
    NotFound,
    /// The DLQ database became unreachable; the row was not claimed.
    SourceUnavailable,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Claimed => "claimed elsewhere or already delivered",
            SkipReason::EndpointGone => "endpoint gone (410)",
            SkipReason::BreakerOpen => "endpoint breaker open",
            SkipReason::Interrupted => "interrupted",
            SkipReason::NotFound => "already replayed or gone (404)",
            SkipReason::SourceUnavailable => "DLQ database unavailable",
        }
    }
}

#[derive(Debug, Default)]
struct EndpointState {
    consecutive_failures: u32,
}

/// Sends deliveries; shared by all workers of a replay.
#[derive(Debug)]
pub struct Deliverer {
    client: reqwest::Client,
    cfg: DeliveryConfig,
    limiter: Limiter,
    endpoints: Mutex<HashMap<String, EndpointState>>,
    /// Target URLs that answered 410 Gone in this run (other paths of the host are unaffected).
    gone: Mutex<std::collections::HashSet<String>>,
}

/// What one HTTP attempt returned, classified.
enum Attempt {
    Ok(u16),
    /// Retryable, with the server's Retry-After when it sent one.
    Retry(String, Option<Duration>),
    /// A definite answer that is not retried: the error and whether it was 410.
    Permanent(String, bool),
}

impl Deliverer {
    pub fn new(cfg: DeliveryConfig) -> Result<Deliverer, super::DlqError> {
        let client = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.timeout)
            .pool_max_idle_per_host(64)
            .user_agent(concat!("opsbook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(super::DlqError::HttpClient)?;
        let limiter = Limiter::new(cfg.rate, cfg.endpoint_rate);
        Ok(Deliverer { client, cfg, limiter, endpoints: Mutex::new(HashMap::new()), gone: Mutex::default() })
    }

    /// Whether deliveries to `url` (on `endpoint`, its origin) stopped in this run: the URL
    /// answered 410, or the endpoint's breaker is open.
    pub fn blocked(&self, endpoint: &str, url: &str) -> Option<SkipReason> {
        if self.gone.lock().unwrap_or_else(|e| e.into_inner()).contains(url) {
            return Some(SkipReason::EndpointGone);
        }
        let map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let state = map.get(endpoint)?;
        if self.cfg.breaker_threshold > 0 && state.consecutive_failures >= self.cfg.breaker_threshold {
            Some(SkipReason::BreakerOpen)
        } else {
            None
        }
    }

    /// Delivers a dead letter straight to its target.
    pub async fn deliver(&self, d: &DeadLetter) -> Outcome {
        let endpoint = d.endpoint();
        let method = match reqwest::Method::from_bytes(d.method.to_ascii_uppercase().as_bytes()) {
            Ok(m) => m,
            Err(_) => return Outcome::failed(format!("invalid method `{}`", d.method), 0),
        };
        let body = d.payload.clone().unwrap_or_default();
        let webhook_id = d.webhook_id();
        let idempotency_key = idempotency_key(d);
        self.send(&endpoint, &d.target_url, || {
            let mut rb = self.client.request(method.clone(), &d.target_url);
            for (k, v) in &d.headers {
                if OWN_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                    continue;
                }
                let value = v.as_str().map(String::from).unwrap_or_else(|| v.to_string());
                rb = rb.header(k.as_str(), value);
            }
            if !d.headers.keys().any(|k| k.eq_ignore_ascii_case("content-type")) {
                rb = rb.header("content-type", "application/json");
            }
            rb = rb.header("idempotency-key", &idempotency_key).header("webhook-id", &webhook_id);
            if let Some(signer) = &self.cfg.signer {
                let ts = Utc::now().timestamp();
                rb = rb
                    .header("webhook-timestamp", ts.to_string())
                    .header("webhook-signature", signer.signature(&webhook_id, ts, body.as_bytes()));
            }
            rb.body(body.clone())
        })
        .await
    }

    /// Sends to `url` (on `endpoint`, its origin) with rate limiting and retries; `make` builds
    /// a fresh request per attempt.
    pub async fn send(&self, endpoint: &str, url: &str, make: impl Fn() -> reqwest::RequestBuilder) -> Outcome {
        let mut tries = 0;
        let mut ambiguous = false;
        loop {
            tokio::select! {
                biased;
                _ = self.limiter.acquire(endpoint) => {}
                _ = crate::signal::interrupted() => return Outcome::Interrupted { tries },
            }
            tries += 1;
            let (outcome, status) = match make().send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    (classify(resp).await, Some(status))
                }
                // Connect errors and timeouts are retried: the request may or may not have
                // arrived, which the Idempotency-Key covers.
                Err(e) => {
                    ambiguous = true;
                    (Attempt::Retry(describe_reqwest(&e), None), None)
                }
            };
            let failed = move |error: String, gone: bool| Outcome::Failed { error, tries, gone, status, ambiguous };
            match outcome {
                Attempt::Ok(status) => {
                    self.settle(endpoint, url, true, false);
                    return Outcome::Delivered { status, tries };
                }
                Attempt::Permanent(error, gone) => {
                    self.settle(endpoint, url, false, gone);
                    return failed(error, gone);
                }
                Attempt::Retry(error, retry_after) => {
                    if tries > self.cfg.retries {
                        self.settle(endpoint, url, false, false);
                        return failed(error, false);
                    }
                    if crate::signal::is_interrupted() {
                        return Outcome::Interrupted { tries };
                    }
                    let wait = match retry_after {
                        Some(ra) if ra > self.cfg.max_retry_after => {
                            self.settle(endpoint, url, false, false);
                            let error = format!("{error}; Retry-After {}s is beyond the limit", ra.as_secs());
                            return failed(error, false);
                        }
                        Some(ra) => ra,
                        None => backoff(tries - 1, self.cfg.backoff_base, self.cfg.backoff_cap, rand::random::<f64>()),
                    };
                    tracing::debug!(endpoint, tries, wait_ms = wait.as_millis() as u64, %error, "retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = crate::signal::interrupted() => return Outcome::Interrupted { tries },
                    }
                }
            }
        }
    }

    fn settle(&self, endpoint: &str, url: &str, ok: bool, gone: bool) {
        if gone {
            self.gone.lock().unwrap_or_else(|e| e.into_inner()).insert(url.to_string());
        }
        let mut map = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let state = map.entry(endpoint.to_string()).or_default();
        if ok {
            state.consecutive_failures = 0;
        } else {
            state.consecutive_failures += 1;
        }
    }
}

/// The Idempotency-Key of a delivery: the key kept on the row after an ambiguous failure (a
/// timeout or lost connection: the target may have processed it, so the same key must go
/// again), else `<webhook-id>-<attempts>`. Stable while the row is claimed and across a crash
/// (attempts counts only recorded failures); after a definite non-2xx the kept key is dropped and
/// attempts grows, so a later manual retry is not blocked by the old key.
pub fn idempotency_key(d: &DeadLetter) -> String {
    d.header("idempotency-key").unwrap_or_else(|| format!("{}-{}", d.webhook_id(), d.attempts))
}

async fn classify(resp: reqwest::Response) -> Attempt {
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Attempt::Ok(status);
    }
    let retry_after =
        resp.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    let body = resp.text().await.unwrap_or_default();
    let error = format!("HTTP {status}: {}", snippet(&body));
    match status {
        410 => Attempt::Permanent(error, true),
        429 | 503 => Attempt::Retry(error, retry_after),
        408 | 425 | 500 | 502 | 504 => Attempt::Retry(error, None),
        _ => Attempt::Permanent(error, false),
    }
}

/// Full-jitter exponential backoff: a uniform wait in [0, min(cap, base·2^n)] (`unit` in [0,1)).
pub fn backoff(n: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let ceiling = base.saturating_mul(2u32.saturating_pow(n.min(20))).min(cap);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// Retry-After as delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some((when.with_timezone(&Utc) - Utc::now()).to_std().unwrap_or_default())
}

/// A short one-line excerpt of a response body for errors.
pub fn snippet(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut s: String = one_line.chars().take(200).collect();
    if one_line.chars().count() > 200 {
        s.push('…');
    }
    crate::redact::redact(&s).into_owned()
}

/// A reqwest error without the URL's query (may carry tokens), with its kind.
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {cause}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_full_jitter() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        assert_eq!(backoff(0, base, cap, 0.0), Duration::ZERO);
        assert_eq!(backoff(0, base, cap, 1.0), base);
        assert_eq!(backoff(3, base, cap, 1.0), Duration::from_millis(800));
        assert_eq!(backoff(10, base, cap, 1.0), cap);
        assert_eq!(backoff(40, base, cap, 0.5), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
