//! Postgres connection URLs (`DbUrl`: parsing, redaction, libpq/child-process forms) and opening
//! a connection with TLS settings, a connect timeout and the `opsbook` application name.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use url::Url;

use super::PgError;

/// How long `connect` waits for the server before giving up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The placeholder that replaces a password in anything shown to a human.
const MASK: &str = "***";

/// A `postgres://` or `postgresql://` URL. `Debug` and `Display` show the redacted form; the
/// password is only reachable through [`DbUrl::password`], [`DbUrl::expose`] and
/// [`DbUrl::child_env`].
#[derive(Clone, PartialEq, Eq)]
pub struct DbUrl {
    url: Url,
}

impl DbUrl {
    /// Parses a database URL; errors name it "database URL".
    pub fn parse(s: &str) -> Result<Self, PgError> {
        Self::parse_named("database URL", s)
    }

    /// Parses a URL, naming it `what` (e.g. "--target-url", "admin_database_url") in errors.
    /// The offending URL appears in the error with its password masked.
    pub fn parse_named(what: &str, s: &str) -> Result<Self, PgError> {
        let invalid = |reason: String| PgError::InvalidUrl { what: what.to_string(), url: mask_unparsed(s), reason };
        let s = s.trim();
        if s.is_empty() {
            return Err(invalid("it is empty".into()));
        }
        let moved = credentials_into_query(s);
        let url = Url::parse(moved.as_deref().unwrap_or(s)).map_err(|e| {
            invalid(format!(
                "{e} (expected postgres://user:password@host:port/database; \
                 percent-encode special characters in the password)"
            ))
        })?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(invalid(format!("scheme `{}` is not postgres:// or postgresql://", url.scheme())));
        }
        if url.cannot_be_a_base() {
            return Err(invalid("expected postgres://user:password@host:port/database".into()));
        }
        for part in [url.username(), url.password().unwrap_or(""), url.path()] {
            if percent_decode(part).is_none() {
                return Err(invalid("contains invalid percent-encoding".into()));
            }
        }
        // Let sqlx check the query parameters (sslmode values, ports, ...).
        PgConnectOptions::from_str(url.as_str()).map_err(|e| invalid(strip_config_prefix(&e.to_string())))?;
        Ok(DbUrl { url })
    }

    /// The password, percent-decoded (from the user-info part or a `password=` query parameter).
    pub fn password(&self) -> Option<String> {
        if let Some(p) = self.url.password() {
            return percent_decode(p);
        }
        self.query_value("password")
    }

    /// The user name, percent-decoded, when the URL names one.
    pub fn username(&self) -> Option<String> {
        let u = self.url.username();
        if !u.is_empty() {
            return percent_decode(u);
        }
        self.query_value("user")
    }

    /// The host as written in the URL (a socket directory stays percent-encoded).
    pub fn host(&self) -> Option<String> {
        self.url.host_str().filter(|h| !h.is_empty()).map(str::to_string).or_else(|| self.query_value("host"))
    }

    /// The port when the URL names one.
    pub fn port(&self) -> Option<u16> {
        self.url.port()
    }

    /// The URL with the password replaced by `***`; safe to log and to put into errors.
    pub fn redacted(&self) -> String {
        let mut url = self.url.clone();
        if url.password().is_some() {
            let _ = url.set_password(Some(MASK));
        }
        if self.query_value("password").is_some() {
            let pairs = query_pairs(&url)
                .into_iter()
                .map(|(k, v)| if k == "password" { (k, MASK.to_string()) } else { (k, v) })
                .collect::<Vec<_>>();
            set_query(&mut url, &pairs);
        }
        url.to_string()
    }

    /// The database name (path, or a `dbname=` query parameter), percent-decoded.
    pub fn database(&self) -> Option<String> {
        let path = self.url.path().trim_start_matches('/');
        if !path.is_empty() {
            return percent_decode(path);
        }
        self.query_value("dbname")
    }

    /// The same server and credentials, another database.
    pub fn with_database(&self, name: &str) -> DbUrl {
        let mut url = self.url.clone();
        url.set_path(&format!("/{}", percent_encode(name)));
        if self.query_value("dbname").is_some() {
            let pairs = query_pairs(&url).into_iter().filter(|(k, _)| k != "dbname").collect::<Vec<_>>();
            set_query(&mut url, &pairs);
        }
        DbUrl { url }
    }

    /// The same server and database as another role: user and password replaced (and removed
    /// from the query string).
    pub fn with_credentials(&self, user: &str, password: &str) -> DbUrl {
        let mut url = self.url.clone();
        let mut pairs =
            query_pairs(&url).into_iter().filter(|(k, _)| k != "user" && k != "password").collect::<Vec<_>>();
        let _ = url.set_password(None);
        if url.set_username(&percent_encode(user)).is_ok() {
            let _ = url.set_password(Some(&percent_encode(password)));
        } else {
            // No host to carry credentials (a Unix socket named in the query): the query does.
            let _ = url.set_username("");
            pairs
                .splice(0..0, [("user".to_string(), user.to_string()), ("password".to_string(), password.to_string())]);
        }
        set_query(&mut url, &pairs);
        DbUrl { url }
    }

    /// A libpq connection URI for child tools (pg_dump, pg_restore, psql): the password removed,
    /// query parameters kept (sslmode, sslrootcert, ...). sqlx-only spellings are translated to
    /// libpq's (`ssl-mode` → `sslmode`, `options[k]=v` → `options=-c k=v`) and sqlx-only
    /// parameters (`statement-cache-capacity`) are dropped, because libpq rejects unknown ones.
    /// Pair it with [`DbUrl::child_env`].
    pub fn libpq_dsn_without_password(&self) -> String {
        let mut url = self.url.clone();
        let _ = url.set_password(None);
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut extra_options: Vec<String> = Vec::new();
        for (k, v) in query_pairs(&self.url) {
            let key = match k.as_str() {
                "password" | "statement-cache-capacity" => continue,
                "ssl-mode" => "sslmode".to_string(),
                "ssl-root-cert" | "ssl-ca" => "sslrootcert".to_string(),
                "ssl-cert" => "sslcert".to_string(),
                "ssl-key" => "sslkey".to_string(),
                other => {
                    if let Some(name) = other.strip_prefix("options[").and_then(|r| r.strip_suffix(']')) {
                        extra_options.push(format!("-c {name}={v}"));
                        continue;
                    }
                    other.to_string()
                }
            };
            pairs.push((key, v));
        }
        if !extra_options.is_empty() {
            let joined = extra_options.join(" ");
            match pairs.iter_mut().find(|(k, _)| k == "options") {
                Some((_, v)) => {
                    v.push(' ');
                    v.push_str(&joined);
                }
                None => pairs.push(("options".to_string(), joined)),
            }
        }
        set_query(&mut url, &pairs);
        url.to_string()
    }

    /// A libpq tool (pg_dump, pg_restore, psql…) run against this URL, the one way opsbook
    /// starts one: the URL without its password as `--dbname`, the password only in the child's
    /// environment, `--no-password` so a missing one fails instead of prompting, and
    /// `PGAPPNAME=opsbook/<command>` so the server's `pg_stat_activity` says who is connected.
    pub fn libpq_command(&self, program: impl AsRef<std::ffi::OsStr>, command: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.env("PGAPPNAME", format!("opsbook/{command}"));
        cmd.envs(self.child_env());
        cmd.arg("--no-password");
        cmd.arg(format!("--dbname={}", self.libpq_dsn_without_password()));
        cmd
    }

    /// Environment for a child tool run against this URL: `PGPASSWORD` when the URL carries a
    /// password. Passwords never go into a child's argv.
    pub fn child_env(&self) -> Vec<(String, String)> {
        self.password().map(|p| vec![("PGPASSWORD".to_string(), p)]).unwrap_or_default()
    }

    /// The full URL **including the password**. Only for handing to users who must export it
    /// (e.g. `sandbox up`) or to code that needs the secret; never log it.
    pub fn expose(&self) -> &str {
        self.url.as_str()
    }

    /// The percent-decoded value of a query parameter (`sslmode`, `dbname`…).
    pub fn query_value(&self, key: &str) -> Option<String> {
        query_pairs(&self.url).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl FromStr for DbUrl {
    type Err = PgError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DbUrl::parse(s)
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DbUrl").field(&self.redacted()).finish()
    }
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Opens a connection: honours sslmode/sslrootcert/sslcert/sslkey from the URL, times out after
/// [`CONNECT_TIMEOUT`], sets application_name to `opsbook` unless the URL names one, and never
/// logs statements (they may carry secrets). Any failure to connect is class Unavailable.
pub async fn connect(url: &DbUrl) -> Result<PgConnection, PgError> {
    connect_timeout(url, CONNECT_TIMEOUT).await
}

/// [`connect`] with an explicit timeout.
pub async fn connect_timeout(url: &DbUrl, timeout: Duration) -> Result<PgConnection, PgError> {
    let fail = |cause: String| PgError::Connect { url: url.redacted(), cause };
    let mut opts = PgConnectOptions::from_str(url.expose()).map_err(|e| fail(strip_config_prefix(&e.to_string())))?;
    if url.query_value("application_name").is_none() {
        opts = opts.application_name("opsbook");
    }
    opts = opts.disable_statement_logging();
    match tokio::time::timeout(timeout, PgConnection::connect_with(&opts)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(fail(describe_connect_error(&e))),
        Err(_) => Err(fail(format!("timed out after {}s", timeout.as_secs()))),
    }
}

/// The server's major version (e.g. 15), from `server_version_num`.
pub async fn server_major(conn: &mut PgConnection) -> Result<u32, PgError> {
    let num: String = sqlx::query_scalar("SELECT current_setting('server_version_num')")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| PgError::query("read server_version_num", "server", e))?;
    major_from_version_num(&num).ok_or_else(|| PgError::Tool {
        op: "read server_version_num".into(),
        program: "postgres".into(),
        detail: format!("unexpected value `{num}`"),
    })
}

