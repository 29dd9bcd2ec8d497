//! Everything about a runbook that can be checked before it runs: ids, actions, inputs,
//! references, durations, retry and failure routing, parameter specs.

use std::collections::HashSet;
use std::ops::Range;

use toml::Spanned;

use super::actions;
use super::format::{ConfirmMode, OnFailure, ParamSpec, ParamType, RunbookFile, StepSpec};
use super::interp::{self, Ref};
use super::Diagnostic;

struct Checker<'a> {
    source: &'a str,
    out: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = crate::text::line_col(self.source, span.start);
        self.out.push(Diagnostic { line, column, message: message.into() });
    }

    /// The span of `key = ` inside the file, for problems with top-level tables like params.
    fn find(&self, needle: &str) -> Range<usize> {
        let start = self.source.find(needle).unwrap_or(0);
        start..start
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// All problems, in file order.
pub fn check(file: &RunbookFile, source: &str) -> Vec<Diagnostic> {
    let mut c = Checker { source, out: Vec::new() };
    if file.name.trim().is_empty() {
        c.at(c.find("name"), "`name` must not be empty");
    }
    if let Some(schedule) = &file.schedule {
        if let Err(e) = check_cron(schedule) {
            c.at(c.find("schedule"), format!("invalid schedule `{schedule}`: {e}"));
        }
    }
    for (name, spec) in &file.params {
        let span = c.find(&format!("params.{name}"));
        if !valid_id(name) {
            c.at(span.clone(), format!("invalid parameter name `{name}`: use letters, digits, '-' and '_'"));
        }
        if let Err(e) = check_param(name, spec) {
            c.at(span, e.to_string());
        }
    }
    if file.steps.is_empty() {
        c.at(0..0, "the runbook has no steps: add at least one [[steps]] table");
    }
    let ids: Vec<&str> = file.steps.iter().map(|s| s.get_ref().id.get_ref().as_str()).collect();
    let mut seen = HashSet::new();
    for (index, spanned) in file.steps.iter().enumerate() {
        let step = spanned.get_ref();
        let id = step.id.get_ref().as_str();
        if !valid_id(id) {
            c.at(step.id.span(), format!("invalid step id `{id}`: use letters, digits, '-' and '_'"));
        }
        if !seen.insert(id) {
            c.at(step.id.span(), format!("duplicate step id `{id}`"));
        }
        check_step(&mut c, file, spanned, &ids[..index], &ids[index + 1..]);
    }
    c.out
}

/// The problems of one step besides its id; `earlier` and `later` are the ids of the steps
/// before and after it.
fn check_step(c: &mut Checker<'_>, file: &RunbookFile, spanned: &Spanned<StepSpec>, earlier: &[&str], later: &[&str]) {
    let step = spanned.get_ref();
    let id = step.id.get_ref().as_str();
    let earlier: HashSet<&str> = earlier.iter().copied().collect();
    check_inputs(c, file, spanned, &earlier);
    if let Some(when) = &step.when {
        check_refs(c, when.span(), id, interp::refs(when.get_ref()), file, &earlier);
    }
    if let Some(target) = &step.target {
        check_refs(c, spanned.span(), id, interp::refs(target), file, &earlier);
    }
    if let Some(timeout) = &step.timeout {
        if let Err(e) = humantime::parse_duration(timeout.get_ref()) {
            c.at(
                timeout.span(),
                format!("step `{id}`: invalid timeout `{}`: {e} (e.g. 30s, 15m, 2h)", timeout.get_ref()),
            );
        }
    }
    if let Some(retry) = &step.retry {
        if retry.attempts == 0 {
            c.at(spanned.span(), format!("step `{id}`: retry.attempts must be at least 1"));
        }
        if let Some(delay) = &retry.delay {
            if let Err(e) = humantime::parse_duration(delay) {
                c.at(spanned.span(), format!("step `{id}`: invalid retry.delay `{delay}`: {e}"));
            }
        }
        if retry.backoff.is_some_and(|b| !(1.0..=10.0).contains(&b)) {
            c.at(spanned.span(), format!("step `{id}`: retry.backoff must be between 1.0 and 10.0"));
        }
    }
    if let Some(OnFailure::Goto(targets)) = &step.on_failure {
        for target in targets {
            if !later.contains(&target.as_str()) {
                c.at(spanned.span(), format!("step `{id}`: on_failure names `{target}`, which is not a later step"));
            }
        }
    }
    if step.confirm == Some(ConfirmMode::TypeName) && !step.destructive {
        c.at(spanned.span(), format!("step `{id}`: confirm = \"type-name\" needs destructive = true"));
    }
}

/// The step's action and its `with` table: known inputs, required ones, references, and (when
/// nothing is interpolated) the input types.
fn check_inputs(c: &mut Checker<'_>, file: &RunbookFile, spanned: &Spanned<StepSpec>, earlier: &HashSet<&str>) {
    let step = spanned.get_ref();
    let id = step.id.get_ref().as_str();
    let action = step.action.get_ref().as_str();
    let Some((allowed, required)) = actions::fields(action) else {
        c.at(step.action.span(), format!("unknown action `{action}`; known actions: {}", actions::ACTIONS.join(", ")));
        return;
    };
    let (span, table) = match &step.with {
        Some(w) => (w.span(), Some(w.get_ref())),
        None => (spanned.span(), None),
    };
    let empty = toml::Table::new();
    let table = table.unwrap_or(&empty);
    for key in table.keys() {
        if !allowed.contains(key) {
            c.at(
                span.clone(),
                format!(
                    "step `{id}`: action `{action}` has no input `{key}` (inputs: {})",
                    if allowed.is_empty() { "none".into() } else { allowed.join(", ") }
                ),
            );
        }
    }
    for key in &required {
        if !table.contains_key(key) {
            c.at(span.clone(), format!("step `{id}`: action `{action}` needs input `{key}`"));
        }
    }
    if action == "shell" {
        check_secret_argv(c, span.clone(), id, table, file);
    }
    let mut has_refs = false;
    for value in table.values() {
        let refs = interp::value_refs(value);
        has_refs |= refs.as_ref().map_or(true, |r| !r.is_empty());
        check_refs(c, span.clone(), id, refs, file, earlier);
    }
    // Without references the inputs are final: check their types now, not mid-run.
    if !has_refs && c.out.is_empty() {
        let literal = interp::render_value(&toml::Value::Table(table.clone()), &|_| None);
        if let Ok(value) = literal {
            if let Some(Err(e)) = actions::check_literal(action, value) {
                c.at(span.clone(), format!("step `{id}`: invalid input for action `{action}`: {e}"));
            }
        }
    }
}

fn check_refs(
    c: &mut Checker<'_>,
    span: Range<usize>,
    step: &str,
    refs: Result<Vec<Ref>, interp::InterpError>,
    file: &RunbookFile,
    earlier: &HashSet<&str>,
) {
    let refs = match refs {
        Ok(r) => r,
        Err(e) => return c.at(span, format!("step `{step}`: {e}")),
    };
    for r in refs {
        match &r {
            Ref::Param(name) if !file.params.contains_key(name) => {
                c.at(span.clone(), format!("step `{step}`: {r} names an undeclared parameter; add [params.{name}]"))
            }
            Ref::StepOutput { step: other, .. } | Ref::StepStatus(other) if !earlier.contains(other.as_str()) => {
                c.at(span.clone(), format!("step `{step}`: {r} refers to `{other}`, which is not an earlier step"))
            }
            _ => {}
        }
    }
}

/// A secret parameter inside a shell step's `command` or `argv` would be part of the child's
/// argv, which every user of the machine can read (`ps`, /proc/PID/cmdline). It must travel in
/// the step's `env` instead.
fn check_secret_argv(c: &mut Checker<'_>, span: Range<usize>, step: &str, with: &toml::Table, file: &RunbookFile) {
    for key in ["command", "argv"] {
        let Some(value) = with.get(key) else { continue };
        let mut reported = HashSet::new();
        for r in interp::value_refs(value).unwrap_or_default() {
            let Ref::Param(name) = &r else { continue };
            let secret = file.params.get(name).is_some_and(|p| p.kind == ParamType::Secret);
            if secret && reported.insert(name.clone()) {
                let var = name.to_ascii_uppercase().replace('-', "_");
                c.at(
                    span.clone(),
                    format!(
                        "step `{step}`: secret parameter `{name}` in `{key}` would be visible in the process list \
                         (the child's argv); pass it in the step's environment, env = {{ {var} = \"{r}\" }}, for the \
                         program to read (e.g. PGPASSWORD) or a shell builtin to use as \"${var}\""
                    ),
                );
            }
        }
    }
}

/// A parameter declaration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ParamSpecError {
    #[error("parameter `{name}`: invalid pattern: {error}")]
    Pattern { name: String, error: regex_lite::Error },
    #[error("parameter `{name}`: a secret cannot have a default in the file")]
    SecretDefault { name: String },
    #[error("parameter `{name}`: default {error}")]
    Default { name: String, error: ParamValueError },
}

