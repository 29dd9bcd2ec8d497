//! The rotation journal of a profile (a JSON file in the state directory) and the standing of
//! each secret read from it and from the store.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{fingerprint, parse_duration, Context, Kind, RotateError, Strategy};
use crate::secrets::store::Slot;
use crate::secrets::SecretsError;

/// Rotation history, kept in the state directory per profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretState>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SecretState {
    pub rotated_at: Option<DateTime<Utc>>,
    pub fingerprint: Option<String>,
    /// A login (alternating) or previous value to revoke once the grace period is over.
    pub revoke: Option<Revoke>,
    /// When the value now in the previous slot was rotated in (None: never by opsbook), so a
    /// rollback restores the evidence of the value it puts back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_rotated_at: Option<DateTime<Utc>>,
    /// The fingerprint of the value the previous_rotated_at belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_fingerprint: Option<String>,
    /// An unfinished rotation: the step it reached.
    pub in_progress: Option<Progress>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revoke {
    pub what: String,
    pub after: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Created,
    Set,
    Tested,
    Finished,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    pub step: Step,
    pub pending_fingerprint: String,
    pub started: DateTime<Utc>,
}

fn state_path(profile: &str) -> PathBuf {
    crate::state::state_dir().join("secrets").join(format!("{profile}.json"))
}

/// Where the rotation state of a profile is kept (for messages).
pub fn state_file(profile: &str) -> PathBuf {
    state_path(profile)
}

pub(super) fn load_state(profile: &str) -> Result<State, RotateError> {
    let path = state_path(profile);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| RotateError::StateUnreadable { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(source) => Err(SecretsError::Io { op: "read".into(), path, source }.into()),
    }
}

pub(super) fn save_state(profile: &str, state: &State) -> Result<(), RotateError> {
    let path = state_path(profile);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| SecretsError::Io {
            op: "create".into(),
            path: dir.into(),
            source,
        })?;
    }
    let bytes = serde_json::to_vec_pretty(state).expect("state serializes");
    crate::files::write_atomic(&path, &bytes, Some(0o600)).map_err(|source| SecretsError::Io {
        op: "write".into(),
        path,
        source,
    })?;
    Ok(())
}

/// One secret's standing: the evidence `status` prints and promote-check reads.
#[derive(Debug, Clone, Serialize)]
pub struct Standing {
    pub name: String,
    pub kind: Kind,
    pub strategy: Strategy,
    pub store: String,
    pub present: bool,
    pub fingerprint: Option<String>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub age_seconds: Option<i64>,
    pub max_age_seconds: Option<u64>,
    pub next_due: Option<DateTime<Utc>>,
    pub due: bool,
    pub in_progress: Option<Step>,
    pub revoke_pending: Option<DateTime<Utc>>,
}

pub async fn status(ctx: &Context) -> Result<Vec<Standing>, RotateError> {
    let state = load_state(&ctx.profile)?;
    let now = Utc::now();
    let mut out = Vec::new();
    for spec in &ctx.specs {
        let store = spec.slots().await?;
        let value = store.primary(Slot::Current).map(String::from);
        let st = state.secrets.get(&spec.name).cloned().unwrap_or_default();
        let max_age = parse_duration("max_age", &spec.name, &spec.max_age)?;
        let next_due = match (st.rotated_at, max_age) {
            (Some(at), Some(m)) => Some(at + chrono::Duration::from_std(m).unwrap_or_default()),
            _ => None,
        };
        let due = value.is_none() || st.rotated_at.is_none() || next_due.is_some_and(|d| d <= now);
        out.push(Standing {
            name: spec.name.clone(),
            kind: spec.kind,
            strategy: spec.strategy,
            store: spec.store.clone(),
            present: value.is_some(),
            fingerprint: value.as_deref().map(fingerprint),
            rotated_at: st.rotated_at,
            age_seconds: st.rotated_at.map(|t| (now - t).num_seconds()),
            max_age_seconds: max_age.map(|d| d.as_secs()),
            next_due,
            due,
            in_progress: st.in_progress.as_ref().map(|p| p.step),
            revoke_pending: st.revoke.as_ref().map(|r| r.after),
        });
    }
    Ok(out)
}
