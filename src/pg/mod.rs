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

    /// A required program (pg_dump, initdb, ...) is missing or too old (exit 3). `found` lists
    /// the candidates seen, as `DIR (VERSION)`; `install` is the command that installs it.
    #[error("{}", tools::missing_message(what, *min_major, found, install))]
    ToolMissing { what: &'static str, min_major: u32, found: Vec<String>, install: String },

    /// A restored data directory's major version has no server binaries here (exit 3).
    #[error(
        "the restored cluster is PostgreSQL {major} but only version {found} server binaries were found; install \
         them with `apt-get install -y postgresql-{major}`"
    )]
    NoServerForRestore { major: u32, found: u32 },

    /// A local cluster's major version has no server binaries here (exit 3).
    #[error(
        "the cluster in {} was created by PostgreSQL {major} but only version {found} binaries were found; install \
         them with `apt-get install -y postgresql-{major}`",
        dir.display()
    )]
    NoServerForCluster { dir: PathBuf, major: u32, found: u32 },

    /// Running as root, the server needs the `postgres` OS user to run as (exit 3).
    #[error("running as root, and the `postgres` OS user cannot be looked up: {error}")]
    PostgresUserLookup { error: nix::errno::Errno },
    #[error(
        "running as root, but PostgreSQL refuses to run as root and there is no `postgres` OS user to run it as; \
         install the server package (`apt-get install -y postgresql`, which creates the user) or create one \
         (`useradd --system --user-group postgres`), or run opsbook as a normal user"
    )]
    NoPostgresUser,

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
            PgError::Connect { .. }
            | PgError::ToolMissing { .. }
            | PgError::NoServerForRestore { .. }
            | PgError::NoServerForCluster { .. }
            | PgError::PostgresUserLookup { .. }
            | PgError::NoPostgresUser => ErrorClass::Unavailable,
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

    /// The missing-server errors: exit 3, and the messages name the version and the fix.
    #[test]
    fn missing_server_messages() {
        let e = PgError::ToolMissing {
            what: "pg_dump",
            min_major: 16,
            found: vec!["/usr/lib/postgresql/13/bin (13.1)".into()],
            install: "apt-get install -y postgresql-client-16".into(),
        };
        assert_eq!(e.class(), ErrorClass::Unavailable);
        assert_eq!(
            e.to_string(),
            "pg_dump version 16 or newer is required but found only /usr/lib/postgresql/13/bin (13.1); install it \
             with `apt-get install -y postgresql-client-16` or set PG_BIN to the directory that holds it"
        );
        let e = PgError::NoServerForRestore { major: 17, found: 16 };
        assert_eq!(e.class(), ErrorClass::Unavailable);
        assert_eq!(
            e.to_string(),
            "the restored cluster is PostgreSQL 17 but only version 16 server binaries were found; install them \
             with `apt-get install -y postgresql-17`"
        );
        let e = PgError::NoServerForCluster { dir: "/tmp/c".into(), major: 15, found: 16 };
        assert_eq!(
            e.to_string(),
            "the cluster in /tmp/c was created by PostgreSQL 15 but only version 16 binaries were found; install \
             them with `apt-get install -y postgresql-15`"
        );
        assert_eq!(PgError::NoPostgresUser.class(), ErrorClass::Unavailable);
        assert!(PgError::NoPostgresUser.to_string().starts_with(
            "running as root, but PostgreSQL refuses to run as root and there is no `postgres` OS user to run it as; \
             install the server package (`apt-get install -y postgresql`, which creates the user) or create one"
        ));
    }
}
