//! Gateway credentials rotated through configured HTTP calls: one call creates the new
//! credential (its value, and optionally its id, read from the JSON answer), one tests it, one
//! revokes an old one. URLs, headers and bodies are templates:
//!
//! - `{current}`, `{current_id}`: the credential in use;
//! - `{new}`, `{new_id}`: the one being rotated in (test and roll-back calls);
//! - `{previous}`, `{previous_id}`: the one being revoked;
//! - `{env:NAME}`: an environment variable (an admin token, say).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{ClassifiedError, ErrorClass};

/// One configured HTTP call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCall {
    /// [default: POST to create, GET to test, DELETE to revoke]
    pub method: Option<String>,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    /// create: where the new value is in the JSON answer (`/data/token`, `data.token` or
    /// `$.data.token`).
    pub value_path: Option<String>,
    /// create: where the new credential's id is, when revoking needs it.
    pub id_path: Option<String>,
    /// The status that means success [default: any 2xx].
    pub expect_status: Option<u16>,
}

/// A configured call that cannot be made as written, or an answer without what the call reads
/// from it. `call` names the call (create, test, revoke); values never appear, only names.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(
        "{call}: unknown placeholder {{{name}}} (use {}, or {{env:NAME}})",
        PLACEHOLDERS.iter().map(|p| format!("{{{p}}}")).collect::<Vec<_>>().join(", ")
    )]
    UnknownPlaceholder { call: String, name: String },
    #[error("{call}: {{{name}}} is not known at this step (allowed here: {})", allowed.join(", "))]
    NotAllowed { call: String, name: String, allowed: Vec<String> },
    #[error("{call}: url `{url}` is not a URL: {source}")]
    BadUrl {
        call: String,
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("{call}: method `{method}` is not an HTTP method")]
    BadMethod { call: String, method: String },
    /// `{env:NAME}` names a variable that is not set.
    #[error("{{{name}}}: the variable is not set")]
    UnsetVariable { name: String },
    /// A placeholder with no value at this point of the rotation.
    #[error("{{{name}}} has no value here (is id_name set and the id stored?)")]
    NoValue { name: String },
    #[error("{call}: the answer (HTTP {status}) is not JSON")]
    NotJson { call: String, status: u16 },
    #[error("{call}: nothing at `{path}` in the answer")]
    NothingAt { call: String, path: String },
    #[error("{call}: `{path}` in the answer is empty")]
    Empty { call: String, path: String },
}

/// The placeholders a template may use.
pub const PLACEHOLDERS: &[&str] = &["current", "current_id", "new", "new_id", "previous", "previous_id"];

/// `a.b.0` or `$.a.b` or `/a/b` → a JSON pointer.
pub fn pointer(path: &str) -> String {
    let p = path.trim();
    if p.starts_with('/') {
        return p.to_string();
    }
    let p = p.strip_prefix('$').unwrap_or(p).trim_start_matches('.');
    format!("/{}", p.replace('.', "/"))
}

fn placeholder_re() -> &'static regex_lite::Regex {
    static RE: std::sync::OnceLock<regex_lite::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex_lite::Regex::new(r"\{(env:[A-Za-z_][A-Za-z0-9_]*|[a-z_]+)\}").expect("valid"))
}

/// The placeholders used by a call, for validation.
pub fn used(call: &HttpCall) -> Vec<String> {
    let mut texts = vec![call.url.as_str()];
    texts.extend(call.headers.values().map(String::as_str));
    texts.extend(call.body.as_deref());
    texts
        .into_iter()
        .flat_map(|t| placeholder_re().captures_iter(t).map(|c| c[1].to_string()).collect::<Vec<_>>())
        .collect()
}

/// Checks a call's templates and paths; `allowed` are the placeholders this call may use.
pub fn validate(what: &str, call: &HttpCall, allowed: &[&str]) -> Result<(), CallError> {
    for name in used(call) {
        if name.starts_with("env:") {
            continue;
        }
        if !PLACEHOLDERS.contains(&name.as_str()) {
            return Err(CallError::UnknownPlaceholder { call: what.to_string(), name });
        }
        if !allowed.contains(&name.as_str()) {
            let allowed = allowed.iter().map(|a| a.to_string()).collect();
            return Err(CallError::NotAllowed { call: what.to_string(), name, allowed });
        }
    }
    let probe = used(call).into_iter().fold(call.url.clone(), |u, n| u.replace(&format!("{{{n}}}"), "x"));
    url::Url::parse(&probe).map_err(|source| CallError::BadUrl {
        call: what.to_string(),
        url: call.url.clone(),
        source,
    })?;
    if let Some(m) = &call.method {
        reqwest::Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| CallError::BadMethod { call: what.to_string(), method: m.clone() })?;
    }
    Ok(())
}

