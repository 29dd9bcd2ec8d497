//! The `rotate-secrets` action: `opsbook rotate-secrets run` (or `plan`) as a step. Password-hash
//! secrets need a plaintext_file here: a runbook has no place to show a password once.

use serde_json::Value;

use super::{ActionCtx, ActionError, Outputs};
use crate::secrets::rotate::{self, Kind, RotateSpec};

/// The run's spec, as `opsbook rotate-secrets run` takes it (the secrets are the profile's).
pub type Input = RotateSpec;

fn err(e: rotate::RotateError) -> ActionError {
    ActionError::Rotate(Box::new(e))
}

pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let rc = crate::settings::rotate::resolve(ctx.config, &input).map_err(err)?;
    let due: Vec<String> =
        rotate::status(&rc).await.map_err(err)?.into_iter().filter(|s| s.due).map(|s| s.name).collect();
    let mut out = Outputs::new();
    out.insert("due".into(), due.iter().cloned().map(Value::from).collect::<Vec<_>>().into());
    if ctx.dry_run {
        return Ok(out);
    }
    let targets: Vec<&String> =
        if input.names.is_empty() { due.iter().collect() } else { input.names.iter().collect() };
    for spec in rc.specs.iter().filter(|s| targets.contains(&&s.name)) {
        if spec.kind == Kind::PasswordHash && spec.plaintext_file.is_none() {
            return Err(ActionError::NoPlaintextFile { secret: spec.name.clone() });
        }
    }
    let outcomes = rotate::run(&rc, input.selection()).await.map_err(err)?;
    out.insert("rotated".into(), outcomes.iter().filter(|o| o.ok).count().into());
    out.insert(
        "fingerprints".into(),
        outcomes
            .iter()
            .filter_map(|o| o.fingerprint.as_ref().map(|f| Value::from(format!("{}={f}", o.name))))
            .collect::<Vec<_>>()
            .into(),
    );
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| format!("{}: {}", o.name, o.error.as_deref().unwrap_or("failed")))
        .collect();
    if !failed.is_empty() {
        // A target that could not be reached is "unavailable" here too, as for the command.
        let unreachable =
            outcomes.iter().any(|o| !o.ok && o.error_class == Some(crate::error::ErrorClass::Unavailable));
        return Err(ActionError::RotationFailed { failed, unreachable });
    }
    Ok(out)
}
