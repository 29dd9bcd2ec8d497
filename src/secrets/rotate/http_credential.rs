//! Kind http-credential: a gateway credential created, tested and revoked through the templated
//! HTTP calls of its spec (`create`, `test`, `revoke`), with an optional id read from the create
//! call's answer.

use std::collections::BTreeMap;

use super::{fingerprint, Context, RotateError, Rotator, SecretSpec, StepError, StepFuture};
use crate::secrets::http as http_call;
use crate::secrets::store::{Fields, Slot, Slots};

pub(super) struct HttpCredential;

impl Rotator for HttpCredential {
    fn validate(&self, spec: &SecretSpec, _admin: bool) -> Result<(), RotateError> {
        let (Some(create), Some(test)) = (&spec.create, &spec.test) else {
            return Err(spec.needs("a create call and a test call"));
        };
        let cfg = |source| RotateError::Call { name: spec.name.clone(), source };
        http_call::validate("create", create, &["current", "current_id"]).map_err(cfg)?;
        http_call::validate("test", test, &["new", "new_id", "current", "current_id"]).map_err(cfg)?;
        if create.value_path.is_none() {
            return Err(spec.invalid("create needs value_path (where the new value is in the JSON answer)"));
        }
        if create.id_path.is_some() != spec.id_name.is_some() {
            return Err(
                spec.invalid("create.id_path and id_name go together (the id is read from the answer and stored)")
            );
        }
        if let Some(revoke) = &spec.revoke {
            http_call::validate("revoke", revoke, &["previous", "previous_id", "current", "current_id"])
                .map_err(cfg)?;
            let ids = http_call::used(revoke).iter().any(|n| n.ends_with("_id"));
            if ids && spec.id_name.is_none() {
                return Err(spec.invalid("revoke uses an id placeholder: set id_name and create.id_path"));
            }
        }
        Ok(())
    }

    fn create<'a>(
        &'a self,
        spec: &'a SecretSpec,
        current: Option<&'a Fields>,
        _store: &'a Slots,
    ) -> StepFuture<'a, (Fields, Option<String>)> {
        Box::pin(async move {
            let create = spec.create.as_ref().expect("validated");
            let vars = call_vars(spec, [("current", current), ("new", None)]);
            let answer = http_call::call("create", create, "POST", &vars).await?;
            let value = http_call::extract("create", &answer, create.value_path.as_deref().expect("validated"))?;
            let mut fields = Fields::from([(spec.name.clone(), value)]);
            if let (Some(path), Some(field)) = (&create.id_path, spec.id_field()) {
                fields.insert(field, http_call::extract("create", &answer, path)?);
            }
            Ok((fields, None))
        })
    }

    fn test<'a>(
        &'a self,
        spec: &'a SecretSpec,
        pending: &'a Fields,
        current: Option<&'a Fields>,
    ) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let test = spec.test.as_ref().expect("validated");
            http_call::call("test", test, "GET", &call_vars(spec, [("new", Some(pending)), ("current", current)]))
                .await
                .map(drop)
                .map_err(StepError::from)
        })
    }

    /// The new credential is revoked through the revoke call, when there is one.
    fn roll_back<'a>(
        &'a self,
        _ctx: &'a Context,
        spec: &'a SecretSpec,
        pending: &'a Fields,
        current: Option<&'a Fields>,
    ) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let Some(revoke) = &spec.revoke else {
                return Err(StepError::failed(
                    "no revoke call is configured: the new credential stays valid at the gateway",
                ));
            };
            let vars = call_vars(spec, [("previous", Some(pending)), ("current", current)]);
            http_call::call("revoke (roll back)", revoke, "DELETE", &vars).await.map(drop).map_err(StepError::from)
        })
    }

    fn live_when_created(&self) -> bool {
        true
    }

    /// The old credential by its id, or by its fingerprint when it has none.
    fn revocation(&self, spec: &SecretSpec, old: &Fields, _new: &Fields) -> Option<String> {
        Some(match spec.id_of(old) {
            Some(id) => format!("credential {id}"),
            None => format!("credential {}", fingerprint(spec.primary(old))),
        })
    }

    /// Without a revoke call the old credential is only dropped from the store.
    fn revoke<'a>(
        &'a self,
        _ctx: &'a Context,
        spec: &'a SecretSpec,
        what: &'a str,
        store: &'a Slots,
    ) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let Some(call) = spec.revoke.as_ref().filter(|_| what.starts_with("credential ")) else { return Ok(()) };
            let vars =
                call_vars(spec, [("previous", store.get(Slot::Previous)), ("current", store.get(Slot::Current))]);
            http_call::call("revoke", call, "DELETE", &vars).await.map_err(|e| StepError::from(e).context("revoke"))?;
            Ok(())
        })
    }
}

/// The template values for an HTTP call.
fn call_vars(spec: &SecretSpec, slots: [(&'static str, Option<&Fields>); 2]) -> BTreeMap<&'static str, String> {
    let mut vars = BTreeMap::new();
    for (name, value) in slots {
        let Some(value) = value else { continue };
        vars.insert(name, spec.primary(value).to_string());
        if let Some(id) = spec.id_of(value) {
            vars.insert(
                match name {
                    "current" => "current_id",
                    "new" => "new_id",
                    _ => "previous_id",
                },
                id.to_string(),
            );
        }
    }
    vars
}
