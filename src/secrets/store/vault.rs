//! The HashiCorp Vault KV v2 store: one secret's flat map, read with its version and written
//! back with check-and-set on it.

use std::collections::BTreeMap;

use super::FlatMap;
use crate::secrets::SecretsError;

/// A Vault KV v2 secret, read with its version and written back with check-and-set on it, so a
/// concurrent writer makes the save fail instead of being overwritten.
pub(super) struct Vault {
    pub(super) store: String,
    client: reqwest::Client,
    addr: String,
    token: String,
    namespace: Option<String>,
    mount: String,
    path: String,
    version: u64,
    pub(super) data: BTreeMap<String, String>,
    dirty: bool,
}

impl FlatMap for Vault {
    fn put(&mut self, key: &str, value: Option<&str>) {
        let changed = match value {
            Some(v) => self.data.insert(key.to_string(), v.to_string()).as_deref() != Some(v),
            None => self.data.remove(key).is_some(),
        };
        self.dirty |= changed;
    }
}

impl Vault {
    pub(super) async fn load(store: &str, mount: String, path: String) -> Result<Vault, SecretsError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let missing = |var, example| SecretsError::MissingEnv { store: store.to_string(), var, example };
        let addr = var("VAULT_ADDR").ok_or_else(|| missing("VAULT_ADDR", " (e.g. https://vault.internal:8200)"))?;
        let token = var("VAULT_TOKEN").ok_or_else(|| missing("VAULT_TOKEN", ""))?;
        crate::redact::register(&token);
        let addr = addr.trim_end_matches('/').to_string();
        url::Url::parse(&addr).map_err(|source| SecretsError::VaultAddr {
            store: store.to_string(),
            addr: addr.clone(),
            source,
        })?;
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|source| SecretsError::HttpClient { store: store.to_string(), source })?;
        let mut vault = Vault {
            store: store.to_string(),
            client,
            addr,
            token,
            namespace: var("VAULT_NAMESPACE"),
            mount,
            path,
            version: 0,
            data: BTreeMap::new(),
            dirty: false,
        };
        let body = vault.call(reqwest::Method::GET, "data", None).await?;
        if let Some(body) = body {
            let data = &body["data"];
            vault.version = data["metadata"]["version"].as_u64().unwrap_or(0);
            if let Some(map) = data["data"].as_object() {
                for (k, v) in map {
                    let v = v.as_str().map(String::from).unwrap_or_else(|| v.to_string());
                    vault.data.insert(k.clone(), v);
                }
            }
        }
        Ok(vault)
    }

    fn url(&self, kind: &str) -> String {
        format!("{}/v1/{}/{kind}/{}", self.addr, self.mount, self.path)
    }

    /// One KV v2 call. `Ok(None)` is a 404 (no such secret yet).
    async fn call(
        &self,
        method: reqwest::Method,
        kind: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, SecretsError> {
        let url = self.url(kind);
        let op = format!("{method} {url}");
        let mut req = self.client.request(method, &url).header("X-Vault-Token", &self.token);
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| SecretsError::Unreachable { store: self.store.clone(), message: format!("{op}: {e}") })?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let errors = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| {
                    v["errors"].as_array().map(|a| a.iter().filter_map(|e| e.as_str()).collect::<Vec<_>>().join("; "))
                })
                .unwrap_or_else(|| text.chars().take(200).collect());
            let hint = if errors.contains("check-and-set") {
                format!(" (the secret changed since version {} was read; run again)", self.version)
            } else if status == reqwest::StatusCode::FORBIDDEN {
                " (check VAULT_TOKEN and its policy: read and write on data/, write on metadata/)".to_string()
            } else {
                String::new()
            };
            return Err(SecretsError::Store {
                store: self.store.clone(),
                message: format!("{op}: HTTP {status}: {errors}{hint}"),
            });
        }
        if text.trim().is_empty() {
            return Ok(Some(serde_json::Value::Null));
        }
        serde_json::from_str(&text).map(Some).map_err(|e| SecretsError::Store {
            store: self.store.clone(),
            message: format!("{op}: the answer is not JSON: {e}"),
        })
    }

    pub(super) async fn save(&mut self, rotated: bool) -> Result<(), SecretsError> {
        if !self.dirty {
            return Ok(());
        }
        let body = serde_json::json!({ "options": { "cas": self.version }, "data": self.data });
        let answer = self.call(reqwest::Method::POST, "data", Some(body)).await?;
        self.version = answer.as_ref().and_then(|a| a["data"]["version"].as_u64()).unwrap_or(self.version + 1);
        self.dirty = false;
        if rotated {
            let meta = serde_json::json!({
                "custom_metadata": { "rotated_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true) }
            });
            self.call(reqwest::Method::POST, "metadata", Some(meta)).await?;
        }
        Ok(())
    }
}
