//! The `sql` runbook action: runs SQL (inline or from a file) against PostgreSQL and checks the
//! result against an expectation.
//!
//! Statements go over the simple query protocol (`sqlx::raw_sql`), for every query: a file may
//! hold several statements, nothing is prepared (fine behind PgBouncer in transaction mode), and
//! every value comes back in PostgreSQL's text form, so numeric, uuid, interval, timestamps,
//! arrays... read exactly as psql shows them (booleans as `true`/`false`). The result that the
//! outputs and the expectation describe is that of the last statement that returned or changed
//! rows (a trailing `COMMIT` does not hide the `UPDATE` before it).

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{ActionCtx, ActionError, Outputs};
use crate::pg::query::{execute, truth, QueryResult};
use crate::pg::DbUrl;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// PostgreSQL URL to run against. Default: the database URL of the run (--database-url,
    /// DATABASE_URL, the profile's database_url, or a running sandbox).
    #[serde(default)]
    pub database_url: Option<String>,
    /// SQL to run: one statement, or several separated by `;`. Give `query` or `file`.
    #[serde(default)]
    pub query: Option<String>,
    /// A file of SQL to run (relative paths resolve against the runbook's directory). Give
    /// `query` or `file`.
    #[serde(default)]
    pub file: Option<String>,
    /// What the result must be: `{ rows = N }` (exactly N rows returned or changed),
    /// `{ rows_min = N }` (at least N), `{ value = "text" }` (the first column of the first row,
    /// as text), or `true` (that value is true or a non-zero number; `false`: false or zero).
    /// Several keys in one table must all hold.
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// An expectation on a query's result.
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(untagged)]
pub enum Expect {
    /// `true`: the first column of the first row is true or a non-zero number; `false`: false or zero.
    Truth(bool),
    /// Checks on the row count and the first value; every key given must hold.
    Checks(ExpectChecks),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectChecks {
    /// Exactly this many rows returned (or changed, for INSERT/UPDATE/DELETE).
    #[serde(default)]
    pub rows: Option<u64>,
    /// At least this many rows returned (or changed).
    #[serde(default)]
    pub rows_min: Option<u64>,
    /// The first column of the first row, compared as text (NULL never matches).
    #[serde(default)]
    pub value: Option<String>,
}

const EXPECT_HELP: &str =
    "expect must be true, false, or a table like { rows = 1 }, { rows_min = 1 } or { value = \"ok\" }";

/// Why an `expect` value is not an expectation.
#[derive(Debug, thiserror::Error)]
pub enum ExpectError {
    #[error("expect.value must be text, got `{got}`")]
    ValueNotText { got: Value },
    #[error("unknown key `{key}` in expect; {EXPECT_HELP}")]
    UnknownKey { key: String },
    #[error("expect is an empty table; {EXPECT_HELP}")]
    EmptyTable,
    #[error("{EXPECT_HELP}")]
    Shape,
    #[error("expect.{key} must be a whole number ≥ 0, got `{got}`")]
    Count { key: String, got: Value },
}

/// How a query's result differs from its expectation: what was expected and what came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// `got` describes the first value: quoted (and masked), "no rows" or "NULL".
    #[error(
        "expected {} in the first column of the first row, got {got}",
        if *want { "true (or non-zero)" } else { "false (or zero)" }
    )]
    Truth { want: bool, got: String },
    #[error("expected {want} {}, got {got}", plural(*want))]
    Rows { want: u64, got: u64 },
    #[error("expected at least {want} {}, got {got}", plural(*want))]
    RowsMin { want: u64, got: u64 },
    /// `want` is shortened for the message.
    #[error("expected value `{want}` in the first column of the first row, got {got}")]
    Value { want: String, got: String },
}

impl Expect {
    fn from_value(v: &Value) -> Result<Expect, ExpectError> {
        match v {
            Value::Bool(b) => Ok(Expect::Truth(*b)),
            Value::String(s) if s.trim() == "true" => Ok(Expect::Truth(true)),
            Value::String(s) if s.trim() == "false" => Ok(Expect::Truth(false)),
            Value::Object(map) => {
                let mut checks = ExpectChecks::default();
                for (key, val) in map {
                    match key.as_str() {
                        "rows" => checks.rows = Some(count(key, val)?),
                        "rows_min" => checks.rows_min = Some(count(key, val)?),
                        "value" => {
                            checks.value = Some(match val {
                                Value::String(s) => s.clone(),
                                Value::Number(_) | Value::Bool(_) => val.to_string(),
                                _ => return Err(ExpectError::ValueNotText { got: val.clone() }),
                            })
                        }
                        other => return Err(ExpectError::UnknownKey { key: other.to_string() }),
                    }
                }
                if checks == ExpectChecks::default() {
                    return Err(ExpectError::EmptyTable);
                }
                Ok(Expect::Checks(checks))
            }
            _ => Err(ExpectError::Shape),
        }
    }

