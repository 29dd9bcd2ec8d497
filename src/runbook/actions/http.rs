//! The `http` runbook action: one HTTP request with expectations on the status, body and headers.
//! Also the HTTP helpers the `wait` and `notify` actions share (client, URL and duration parsing,
//! error wording, body excerpts).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{ActionCtx, ActionError, Outputs};

/// The response body kept as the `body` output.
pub const BODY_OUTPUT_LIMIT: usize = 64 * 1024;
/// How much of the body is read to check `expect_body_contains`; the rest is not downloaded.
pub const BODY_SCAN_LIMIT: usize = 1024 * 1024;
/// The longest body excerpt an error message quotes.
pub const EXCERPT_CHARS: usize = 200;
/// Request timeout when `timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The URL to request (http:// or https://).
    pub url: String,
    /// HTTP method: GET (default), POST, PUT, PATCH, DELETE, HEAD, ...
    #[serde(default)]
    pub method: Option<String>,
    /// Request headers, name → value.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body as text. Give `body` or `json`, not both.
    #[serde(default)]
    pub body: Option<String>,
    /// Request body as JSON (any value); sets `content-type: application/json` unless `headers`
    /// names a content type. Give `body` or `json`, not both.
    #[serde(default)]
    pub json: Option<Value>,
    /// Give up after this long, including reading the body (e.g. 500ms, 30s). Default 10s.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Acceptable status: a code (200), a class ("2xx"), or a list of them ([200, 204, "3xx"]).
    /// Default: any 2xx.
    #[serde(default)]
    pub expect_status: Option<StatusExpect>,
    /// Text the response body must contain (the first MiB of the body is searched).
    #[serde(default)]
    pub expect_body_contains: Option<String>,
    /// Response headers that must be present, name (any case) → text the value must contain
    /// ("" only checks presence).
    #[serde(default)]
    pub expect_header: BTreeMap<String, String>,
    /// Name of an environment variable holding a token sent as `Authorization: Bearer <token>`.
    /// The token is never shown in output, logs or errors.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
}

/// Acceptable response statuses.
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(untagged)]
pub enum StatusExpect {
    One(StatusPattern),
    Many(Vec<StatusPattern>),
}

/// One acceptable status: an exact code, or a class such as "2xx".
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(untagged)]
pub enum StatusPattern {
    /// An exact status code, e.g. 204.
    Code(u16),
    /// A class: "1xx" … "5xx".
    Class(String),
}

/// Why an `expect_status` value is not a list of statuses.
#[derive(Debug, thiserror::Error)]
pub enum StatusExpectError {
    #[error("invalid status `{got}`: use a code like 200, a class like \"2xx\", or a list of them")]
    Status { got: Value },
    #[error("expect_status is an empty list")]
    EmptyList,
}

impl StatusPattern {
    fn from_value(v: &Value) -> Result<StatusPattern, StatusExpectError> {
        let bad = || StatusExpectError::Status { got: v.clone() };
        match v {
            Value::Number(n) => {
                n.as_u64().filter(|c| (100..=599).contains(c)).map(|c| StatusPattern::Code(c as u16)).ok_or_else(bad)
            }
            Value::String(s) => {
                let s = s.trim().to_ascii_lowercase();
                if let Ok(code) = s.parse::<u16>() {
                    return if (100..=599).contains(&code) { Ok(StatusPattern::Code(code)) } else { Err(bad()) };
                }
                match s.as_bytes() {
                    [d @ b'1'..=b'5', b'x', b'x'] => Ok(StatusPattern::Class(format!("{}xx", *d as char))),
                    _ => Err(bad()),
                }
            }
            _ => Err(bad()),
        }
    }

    fn matches(&self, status: u16) -> bool {
        match self {
            StatusPattern::Code(c) => *c == status,
            StatusPattern::Class(c) => c.as_bytes().first().is_some_and(|d| u16::from(d - b'0') == status / 100),
        }
    }
}

