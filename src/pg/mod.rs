//! PostgreSQL: connection URLs and connections, client/server tool discovery, local throwaway
//! clusters, and the `PgError` type every part of this module returns.

pub mod cluster;
pub mod conn;
pub mod query;
pub mod tools;

use std::path::PathBuf;

use crate::error::{ClassifiedError, Classify, ErrorClass};

pub use cluster::LocalCluster;
pub use conn::{connect, server_major, DbUrl};
pub use tools::{discover, discover_server, PgTools, ServerBins};

/// Errors from the PostgreSQL module. Messages never contain a password: URLs are redacted
/// before they are stored in an error.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// A connection URL that cannot be used (exit 2). `url` is already masked.
    #[error("invalid {what} `{url}`: {reason}")]
    InvalidUrl { what: String, url: String, reason: String },

    /// The server could not be reached or refused us: refused, DNS, timeout, TLS, authentication,
    /// missing database (exit 3). `url` is redacted.
    #[error("cannot connect to PostgreSQL at {url}: {cause}")]
    Connect { url: String, cause: String },

    /// A statement failed on an established connection.
    #[error("{op} on {target} failed: {error}")]
    Query { op: String, target: String, error: sqlx::Error },

    /// A required program (pg_dump, initdb, ...) is missing or too old (exit 3).
    #[error("{message}")]
    ToolMissing { message: String },

    /// A program ran and failed; `detail` carries the tail of its output or log.
    #[error("{op} failed ({program}): {detail}")]
    Tool { op: String, program: PathBuf, detail: String },

    /// A filesystem operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A local cluster or sandbox is not in a usable state (e.g. missing or corrupt state file).
    #[error("{op} {}: {detail}", dir.display())]
    Cluster { op: String, dir: PathBuf, detail: String, class: ErrorClass },

    /// Something else with an explicit class.
    #[error(transparent)]
    Other(#[from] ClassifiedError),
}

impl PgError {
    pub(crate) fn io(op: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PgError::Io { op: op.into(), path: path.into(), source }
    }

    pub(crate) fn query(op: impl Into<String>, target: impl Into<String>, error: sqlx::Error) -> Self {
        PgError::Query { op: op.into(), target: target.into(), error }
    }

    pub(crate) fn cluster(
        op: impl Into<String>,
        dir: impl Into<PathBuf>,
        detail: impl Into<String>,
        class: ErrorClass,
    ) -> Self {
        PgError::Cluster { op: op.into(), dir: dir.into(), detail: detail.into(), class }
    }
}

impl Classify for PgError {
    fn class(&self) -> ErrorClass {
        match self {
            PgError::InvalidUrl { .. } => ErrorClass::Usage,
            PgError::Connect { .. } | PgError::ToolMissing { .. } => ErrorClass::Unavailable,
            PgError::Query { error, .. } => match error {
                sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                    ErrorClass::Unavailable
                }
                _ => ErrorClass::Failed,
            },
            PgError::Tool { .. } | PgError::Io { .. } => ErrorClass::Failed,
            PgError::Cluster { class, .. } => *class,
            PgError::Other(e) => e.class(),
        }
    }
}

/// Quotes an SQL identifier (`"name"`, doubling embedded quotes).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal (`'text'`, doubling embedded quotes).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("shop"), "\"shop\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn classes() {
        let e = PgError::Connect { url: "postgres://u:***@h/db".into(), cause: "refused".into() };
        assert_eq!(e.class(), ErrorClass::Unavailable);
        let e = PgError::InvalidUrl { what: "database URL".into(), url: "x".into(), reason: "y".into() };
        assert_eq!(e.class(), ErrorClass::Usage);
        let e = PgError::query("count rows", "db", sqlx::Error::RowNotFound);
        assert_eq!(e.class(), ErrorClass::Failed);
    }
}
