//! Kind password-hash: an argon2id hash of a new application password. The store keeps only the
//! hash; the plaintext is shown once (plaintext_file or the terminal), so the old value is gone
//! for good once replaced.

use super::{RotateError, Rotator, SecretSpec, StepError, StepFuture};
use crate::secrets::store::{Fields, Slots};

pub(super) struct PasswordHash;

impl Rotator for PasswordHash {
    fn validate(&self, _spec: &SecretSpec, _admin: bool) -> Result<(), RotateError> {
        Ok(())
    }

    fn create<'a>(
        &'a self,
        spec: &'a SecretSpec,
        _current: Option<&'a Fields>,
        _store: &'a Slots,
    ) -> StepFuture<'a, (Fields, Option<String>)> {
        Box::pin(async move {
            let plaintext = crate::secrets::password(24);
            let hash = crate::secrets::argon2id(&plaintext)?;
            Ok((Fields::from([(spec.name.clone(), hash)]), Some(plaintext)))
        })
    }

    fn test<'a>(
        &'a self,
        spec: &'a SecretSpec,
        pending: &'a Fields,
        _current: Option<&'a Fields>,
    ) -> StepFuture<'a, ()> {
        let ok = spec.primary(pending).starts_with("$argon2id$");
        Box::pin(async move { ok.then_some(()).ok_or_else(|| StepError::failed("not an argon2id hash")) })
    }

    fn irreversible(&self, _spec: &SecretSpec) -> Option<&'static str> {
        Some("password-hash")
    }
}