/// `150018` → 15, `90624` → 9.
pub(crate) fn major_from_version_num(num: &str) -> Option<u32> {
    num.trim().parse::<u32>().ok().map(|n| n / 10000).filter(|m| *m > 0)
}

fn describe_connect_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_string(),
        },
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Tls(t) => format!("TLS: {t}"),
        sqlx::Error::Configuration(c) => c.to_string(),
        other => other.to_string(),
    }
}

fn strip_config_prefix(s: &str) -> String {
    s.strip_prefix("error with configuration: ").unwrap_or(s).to_string()
}

/// libpq takes `postgres://user:pw@/db?host=/run/postgresql` (an empty host: a Unix socket,
/// its directory in the query), but a URL may not carry credentials without a host. Such a URL
/// comes back with the user, password and port moved into the query, where libpq and sqlx read
/// them as well; any other URL gives `None`. Credentials in the authority win over the query's.
fn credentials_into_query(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let (userinfo, host_port) = authority.rsplit_once('@')?;
    let port = match host_port {
        "" => None,
        p => Some(p.strip_prefix(':')?),
    };
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (userinfo, None),
    };
    let mut pairs = Vec::new();
    if !user.is_empty() {
        pairs.push(("user", percent_decode(user)?));
    }
    if let Some(p) = password {
        pairs.push(("password", percent_decode(p)?));
    }
    if let Some(p) = port.filter(|p| !p.is_empty()) {
        pairs.push(("port", p.to_string()));
    }
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    let moved = pairs.iter().map(|(k, v)| format!("{k}={}", percent_encode_query(v)));
    let kept = query.split('&').filter(|p| {
        let key = p.split_once('=').map_or(*p, |(k, _)| k);
        !p.is_empty() && !pairs.iter().any(|(k, _)| *k == key)
    });
    let query = moved.chain(kept.map(str::to_string)).collect::<Vec<_>>().join("&");
    Some(if query.is_empty() { format!("{scheme}://{path}") } else { format!("{scheme}://{path}?{query}") })
}

