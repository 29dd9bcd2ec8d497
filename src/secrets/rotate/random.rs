//! Kind random: a hex signing key (JWT_SECRET and the like) with no target system; the previous
//! value stays in the store for the grace period so tokens signed with it still verify.

use super::{RotateError, Rotator, SecretSpec, StepError, StepFuture};
use crate::secrets::store::{Fields, Slots};

pub(super) struct Random;

impl Rotator for Random {
    fn validate(&self, spec: &SecretSpec, _admin: bool) -> Result<(), RotateError> {
        if spec.bits.is_some_and(|b| b < 128) {
            return Err(spec.invalid("bits must be at least 128"));
        }
        Ok(())
    }

    fn create<'a>(
        &'a self,
        spec: &'a SecretSpec,
        _current: Option<&'a Fields>,
        _store: &'a Slots,
    ) -> StepFuture<'a, (Fields, Option<String>)> {
        Box::pin(async move {
            let bits = spec.bits.unwrap_or(256) as usize;
            Ok((Fields::from([(spec.name.clone(), crate::secrets::hex_key(bits.div_ceil(8)))]), None))
        })
    }

    fn test<'a>(
        &'a self,
        spec: &'a SecretSpec,
        pending: &'a Fields,
        _current: Option<&'a Fields>,
    ) -> StepFuture<'a, ()> {
        let ok = spec.primary(pending).len() >= 32;
        Box::pin(async move { ok.then_some(()).ok_or_else(|| StepError::failed("generated value is too short")) })
    }

    fn revocation(&self, spec: &SecretSpec, _old: &Fields, _new: &Fields) -> Option<String> {
        Some(format!("value {}", spec.previous_key()))
    }
}
