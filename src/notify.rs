//! Telling the outside world how a scheduled run went: healthchecks-style heartbeat pings
//! (`URL/start`, `URL`, `URL/fail`) and a Prometheus textfile for node_exporter. Both are best
//! effort: a monitoring hiccup never fails the run it reports on.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Checks a ping URL before any work starts: http(s) with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("invalid URL '{url}': {e} (expected https://host/path)"))?;
    if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
        return Err(format!("'{url}' is not an http(s) URL with a host (expected e.g. https://hc-ping.com/UUID)"));
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
    write_atomic(path, out.as_bytes(), None)
}

/// Replaces `path` with `bytes`: temp file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    replace_via_temp(path, mode.unwrap_or(0o666), |file| file.write_all(bytes))
}

/// Replaces a file of secrets atomically, as an edit in place would: through a symlink (the link
/// stays, its target gets the new bytes), keeping its owner, group and mode — less any access
/// for others, since it holds secrets. A new file gets `new_mode`.
pub fn replace_secret_file(path: &Path, bytes: &[u8], new_mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path)?,
        _ => path.to_path_buf(),
    };
    let existing = match std::fs::metadata(&target) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    // Written while only we can read it; owner and mode are set before it takes the name.
    replace_via_temp(&target, 0o600, |file| {
        file.write_all(bytes)?;
        if let Some(m) = &existing {
            if (m.uid(), m.gid()) != (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw()) {
                std::os::unix::fs::fchown(&*file, Some(m.uid()), Some(m.gid())).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!(
                            "cannot give the new file the owner and group of the old one (uid {}, gid {}): {e}; run \
                             as the file's owner or as root, so the app keeps access",
                            m.uid(),
                            m.gid()
                        ),
                    )
                })?;
            }
        }
        let mode = existing.as_ref().map_or(new_mode, |m| m.mode() & 0o7770);
        file.set_permissions(std::fs::Permissions::from_mode(mode))
    })
}

/// Creates a temp file beside `path` (with `mode`, less the umask), lets `fill` write it, then
/// fsyncs it and renames it over `path`; the temp file is removed on any failure.
fn replace_via_temp(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        fill(&mut file)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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
