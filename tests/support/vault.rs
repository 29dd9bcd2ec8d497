//! A local server implementing the HashiCorp Vault KV v2 endpoints opsbook uses (Vault itself
//! cannot be installed here): `GET`/`POST /v1/MOUNT/data/PATH` with check-and-set on the
//! version, and `GET`/`POST /v1/MOUNT/metadata/PATH` with custom metadata. Requests without the
//! right `X-Vault-Token` get 403, as from Vault.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::server::{serve, Req};

#[derive(Default, Clone)]
pub struct Secret {
    /// Every version's data, oldest first (version = index + 1).
    pub versions: Vec<BTreeMap<String, String>>,
    pub custom_metadata: BTreeMap<String, String>,
}

pub struct Vault {
    pub addr: String,
    pub token: String,
    secrets: Arc<Mutex<BTreeMap<String, Secret>>>,
}

impl Vault {
    pub fn start() -> Vault {
        let token = format!("hvs.test{}", rand::random::<u64>());
        let secrets: Arc<Mutex<BTreeMap<String, Secret>>> = Arc::default();
        let (state, expected) = (secrets.clone(), token.clone());
        let addr = serve(move |req| handle(&state, &expected, req));
        Vault { addr: format!("http://{addr}"), token, secrets }
    }

    /// The secret at `mount/path` as stored.
    pub fn secret(&self, mount_path: &str) -> Option<Secret> {
        self.secrets.lock().unwrap().get(mount_path).cloned()
    }

    pub fn latest(&self, mount_path: &str) -> BTreeMap<String, String> {
        self.secret(mount_path).and_then(|s| s.versions.last().cloned()).unwrap_or_default()
    }

    /// Writes a version the way another client would (for check-and-set conflicts).
    pub fn write(&self, mount_path: &str, data: BTreeMap<String, String>) {
        self.secrets.lock().unwrap().entry(mount_path.to_string()).or_default().versions.push(data);
    }
}

fn error(status: u16, message: &str) -> (u16, String) {
    (status, json!({ "errors": [message] }).to_string())
}

fn handle(secrets: &Mutex<BTreeMap<String, Secret>>, token: &str, req: Req) -> (u16, String) {
    if req.header("x-vault-token") != Some(token) {
        return error(403, "permission denied");
    }
    let Some(rest) = req.path.strip_prefix("/v1/") else { return error(404, "no handler") };
    let Some((mount, rest)) = rest.split_once('/') else { return error(404, "no handler") };
    let (kind, path) = rest.split_once('/').unwrap_or((rest, ""));
    let key = format!("{mount}/{path}");
    let mut secrets = secrets.lock().unwrap();
    match (req.method.as_str(), kind) {
        ("GET", "data") => match secrets.get(&key).filter(|s| !s.versions.is_empty()) {
            None => (404, json!({ "errors": [] }).to_string()),
            Some(s) => (
                200,
                json!({ "data": {
                    "data": s.versions.last().unwrap(),
                    "metadata": { "version": s.versions.len(), "created_time": "2026-01-01T00:00:00Z",
                                  "custom_metadata": s.custom_metadata, "deletion_time": "", "destroyed": false }
                }})
                .to_string(),
            ),
        },
        ("POST" | "PUT", "data") => {
            let body = req.json();
            let Some(data) = body["data"].as_object() else { return error(400, "no data provided") };
            let secret = secrets.entry(key).or_default();
            if let Some(cas) = body["options"]["cas"].as_u64() {
                if cas != secret.versions.len() as u64 {
                    return error(400, "check-and-set parameter did not match the current version");
                }
            }
            let data = data.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect();
            secret.versions.push(data);
            (
                200,
                json!({ "data": { "version": secret.versions.len(), "created_time": "2026-01-01T00:00:00Z" } })
                    .to_string(),
            )
        }
        ("POST" | "PUT", "metadata") => {
            let body: Value = req.json();
            let secret = secrets.entry(key).or_default();
            if let Some(m) = body["custom_metadata"].as_object() {
                secret.custom_metadata =
                    m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect();
            }
            (204, String::new())
        }
        ("GET", "metadata") => match secrets.get(&key) {
            None => (404, json!({ "errors": [] }).to_string()),
            Some(s) => (
                200,
                json!({ "data": { "current_version": s.versions.len(), "custom_metadata": s.custom_metadata } })
                    .to_string(),
            ),
        },
        _ => error(405, "unsupported operation"),
    }
}