/// Query parameters, percent-decoded (`+` is kept: libpq does not treat it as a space).
fn query_pairs(url: &Url) -> Vec<(String, String)> {
    let Some(q) = url.query() else {
        return Vec::new();
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k).unwrap_or_else(|| k.to_string()), percent_decode(v).unwrap_or_else(|| v.to_string()))
        })
        .collect()
}

fn set_query(url: &mut Url, pairs: &[(String, String)]) {
    if pairs.is_empty() {
        url.set_query(None);
        return;
    }
    let q = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode_query(k), percent_encode_query(v)))
        .collect::<Vec<_>>()
        .join("&");
    url.set_query(Some(&q));
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Like [`percent_encode`] but keeps `/`, `:` (paths in sslrootcert=...) and `*` (the mask)
/// readable; all three are legal in a query.
fn percent_encode_query(s: &str) -> String {
    percent_encode(s).replace("%2F", "/").replace("%3A", ":").replace("%2A", "*")
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Masks the password in a string that may not parse as a URL: everything between the first
/// `:` of the user-info and the last `@` before the path, plus any `password=` parameter.
pub(crate) fn mask_unparsed(s: &str) -> String {
    let (scheme, rest) = match s.find("://") {
        Some(i) => (&s[..i + 3], &s[i + 3..]),
        None => ("", s),
    };
    let mut out = String::from(scheme);
    let rest = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push(':');
                    out.push_str(MASK);
                }
                None => out.push_str(userinfo),
            }
            out.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    // Mask `password=...` parameters up to the next `&`.
    let mut tail = rest;
    while let Some(i) = tail.find("password=") {
        out.push_str(&tail[..i + "password=".len()]);
        out.push_str(MASK);
        tail = &tail[i + "password=".len()..];
        tail = match tail.find('&') {
            Some(j) => &tail[j..],
            None => "",
        };
    }
    out.push_str(tail);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Classify, ErrorClass};

    #[test]
    fn parses_both_schemes() {
        for s in [
            "postgres://app:s3cret@db.example.com:5432/shop",
            "postgresql://app:s3cret@db.example.com/shop?sslmode=require",
        ] {
            let u = DbUrl::parse(s).unwrap();
            assert_eq!(u.password().as_deref(), Some("s3cret"));
            assert_eq!(u.database().as_deref(), Some("shop"));
            assert_eq!(u.username().as_deref(), Some("app"));
        }
    }

    #[test]
    fn rejects_bad_urls_with_password_masked() {
        for s in [
            "mysql://app:s3cret@host/db",
            "postgres://app:s3cret@host:notaport/db",
            "postgres://app:s3cret@host/db?sslmode=bogus",
            "",
            "not a url",
        ] {
            let e = DbUrl::parse_named("--target-url", s).unwrap_err();
            assert_eq!(e.class(), ErrorClass::Usage, "{s}");
            let msg = e.to_string();
            assert!(!msg.contains("s3cret"), "{msg}");
            assert!(msg.contains("--target-url"), "{msg}");
        }
    }

    #[test]
    fn masks_unparseable_password_with_special_characters() {
        let m = mask_unparsed("postgres://app:p@ss/w#rd@host:5432/db");
        assert_eq!(m, "postgres://app:***@host:5432/db");
        let m = mask_unparsed("postgres://host/db?user=x&password=hunter2&sslmode=require");
        assert_eq!(m, "postgres://host/db?user=x&password=***&sslmode=require");
        assert_eq!(mask_unparsed("postgres://host/db"), "postgres://host/db");
    }

    #[test]
    fn unix_socket_urls_with_credentials_and_an_empty_host() {
        let u = DbUrl::parse("postgres://app:p%40ss%26w@/shop?host=/run/postgresql&sslmode=disable").unwrap();
        assert_eq!(u.username().as_deref(), Some("app"));
        assert_eq!(u.password().as_deref(), Some("p@ss&w"));
        assert_eq!(u.host().as_deref(), Some("/run/postgresql"));
        assert_eq!(u.database().as_deref(), Some("shop"));
        assert_eq!(u.query_value("sslmode").as_deref(), Some("disable"));
        assert_eq!(u.redacted(), "postgres:///shop?user=app&password=***&host=/run/postgresql&sslmode=disable");
        assert_eq!(u.libpq_dsn_without_password(), "postgres:///shop?user=app&host=/run/postgresql&sslmode=disable");
        assert_eq!(u.child_env(), vec![("PGPASSWORD".to_string(), "p@ss&w".to_string())]);
        assert!(!format!("{u:?} {u}").contains("ss&w"));

        // A port beside the empty host moves too; the authority's credentials win over the query's.
        let u = DbUrl::parse("postgresql://app:new@:6432/shop?password=old&host=%2Ftmp").unwrap();
        assert_eq!(u.password().as_deref(), Some("new"));
        assert_eq!(u.query_value("port").as_deref(), Some("6432"));
        assert_eq!(u.host().as_deref(), Some("/tmp"));
        assert!(PgConnectOptions::from_str(u.expose()).is_ok());

        // Credentials for another role stay in the query when there is no host to carry them.
        let other = u.with_credentials("ops", "s3cret");
        assert_eq!(other.username().as_deref(), Some("ops"));
        assert_eq!(other.password().as_deref(), Some("s3cret"));
        assert_eq!(other.host().as_deref(), Some("/tmp"));
        assert!(!other.redacted().contains("s3cret"));
        let plain = DbUrl::parse("postgres:///shop?host=/tmp").unwrap().with_credentials("ops", "pw");
        assert_eq!((plain.username().as_deref(), plain.password().as_deref()), (Some("ops"), Some("pw")));

        // Hosts that are there are left alone.
        assert_eq!(credentials_into_query("postgres://app:pw@db:5432/shop"), None);
        assert_eq!(credentials_into_query("postgres:///shop?host=/tmp"), None);
    }

    #[test]
    fn redaction() {
        let u = DbUrl::parse("postgres://app:s%40cret@h:5433/shop?sslmode=require").unwrap();
        assert_eq!(u.password().as_deref(), Some("s@cret"));
        assert_eq!(u.redacted(), "postgres://app:***@h:5433/shop?sslmode=require");
        assert_eq!(format!("{u}"), u.redacted());
        assert!(!format!("{u:?}").contains("cret"));

        let u = DbUrl::parse("postgres://h/shop?user=app&password=hunter2").unwrap();
        assert_eq!(u.password().as_deref(), Some("hunter2"));
        assert!(!u.redacted().contains("hunter2"));
        assert!(u.redacted().contains("password=***"));

        let u = DbUrl::parse("postgres://app@h/shop").unwrap();
        assert_eq!(u.password(), None);
        assert_eq!(u.redacted(), "postgres://app@h/shop");
        assert!(u.child_env().is_empty());
    }

    #[test]
    fn child_env_and_dsn_keep_password_out_of_argv() {
        let u =
            DbUrl::parse("postgresql://app:pa%20ss@h:5433/shop?sslmode=verify-full&sslrootcert=/etc/ca.pem&password=x")
                .unwrap();
        assert_eq!(u.child_env(), vec![("PGPASSWORD".to_string(), "pa ss".to_string())]);
        let dsn = u.libpq_dsn_without_password();
        assert_eq!(dsn, "postgresql://app@h:5433/shop?sslmode=verify-full&sslrootcert=/etc/ca.pem");
        let cmd = u.libpq_command("pg_dump", "backup");
        let cmd = cmd.as_std();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["--no-password".to_string(), format!("--dbname={dsn}")]);
        let env: Vec<_> = cmd
            .get_envs()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.map(|v| v.to_string_lossy().into_owned())))
            .collect();
        assert!(env.contains(&("PGAPPNAME".into(), Some("opsbook/backup".into()))), "{env:?}");
        assert!(env.contains(&("PGPASSWORD".into(), Some("pa ss".into()))), "{env:?}");
    }

    #[test]
    fn dsn_translates_sqlx_spellings() {
        let u = DbUrl::parse(
            "postgres://app:pw@h/shop?ssl-mode=require&statement-cache-capacity=10&options[search_path]=app",
        )
        .unwrap();
        assert_eq!(
            u.libpq_dsn_without_password(),
            "postgres://app@h/shop?sslmode=require&options=-c%20search_path%3Dapp"
        );
    }

    #[test]
    fn with_database() {
        let u = DbUrl::parse("postgres://app:pw@h:5432/shop?sslmode=require").unwrap();
        let v = u.with_database("drill/2024 x");
        assert_eq!(v.database().as_deref(), Some("drill/2024 x"));
        assert_eq!(v.password().as_deref(), Some("pw"));
        assert!(v.expose().ends_with("?sslmode=require"));
        let u = DbUrl::parse("postgres://app:pw@h/?dbname=old").unwrap();
        assert_eq!(u.database().as_deref(), Some("old"));
        assert_eq!(u.with_database("new").database().as_deref(), Some("new"));
        assert!(!u.with_database("new").expose().contains("dbname"));
    }

    #[test]
    fn version_num() {
        assert_eq!(major_from_version_num("150018"), Some(15));
        assert_eq!(major_from_version_num("90624"), Some(9));
        assert_eq!(major_from_version_num("x"), None);
    }
}
