//! Kind s3-access-key: an object-storage access key created at the key provider (AWS IAM), tested
//! by using it on the configured bucket, and deleted there once its grace period is over.

use std::time::Duration;

use super::{Context, RotateError, Rotator, SecretSpec, StepError, StepFuture};
use crate::secrets::keys::{self, AccessKey, AwsIam, KeyProvider};
use crate::secrets::store::{Fields, Slot, Slots};

pub(super) struct S3AccessKey;

impl Rotator for S3AccessKey {
    fn validate(&self, spec: &SecretSpec, _admin: bool) -> Result<(), RotateError> {
        if spec.user.is_none() {
            return Err(spec.needs("user (the IAM user owning the keys)"));
        }
        match spec.bucket.as_deref().map(crate::store::StoreUrl::parse) {
            Some(Ok(crate::store::StoreUrl::S3 { .. })) => {}
            Some(_) => return Err(spec.invalid("bucket must be an s3://BUCKET URL")),
            None => return Err(spec.needs("bucket (s3://BUCKET, where the new key is tested)")),
        }
        if let Some(p) = spec.provider.as_deref().filter(|p| *p != "aws-iam") {
            return Err(spec.invalid(format!("provider `{p}` is not supported; use aws-iam")));
        }
        if spec.id_field().is_none() {
            return Err(spec.needs("id_name (the store key of the access key id)"));
        }
        Ok(())
    }

    /// AWS_SECRET_ACCESS_KEY's id is AWS_ACCESS_KEY_ID (any prefix kept).
    fn default_id_field(&self, spec: &SecretSpec) -> Option<String> {
        spec.name.strip_suffix("SECRET_ACCESS_KEY").map(|p| format!("{p}ACCESS_KEY_ID"))
    }

    fn create<'a>(
        &'a self,
        spec: &'a SecretSpec,
        current: Option<&'a Fields>,
        store: &'a Slots,
    ) -> StepFuture<'a, (Fields, Option<String>)> {
        Box::pin(async move {
            let provider = key_provider(spec).await;
            let existing = provider.list().await?;
            // Providers cap keys per user (IAM: two); never delete a key we do not know about.
            if existing.len() >= 2 {
                let known: Vec<&str> =
                    [current, store.get(Slot::Previous)].into_iter().flatten().filter_map(|v| spec.id_of(v)).collect();
                return Err(StepError::failed(too_many_keys(&provider, &existing, &known)));
            }
            let key = provider.create().await?;
            let id_field = spec.id_field().expect("validated");
            Ok((Fields::from([(spec.name.clone(), key.secret), (id_field, key.id)]), None))
        })
    }

    fn test<'a>(
        &'a self,
        spec: &'a SecretSpec,
        pending: &'a Fields,
        _current: Option<&'a Fields>,
    ) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let settle = std::env::var("OPSBOOK_KEY_SETTLE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
            keys::probe(
                spec.bucket.as_deref().expect("validated"),
                spec.endpoint.as_deref(),
                &access_key(spec, pending),
                Duration::from_secs(settle),
            )
            .await
            .map_err(StepError::from)
        })
    }

    /// The new key is deleted at the provider.
    fn roll_back<'a>(
        &'a self,
        _ctx: &'a Context,
        spec: &'a SecretSpec,
        pending: &'a Fields,
        _current: Option<&'a Fields>,
    ) -> StepFuture<'a, ()> {
        Box::pin(async move {
            match spec.id_of(pending) {
                Some(id) => Ok(key_provider(spec).await.delete(id).await?),
                None => Err(StepError::failed("the new key's id is not in the store")),
            }
        })
    }

    fn live_when_created(&self) -> bool {
        true
    }

    fn revocation(&self, spec: &SecretSpec, old: &Fields, _new: &Fields) -> Option<String> {
        spec.id_of(old).map(|id| format!("key {id}"))
    }

    fn revoke<'a>(
        &'a self,
        _ctx: &'a Context,
        spec: &'a SecretSpec,
        what: &'a str,
        _store: &'a Slots,
    ) -> StepFuture<'a, ()> {
        Box::pin(async move {
            if let Some(id) = what.strip_prefix("key ") {
                key_provider(spec).await.delete(id).await.map_err(|e| StepError::from(e).context("revoke"))?;
            }
            Ok(())
        })
    }
}

async fn key_provider(spec: &SecretSpec) -> AwsIam {
    AwsIam::new(spec.user.as_deref().expect("validated")).await
}

fn access_key(spec: &SecretSpec, value: &Fields) -> AccessKey {
    AccessKey { id: spec.id_of(value).unwrap_or_default().to_string(), secret: spec.primary(value).to_string() }
}

/// Why no key can be created while the user has two: either the previous key still waits for its
/// revocation, or a key this store does not hold is in the way (`known`: the ids it holds).
fn too_many_keys(provider: &AwsIam, existing: &[String], known: &[&str]) -> String {
    let unknown: Vec<&str> = existing.iter().map(String::as_str).filter(|id| !known.contains(id)).collect();
    format!(
        "{} already has {} access keys ({}); IAM allows two. {}",
        provider.describe(),
        existing.len(),
        existing.join(", "),
        if unknown.is_empty() {
            "Wait for the previous key's revocation (rotate-secrets run --resume after its grace) first".to_string()
        } else {
            format!("Delete the key not in this store if nothing uses it ({}), then run again", unknown.join(", "))
        }
    )
}
