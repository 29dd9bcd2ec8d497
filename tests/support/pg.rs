//! The test harness's real PostgreSQL: one throwaway cluster per test binary (initdb + pg_ctl in a
//! temp dir on a free loopback port, run as the `postgres` OS user when tests run as root),
//! stopped and removed at process exit; plus blocking helpers for synchronous tests.
//! [`TestPg::shared_tls`] is a second cluster, started only by the tests that need it, with
//! `ssl = on` (the test CA's certificate), TLS-only host logins, SCRAM and pg_stat_statements.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use opsbook::pg::{DbUrl, LocalCluster};

const INSTALL_HINT: &str =
    "install PostgreSQL server binaries: `scripts/test` does (or `apt-get install -y postgresql`)";

pub struct TestPg {
    cluster: LocalCluster,
    root: PathBuf,
}

static SHARED: OnceLock<TestPg> = OnceLock::new();
static SHARED_TLS: OnceLock<TestPg> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

extern "C" fn shutdown_shared() {
    for pg in [SHARED.get(), SHARED_TLS.get()].into_iter().flatten() {
        let _ = pg.cluster.stop_immediate();
        let _ = std::fs::remove_dir_all(&pg.root);
    }
}

static ATEXIT: OnceLock<()> = OnceLock::new();

fn stop_at_exit() {
    ATEXIT.get_or_init(|| {
        // SAFETY: registering a plain `extern "C" fn()` with atexit has no preconditions.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::atexit(shutdown_shared) };
        assert_eq!(rc, 0, "atexit registration failed");
    });
}

/// Settings of the TLS cluster, after the ones opsbook writes.
const TLS_CONF: &str = "\n# Added by the test harness: TLS, SCRAM, pg_stat_statements\n\
ssl = on\n\
ssl_cert_file = 'server.crt'\n\
ssl_key_file = 'server.key'\n\
password_encryption = 'scram-sha-256'\n\
shared_preload_libraries = 'pg_stat_statements'\n";

/// Host logins only over TLS; the Unix socket stays open to the harness.
const TLS_HBA: &str = "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n";

