//! The `notify` runbook action: POSTs a JSON message to a webhook. The payload carries the
//! message as `text`, so Slack-compatible incoming webhooks (Slack, Mattermost, Rocket.Chat,
//! Discord's /slack endpoint) show it as is. Registered secrets are masked in every string of
//! the payload before it leaves the machine.

use std::collections::BTreeMap;
use std::time::Instant;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::http::{body_note, client, display_url, parse_url, read_body, send_error, DEFAULT_TIMEOUT};
use super::{ActionCtx, ActionError, Outputs};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The webhook URL (http:// or https://).
    pub url: String,
    /// The message, sent as the payload's `text`.
    pub message: String,
    /// Extra fields merged into the payload (they win over `text`, `runbook_step`, `run_id`).
    #[serde(default)]
    pub data: Option<Map<String, Value>>,
    /// Request headers, name → value.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The JSON body: `{"text", "runbook_step", "run_id", ...data}` with secrets masked.
pub fn payload(input: &Input, ctx: &ActionCtx<'_>) -> Value {
    let mut body = Map::new();
    body.insert("text".into(), Value::String(input.message.clone()));
    body.insert("runbook_step".into(), Value::String(ctx.step_id.to_string()));
    body.insert("run_id".into(), Value::String(ctx.run_id.to_string()));
    if let Some(data) = &input.data {
        for (k, v) in data {
            body.insert(k.clone(), v.clone());
        }
    }
    let mut payload = Value::Object(body);
    crate::redact::redact_json(&mut payload);
    payload
}

pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let url = parse_url("url", &input.url)?;
    let mut headers = super::http::request_headers(&input.headers)?;
    let payload = payload(&input, ctx);
    let shown = format!("POST {}", display_url(&url));

    if ctx.dry_run {
        let mut out = Outputs::new();
        out.insert("dry_run".into(), Value::Bool(true));
        out.insert("would".into(), Value::String(shown));
        out.insert("payload".into(), payload);
        return Ok(out);
    }

    if !headers.contains_key(reqwest::header::CONTENT_TYPE) {
        headers.insert(reqwest::header::CONTENT_TYPE, reqwest::header::HeaderValue::from_static("application/json"));
    }
    let started = Instant::now();
    let mut response = client(DEFAULT_TIMEOUT)?
        .post(url)
        .headers(headers)
        .body(payload.to_string())
        .send()
        .await
        .map_err(|e| send_error(&shown, e, DEFAULT_TIMEOUT))?;
    let status = response.status();
    if !status.is_success() {
        let body = read_body(&mut response, 4096).await.unwrap_or_default();
        return Err(ActionError::Webhook {
            request: shown,
            status,
            body_note: body_note(&String::from_utf8_lossy(&body)),
        });
    }
    let mut out = Outputs::new();
    out.insert("status".into(), Value::from(status.as_u16()));
    out.insert("duration_ms".into(), Value::from(started.elapsed().as_millis() as u64));
    Ok(out)
}
