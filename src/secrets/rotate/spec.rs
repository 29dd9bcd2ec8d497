//! A rotation run's inputs, declared once: the `with` of a runbook `rotate-secrets` step and what
//! `opsbook rotate-secrets`'s flags convert into. (The secrets themselves are the profile's
//! `[[profiles.NAME.secrets]]` entries, [`super::SecretSpec`].) `settings::rotate` resolves it
//! into a [`super::Context`].

use schemars::JsonSchema;
use serde::Deserialize;

use super::Selection;
use crate::spec::opt_text;

/// Which secrets to rotate, and the admin connection postgres-password secrets are set through.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSpec {
    /// Secrets to rotate (their names in the profile); empty: the due ones.
    #[serde(default)]
    pub names: Vec<String>,
    /// Only finish rotations left part-way (and revocations that are due).
    #[serde(default)]
    pub resume: bool,
    /// Admin connection for postgres-password secrets [default: ADMIN_DATABASE_URL / profile].
    #[serde(default, deserialize_with = "opt_text")]
    pub admin_database_url: Option<String>,
}

impl RotateSpec {
    /// The secrets a run touches: unfinished ones with `resume`, else the named ones, else the
    /// due ones.
    pub fn selection(&self) -> Selection {
        if self.resume {
            Selection::Resume
        } else if self.names.is_empty() {
            Selection::Due
        } else {
            Selection::Names(self.names.clone())
        }
    }
}
