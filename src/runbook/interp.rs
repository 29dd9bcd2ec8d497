//! `${...}` references inside runbook strings: `${params.NAME}`, `${env.NAME}`,
//! `${steps.ID.outputs.KEY}`, `${steps.ID.status}`, `${run.id}`. `$${` is a literal `${`.
//! A string that is exactly one reference takes the referenced value's type (a number stays a
//! number); anything else is text.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ref {
    Param(String),
    Env(String),
    StepOutput { step: String, key: String },
    StepStatus(String),
    RunId,
}

impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ref::Param(n) => write!(f, "${{params.{n}}}"),
            Ref::Env(n) => write!(f, "${{env.{n}}}"),
            Ref::StepOutput { step, key } => write!(f, "${{steps.{step}.outputs.{key}}}"),
            Ref::StepStatus(s) => write!(f, "${{steps.{s}.status}}"),
            Ref::RunId => write!(f, "${{run.id}}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Ref(Ref),
}

/// A reference that cannot be parsed (at a byte offset of the string) or has no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpError {
    #[error("unclosed `${{`")]
    Unclosed { offset: usize },
    /// `inner` is the text between `${` and `}`.
    #[error(
        "unknown reference `${{{inner}}}`: use ${{params.NAME}}, ${{env.NAME}}, ${{steps.ID.outputs.KEY}}, \
         ${{steps.ID.status}} or ${{run.id}}"
    )]
    UnknownRef { offset: usize, inner: String },
    #[error("invalid name in `${{{inner}}}`")]
    InvalidName { offset: usize, inner: String },
    #[error("{reference} has no value")]
    NoValue { reference: Ref },
}

impl InterpError {
    /// Where in the string the reference starts, for the errors found while parsing it.
    pub fn offset(&self) -> Option<usize> {
        match self {
            InterpError::Unclosed { offset }
            | InterpError::UnknownRef { offset, .. }
            | InterpError::InvalidName { offset, .. } => Some(*offset),
            InterpError::NoValue { .. } => None,
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn parse_ref(inner: &str, offset: usize) -> Result<Ref, InterpError> {
    let parts: Vec<&str> = inner.trim().split('.').collect();
    let r = match parts.as_slice() {
        ["params", name] => Ref::Param(name.to_string()),
        ["env", name] => Ref::Env(name.to_string()),
        ["steps", step, "outputs", key] => Ref::StepOutput { step: step.to_string(), key: key.to_string() },
        ["steps", step, "status"] => Ref::StepStatus(step.to_string()),
        ["run", "id"] => Ref::RunId,
        _ => return Err(InterpError::UnknownRef { offset, inner: inner.to_string() }),
    };
    if parts.iter().skip(1).all(|p| valid_name(p)) {
        Ok(r)
    } else {
        Err(InterpError::InvalidName { offset, inner: inner.to_string() })
    }
}

/// Splits a string into text and references.
pub fn parse(text: &str) -> Result<Vec<Piece>, InterpError> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(pos) = rest.find('$') {
        literal.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            literal.push_str("${");
            rest = tail;
            offset += pos + 3;
        } else if let Some(body) = after.strip_prefix("${") {
            let end = body.find('}').ok_or(InterpError::Unclosed { offset: offset + pos })?;
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Ref(parse_ref(&body[..end], offset + pos)?));
            rest = &body[end + 1..];
            offset += pos + 2 + end + 1;
        } else {
            literal.push('$');
            rest = &after[1..];
            offset += pos + 1;
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok(pieces)
}

/// Every reference in a string.
pub fn refs(text: &str) -> Result<Vec<Ref>, InterpError> {
    Ok(parse(text)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Ref(r) => Some(r),
            Piece::Text(_) => None,
        })
        .collect())
}

/// Text form of a value inside a larger string.
pub fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Substitutes references; `lookup` returns None for a reference with no value.
pub fn render(text: &str, lookup: &dyn Fn(&Ref) -> Option<Value>) -> Result<Value, InterpError> {
    let pieces = parse(text)?;
    let resolve = |r: &Ref| lookup(r).ok_or_else(|| InterpError::NoValue { reference: r.clone() });
    if let [Piece::Ref(r)] = pieces.as_slice() {
        return resolve(r);
    }
    let mut out = String::new();
    for piece in &pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Ref(r) => out.push_str(&as_text(&resolve(r)?)),
        }
    }
    Ok(Value::String(out))
}