impl TestPg {
    /// The cluster shared by every test of this binary, started on first use. A missing
    /// PostgreSQL install is a loud failure, never a skip.
    pub fn shared() -> &'static TestPg {
        SHARED.get_or_init(|| {
            let pg = TestPg::start_new();
            stop_at_exit();
            pg
        })
    }

    /// The TLS cluster shared by the tests of this binary that need one, started on first use:
    /// `ssl = on` with the certificate of [`super::tls::TestCa::shared`], host logins only
    /// over TLS (`hostssl`), `password_encryption = scram-sha-256`, and pg_stat_statements
    /// preloaded. Clients verify it with `sslmode=verify-full&sslrootcert=` the CA file.
    pub fn shared_tls() -> &'static TestPg {
        SHARED_TLS.get_or_init(|| {
            let (cluster, root) = TestPg::create();
            let pg = TestPg { cluster, root };
            if let Err(e) = pg.configure_tls() {
                let _ = std::fs::remove_dir_all(&pg.root);
                panic!("configure TLS for the test cluster: {e}");
            }
            let TestPg { mut cluster, root } = pg;
            if let Err(e) = cluster.start() {
                let _ = std::fs::remove_dir_all(&root);
                panic!("cannot start the TLS test cluster: {e}");
            }
            stop_at_exit();
            TestPg { cluster, root }
        })
    }

    /// Writes the server certificate and key (owned by the server's OS user, key 0600), the TLS
    /// settings and a hostssl-only pg_hba.conf into the data directory of a stopped cluster.
    fn configure_tls(&self) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let data = &self.cluster.data_dir;
        let owner = std::fs::metadata(data)?;
        let ca = super::tls::TestCa::shared();
        for (name, contents) in [("server.crt", &ca.server_cert_pem), ("server.key", &ca.server_key_pem)] {
            let path = data.join(name);
            std::fs::write(&path, contents)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid()))?;
        }
        std::fs::OpenOptions::new().append(true).open(data.join("postgresql.conf"))?.write_all(TLS_CONF.as_bytes())?;
        std::fs::write(data.join("pg_hba.conf"), TLS_HBA)
    }

    /// The URL of a database of the TLS cluster that requires and verifies TLS:
    /// `sslmode=verify-full&sslrootcert=<the test CA>`.
    pub fn verify_full(&self, url: &str) -> String {
        format!("{url}?sslmode=verify-full&sslrootcert={}", super::tls::TestCa::shared().ca_file().display())
    }

    /// A cluster of its own (not shared, not stopped at exit: call [`TestPg::destroy`]).
    pub fn start_new() -> TestPg {
        let (mut cluster, root) = TestPg::create();
        if let Err(e) = cluster.start() {
            let _ = std::fs::remove_dir_all(&root);
            panic!("cannot start the test cluster: {e}");
        }
        TestPg { cluster, root }
    }

    /// A new, stopped cluster in a temp dir.
    fn create() -> (LocalCluster, PathBuf) {
        if let Err(e) = opsbook::pg::discover_server() {
            panic!("{INSTALL_HINT}\n({e})");
        }
        let root = tempfile::Builder::new()
            .prefix("opsbook-test-pg-")
            .tempdir()
            .expect("create temp dir for the test cluster")
            .keep();
        let cluster = LocalCluster::create(&root.join("cluster"))
            .unwrap_or_else(|e| panic!("cannot create the test cluster ({INSTALL_HINT}): {e}"));
        (cluster, root)
    }

    /// Stops and removes a cluster made with [`TestPg::start_new`].
    pub fn destroy(self) {
        let _ = self.cluster.stop_immediate();
        let _ = std::fs::remove_dir_all(&self.root);
    }

    pub fn cluster(&self) -> &LocalCluster {
        &self.cluster
    }

    /// URL of the `postgres` database as the superuser (contains the password).
    pub fn admin_url(&self) -> String {
        self.cluster.url("postgres").expose().to_string()
    }

    /// The superuser password (appears in every URL this harness hands out).
    pub fn password(&self) -> &str {
        self.cluster.password()
    }

    pub fn port(&self) -> u16 {
        self.cluster.port
    }

    /// Creates a new, uniquely named empty database and returns its URL (with the password).
    pub fn fresh_db(&self, prefix: &str) -> String {
        let clean: String = prefix
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .take(30)
            .collect();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("t_{clean}_{}_{n}", std::process::id());
        let cluster = &self.cluster;
        block_on(async move { cluster.create_database(&name).await })
            .unwrap_or_else(|e| panic!("create test database: {e}"))
            .expose()
            .to_string()
    }

    /// Loads `examples/shop.sql` into the database at `url`.
    pub fn load_example(&self, url: &str) {
        self.execute(url, opsbook::sandbox::EXAMPLE_SQL);
    }

    /// Runs one or more SQL statements (simple query protocol); panics on failure.
    pub fn execute(&self, url: &str, sql: &str) {
        let url = parse(url);
        block_on(async {
            let mut conn = opsbook::pg::connect(&url).await?;
            sqlx::Executor::execute(&mut conn, sqlx::raw_sql(sql)).await.map_err(|e| opsbook::pg::PgError::Query {
                op: "execute".into(),
                target: url.redacted(),
                error: e,
            })?;
            Ok::<_, opsbook::pg::PgError>(())
        })
        .unwrap_or_else(|e| panic!("SQL failed: {e}\n{sql}"));
    }

    /// The first column of the first row as i64 (cast in SQL as needed: `count(*)` is fine).
    pub fn query_i64(&self, url: &str, sql: &str) -> i64 {
        self.query_one(url, &format!("SELECT ({})::bigint::text", strip_semicolon(sql)))
            .parse()
            .expect("integer result")
    }

    /// The first column of the first row as text (NULL → empty string).
    pub fn query_string(&self, url: &str, sql: &str) -> String {
        self.query_one(url, &format!("SELECT ({})::text", strip_semicolon(sql)))
    }

    fn query_one(&self, url: &str, sql: &str) -> String {
        let url = parse(url);
        block_on(async {
            let mut conn = opsbook::pg::connect(&url).await?;
            let v: Option<String> = sqlx::query_scalar(sql)
                .fetch_one(&mut conn)
                .await
                .map_err(|e| opsbook::pg::PgError::Query { op: "query".into(), target: url.redacted(), error: e })?;
            Ok::<_, opsbook::pg::PgError>(v.unwrap_or_default())
        })
        .unwrap_or_else(|e| panic!("query failed: {e}\n{sql}"))
    }

    /// The libpq URI of `url` without its password (pair with [`TestPg::child_env`]).
    pub fn dsn_without_password(&self, url: &str) -> String {
        parse(url).libpq_dsn_without_password()
    }

    /// Environment giving child tools (pg_dump, pg_restore, psql) this cluster's password.
    pub fn child_env(&self) -> Vec<(String, String)> {
        vec![("PGPASSWORD".to_string(), self.password().to_string())]
    }

    /// `pg_dump --schema-only` of the database, without comments, blank lines and the per-run
    /// `\restrict` keys, for comparing schemas.
    pub fn schema_dump(&self, url: &str) -> String {
        let tools = opsbook::pg::discover(0).expect("pg_dump for schema_dump");
        let out = std::process::Command::new(tools.pg_dump())
            .args(["--schema-only", "--no-owner", "--no-privileges", "--dbname"])
            .arg(self.dsn_without_password(url))
            .envs(self.child_env())
            .output()
            .expect("run pg_dump");
        assert!(out.status.success(), "pg_dump --schema-only failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                !l.trim().is_empty()
                    && !l.starts_with("--")
                    && !l.starts_with("\\restrict")
                    && !l.starts_with("\\unrestrict")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn parse(url: &str) -> DbUrl {
    DbUrl::parse(url).unwrap_or_else(|e| panic!("test URL: {e}"))
}

fn strip_semicolon(sql: &str) -> &str {
    sql.trim().trim_end_matches(';')
}

/// Runs a future to completion on a fresh current-thread runtime in a scoped thread, so it
/// works from plain `#[test]`s and from inside `#[tokio::test]`s alike.
pub fn block_on<F: Future + Send>(f: F) -> F::Output
where
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build a tokio runtime")
                .block_on(f)
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}
