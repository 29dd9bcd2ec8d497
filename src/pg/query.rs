//! Running ad-hoc SQL over the simple query protocol and reading results in PostgreSQL's text
//! form: shared by the `sql` and `wait` runbook actions and by restore-drill's `--check-sql`.

use futures::TryStreamExt;
use sqlx::postgres::{PgConnection, PgDatabaseError, PgRow};
use sqlx::{Column, Either, Row, TypeInfo, ValueRef};

/// Whether a value in PostgreSQL's text form is true (`t`, `true`, `yes`, `on`, non-zero number)
/// or false (`f`, `false`, `no`, `off`, zero); None for anything else.
pub fn truth(text: &str) -> Option<bool> {
    let t = text.trim().to_ascii_lowercase();
    match t.as_str() {
        "t" | "true" | "y" | "yes" | "on" => Some(true),
        "f" | "false" | "n" | "no" | "off" => Some(false),
        _ => t.parse::<f64>().ok().filter(|n| !n.is_nan()).map(|n| n != 0.0),
    }
}

/// What a batch of statements produced: the last statement that returned or changed rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResult {
    /// Rows returned, or changed when the statement returned none (INSERT/UPDATE/DELETE).
    pub rows: u64,
    /// Column names of the returned rows (empty when none were returned).
    pub columns: Vec<String>,
    /// The first column of the first row as text; None without rows or for NULL.
    pub value: Option<String>,
}

/// Runs one or more statements over the simple query protocol.
pub async fn execute(conn: &mut PgConnection, sql: &str) -> Result<QueryResult, sqlx::Error> {
    let mut stream = sqlx::Executor::fetch_many(&mut *conn, sqlx::raw_sql(sql));
    let mut result = QueryResult::default();
    let mut first: Option<PgRow> = None;
    let mut returned: u64 = 0;
    while let Some(item) = stream.try_next().await? {
        match item {
            Either::Right(row) => {
                if first.is_none() {
                    first = Some(row);
                }
                returned += 1;
            }
            Either::Left(done) => {
                // One statement finished.
                if returned > 0 || done.rows_affected() > 0 {
                    result = QueryResult {
                        rows: if returned > 0 { returned } else { done.rows_affected() },
                        columns: first
                            .as_ref()
                            .map(|r| r.columns().iter().map(|c| c.name().to_string()).collect())
                            .unwrap_or_default(),
                        value: first.as_ref().and_then(first_value),
                    };
                }
                first = None;
                returned = 0;
            }
        }
    }
    Ok(result)
}

/// The first column of a text-format row; booleans as `true`/`false`.
fn first_value(row: &PgRow) -> Option<String> {
    let raw = row.try_get_raw(0).ok()?;
    if raw.is_null() {
        return None;
    }
    let is_bool = raw.type_info().name() == "BOOL";
    let text = raw
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|_| String::from_utf8_lossy(raw.as_bytes().unwrap_or_default()).into_owned());
    if is_bool {
        return Some(match text.as_str() {
            "t" => "true".into(),
            "f" => "false".into(),
            _ => text,
        });
    }
    Some(text)
}

/// A database error with SQLSTATE, detail and hint.
pub fn describe_sql_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => {
            let mut text = db.message().to_string();
            if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
                if let Some(detail) = pg.detail() {
                    text.push_str(&format!("; detail: {detail}"));
                }
                if let Some(hint) = pg.hint() {
                    text.push_str(&format!("; hint: {hint}"));
                }
            }
            if let Some(code) = db.code() {
                text.push_str(&format!(" (SQLSTATE {code})"));
            }
            text
        }
        other => other.to_string(),
    }
}

/// Splits a script into statements at top-level `;` (strings, dollar-quoted bodies and comments
/// are respected), returning each statement's 1-based starting line and its text.
pub fn split_statements(script: &str) -> Vec<(usize, String)> {
    use squawk_lexer::TokenKind;
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut start: Option<usize> = None;
    let mut significant = false;
    for token in squawk_lexer::tokenize(script) {
        let end = pos + token.len as usize;
        match token.kind {
            TokenKind::Semi => {
                if let (Some(s), true) = (start, significant) {
                    out.push((crate::text::line_col(script, s).0, script[s..pos].trim().to_string()));
                }
                start = None;
                significant = false;
            }
            TokenKind::Whitespace | TokenKind::LineComment | TokenKind::BlockComment { .. } => {}
            _ => {
                if start.is_none() {
                    start = Some(pos);
                }
                significant = true;
            }
        }
        pos = end;
    }
    if let (Some(s), true) = (start, significant) {
        out.push((crate::text::line_col(script, s).0, script[s..].trim().to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn splits_at_top_level_semicolons() {
        let script = "-- checks\nSELECT 1;\nSELECT ';' ;\n\nDO $$ BEGIN PERFORM 1; END $$;\nSELECT 2";
        let parts = super::split_statements(script);
        let lines: Vec<usize> = parts.iter().map(|p| p.0).collect();
        assert_eq!(lines, vec![2, 3, 5, 6]);
        assert_eq!(parts[1].1, "SELECT ';'");
        assert_eq!(parts[2].1, "DO $$ BEGIN PERFORM 1; END $$");
    }
}
