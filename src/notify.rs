//! Telling the outside world how a scheduled run went: healthchecks-style heartbeat pings
//! (`URL/start`, `URL`, `URL/fail`) and a Prometheus textfile for node_exporter. Both are best
//! effort: a monitoring hiccup never fails the run it reports on.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Why a ping URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PingUrlError {
    #[error("invalid URL '{url}': {error} (expected https://host/path)")]
    Invalid { url: String, error: url::ParseError },
    #[error("'{url}' is not an http(s) URL with a host (expected e.g. https://hc-ping.com/UUID)")]
    NotHttp { url: String },
}

/// Checks a ping URL before any work starts: http(s) with a host.
pub fn check_url(url: &str) -> Result<(), PingUrlError> {
    let parsed = url::Url::parse(url).map_err(|error| PingUrlError::Invalid { url: url.to_string(), error })?;
    if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
        return Err(PingUrlError::NotHttp { url: url.to_string() });
    }
    Ok(())
}

/// Pings a healthchecks.io-compatible URL.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    url: Option<String>,
    client: reqwest::Client,
}

impl Heartbeat {
    pub fn new(url: Option<String>) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client builds");
        Self { url: url.map(|u| u.trim_end_matches('/').to_string()), client }
    }

    pub async fn start(&self) {
        self.ping("/start", String::new()).await;
    }

    pub async fn success(&self, body: String) {
        self.ping("", body).await;
    }

    pub async fn fail(&self, body: String) {
        self.ping("/fail", body).await;
    }

    async fn ping(&self, suffix: &str, body: String) {
        let Some(base) = &self.url else { return };
        let url = format!("{base}{suffix}");
        let body = crate::redact::redact(&body).into_owned();
        // A ping is idempotent, so one retry after a short pause is safe.
        for attempt in 0..2 {
            match self.client.post(&url).body(body.clone()).send().await {
                Ok(resp) if resp.status().is_success() => return,
                Ok(resp) => tracing::warn!("heartbeat {url} answered {}", resp.status()),
                Err(e) => tracing::warn!("heartbeat {url} failed: {e}"),
            }
            if attempt == 0 {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// One gauge sample for the textfile.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

fn label_text(labels: &[(&str, String)]) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// Updates a Prometheus textfile: the given samples replace those with the same name and
/// labels; everything else already in the file (other sets, a previous success time) stays.
/// The file is replaced atomically so node_exporter never reads half of it.
pub fn update_textfile(path: &Path, samples: &[Sample]) -> std::io::Result<()> {
    let mut series: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut help: BTreeMap<String, String> = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(path) {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                if let Some((name, h)) = rest.split_once(' ') {
                    help.insert(name.to_string(), h.to_string());
                }
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (key, value) = match line.rsplit_once(' ') {
                Some(kv) => kv,
                None => continue,
            };
            let name = key.split('{').next().unwrap_or(key).to_string();
            series.entry(name).or_default().insert(key.to_string(), value.to_string());
        }
    }
    for s in samples {
        help.insert(s.name.to_string(), s.help.to_string());
        let key = format!("{}{}", s.name, label_text(&s.labels));
        series.entry(s.name.to_string()).or_default().insert(key, format!("{}", s.value));
    }
    let mut out = String::new();
    for (name, lines) in &series {
        if let Some(h) = help.get(name) {
            out.push_str(&format!("# HELP {name} {h}\n"));
        }
        out.push_str(&format!("# TYPE {name} gauge\n"));
        for (key, value) in lines {
            out.push_str(&format!("{key} {value}\n"));
        }
    }
    crate::redact::write_file(path, &out, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textfile_merges_by_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opsbook.prom");
        let s = |set: &str, name: &'static str, v: f64| Sample {
            name,
            help: "h",
            labels: vec![("set", set.into())],
            value: v,
        };
        update_textfile(&path, &[s("a", "m_success", 1.0), s("a", "m_status", 1.0)]).unwrap();
        update_textfile(&path, &[s("b", "m_success", 2.0)]).unwrap();
        update_textfile(&path, &[s("a", "m_status", 0.0)]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("m_success{set=\"a\"} 1\n"), "{text}");
        assert!(text.contains("m_success{set=\"b\"} 2\n"), "{text}");
        assert!(text.contains("m_status{set=\"a\"} 0\n"), "{text}");
        assert_eq!(text.matches("# TYPE m_success gauge").count(), 1);
    }
}
