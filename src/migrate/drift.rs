//! Classifying how an applied migration's file changed since it ran.
//!
//! Both texts are tokenized with squawk's PostgreSQL lexer; whitespace, comments and a byte-order
//! mark are dropped. Equal token streams mean the change is cosmetic (line endings, BOM,
//! indentation, trailing whitespace, comments); otherwise it is semantic and the statements that
//! differ are listed.

use serde::Serialize;
use squawk_lexer::TokenKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftKind {
    /// Only whitespace, line endings, BOM or comments changed.
    Cosmetic,
    /// The SQL itself changed.
    Semantic,
    /// The applied text was not recorded (applied by another tool), so only the checksum says it
    /// changed.
    Unknown,
    /// No file has this applied version any more.
    Missing,
}

/// The statements that differ, normalized to one line each.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatementDiff {
    pub removed: Vec<String>,
    pub added: Vec<String>,
}

/// One statement: its significant tokens (for comparing) and a one-line rendering (for showing).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement {
    tokens: Vec<String>,
    text: String,
}

/// Statements of a script with comments removed and whitespace collapsed.
fn statements(text: &str) -> Vec<Statement> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let mut current = Statement { tokens: Vec::new(), text: String::new() };
    let mut pending_space = false;
    let mut pos = 0usize;
    for token in squawk_lexer::tokenize(text) {
        let end = pos + token.len as usize;
        let piece = &text[pos..end];
        pos = end;
        match token.kind {
            TokenKind::Whitespace | TokenKind::LineComment | TokenKind::BlockComment { .. } => {
                pending_space = !current.tokens.is_empty();
            }
            TokenKind::Semi => {
                if !current.tokens.is_empty() {
                    out.push(std::mem::replace(&mut current, Statement { tokens: Vec::new(), text: String::new() }));
                }
                pending_space = false;
            }
            _ => {
                if pending_space {
                    current.text.push(' ');
                    pending_space = false;
                }
                // Inside literals (strings, dollar-quoted bodies) line endings are data; normalize
                // CRLF so a file re-saved on Windows still reads the same.
                let piece = piece.replace("\r\n", "\n");
                current.text.push_str(&piece);
                current.tokens.push(piece);
            }
        }
    }
    if !current.tokens.is_empty() {
        out.push(current);
    }
    out
}

/// Compares the text that was applied with the file as it is now.
pub fn classify(applied: &str, current: &str) -> (DriftKind, StatementDiff) {
    let before = statements(applied);
    let after = statements(current);
    let same = |a: &Statement, b: &Statement| a.tokens == b.tokens;
    if before.len() == after.len() && before.iter().zip(&after).all(|(a, b)| same(a, b)) {
        return (DriftKind::Cosmetic, StatementDiff::default());
    }
    let removed = before.iter().filter(|s| !after.iter().any(|a| same(a, s))).map(|s| s.text.clone()).collect();
    let added = after.iter().filter(|s| !before.iter().any(|b| same(b, s))).map(|s| s.text.clone()).collect();
    (DriftKind::Semantic, StatementDiff { removed, added })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_comments_bom_and_crlf_are_cosmetic() {
        let a = "-- add tags\nALTER TABLE products ADD COLUMN tags text[];\nCREATE TABLE t (id int);";
        let b = "\u{feff}/* tags */\r\nALTER TABLE  products\r\n  ADD COLUMN tags text[];   \r\nCREATE TABLE t (\r\n  id int\r\n);";
        assert_eq!(classify(a, b).0, DriftKind::Cosmetic);
    }

    #[test]
    fn changed_sql_is_semantic_and_named() {
        let a = "CREATE TABLE t (id int);\nCREATE INDEX i ON t (id);";
        let b = "CREATE TABLE t (id bigint);\nCREATE INDEX i ON t (id);";
        let (kind, diff) = classify(a, b);
        assert_eq!(kind, DriftKind::Semantic);
        assert_eq!(diff.removed, vec!["CREATE TABLE t (id int)"]);
        assert_eq!(diff.added, vec!["CREATE TABLE t (id bigint)"]);
    }

    #[test]
    fn comment_markers_inside_strings_are_data() {
        let a = "INSERT INTO t VALUES ('-- not a comment');";
        let b = "INSERT INTO t VALUES ('-- changed');";
        assert_eq!(classify(a, b).0, DriftKind::Semantic);
    }
}