fn render(template: &str, vars: &BTreeMap<&str, String>) -> Result<String, CallError> {
    let mut missing = None;
    let out = placeholder_re().replace_all(template, |c: &regex_lite::Captures| {
        let name = &c[1];
        let value = match name.strip_prefix("env:") {
            Some(var) => std::env::var(var).ok().inspect(|v| crate::redact::register(v)),
            None => vars.get(name).cloned(),
        };
        value.unwrap_or_else(|| {
            missing.get_or_insert_with(|| name.to_string());
            String::new()
        })
    });
    match missing {
        Some(name) if name.starts_with("env:") => Err(CallError::UnsetVariable { name }),
        Some(name) => Err(CallError::NoValue { name }),
        None => Ok(out.into_owned()),
    }
}

/// What a call answered: the status and the JSON body, when there was one.
pub struct Answer {
    pub status: u16,
    pub json: Option<serde_json::Value>,
}

/// Makes one call; a status other than the expected one is an error naming the call. A target
/// that cannot be reached (no connection, a timeout, a 5xx) is `Unavailable` (exit 3).
pub async fn call(
    what: &str,
    call: &HttpCall,
    default_method: &str,
    vars: &BTreeMap<&str, String>,
) -> Result<Answer, ClassifiedError> {
    let failed = |m: String| ClassifiedError::new(ErrorClass::Failed, m);
    let method = call.method.as_deref().unwrap_or(default_method).to_ascii_uppercase();
    let method =
        reqwest::Method::from_bytes(method.as_bytes()).map_err(|_| failed(format!("{what}: bad method {method}")))?;
    let url = render(&call.url, vars).map_err(|e| failed(format!("{what}: url: {e}")))?;
    let label = format!("{what} call {method} {}", crate::redact::redact(&url));
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| failed(format!("{label}: {e}")))?;
    let mut req = client.request(method, &url);
    for (name, value) in &call.headers {
        req = req.header(name, render(value, vars).map_err(|e| failed(format!("{label}: header {name}: {e}")))?);
    }
    if let Some(body) = &call.body {
        let body = render(body, vars).map_err(|e| failed(format!("{label}: body: {e}")))?;
        if !call.headers.keys().any(|k| k.eq_ignore_ascii_case("content-type")) && body.trim_start().starts_with('{') {
            req = req.header("content-type", "application/json");
        }
        req = req.body(body);
    }
    let resp = match req.send().await {
        Ok(resp) => resp,
        Err(e) => {
            let class = if e.is_connect() || e.is_timeout() { ErrorClass::Unavailable } else { ErrorClass::Failed };
            return Err(ClassifiedError::new(class, format!("{label}: {}", crate::redact::redact(&e.to_string()))));
        }
    };
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let ok = match call.expect_status {
        Some(s) => s == status,
        None => (200..300).contains(&status),
    };
    if !ok {
        let excerpt: String = text.chars().take(200).collect();
        let expected = call.expect_status.map(|s| s.to_string()).unwrap_or_else(|| "2xx".into());
        let class = if status >= 500 { ErrorClass::Unavailable } else { ErrorClass::Failed };
        let message = format!("{label}: HTTP {status} (expected {expected}): {}", crate::redact::redact(&excerpt));
        return Err(ClassifiedError::new(class, message));
    }
    Ok(Answer { status, json: serde_json::from_str(&text).ok() })
}

/// Reads a string at `path` in a create call's answer.
pub fn extract(what: &str, answer: &Answer, path: &str) -> Result<String, CallError> {
    let json =
        answer.json.as_ref().ok_or_else(|| CallError::NotJson { call: what.to_string(), status: answer.status })?;
    let value = json
        .pointer(&pointer(path))
        .ok_or_else(|| CallError::NothingAt { call: what.to_string(), path: path.to_string() })?;
    let s = value.as_str().map(String::from).unwrap_or_else(|| value.to_string());
    if s.is_empty() || value.is_null() {
        return Err(CallError::Empty { call: what.to_string(), path: path.to_string() });
    }
    crate::redact::register(&s);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_pointers() {
        assert_eq!(pointer("/data/token"), "/data/token");
        assert_eq!(pointer("data.token"), "/data/token");
        assert_eq!(pointer("$.keys.0.secret"), "/keys/0/secret");
    }

    #[test]
    fn templates_render_and_unknown_names_are_refused() {
        let vars = BTreeMap::from([("current", "tok".to_string())]);
        assert_eq!(render("Bearer {current}", &vars).unwrap(), "Bearer tok");
        assert!(render("{previous_id}", &vars).unwrap_err().to_string().contains("previous_id"));
        let call = HttpCall {
            method: None,
            url: "http://gw/keys/{nope}".into(),
            headers: BTreeMap::new(),
            body: None,
            value_path: None,
            id_path: None,
            expect_status: None,
        };
        assert!(validate("create", &call, &["current"])
            .unwrap_err()
            .to_string()
            .contains("unknown placeholder {nope}"));
        let call = HttpCall { url: "http://gw/keys/{previous_id}".into(), ..call };
        assert!(validate("create", &call, &["current"]).unwrap_err().to_string().contains("not known at this step"));
        assert!(validate("revoke", &call, &["previous_id"]).is_ok());
    }
}
