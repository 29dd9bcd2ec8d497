//! Where rotated secrets live, seen as three slots per secret: current, pending and previous.
//!
//! - `dotenv:PATH` and `vault:MOUNT/PATH` (HashiCorp Vault KV v2) keep the slots as keys of one
//!   flat map: `NAME`, `NAME_PENDING`, `NAME_PREVIOUS` (one set per field).
//! - `aws-sm:SECRET_ID` keeps them as versions of the secret labelled `AWSCURRENT`, `AWSPENDING`
//!   and `AWSPREVIOUS`, the way Secrets Manager's own rotation does. A secret with several fields
//!   (an access key id and its secret) is stored as a JSON object.
//!
//! Values are registered for redaction as soon as they are read.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{EnvFile, SecretStore, SecretsError};

/// One value of a secret: most kinds have one field (named after the secret); access keys have
/// two (the key id and the secret).
pub type Fields = BTreeMap<String, String>;

/// A parsed `store = "…"` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    Dotenv(PathBuf),
    AwsSm(String),
    Vault { mount: String, path: String },
}

impl StoreSpec {
    pub fn parse(raw: &str) -> Result<StoreSpec, String> {
        let unsupported =
            || format!("store `{raw}` is not supported; use dotenv:PATH, aws-sm:SECRET_ID or vault:MOUNT/PATH");
        let (scheme, rest) = raw.split_once(':').ok_or_else(unsupported)?;
        if rest.trim().is_empty() {
            return Err(format!("store `{raw}` names nothing after `{scheme}:`"));
        }
        match scheme {
            "dotenv" => Ok(StoreSpec::Dotenv(PathBuf::from(rest))),
            "aws-sm" => Ok(StoreSpec::AwsSm(rest.to_string())),
            "vault" => {
                let trimmed = rest.trim_matches('/');
                match trimmed.split_once('/') {
                    Some((mount, path)) if !mount.is_empty() && !path.is_empty() => {
                        Ok(StoreSpec::Vault { mount: mount.to_string(), path: path.to_string() })
                    }
                    _ => Err(format!("store `{raw}`: a Vault store is vault:MOUNT/PATH (e.g. vault:secret/shop/prod)")),
                }
            }
            _ => Err(unsupported()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Current,
    Pending,
    Previous,
}

impl Slot {
    fn suffix(self) -> &'static str {
        match self {
            Slot::Current => "",
            Slot::Pending => "_PENDING",
            Slot::Previous => "_PREVIOUS",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Slot::Current => "AWSCURRENT",
            Slot::Pending => "AWSPENDING",
            Slot::Previous => "AWSPREVIOUS",
        }
    }
}

/// The three slots of one secret in its store.
pub struct Slots {
    fields: Vec<String>,
    backend: Backend,
    values: [Option<Fields>; 3],
}

enum Backend {
    Dotenv(EnvFile),
    Vault(Box<Vault>),
    AwsSm(Box<AwsSm>),
}

fn index(slot: Slot) -> usize {
    match slot {
        Slot::Current => 0,
        Slot::Pending => 1,
        Slot::Previous => 2,
    }
}

/// Registers the secret for redaction (ids, such as an access key id, are not secret).
fn register(primary: &str, fields: &Fields) {
    if let Some(v) = fields.get(primary) {
        crate::redact::register(v);
        crate::redact::register_urls_in(v);
    }
}

impl Slots {
    /// Reads the slots of the secret whose fields are `fields` (the first is the primary one).
    pub async fn open(raw: &str, fields: &[String]) -> Result<Slots, SecretsError> {
        let spec = StoreSpec::parse(raw).map_err(SecretsError::Invalid)?;
        let backend = match spec {
            StoreSpec::Dotenv(path) => Backend::Dotenv(EnvFile::load(&path)?),
            StoreSpec::Vault { mount, path } => Backend::Vault(Box::new(Vault::load(raw, mount, path).await?)),
            StoreSpec::AwsSm(id) => Backend::AwsSm(Box::new(AwsSm::load(raw, id).await?)),
        };
        let mut slots = Slots { fields: fields.to_vec(), backend, values: [None, None, None] };
        for slot in [Slot::Current, Slot::Pending, Slot::Previous] {
            let v = slots.read(slot)?;
            if let Some(v) = &v {
                register(&slots.fields[0], v);
            }
            slots.values[index(slot)] = v;
        }
        // A pending label left on the version that is already current (a crash inside finish)
        // is not a pending value.
        if slots.values[1].is_some() && slots.values[1] == slots.values[0] {
            slots.values[1] = None;
        }
        Ok(slots)
    }

    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Dotenv(f) => format!("dotenv:{}", f.describe()),
            Backend::Vault(v) => v.store.clone(),
            Backend::AwsSm(s) => s.store.clone(),
        }
    }

