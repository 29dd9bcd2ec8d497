//! A migration file's statements, from squawk's parser: where each one starts and ends, so a
//! file runs statement by statement (a failure names its line; a `-- no-transaction` file runs
//! each statement on its own), and which statements cannot run inside the transaction opsbook
//! wraps a file in.

use squawk_syntax::ast::AstNode;
use squawk_syntax::{SourceFile, SyntaxKind};

/// What a statement means for the transaction around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxEffect {
    None,
    /// BEGIN / COMMIT / ROLLBACK / PREPARE TRANSACTION: inside opsbook's transaction a COMMIT ends
    /// it, and everything after would commit statement by statement — even in a dry run.
    EndsTransaction,
    /// PostgreSQL refuses it inside a transaction block (CREATE INDEX CONCURRENTLY, VACUUM, …).
    NeedsNoTransaction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Byte range in the file's text.
    pub start: usize,
    pub end: usize,
    pub effect: TxEffect,
    /// The statement's leading keywords, for messages ("COMMIT", "CREATE INDEX").
    pub head: String,
}

/// The statements of `sql`, or None when the parser reports errors (the caller then sends the
/// file whole and lets PostgreSQL judge it).
pub fn split(sql: &str) -> Option<Vec<Statement>> {
    let parse = SourceFile::parse(sql);
    if !parse.errors().is_empty() {
        return None;
    }
    let statements = parse
        .tree()
        .stmts()
        .map(|stmt| {
            let node = stmt.syntax();
            let range = node.text_range();
            // From the first token that is not a comment, so a failure's line is the statement's.
            let first = node
                .descendants_with_tokens()
                .filter_map(|e| e.into_token())
                .find(|t| !t.kind().is_trivia())
                .map_or(range.start(), |t| t.text_range().start());
            Statement {
                start: usize::from(first),
                end: usize::from(range.end()),
                effect: effect(node),
                head: head(node),
            }
        })
        .collect();
    Some(statements)
}

fn effect(node: &squawk_syntax::SyntaxNode) -> TxEffect {
    use SyntaxKind as K;
    match node.kind() {
        K::BEGIN | K::COMMIT_TRANSACTION | K::ROLLBACK_TRANSACTION | K::PREPARE_TRANSACTION => {
            TxEffect::EndsTransaction
        }
        K::COMMIT_PREPARED
        | K::ROLLBACK_PREPARED
        | K::VACUUM
        | K::CREATE_DATABASE
        | K::DROP_DATABASE
        | K::ALTER_SYSTEM
        | K::CREATE_TABLESPACE
        | K::DROP_TABLESPACE => TxEffect::NeedsNoTransaction,
        K::CREATE_INDEX | K::DROP_INDEX | K::REINDEX | K::ALTER_TABLE
            if node.descendants_with_tokens().any(|t| t.kind() == K::CONCURRENTLY_KW) =>
        {
            TxEffect::NeedsNoTransaction
        }
        _ => TxEffect::None,
    }
}

fn head(node: &squawk_syntax::SyntaxNode) -> String {
    let words: Vec<String> = node
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| !t.kind().is_trivia() && t.text().chars().all(|c| c.is_alphanumeric() || c == '_'))
        .take(2)
        .map(|t| t.text().to_uppercase())
        .collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn effects(sql: &str) -> Vec<(String, TxEffect)> {
        split(sql).expect("parses").into_iter().map(|s| (sql[s.start..s.end].to_string(), s.effect)).collect()
    }

    #[test]
    fn splits_statements_with_bodies_and_comments() {
        let sql = "-- a comment; not a statement\nCREATE TABLE t (id int);\n\
                   CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;\n\
                   INSERT INTO t VALUES (';');";
        let got = effects(sql);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0].0, "CREATE TABLE t (id int);");
        assert!(got[1].0.ends_with("END $$;"), "{got:?}");
        assert_eq!(got[2].0, "INSERT INTO t VALUES (';');");
        assert!(got.iter().all(|(_, e)| *e == TxEffect::None));
    }

    #[test]
    fn finds_transaction_control_and_statements_that_need_no_transaction() {
        for sql in ["BEGIN", "START TRANSACTION", "COMMIT", "END", "ROLLBACK", "ABORT", "PREPARE TRANSACTION 'x'"] {
            assert_eq!(effects(sql)[0].1, TxEffect::EndsTransaction, "{sql}");
        }
        for sql in [
            "CREATE INDEX CONCURRENTLY i ON t (a)",
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)",
            "DROP INDEX CONCURRENTLY IF EXISTS i",
            "REINDEX INDEX CONCURRENTLY i",
            "VACUUM t",
            "CREATE DATABASE d",
            "ALTER SYSTEM SET work_mem = '8MB'",
        ] {
            assert_eq!(effects(sql)[0].1, TxEffect::NeedsNoTransaction, "{sql}");
        }
        for sql in ["SAVEPOINT s", "ROLLBACK TO SAVEPOINT s", "RELEASE SAVEPOINT s", "CREATE INDEX i ON t (a)"] {
            assert_eq!(effects(sql)[0].1, TxEffect::None, "{sql}");
        }
        let commit = &split("BEGIN;\nALTER TABLE t ADD COLUMN c int;\n-- done\nCOMMIT;\n").unwrap()[2];
        assert_eq!(commit.head, "COMMIT");
        assert_eq!(commit.start, 47, "starts at COMMIT, not at the comment before it");
    }

    #[test]
    fn a_file_the_parser_rejects_is_not_split() {
        assert!(split("CREAT TABLE x (id int);").is_none());
    }
}