    /// Checks a result; the error says what was expected and what came back.
    pub fn check(&self, result: &QueryResult) -> Result<(), Mismatch> {
        let got_value = || match (&result.value, result.rows) {
            (Some(v), _) => format!("`{}`", super::http::redacted_excerpt(v)),
            (None, 0) => "no rows".to_string(),
            (None, _) => "NULL".to_string(),
        };
        match self {
            Expect::Truth(want) => {
                let ok = result.value.as_deref().and_then(truth) == Some(*want);
                if !ok {
                    return Err(Mismatch::Truth { want: *want, got: got_value() });
                }
            }
            Expect::Checks(c) => {
                if let Some(n) = c.rows {
                    if result.rows != n {
                        return Err(Mismatch::Rows { want: n, got: result.rows });
                    }
                }
                if let Some(n) = c.rows_min {
                    if result.rows < n {
                        return Err(Mismatch::RowsMin { want: n, got: result.rows });
                    }
                }
                if let Some(want) = &c.value {
                    if result.value.as_deref() != Some(want.as_str()) {
                        return Err(Mismatch::Value {
                            want: super::http::excerpt(want, super::http::EXCERPT_CHARS),
                            got: got_value(),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Expect {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Expect::from_value(&v).map_err(serde::de::Error::custom)
    }
}

fn count(key: &str, v: &Value) -> Result<u64, ExpectError> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| ExpectError::Count { key: key.to_string(), got: v.clone() })
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        "row"
    } else {
        "rows"
    }
}

/// Whether an error means the server went away (rather than the SQL failing).
pub(crate) fn is_connection_error(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed)
}

/// The step's database: `given`, or the run's configured database URL. The password is
/// registered for redaction.
pub(crate) fn database_url(given: Option<&str>, ctx: &ActionCtx<'_>) -> Result<DbUrl, ActionError> {
    let raw = match given {
        Some(url) => {
            crate::redact::register_urls_in(url);
            url.to_string()
        }
        None => ctx.config.database_url(None, None)?,
    };
    Ok(DbUrl::parse_named("database_url", &raw)?)
}

/// The first non-blank line of a query, shortened, for error messages.
pub(crate) fn summary(sql: &str) -> String {
    let mut lines = sql.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("");
    let mut shown = super::http::excerpt(first, 80);
    if lines.next().is_some() && !shown.ends_with('…') {
        shown.push_str(" …");
    }
    shown
}

pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let (sql, source) = match (&input.query, &input.file) {
        (Some(q), None) => (q.clone(), None),
        (None, Some(f)) => {
            let path = ctx.resolve_path(f);
            match std::fs::read_to_string(&path) {
                Ok(text) => (text, Some(path)),
                Err(e) if ctx.dry_run => {
                    // Planning: an earlier step may create the file.
                    let mut out = dry_run_outputs(&input, ctx, "");
                    out.insert(
                        "would".into(),
                        Value::String(format!("run the SQL in {} (not readable now: {e})", path.display())),
                    );
                    return Ok(out);
                }
                Err(source) => return Err(ActionError::ReadFile { input: "file", path, source }),
            }
        }
        (Some(_), Some(_)) => return Err(ActionError::Both { first: "query", second: "file" }),
        (None, None) => return Err(ActionError::Neither { choices: "`query` (SQL text) or `file` (a .sql file)" }),
    };
    if sql.trim().is_empty() {
        return Err(match source {
            Some(path) => ActionError::NoSql { path },
            None => ActionError::Empty { input: "query" },
        });
    }
    let what = match &source {
        Some(p) => format!("SQL from {} ({})", p.display(), summary(&sql)),
        None => format!("SQL `{}`", summary(&sql)),
    };

    if ctx.dry_run {
        let mut out = dry_run_outputs(&input, ctx, &sql);
        let target = out.get("database").and_then(Value::as_str).unwrap_or("the database").to_string();
        out.insert("would".into(), Value::String(format!("run {what} on {target}")));
        return Ok(out);
    }

    let url = database_url(input.database_url.as_deref(), ctx)?;
    let mut conn = crate::pg::connect(&url).await.map_err(ActionError::Connect)?;
    let result = execute(&mut conn, &sql).await.map_err(|error| ActionError::Sql {
        what: what.clone(),
        database: url.redacted(),
        error,
    })?;
    drop(conn);
    if let Some(expect) = &input.expect {
        expect.check(&result).map_err(|mismatch| ActionError::Expectation {
            what,
            database: url.redacted(),
            mismatch,
        })?;
    }
    let mut out = Outputs::new();
    out.insert("rows".into(), Value::from(result.rows));
    out.insert("value".into(), result.value.map_or(Value::Null, Value::String));
    out.insert("columns".into(), Value::Array(result.columns.into_iter().map(Value::String).collect()));
    Ok(out)
}

/// Outputs of a dry run: the query and the database it would run on (or why that is unknown).
fn dry_run_outputs(input: &Input, ctx: &ActionCtx<'_>, sql: &str) -> Outputs {
    let mut out = Outputs::new();
    out.insert("dry_run".into(), Value::Bool(true));
    let database = match database_url(input.database_url.as_deref(), ctx) {
        Ok(url) => url.redacted(),
        Err(e) => format!("(database URL not resolved: {e})"),
    };
    out.insert("database".into(), Value::String(database));
    out.insert("query".into(), Value::String(sql.to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(v: Value) -> Result<Expect, serde_json::Error> {
        serde_json::from_value::<Expect>(v)
    }

    fn result(rows: u64, value: Option<&str>) -> QueryResult {
        QueryResult { rows, columns: vec!["c".into()], value: value.map(String::from) }
    }

    #[test]
    fn parses_expectations() {
        assert_eq!(expect(serde_json::json!(true)).unwrap(), Expect::Truth(true));
        assert_eq!(
            expect(serde_json::json!({"rows": 3})).unwrap(),
            Expect::Checks(ExpectChecks { rows: Some(3), ..Default::default() })
        );
        assert_eq!(
            expect(serde_json::json!({"rows_min": "2", "value": 7})).unwrap(),
            Expect::Checks(ExpectChecks { rows_min: Some(2), value: Some("7".into()), ..Default::default() })
        );
        let err = |v: Value| expect(v).unwrap_err().to_string();
        assert!(err(serde_json::json!({})).contains("empty"));
        assert!(err(serde_json::json!({"row": 1})).contains("unknown key `row`"));
        assert!(err(serde_json::json!({"rows": -1})).contains("whole number"));
        assert!(err(serde_json::json!(3)).contains("expect must be"));
    }

    #[test]
    fn checks_say_expected_and_got() {
        let rows3 = Expect::Checks(ExpectChecks { rows: Some(3), ..Default::default() });
        assert!(rows3.check(&result(3, Some("x"))).is_ok());
        assert_eq!(rows3.check(&result(2, Some("x"))).unwrap_err().to_string(), "expected 3 rows, got 2");
        let min = Expect::Checks(ExpectChecks { rows_min: Some(1), ..Default::default() });
        assert_eq!(min.check(&result(0, None)).unwrap_err().to_string(), "expected at least 1 row, got 0");
        let value = Expect::Checks(ExpectChecks { value: Some("ok".into()), ..Default::default() });
        assert!(value.check(&result(1, Some("ok"))).is_ok());
        assert!(value.check(&result(1, Some("nope"))).unwrap_err().to_string().contains("expected value `ok`"));
        assert!(value.check(&result(1, None)).unwrap_err().to_string().ends_with("got NULL"));
        assert!(Expect::Truth(true).check(&result(1, Some("true"))).is_ok());
        assert!(Expect::Truth(true).check(&result(1, Some("5"))).is_ok());
        assert!(Expect::Truth(true).check(&result(1, Some("0"))).is_err());
        assert!(Expect::Truth(true).check(&result(0, None)).unwrap_err().to_string().ends_with("got no rows"));
        assert!(Expect::Truth(false).check(&result(1, Some("f"))).is_ok());
    }

    #[test]
    fn truthiness() {
        for t in ["t", "TRUE", "1", "2.5", "-1", "on", "yes"] {
            assert_eq!(truth(t), Some(true), "{t}");
        }
        for f in ["f", "false", "0", "0.0", "off", "no"] {
            assert_eq!(truth(f), Some(false), "{f}");
        }
        assert_eq!(truth("maybe"), None);
        assert_eq!(truth(""), None);
    }

    #[test]
    fn summaries() {
        assert_eq!(summary("\n  SELECT 1;\n"), "SELECT 1;");
        assert_eq!(summary("SELECT 1;\nSELECT 2;"), "SELECT 1; …");
        assert!(summary(&"x".repeat(300)).chars().count() <= 80);
    }
}
