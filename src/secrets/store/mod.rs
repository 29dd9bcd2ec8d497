//! Where rotated secrets live, seen as three slots per secret: current, pending and previous.
//!
//! - `dotenv:PATH` and `vault:MOUNT/PATH` (HashiCorp Vault KV v2) keep the slots as keys of one
//!   flat map: `NAME`, `NAME_PENDING`, `NAME_PREVIOUS` (one set per field).
//! - `aws-sm:SECRET_ID` keeps them as versions of the secret labelled `AWSCURRENT`, `AWSPENDING`
//!   and `AWSPREVIOUS`, the way Secrets Manager's own rotation does. A secret with several fields
//!   (an access key id and its secret) is stored as a JSON object.
//!
//! Values are registered for redaction as soon as they are read. This file holds the slots and
//! the flat-map stores' layout; `vault` and `aws_sm` talk to those services.

mod aws_sm;
mod vault;

use std::collections::BTreeMap;
use std::path::PathBuf;

use self::aws_sm::AwsSm;
use self::vault::Vault;
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

/// A `store = "…"` setting that names no store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreSpecError {
    #[error("store `{raw}` is not supported; use dotenv:PATH, aws-sm:SECRET_ID or vault:MOUNT/PATH")]
    Unsupported { raw: String },
    #[error("store `{raw}` names nothing after `{scheme}:`")]
    Empty { raw: String, scheme: String },
    #[error("store `{raw}`: a Vault store is vault:MOUNT/PATH (e.g. vault:secret/shop/prod)")]
    VaultPath { raw: String },
}

impl StoreSpec {
    pub fn parse(raw: &str) -> Result<StoreSpec, StoreSpecError> {
        let unsupported = || StoreSpecError::Unsupported { raw: raw.to_string() };
        let (scheme, rest) = raw.split_once(':').ok_or_else(unsupported)?;
        if rest.trim().is_empty() {
            return Err(StoreSpecError::Empty { raw: raw.to_string(), scheme: scheme.to_string() });
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
                    _ => Err(StoreSpecError::VaultPath { raw: raw.to_string() }),
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
        let spec = StoreSpec::parse(raw)?;
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
            self.values[1].clone().ok_or_else(|| SecretsError::NoValue { store: self.describe(), slot: "pending" })?;
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
        let previous =
            self.values[2].clone().ok_or_else(|| SecretsError::NoValue { store: self.describe(), slot: "previous" })?;
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
        assert!(StoreSpec::parse("vault:secret").unwrap_err().to_string().contains("vault:MOUNT/PATH"));
        assert!(StoreSpec::parse("gcp:x")
            .unwrap_err()
            .to_string()
            .contains("dotenv:PATH, aws-sm:SECRET_ID or vault:MOUNT/PATH"));
        assert!(StoreSpec::parse("dotenv:").unwrap_err().to_string().contains("names nothing"));
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