    pub fn get(&self, slot: Slot) -> Option<&Fields> {
        self.values[index(slot)].as_ref()
    }

    /// The primary field of a slot.
    pub fn primary(&self, slot: Slot) -> Option<&str> {
        self.get(slot).and_then(|f| f.get(&self.fields[0])).map(String::as_str)
    }

    fn read(&self, slot: Slot) -> Result<Option<Fields>, SecretsError> {
        match &self.backend {
            Backend::Dotenv(f) => Ok(flat_read(|k| f.get(k), &self.fields, slot)),
            Backend::Vault(v) => Ok(flat_read(|k| v.data.get(k).cloned(), &self.fields, slot)),
            Backend::AwsSm(s) => s.read(slot, &self.fields),
        }
    }

    /// create: writes the pending value.
    pub async fn put_pending(&mut self, value: &Fields) -> Result<(), SecretsError> {
        register(&self.fields[0], value);
        match &mut self.backend {
            Backend::AwsSm(s) => s.put_pending(value, &self.fields).await?,
            _ => {
                self.flat_edit(|m, fields| flat_write(m, fields, Slot::Pending, Some(value)));
                self.flat_save(false).await?;
            }
        }
        self.values[1] = Some(value.clone());
        Ok(())
    }

    /// finish: pending becomes current; current becomes previous when `keep_previous`, else it
    /// is dropped.
    pub async fn finish(&mut self, keep_previous: bool) -> Result<(), SecretsError> {
        let pending =
            self.values[1].clone().ok_or_else(|| SecretsError::Invalid("no pending value to finish".into()))?;
        let current = self.values[0].clone();
        match &mut self.backend {
            Backend::AwsSm(s) => s.finish(keep_previous).await?,
            _ => {
                let previous = if keep_previous { current.clone() } else { None };
                self.flat_edit(|m, fields| {
                    if keep_previous && current.is_some() {
                        flat_write(m, fields, Slot::Previous, previous.as_ref());
                    }
                    flat_write(m, fields, Slot::Current, Some(&pending));
                    flat_write(m, fields, Slot::Pending, None);
                });
                self.flat_save(true).await?;
            }
        }
        if keep_previous && current.is_some() {
            self.values[2] = current;
        }
        self.values[0] = Some(pending);
        self.values[1] = None;
        Ok(())
    }

    /// Removes the pending value (a failed test).
    pub async fn drop_pending(&mut self) -> Result<(), SecretsError> {
        self.drop(Slot::Pending).await
    }

    /// Removes the previous value (its grace period is over).
    pub async fn drop_previous(&mut self) -> Result<(), SecretsError> {
        self.drop(Slot::Previous).await
    }

    async fn drop(&mut self, slot: Slot) -> Result<(), SecretsError> {
        match &mut self.backend {
            Backend::AwsSm(s) => s.unlabel(slot).await?,
            _ => {
                self.flat_edit(|m, fields| flat_write(m, fields, slot, None));
                self.flat_save(false).await?;
            }
        }
        self.values[index(slot)] = None;
        Ok(())
    }

    /// rollback: previous becomes current and current becomes previous.
    pub async fn swap_previous(&mut self) -> Result<(), SecretsError> {
        let previous = self.values[2].clone().ok_or_else(|| SecretsError::Invalid("no previous value".into()))?;
        let current = self.values[0].clone();
        match &mut self.backend {
            Backend::AwsSm(s) => s.swap_previous().await?,
            _ => {
                self.flat_edit(|m, fields| {
                    flat_write(m, fields, Slot::Current, Some(&previous));
                    flat_write(m, fields, Slot::Previous, current.as_ref());
                });
                self.flat_save(true).await?;
            }
        }
        self.values[0] = Some(previous);
        self.values[2] = current;
        Ok(())
    }

