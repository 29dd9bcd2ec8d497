//! The runbook file format: declarative TOML steps (see README "Runbooks"). Parsing keeps byte
//! spans so every later error can name the file, line and column.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// A runbook file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunbookFile {
    /// Short name, used in reports, journals and schedules.
    pub name: String,
    /// What the runbook is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Cron expression (5 fields) for `opsbook schedule`.
    #[serde(default)]
    pub schedule: Option<String>,
    /// When true, a second run of this runbook exits 4 while one runs.
    #[serde(default)]
    pub lock: bool,
    /// Parameters, given with `--param k=v`, from the environment (OPSBOOK_PARAM_<NAME>), or prompted.
    #[serde(default)]
    pub params: BTreeMap<String, ParamSpec>,
    /// The steps, run in order.
    #[schemars(with = "Vec<StepSpec>")]
    pub steps: Vec<Spanned<StepSpec>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Int,
    Bool,
    /// A duration such as 90s, 15m, 2h, 7d.
    Duration,
    Url,
    /// Never echoed, journaled or logged; prompted without echo.
    Secret,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(rename = "type", default = "default_param_type")]
    pub kind: ParamType,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub default: Option<toml::Value>,
    #[serde(default)]
    pub required: bool,
    /// Allowed values.
    #[serde(default, rename = "enum")]
    pub allowed: Option<Vec<String>>,
    /// A regular expression the whole value must match.
    #[serde(default)]
    pub pattern: Option<String>,
}

fn default_param_type() -> ParamType {
    ParamType::String
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Unique step id (letters, digits, '-', '_'); outputs are `${steps.ID.outputs.KEY}`.
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// Human title.
    #[serde(default)]
    pub name: Option<String>,
    /// What the step does (see `opsbook runbook schema` for the list).
    #[schemars(with = "String")]
    pub action: Spanned<String>,
    /// The action's inputs; strings may hold `${params.x}`, `${env.X}`, `${steps.ID.outputs.KEY}`.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub with: Option<Spanned<toml::Table>>,
    /// Run the step only when this condition holds: `A == B`, `A != B`, or a single value that is
    /// true unless empty, "false", "0" or "no".
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub when: Option<Spanned<String>>,
    /// Give up on the step after this long (e.g. 30s, 2h).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub retry: Option<RetrySpec>,
    /// abort (default) | continue | [ "step-id", ... ] to jump to cleanup steps.
    #[serde(default)]
    pub on_failure: Option<OnFailure>,
    /// The step changes or deletes something: needs --yes, or typing the target when
    /// `confirm = "type-name"`.
    #[serde(default)]
    pub destructive: bool,
    /// "yes" (default for destructive steps) or "type-name".
    #[serde(default)]
    pub confirm: Option<ConfirmMode>,
    /// The name to type for `confirm = "type-name"` (interpolated).
    #[serde(default)]
    pub target: Option<String>,
    /// Cleanup: runs even after an earlier step failed.
    #[serde(default)]
    pub always: bool,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Total attempts, including the first.
    pub attempts: u32,
    /// Pause before the second attempt (e.g. 10s).
    #[serde(default)]
    pub delay: Option<String>,
    /// Multiplier applied to the delay after each attempt.
    #[serde(default)]
    pub backoff: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OnFailure {
    Mode(FailureMode),
    Goto(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    Abort,
    Continue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ConfirmMode {
    Yes,
    TypeName,
}

/// The JSON Schema of the format, for editors.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RunbookFile)).expect("schema serializes")
}