impl std::fmt::Display for StatusPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusPattern::Code(c) => write!(f, "{c}"),
            StatusPattern::Class(c) => f.write_str(c),
        }
    }
}

impl StatusExpect {
    fn patterns(&self) -> &[StatusPattern] {
        match self {
            StatusExpect::One(p) => std::slice::from_ref(p),
            StatusExpect::Many(ps) => ps,
        }
    }

    pub fn matches(&self, status: u16) -> bool {
        self.patterns().iter().any(|p| p.matches(status))
    }

    pub fn describe(&self) -> String {
        self.patterns().iter().map(ToString::to_string).collect::<Vec<_>>().join(" or ")
    }
}

impl<'de> Deserialize<'de> for StatusExpect {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let parsed = match &v {
            Value::Array(items) if items.is_empty() => Err(StatusExpectError::EmptyList),
            Value::Array(items) => {
                items.iter().map(StatusPattern::from_value).collect::<Result<Vec<_>, _>>().map(StatusExpect::Many)
            }
            other => StatusPattern::from_value(other).map(StatusExpect::One),
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let url = parse_url("url", &input.url)?;
    let method = match input.method.as_deref().map(str::trim) {
        None | Some("") => reqwest::Method::GET,
        Some(m) => reqwest::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| ActionError::Method { method: m.to_string() })?,
    };
    let timeout = match &input.timeout {
        Some(t) => parse_duration("timeout", t)?,
        None => DEFAULT_TIMEOUT,
    };
    if input.body.is_some() && input.json.is_some() {
        return Err(ActionError::Both { first: "body", second: "json" });
    }
    let mut headers = request_headers(&input.headers)?;
    if let Some(var) = &input.bearer_token_env {
        headers.insert(reqwest::header::AUTHORIZATION, bearer(var)?);
    }
    let mut expect_header = Vec::new();
    for (name, want) in &input.expect_header {
        let n = reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| ActionError::ExpectHeaderName { name: name.clone() })?;
        expect_header.push((n, want.clone()));
    }
    let shown = format!("{method} {}", display_url(&url));

    if ctx.dry_run {
        let mut out = Outputs::new();
        out.insert("dry_run".into(), Value::Bool(true));
        out.insert("would".into(), Value::String(shown));
        return Ok(out);
    }

    let client = client(timeout)?;
    let mut request = client.request(method.clone(), url.clone()).headers(headers.clone());
    if let Some(body) = input.body {
        request = request.body(body);
    } else if let Some(json) = &input.json {
        if !headers.contains_key(reqwest::header::CONTENT_TYPE) {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
        }
        request = request.body(json.to_string());
    }

    let started = Instant::now();
    let mut response = request.send().await.map_err(|e| send_error(&shown, e, timeout))?;
    let status = response.status().as_u16();
    let response_headers = header_map(response.headers());
    let body = read_body(&mut response, BODY_SCAN_LIMIT).await.map_err(|e| send_error(&shown, e, timeout))?;
    let duration_ms = started.elapsed().as_millis() as u64;
    let text = String::from_utf8_lossy(&body);

    let expect_status = input.expect_status.unwrap_or(StatusExpect::One(StatusPattern::Class("2xx".into())));
    let expected = Expectations {
        status: &expect_status,
        body_contains: input.expect_body_contains.as_deref(),
        headers: &expect_header,
    };
    expected.check(&shown, status, &text, response.headers())?;

    let mut out = Outputs::new();
    out.insert("status".into(), Value::from(status));
    out.insert("body".into(), Value::String(utf8_prefix(&body, BODY_OUTPUT_LIMIT)));
    out.insert("body_truncated".into(), Value::Bool(body.len() > BODY_OUTPUT_LIMIT));
    out.insert(
        "headers".into(),
        Value::Object(response_headers.into_iter().map(|(k, v)| (k, Value::String(v))).collect()),
    );
    out.insert("duration_ms".into(), Value::from(duration_ms));
    Ok(out)
}