    fn flat_edit(&mut self, edit: impl FnOnce(&mut dyn FlatMap, &[String])) {
        match &mut self.backend {
            Backend::Dotenv(f) => edit(f, &self.fields),
            Backend::Vault(v) => edit(v.as_mut(), &self.fields),
            Backend::AwsSm(_) => unreachable!("aws-sm is not a flat map"),
        }
    }

    async fn flat_save(&mut self, rotated: bool) -> Result<(), SecretsError> {
        match &mut self.backend {
            Backend::Dotenv(f) => f.save().map(drop),
            Backend::Vault(v) => v.save(rotated).await,
            Backend::AwsSm(_) => unreachable!("aws-sm is not a flat map"),
        }
    }
}

trait FlatMap {
    fn put(&mut self, key: &str, value: Option<&str>);
}

impl FlatMap for EnvFile {
    fn put(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(v) => self.set(key, v),
            None => self.remove(key),
        }
    }
}

fn flat_read(get: impl Fn(&str) -> Option<String>, fields: &[String], slot: Slot) -> Option<Fields> {
    let primary = get(&format!("{}{}", fields[0], slot.suffix()))?;
    let mut out = Fields::new();
    out.insert(fields[0].clone(), primary);
    for f in &fields[1..] {
        if let Some(v) = get(&format!("{f}{}", slot.suffix())) {
            out.insert(f.clone(), v);
        }
    }
    Some(out)
}

fn flat_write(map: &mut dyn FlatMap, fields: &[String], slot: Slot, value: Option<&Fields>) {
    for f in fields {
        map.put(&format!("{f}{}", slot.suffix()), value.and_then(|v| v.get(f)).map(String::as_str));
    }
}

// ----- HashiCorp Vault KV v2 -----