/// Renders every string inside a TOML value, producing JSON for the action's typed input.
pub fn render_value(value: &toml::Value, lookup: &dyn Fn(&Ref) -> Option<Value>) -> Result<Value, InterpError> {
    Ok(match value {
        toml::Value::String(s) => render(s, lookup)?,
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => {
            Value::Array(items.iter().map(|v| render_value(v, lookup)).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(t) => Value::Object(
            t.iter().map(|(k, v)| Ok((k.clone(), render_value(v, lookup)?))).collect::<Result<_, InterpError>>()?,
        ),
    })
}

/// Every reference inside a TOML value.
pub fn value_refs(value: &toml::Value) -> Result<Vec<Ref>, InterpError> {
    match value {
        toml::Value::String(s) => refs(s),
        toml::Value::Array(items) => Ok(items.iter().map(value_refs).collect::<Result<Vec<_>, _>>()?.concat()),
        toml::Value::Table(t) => Ok(t.values().map(value_refs).collect::<Result<Vec<_>, _>>()?.concat()),
        _ => Ok(Vec::new()),
    }
}

/// Evaluates a rendered `when` condition: `A == B`, `A != B`, or one truthy value.
pub fn truthy(condition: &str) -> bool {
    let c = condition.trim();
    if let Some((a, b)) = c.split_once("!=") {
        return unquote(a) != unquote(b);
    }
    if let Some((a, b)) = c.split_once("==") {
        return unquote(a) == unquote(b);
    }
    let v = unquote(c);
    !(v.is_empty() || matches!(v.to_ascii_lowercase().as_str(), "false" | "0" | "no" | "off"))
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('\'')
        .and_then(|x| x.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|x| x.strip_suffix('"')))
        .unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lookup(r: &Ref) -> Option<Value> {
        match r {
            Ref::Param(n) if n == "set" => Some("shop".into()),
            Ref::Param(n) if n == "keep" => Some(30.into()),
            Ref::StepOutput { step, key } if step == "backup" && key == "backup_id" => {
                Some("20261122T000000Z-ab".into())
            }
            _ => None,
        }
    }

    #[test]
    fn whole_reference_keeps_type_and_text_concatenates() {
        assert_eq!(render("${params.keep}", &lookup).unwrap(), Value::from(30));
        assert_eq!(render("keep ${params.keep} of ${params.set}", &lookup).unwrap(), Value::from("keep 30 of shop"));
        assert_eq!(render("${steps.backup.outputs.backup_id}", &lookup).unwrap(), Value::from("20261122T000000Z-ab"));
        assert_eq!(render("cost $5 and $${literal}", &lookup).unwrap(), Value::from("cost $5 and ${literal}"));
    }

    #[test]
    fn errors_have_offsets() {
        let e = parse("abc ${params.x").unwrap_err();
        assert_eq!(e.offset(), Some(4));
        assert_eq!(e.to_string(), "unclosed `${`");
        let e = parse("ab ${bogus.x}").unwrap_err();
        assert_eq!(e.offset(), Some(3));
        assert_eq!(
            e.to_string(),
            "unknown reference `${bogus.x}`: use ${params.NAME}, ${env.NAME}, ${steps.ID.outputs.KEY}, \
             ${steps.ID.status} or ${run.id}"
        );
        assert_eq!(parse("${params.a b}").unwrap_err().to_string(), "invalid name in `${params.a b}`");
        assert_eq!(render("${params.missing}", &lookup).unwrap_err().to_string(), "${params.missing} has no value");
    }

    #[test]
    fn conditions() {
        assert!(truthy("true"));
        assert!(!truthy("false"));
        assert!(!truthy(""));
        assert!(truthy("'prod' == prod"));
        assert!(truthy("ok != failed"));
        assert!(!truthy("a == b"));
    }

    proptest! {
        /// Text without `$` renders to itself; references render to their values in place.
        #[test]
        fn interpolation_is_substitution(parts in proptest::collection::vec(("[a-z ]{0,8}", any::<bool>()), 0..8)) {
            let mut template = String::new();
            let mut expected = String::new();
            for (text, with_ref) in &parts {
                template.push_str(text);
                expected.push_str(text);
                if *with_ref {
                    template.push_str("${params.set}");
                    expected.push_str("shop");
                }
            }
            let rendered = render(&template, &lookup).unwrap();
            prop_assert_eq!(as_text(&rendered), expected);
        }

        /// Parsing never panics, and a successful parse round-trips the literal text.
        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            if let Ok(pieces) = parse(&s) {
                let refs = pieces.iter().filter(|p| matches!(p, Piece::Ref(_))).count();
                let opens = s.matches("${").count();
                prop_assert!(refs <= opens);
            }
        }
    }
}