/// What a response must be like: `expect_status`, `expect_body_contains`, `expect_header`.
struct Expectations<'a> {
    status: &'a StatusExpect,
    body_contains: Option<&'a str>,
    headers: &'a [(reqwest::header::HeaderName, String)],
}

impl Expectations<'_> {
    /// Checks a response to `shown`; the error says what was expected and what came back.
    fn check(
        &self,
        shown: &str,
        status: u16,
        text: &str,
        headers: &reqwest::header::HeaderMap,
    ) -> Result<(), ActionError> {
        if !self.status.matches(status) {
            return Err(ActionError::Status {
                request: shown.to_string(),
                expected: self.status.describe(),
                status,
                body_note: body_note(text),
            });
        }
        if let Some(needle) = self.body_contains {
            if !text.contains(needle) {
                return Err(ActionError::BodyLacks {
                    request: shown.to_string(),
                    needle: excerpt(needle, EXCERPT_CHARS),
                    got: quoted_excerpt(text),
                });
            }
        }
        for (name, want) in self.headers {
            let values: Vec<String> =
                headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
            if values.is_empty() {
                return Err(ActionError::HeaderMissing {
                    request: shown.to_string(),
                    name: name.to_string(),
                    want: excerpt(want, EXCERPT_CHARS),
                });
            }
            let joined = values.join(", ");
            if !joined.contains(want.as_str()) {
                return Err(ActionError::HeaderLacks {
                    request: shown.to_string(),
                    name: name.to_string(),
                    want: excerpt(want, EXCERPT_CHARS),
                    got: redacted_excerpt(&joined),
                });
            }
        }
        Ok(())
    }
}

/// The `Authorization: Bearer` header with the token in environment variable `var`; the token
/// becomes a secret.
fn bearer(var: &str) -> Result<reqwest::header::HeaderValue, ActionError> {
    let token = std::env::var(var)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ActionError::TokenUnset { var: var.to_string() })?;
    let token = token.trim();
    crate::redact::register(token);
    let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| ActionError::TokenNotHeader { var: var.to_string() })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Request headers from a step's `headers` table, naming a bad one.
pub(crate) fn request_headers(given: &BTreeMap<String, String>) -> Result<reqwest::header::HeaderMap, ActionError> {
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in given {
        let n = reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| ActionError::HeaderName { name: name.clone() })?;
        let v = reqwest::header::HeaderValue::from_str(value)
            .map_err(|_| ActionError::HeaderValue { name: name.clone() })?;
        headers.append(n, v);
    }
    Ok(headers)
}

/// An HTTP client with an overall request timeout and the opsbook user agent.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, ActionError> {
    reqwest::Client::builder()
        .user_agent(concat!("opsbook/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .build()
        .map_err(ActionError::Client)
}

/// Parses an http(s) URL, registering any password it carries as a secret.
pub(crate) fn parse_url(field: &str, raw: &str) -> Result<reqwest::Url, ActionError> {
    let raw = raw.trim();
    crate::redact::register_urls_in(raw);
    let url = reqwest::Url::parse(raw).map_err(|error| ActionError::Url {
        input: field.to_string(),
        url: crate::redact::redact(raw).into_owned(),
        error,
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ActionError::UrlScheme { input: field.to_string(), url: display_url(&url) });
    }
    Ok(url)
}

/// The URL with any password masked.
pub(crate) fn display_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    crate::redact::redact(shown.as_str()).into_owned()
}

/// Parses a humantime duration such as `500ms`, `30s`, `5m`.
pub(crate) fn parse_duration(field: &str, raw: &str) -> Result<Duration, ActionError> {
    humantime::parse_duration(raw.trim()).map_err(|error| ActionError::Duration {
        input: field.to_string(),
        text: raw.to_string(),
        error,
    })
}