/// A Vault KV v2 secret, read with its version and written back with check-and-set on it, so a
/// concurrent writer makes the save fail instead of being overwritten.
struct Vault {
    store: String,
    client: reqwest::Client,
    addr: String,
    token: String,
    namespace: Option<String>,
    mount: String,
    path: String,
    version: u64,
    data: BTreeMap<String, String>,
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
    async fn load(store: &str, mount: String, path: String) -> Result<Vault, SecretsError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let invalid = |m: String| SecretsError::Invalid(format!("store `{store}`: {m}"));
        let addr = var("VAULT_ADDR")
            .ok_or_else(|| invalid("VAULT_ADDR is not set (e.g. https://vault.internal:8200)".into()))?;
        let token = var("VAULT_TOKEN").ok_or_else(|| invalid("VAULT_TOKEN is not set".into()))?;
        crate::redact::register(&token);
        let addr = addr.trim_end_matches('/').to_string();
        url::Url::parse(&addr).map_err(|e| invalid(format!("VAULT_ADDR `{addr}` is not a URL: {e}")))?;
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| invalid(format!("HTTP client: {e}")))?;
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

    async fn save(&mut self, rotated: bool) -> Result<(), SecretsError> {
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

// ----- AWS Secrets Manager -----

struct AwsSm {
    store: String,
    client: aws_sdk_secretsmanager::Client,
    id: String,
    exists: bool,
    /// Version ids by slot, and each version's text.
    versions: [Option<String>; 3],
    texts: BTreeMap<String, String>,
}

impl AwsSm {
    fn fail(&self, op: &str, e: impl std::fmt::Display) -> SecretsError {
        SecretsError::Store { store: self.store.clone(), message: format!("{op}: {e}") }
    }

    async fn load(store: &str, id: String) -> Result<AwsSm, SecretsError> {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
        let client = aws_sdk_secretsmanager::Client::new(&sdk);
        let mut sm = AwsSm {
            store: store.to_string(),
            client,
            id,
            exists: true,
            versions: [None, None, None],
            texts: BTreeMap::new(),
        };
        let mut token = None;
        loop {
            let page = sm.client.list_secret_version_ids().secret_id(&sm.id).set_next_token(token).send().await;
            let page = match page {
                Ok(p) => p,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {
                    sm.exists = false;
                    return Ok(sm);
                }
                Err(e) => return Err(sm.unreachable_or_fail("ListSecretVersionIds", e)),
            };
            for v in page.versions() {
                let Some(vid) = v.version_id() else { continue };
                for slot in [Slot::Current, Slot::Pending, Slot::Previous] {
                    if v.version_stages().iter().any(|s| s == slot.label()) {
                        sm.versions[index(slot)] = Some(vid.to_string());
                    }
                }
            }
            token = page.next_token().filter(|t| !t.is_empty()).map(String::from);
            if token.is_none() {
                break;
            }
        }
        for vid in sm.versions.iter().flatten().cloned().collect::<Vec<_>>() {
            if sm.texts.contains_key(&vid) {
                continue;
            }
            let got = sm
                .client
                .get_secret_value()
                .secret_id(&sm.id)
                .version_id(&vid)
                .send()
                .await
                .map_err(|e| sm.unreachable_or_fail("GetSecretValue", e))?;
            if let Some(text) = got.secret_string() {
                crate::redact::register(text);
                sm.texts.insert(vid, text.to_string());
            }
        }
        Ok(sm)
    }

    fn unreachable_or_fail<E, R>(&self, op: &str, e: aws_sdk_secretsmanager::error::SdkError<E, R>) -> SecretsError
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        use aws_sdk_secretsmanager::error::SdkError;
        let unreachable = matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_));
        let message = format!("{op} {}: {}", self.id, aws_sdk_secretsmanager::error::DisplayErrorContext(&e));
        if unreachable {
            SecretsError::Unreachable { store: self.store.clone(), message }
        } else {
            SecretsError::Store { store: self.store.clone(), message }
        }
    }

    fn read(&self, slot: Slot, fields: &[String]) -> Result<Option<Fields>, SecretsError> {
        let Some(text) = self.versions[index(slot)].as_ref().and_then(|v| self.texts.get(v)) else { return Ok(None) };
        if fields.len() == 1 {
            return Ok(Some(Fields::from([(fields[0].clone(), text.clone())])));
        }
        let map: BTreeMap<String, serde_json::Value> = serde_json::from_str(text).map_err(|e| {
            self.fail(
                &format!("read the {} version", slot.label()),
                format!("expected a JSON object with {}: {e}", fields.join(", ")),
            )
        })?;
        Ok(Some(
            map.into_iter()
                .filter(|(k, _)| fields.contains(k))
                .map(|(k, v)| (k, v.as_str().map(String::from).unwrap_or_else(|| v.to_string())))
                .collect(),
        ))
    }

    async fn put_pending(&mut self, value: &Fields, fields: &[String]) -> Result<(), SecretsError> {
        let text = if fields.len() == 1 {
            value.get(&fields[0]).cloned().unwrap_or_default()
        } else {
            serde_json::to_string(value).expect("fields serialize")
        };
        if !self.exists {
            self.client
                .create_secret()
                .name(&self.id)
                .description("managed by opsbook rotate-secrets")
                .send()
                .await
                .map_err(|e| self.unreachable_or_fail("CreateSecret", e))?;
            self.exists = true;
        }
        let token = super::hex_key(16);
        let out = self
            .client
            .put_secret_value()
            .secret_id(&self.id)
            .client_request_token(&token)
            .secret_string(&text)
            .version_stages(Slot::Pending.label())
            .send()
            .await
            .map_err(|e| self.unreachable_or_fail("PutSecretValue", e))?;
        let vid = out.version_id().unwrap_or(&token).to_string();
        self.texts.insert(vid.clone(), text);
        self.versions[index(Slot::Pending)] = Some(vid);
        Ok(())
    }

    async fn stage(&self, label: &str, move_to: Option<&str>, remove_from: Option<&str>) -> Result<(), SecretsError> {
        self.client
            .update_secret_version_stage()
            .secret_id(&self.id)
            .version_stage(label)
            .set_move_to_version_id(move_to.map(String::from))
            .set_remove_from_version_id(remove_from.map(String::from))
            .send()
            .await
            .map(drop)
            .map_err(|e| self.unreachable_or_fail(&format!("UpdateSecretVersionStage {label}"), e))
    }

    /// AWSCURRENT moves to the pending version (Secrets Manager then labels the old one
    /// AWSPREVIOUS), and AWSPENDING is taken off.
    async fn finish(&mut self, keep_previous: bool) -> Result<(), SecretsError> {
        let pending = self.versions[1].clone().expect("checked by the caller");
        let current = self.versions[0].clone();
        if current.as_deref() != Some(pending.as_str()) {
            self.stage("AWSCURRENT", Some(&pending), current.as_deref()).await?;
        }
        self.stage("AWSPENDING", None, Some(&pending)).await?;
        self.versions[0] = Some(pending);
        self.versions[1] = None;
        if let Some(old) = current {
            self.versions[2] = Some(old);
            if !keep_previous {
                self.unlabel(Slot::Previous).await?;
            }
        }
        Ok(())
    }

    async fn unlabel(&mut self, slot: Slot) -> Result<(), SecretsError> {
        if let Some(vid) = self.versions[index(slot)].clone() {
            // The previous label may not have been set on the version yet (finish sets it
            // implicitly); removing a label that is not there is an error, so look first.
            let described = self
                .client
                .describe_secret()
                .secret_id(&self.id)
                .send()
                .await
                .map_err(|e| self.unreachable_or_fail("DescribeSecret", e))?;
            let labelled = described
                .version_ids_to_stages()
                .and_then(|m| m.get(&vid))
                .is_some_and(|stages| stages.iter().any(|s| s == slot.label()));
            if labelled {
                self.stage(slot.label(), None, Some(&vid)).await?;
            }
        }
        self.versions[index(slot)] = None;
        Ok(())
    }

    async fn swap_previous(&mut self) -> Result<(), SecretsError> {
        let previous = self.versions[2].clone().expect("checked by the caller");
        let current = self.versions[0].clone();
        self.stage("AWSCURRENT", Some(&previous), current.as_deref()).await?;
        self.versions[0] = Some(previous);
        self.versions[2] = current;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_specs_parse_and_bad_ones_name_the_fix() {
        assert_eq!(StoreSpec::parse("dotenv:.env").unwrap(), StoreSpec::Dotenv(".env".into()));
        assert_eq!(StoreSpec::parse("aws-sm:shop/prod/db").unwrap(), StoreSpec::AwsSm("shop/prod/db".into()));
        assert_eq!(
            StoreSpec::parse("vault:secret/shop/prod").unwrap(),
            StoreSpec::Vault { mount: "secret".into(), path: "shop/prod".into() }
        );
        assert!(StoreSpec::parse("vault:secret").unwrap_err().contains("vault:MOUNT/PATH"));
        assert!(StoreSpec::parse("gcp:x").unwrap_err().contains("dotenv:PATH, aws-sm:SECRET_ID or vault:MOUNT/PATH"));
        assert!(StoreSpec::parse("dotenv:").unwrap_err().contains("names nothing"));
    }

    #[test]
    fn flat_slots_use_suffixed_keys_per_field() {
        let fields = vec!["AWS_SECRET_ACCESS_KEY".to_string(), "AWS_ACCESS_KEY_ID".to_string()];
        let map = BTreeMap::from([
            ("AWS_SECRET_ACCESS_KEY_PREVIOUS".to_string(), "old".to_string()),
            ("AWS_ACCESS_KEY_ID_PREVIOUS".to_string(), "AKOLD".to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), "new".to_string()),
        ]);
        let prev = flat_read(|k| map.get(k).cloned(), &fields, Slot::Previous).unwrap();
        assert_eq!(prev["AWS_ACCESS_KEY_ID"], "AKOLD");
        let cur = flat_read(|k| map.get(k).cloned(), &fields, Slot::Current).unwrap();
        assert_eq!(cur.len(), 1, "a missing secondary field is left out");
        assert!(flat_read(|k| map.get(k).cloned(), &fields, Slot::Pending).is_none());
    }
}
