//! The AWS Secrets Manager store: a secret's slots are versions labelled AWSCURRENT, AWSPENDING
//! and AWSPREVIOUS, as Secrets Manager's own rotation labels them.

use std::collections::BTreeMap;

use super::{index, Fields, Slot};
use crate::secrets::SecretsError;

pub(super) struct AwsSm {
    pub(super) store: String,
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

    pub(super) async fn load(store: &str, id: String) -> Result<AwsSm, SecretsError> {
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

    pub(super) fn read(&self, slot: Slot, fields: &[String]) -> Result<Option<Fields>, SecretsError> {
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

    pub(super) async fn put_pending(&mut self, value: &Fields, fields: &[String]) -> Result<(), SecretsError> {
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
        let token = crate::secrets::hex_key(16);
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
    pub(super) async fn finish(&mut self, keep_previous: bool) -> Result<(), SecretsError> {
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

    pub(super) async fn unlabel(&mut self, slot: Slot) -> Result<(), SecretsError> {
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

    pub(super) async fn swap_previous(&mut self) -> Result<(), SecretsError> {
        let previous = self.versions[2].clone().expect("checked by the caller");
        let current = self.versions[0].clone();
        self.stage("AWSCURRENT", Some(&previous), current.as_deref()).await?;
        self.versions[0] = Some(previous);
        self.versions[2] = current;
        Ok(())
    }
}