/// A request that could not reach the server or did not hear back in time (exit 3).
pub(crate) fn send_error(shown: &str, error: reqwest::Error, timeout: Duration) -> ActionError {
    ActionError::Request { request: shown.to_string(), error, timeout }
}

/// A request error without the URL (callers name it): "timed out after 10s", or the causes,
/// e.g. "client error (Connect): tcp connect error: Connection refused (os error 111)".
pub(crate) fn describe_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {}", humantime::format_duration(timeout));
    }
    let mut parts: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    let what = if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "reading the response failed"
    } else {
        "request failed"
    };
    if parts.is_empty() {
        what.to_string()
    } else {
        crate::redact::redact(&format!("{what}: {}", parts.join(": "))).into_owned()
    }
}

/// Reads up to `limit` bytes of the body; the rest is left unread.
pub(crate) async fn read_body(response: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await? {
            Some(chunk) => body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())]),
            None => break,
        }
    }
    Ok(body)
}

/// Response headers by lowercase name; repeated headers are joined with ", ".
fn header_map(headers: &reqwest::header::HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_ascii_lowercase())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

/// The longest valid UTF-8 prefix of at most `max` bytes (invalid bytes inside become U+FFFD).
pub(crate) fn utf8_prefix(bytes: &[u8], max: usize) -> String {
    let mut end = bytes.len().min(max);
    if end < bytes.len() {
        // Do not cut a multi-byte character in half: back up to its first byte.
        while end > 0 && end > bytes.len().min(max).saturating_sub(4) && (bytes[end] & 0xC0) == 0x80 {
            end -= 1;
        }
    }
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// At most `max` characters of `text`, whitespace collapsed, with "…" when cut.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= max {
        collapsed
    } else {
        let mut cut: String = collapsed.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// An excerpt with registered secrets masked.
pub(crate) fn redacted_excerpt(text: &str) -> String {
    excerpt(&crate::redact::redact(text), EXCERPT_CHARS)
}

fn quoted_excerpt(body: &str) -> String {
    if body.trim().is_empty() {
        "an empty body".to_string()
    } else {
        format!("`{}`", redacted_excerpt(body))
    }
}

/// ` (body: `…`)` for error messages, or nothing for an empty body.
pub(crate) fn body_note(body: &str) -> String {
    if body.trim().is_empty() {
        String::new()
    } else {
        format!(" (body: `{}`)", redacted_excerpt(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_patterns() {
        let one: StatusExpect = serde_json::from_value(serde_json::json!(204)).unwrap();
        assert!(one.matches(204) && !one.matches(200));
        let class: StatusExpect = serde_json::from_value(serde_json::json!("4XX")).unwrap();
        assert!(class.matches(404) && !class.matches(500));
        let list: StatusExpect = serde_json::from_value(serde_json::json!([200, "3xx", "201"])).unwrap();
        assert!(list.matches(200) && list.matches(302) && list.matches(201) && !list.matches(404));
        assert_eq!(list.describe(), "200 or 3xx or 201");
        for bad in [serde_json::json!(99), serde_json::json!("6xx"), serde_json::json!([]), serde_json::json!(true)] {
            assert!(serde_json::from_value::<StatusExpect>(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn utf8_prefix_does_not_split_characters() {
        let text = "aé€😀".as_bytes();
        for max in 0..=text.len() {
            let p = utf8_prefix(text, max);
            assert!(!p.contains('\u{FFFD}'), "{max}: {p}");
            assert!(p.len() <= max);
        }
        assert_eq!(utf8_prefix(b"abc", 10), "abc");
    }

    #[test]
    fn excerpts_are_bounded() {
        let long = "x".repeat(500);
        assert_eq!(excerpt(&long, EXCERPT_CHARS).chars().count(), EXCERPT_CHARS);
        assert_eq!(excerpt("a\n  b", 10), "a b");
    }

    #[test]
    fn input_rejects_unknown_fields() {
        let err = super::super::input::<Input>("http", serde_json::json!({"url": "http://x", "bogus": 1})).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }
}