fn check_param(name: &str, spec: &ParamSpec) -> Result<(), ParamSpecError> {
    if let Some(pattern) = &spec.pattern {
        regex_lite::Regex::new(pattern).map_err(|error| ParamSpecError::Pattern { name: name.into(), error })?;
    }
    if let Some(default) = &spec.default {
        let text = match default {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if spec.kind == ParamType::Secret {
            return Err(ParamSpecError::SecretDefault { name: name.into() });
        }
        convert(spec, &text).map_err(|error| ParamSpecError::Default { name: name.into(), error })?;
    }
    Ok(())
}

/// A parameter value its declaration does not allow.
#[derive(Debug, thiserror::Error)]
pub enum ParamValueError {
    #[error("`{value}` is not one of: {}", allowed.join(", "))]
    NotAllowed { value: String, allowed: Vec<String> },
    #[error(transparent)]
    Pattern(regex_lite::Error),
    #[error("`{value}` does not match the pattern {pattern}")]
    NoMatch { value: String, pattern: String },
    #[error("`{value}` is not an integer")]
    NotInt { value: String },
    #[error("`{value}` is not a boolean (true/false)")]
    NotBool { value: String },
    #[error("`{value}` is not a duration: {error}")]
    NotDuration { value: String, error: humantime::DurationError },
    #[error("`{value}` is not a URL: {error}")]
    NotUrl { value: String, error: url::ParseError },
}

/// Converts and checks a parameter value against its spec.
pub fn convert(spec: &ParamSpec, raw: &str) -> Result<serde_json::Value, ParamValueError> {
    let value = || raw.to_string();
    if let Some(allowed) = &spec.allowed {
        if !allowed.iter().any(|a| a == raw) {
            return Err(ParamValueError::NotAllowed { value: value(), allowed: allowed.clone() });
        }
    }
    if let Some(pattern) = &spec.pattern {
        let re = regex_lite::Regex::new(&format!("^(?:{pattern})$")).map_err(ParamValueError::Pattern)?;
        if !re.is_match(raw) {
            return Err(ParamValueError::NoMatch { value: value(), pattern: pattern.clone() });
        }
    }
    Ok(match spec.kind {
        ParamType::String | ParamType::Secret => raw.into(),
        ParamType::Int => raw.trim().parse::<i64>().map_err(|_| ParamValueError::NotInt { value: value() })?.into(),
        ParamType::Bool => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => true.into(),
            "false" | "no" | "0" | "off" => false.into(),
            _ => return Err(ParamValueError::NotBool { value: value() }),
        },
        ParamType::Duration => {
            humantime::parse_duration(raw).map_err(|error| ParamValueError::NotDuration { value: value(), error })?;
            raw.into()
        }
        ParamType::Url => {
            url::Url::parse(raw).map_err(|error| ParamValueError::NotUrl { value: value(), error })?;
            raw.into()
        }
    })
}

/// Why a runbook's `schedule` is not a 5-field cron expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("expected 5 fields (minute hour day month weekday), found {found}")]
    FieldCount { found: usize },
    #[error("bad step in `{field}`")]
    Step { field: String },
    #[error("`{field}` is not a number, range or *")]
    NotANumber { field: String },
    #[error("{value} is outside {lo}-{hi} in `{field}`")]
    OutOfRange { value: u32, lo: u32, hi: u32, field: String },
}

/// A 5-field cron expression; each field `*`, numbers, ranges, lists and steps.
pub fn check_cron(expr: &str) -> Result<(), CronError> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(CronError::FieldCount { found: fields.len() });
    }
    let limits = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
    for (field, (lo, hi)) in fields.iter().zip(limits) {
        for part in field.split(',') {
            let (range, step) = part.split_once('/').map_or((part, None), |(r, s)| (r, Some(s)));
            if let Some(step) = step {
                step.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| CronError::Step { field: field.to_string() })?;
            }
            if range == "*" {
                continue;
            }
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            for n in [a, b] {
                let value: u32 = n.parse().map_err(|_| CronError::NotANumber { field: field.to_string() })?;
                if value < lo || value > hi {
                    return Err(CronError::OutOfRange { value, lo, hi, field: field.to_string() });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn errors(text: &str) -> Vec<String> {
        match crate::runbook::parse(Path::new("t.toml"), text.to_string()) {
            Ok(_) => Vec::new(),
            Err(crate::runbook::RunbookError::Invalid { diagnostics, .. }) => {
                diagnostics.iter().map(|d| format!("{}:{}: {}", d.line, d.column, d.message)).collect()
            }
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn valid_runbook_passes() {
        let text = r#"
name = "ok"
schedule = "0 2 * * *"
[params.set]
type = "string"
default = "shop"
[[steps]]
id = "a"
action = "wait"
[[steps]]
id = "b"
action = "notify"
with = { url = "http://127.0.0.1:1/x", message = "done ${steps.a.outputs.waited_ms} ${params.set}" }
"#;
        assert_eq!(errors(text), Vec::<String>::new());
    }

    #[test]
    fn positions_of_problems() {
        let text = "name = \"x\"\n[[steps]]\nid = \"a\"\naction = \"frobnicate\"\n[[steps]]\nid = \"a\"\naction = \"wait\"\nwhen = \"${params.nope}\"\n";
        let errs = errors(text);
        assert!(errs.iter().any(|e| e.starts_with("4:10:") && e.contains("unknown action `frobnicate`")), "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("6:6:") && e.contains("duplicate step id")), "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("8:8:") && e.contains("undeclared parameter")), "{errs:?}");
    }

    #[test]
    fn syntax_and_unknown_fields_have_positions() {
        let errs = errors("name = \"x\"\n[[steps]]\nid = \"a\"\nacton = \"wait\"\n");
        assert!(errs.iter().any(|e| e.starts_with("4:1:") && e.contains("acton")), "{errs:?}");
        let errs = errors("name = \"x\"\n[[steps]\n");
        assert!(errs.iter().any(|e| e.starts_with("2:")), "{errs:?}");
    }

    #[test]
    fn forward_references_and_bad_durations() {
        let text = "name = \"x\"\n[[steps]]\nid = \"a\"\naction = \"wait\"\ntimeout = \"soon\"\nwhen = \"${steps.b.status}\"\n[[steps]]\nid = \"b\"\naction = \"wait\"\n";
        let errs = errors(text);
        assert!(errs.iter().any(|e| e.contains("invalid timeout `soon`")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("not an earlier step")), "{errs:?}");
    }

    #[test]
    fn params_are_converted_and_checked() {
        use super::super::format::{ParamSpec, ParamType};
        let spec =
            |kind| ParamSpec { kind, description: None, default: None, required: false, allowed: None, pattern: None };
        assert_eq!(super::convert(&spec(ParamType::Int), "42").unwrap(), serde_json::json!(42));
        assert!(super::convert(&spec(ParamType::Int), "x").is_err());
        assert_eq!(super::convert(&spec(ParamType::Bool), "yes").unwrap(), serde_json::json!(true));
        assert!(super::convert(&spec(ParamType::Url), "not a url").is_err());
        let mut s = spec(ParamType::String);
        s.allowed = Some(vec!["a".into(), "b".into()]);
        assert!(super::convert(&s, "c").is_err());
        s.allowed = None;
        s.pattern = Some("[a-z]+".into());
        assert!(super::convert(&s, "abc").is_ok());
        assert!(super::convert(&s, "abc1").is_err());
    }

    #[test]
    fn literal_inputs_are_type_checked() {
        let errs = errors(
            "name = \"x\"\n[[steps]]\nid = \"a\"\naction = \"backup-prune\"\nwith = { keep_daily = \"thirty\" }\n",
        );
        assert!(errs.iter().any(|e| e.starts_with("5:8:") && e.contains("invalid input")), "{errs:?}");
    }

    #[test]
    fn cron() {
        assert!(super::check_cron("0 2 * * *").is_ok());
        assert!(super::check_cron("*/15 1-5 1,15 * 0").is_ok());
        assert!(super::check_cron("61 * * * *").is_err());
        assert!(super::check_cron("* * *").is_err());
    }

    proptest::proptest! {
        /// The parser and validator never panic: arbitrary text and single-byte mutations of a
        /// valid runbook either load or yield diagnostics with in-range positions.
        #[test]
        fn parser_never_panics(text in "\\PC{0,200}", cut in 0usize..400, byte in proptest::num::u8::ANY) {
            let _ = crate::runbook::parse(Path::new("fuzz.toml"), text);
            let valid = "name = \"x\"\n[params.p]\ntype = \"int\"\ndefault = 2\n[[steps]]\nid = \"a\"\naction = \"shell\"\nwith = { command = \"echo ${params.p}\" }\nretry = { attempts = 2, delay = \"1s\" }\n[[steps]]\nid = \"b\"\naction = \"wait\"\nwhen = \"${steps.a.status} == ok\"\n";
            let mut bytes = valid.as_bytes().to_vec();
            let at = cut % bytes.len();
            bytes[at] = byte;
            if let Ok(mutated) = String::from_utf8(bytes) {
                let lines = mutated.lines().count() + 1;
                if let Err(crate::runbook::RunbookError::Invalid { diagnostics, .. }) =
                    crate::runbook::parse(Path::new("fuzz.toml"), mutated)
                {
                    proptest::prop_assert!(diagnostics.iter().all(|d| d.line >= 1 && d.line <= lines && d.column >= 1));
                }
            }
        }
    }
}
