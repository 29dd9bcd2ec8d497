//! The pg module against real PostgreSQL binaries: local clusters (as root via the `postgres`
//! OS user), tool discovery, URL handling with real child tools, connection failure classes, and
//! the sandbox lifecycle.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use opsbook::error::{Classify, ErrorClass};
use opsbook::pg::{self, DbUrl, LocalCluster, PgError};
use support::pg::{block_on, TestPg};

/// Takes the sandbox down even when the test panics, so no server outlives the test binary.
struct SandboxGuard(std::path::PathBuf);

impl Drop for SandboxGuard {
    fn drop(&mut self) {
        let _ = block_on(opsbook::sandbox::down(&self.0));
    }
}

/// Stops a test's own cluster even when the test panics.
struct ClusterGuard(std::path::PathBuf);

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        if let Ok(c) = LocalCluster::open(&self.0) {
            let _ = c.stop_immediate();
        }
    }
}

fn assert_unavailable(e: &PgError, password: &str) {
    assert_eq!(e.class(), ErrorClass::Unavailable, "{e}");
    assert!(!e.to_string().contains(password), "password leaked: {e}");
    assert!(!format!("{e:?}").contains(password), "password leaked in Debug: {e:?}");
}

#[test]
fn cluster_create_start_connect_stop_reopen_destroy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let _guard = ClusterGuard(dir.clone());
    let mut cluster = LocalCluster::create(&dir).unwrap();
    assert!(!cluster.is_running());
    assert!(LocalCluster::exists(&dir));

    let state = std::fs::metadata(dir.join("cluster.json")).unwrap();
    assert_eq!(state.permissions().mode() & 0o777, 0o600);
    let data = std::fs::metadata(&cluster.data_dir).unwrap();
    assert_eq!(data.permissions().mode() & 0o777, 0o700);
    if nix::unistd::geteuid().is_root() {
        let pg_user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        assert_eq!(data.uid(), pg_user.uid.as_raw(), "data dir owned by the postgres OS user");
    }

    cluster.start().unwrap();
    assert!(cluster.is_running());
    cluster.start().unwrap(); // idempotent

    let url = cluster.url("postgres");
    assert!(url.expose().starts_with("postgres://postgres:"));
    assert_eq!(url.port(), Some(cluster.port));
    let bins = cluster.bins().clone();
    let (major, user, listen) = block_on(async {
        let mut conn = pg::connect(&url).await.unwrap();
        let major = pg::server_major(&mut conn).await.unwrap();
        let user: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&mut conn).await.unwrap();
        let listen: String =
            sqlx::query_scalar("SELECT current_setting('listen_addresses')").fetch_one(&mut conn).await.unwrap();
        (major, user, listen)
    });
    assert_eq!(major, bins.major);
    assert_eq!(user, "postgres");
    assert_eq!(listen, "127.0.0.1");

    let shop = block_on(cluster.create_database("shop")).unwrap();
    assert_eq!(shop.database().as_deref(), Some("shop"));

    // Reattach from the state file, as `sandbox status` in a later process does.
    let reopened = LocalCluster::open(&dir).unwrap();
    assert_eq!(reopened.port, cluster.port);
    assert_eq!(reopened.password(), cluster.password());
    assert!(reopened.is_running());

    cluster.stop().unwrap();
    assert!(!cluster.is_running());
    assert!(!reopened.is_running());
    cluster.stop().unwrap(); // stopping a stopped cluster is fine

    let e = block_on(pg::connect(&url)).unwrap_err();
    assert_unavailable(&e, cluster.password());

    let mut again = LocalCluster::open(&dir).unwrap();
    again.start().unwrap();
    let n: i64 = block_on(async {
        let mut conn = pg::connect(&shop).await.unwrap();
        sqlx::query_scalar("SELECT (41 + 1)::bigint").fetch_one(&mut conn).await.unwrap()
    });
    assert_eq!(n, 42);

    again.destroy().unwrap();
    assert!(!dir.exists());
    assert!(!LocalCluster::exists(&dir));
}

#[test]
fn create_refuses_an_existing_cluster_and_open_needs_one() {
    let pg = TestPg::shared();
    let e = LocalCluster::create(&pg.cluster().dir).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Usage, "{e}");
    let tmp = tempfile::tempdir().unwrap();
    let e = LocalCluster::open(tmp.path()).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Usage, "{e}");
    assert!(e.to_string().contains("no opsbook cluster"), "{e}");
}

#[test]
fn tool_discovery_finds_pg_dump_15_or_newer() {
    let tools = pg::discover(15).unwrap();
    assert!(tools.major >= 15, "{tools:?}");
    for p in [tools.pg_dump(), tools.pg_restore(), tools.pg_dumpall(), tools.psql()] {
        assert!(p.is_file(), "{} missing", p.display());
    }
    let out = Command::new(tools.pg_dump()).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!(" {}.", tools.major)), "{text}");

    let server = pg::discover_server().unwrap();
    assert!(server.major >= 15);
    assert!(server.initdb.is_file() && server.pg_ctl.is_file() && server.postgres.is_file());
}

#[test]
fn tool_discovery_names_the_fix_when_too_old() {
    let e = pg::discover(99).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Unavailable);
    let msg = e.to_string();
    assert!(msg.contains("apt-get install -y postgresql-client-99"), "{msg}");
    assert!(msg.contains("PG_BIN"), "{msg}");
    assert!(msg.contains("found only"), "{msg}");
}

#[test]
fn db_url_redaction_password_and_child_env() {
    let u = DbUrl::parse("postgresql://app:s3cr%3At@db.internal:6432/shop?sslmode=require").unwrap();
    assert_eq!(u.password().as_deref(), Some("s3cr:t"));
    assert_eq!(u.redacted(), "postgresql://app:***@db.internal:6432/shop?sslmode=require");
    assert_eq!(u.database().as_deref(), Some("shop"));
    assert_eq!(u.with_database("drill").database().as_deref(), Some("drill"));
    assert_eq!(u.libpq_dsn_without_password(), "postgresql://app@db.internal:6432/shop?sslmode=require");
    assert_eq!(u.child_env(), vec![("PGPASSWORD".to_string(), "s3cr:t".to_string())]);
    assert!(!format!("{u:?} {u}").contains("s3cr"));

    let e = DbUrl::parse_named("--database-url", "postgres://app:s3cr/t@db:x/shop").unwrap_err();
    assert_eq!(e.class(), ErrorClass::Usage);
    assert!(!e.to_string().contains("s3cr"), "{e}");
    assert!(e.to_string().contains("--database-url"), "{e}");
}

#[test]
fn child_tools_get_the_password_through_the_environment_only() {
    let pg = TestPg::shared();
    let db = pg.fresh_db("childenv");
    pg.load_example(&db);
    let url = DbUrl::parse(&db).unwrap();
    let dsn = url.libpq_dsn_without_password();
    assert!(!dsn.contains(pg.password()));
    let tools = pg::discover(0).unwrap();
    let run = |with_env: bool| {
        let mut cmd = Command::new(tools.psql());
        cmd.args(["--no-password", "-XAtc", "SELECT count(*) FROM customers", "--dbname", &dsn])
            .env_remove("PGPASSWORD")
            .env("PGPASSFILE", "/nonexistent")
            .env("PGCONNECT_TIMEOUT", "5");
        if with_env {
            cmd.envs(url.child_env());
        }
        cmd.output().unwrap()
    };
    let ok = run(true);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "500");
    let denied = run(false);
    assert!(!denied.status.success(), "without PGPASSWORD the server must ask for a password");
}

#[test]
fn refused_connection_is_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = DbUrl::parse(&format!("postgres://app:hunter2@127.0.0.1:{port}/shop")).unwrap();
    let e = block_on(pg::connect(&url)).unwrap_err();
    assert_unavailable(&e, "hunter2");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(e.to_string().contains("***"), "{e}");
}

#[test]
fn dns_failure_wrong_password_and_missing_database_are_unavailable() {
    let pg = TestPg::shared();
    let url = DbUrl::parse("postgres://app:hunter2@no-such-host.invalid:5432/shop").unwrap();
    assert_unavailable(&block_on(pg::connect(&url)).unwrap_err(), "hunter2");

    let wrong = DbUrl::parse(&format!("postgres://postgres:wrongpass@127.0.0.1:{}/postgres", pg.port())).unwrap();
    let e = block_on(pg::connect(&wrong)).unwrap_err();
    assert_unavailable(&e, "wrongpass");
    assert!(e.to_string().contains("password authentication failed"), "{e}");

    let missing = DbUrl::parse(&pg.admin_url()).unwrap().with_database("does_not_exist");
    let e = block_on(pg::connect(&missing)).unwrap_err();
    assert_unavailable(&e, pg.password());
    assert!(e.to_string().contains("does_not_exist"), "{e}");
}

#[test]
fn connect_sets_application_name() {
    let pg = TestPg::shared();
    let name = pg.query_string(&pg.admin_url(), "SELECT current_setting('application_name')");
    assert_eq!(name, "opsbook");
}

#[test]
fn example_schema_loads_with_deterministic_rows() {
    let pg = TestPg::shared();
    let a = pg.fresh_db("example_a");
    let b = pg.fresh_db("example_b");
    pg.load_example(&a);
    pg.load_example(&b);
    for (table, n) in [
        ("customers", 500),
        ("products", 200),
        ("orders", 2000),
        ("order_items", 5000),
        ("webhook_deliveries", 300),
        ("staff_users", 3),
    ] {
        assert_eq!(pg.query_i64(&a, &format!("SELECT count(*) FROM {table}")), n, "{table}");
    }
    assert_eq!(pg.query_i64(&a, "SELECT count(*) FROM webhook_deliveries WHERE status = 'dead'"), 24);
    assert_eq!(pg.query_i64(&a, "SELECT count(*) FROM customer_order_summary"), 500);
    assert!(pg.query_i64(&a, "SELECT count(*) FROM products WHERE image_key IS NOT NULL") > 100);
    let digest = "SELECT md5(string_agg(o::text, ',' ORDER BY o.id)) FROM orders o";
    assert_eq!(pg.query_string(&a, digest), pg.query_string(&b, digest));
    assert_eq!(pg.schema_dump(&a), pg.schema_dump(&b));
    assert!(pg.schema_dump(&a).contains("CREATE VIEW public.customer_order_summary"));
}

#[test]
fn sandbox_up_status_idempotent_down() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sandbox");
    let _guard = SandboxGuard(root.clone());
    assert!(block_on(opsbook::sandbox::status(&root)).unwrap().is_none());

    let info = block_on(opsbook::sandbox::up(&root)).unwrap();
    assert!(info.running);
    assert!(info.database_url.starts_with("postgres://postgres:"));
    assert!(info.database_url.ends_with("/shop"));
    let store = std::path::PathBuf::from(&info.store);
    assert!(store.is_absolute() && store.is_dir(), "{}", info.store);

    let env = std::fs::read_to_string(&info.env_file).unwrap();
    assert!(env.contains(&format!("DATABASE_URL={}\n", info.database_url)), "{env}");
    assert!(env.contains(&format!("OPSBOOK_STORE={}\n", info.store)), "{env}");
    let mode = std::fs::metadata(&info.env_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let pg = TestPg::shared();
    assert_eq!(pg.query_i64(&info.database_url, "SELECT count(*) FROM orders"), 2000);

    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["database_url"], info.database_url.as_str());
    assert_eq!(json["running"], true);

    let status = block_on(opsbook::sandbox::status(&root)).unwrap().expect("sandbox exists");
    assert!(status.running);
    assert_eq!(status.port, info.port);
    assert_eq!(status.database_url, info.database_url);

    // A second `up` returns the running sandbox, untouched.
    pg.execute(
        &info.database_url,
        "INSERT INTO staff_users (email, role, password_hash) VALUES ('x@example.com', 'support', 'h')",
    );
    let again = block_on(opsbook::sandbox::up(&root)).unwrap();
    assert_eq!(again.port, info.port);
    assert_eq!(again.database_url, info.database_url);
    assert_eq!(pg.query_i64(&info.database_url, "SELECT count(*) FROM staff_users"), 4);

    assert!(block_on(opsbook::sandbox::down(&root)).unwrap());
    assert!(!root.exists(), "down removes everything up created");
    assert!(block_on(opsbook::sandbox::status(&root)).unwrap().is_none());
    assert!(!block_on(opsbook::sandbox::down(&root)).unwrap(), "down without a sandbox");
}

#[test]
fn sandbox_up_restarts_a_stopped_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sb");
    let _guard = SandboxGuard(root.clone());
    let info = block_on(opsbook::sandbox::up(&root)).unwrap();
    LocalCluster::open(&root.join("pg")).unwrap().stop().unwrap();
    let status = block_on(opsbook::sandbox::status(&root)).unwrap().unwrap();
    assert!(!status.running);
    let again = block_on(opsbook::sandbox::up(&root)).unwrap();
    assert!(again.running);
    let pg = TestPg::shared();
    assert_eq!(pg.query_i64(&again.database_url, "SELECT count(*) FROM customers"), 500);
    assert_eq!(again.data_dir, info.data_dir);
    block_on(opsbook::sandbox::down(&root)).unwrap();
}

#[test]
fn sandbox_down_leaves_foreign_files_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("mine");
    let _guard = SandboxGuard(root.clone());
    block_on(opsbook::sandbox::up(&root)).unwrap();
    std::fs::write(root.join("notes.txt"), "keep me").unwrap();
    block_on(opsbook::sandbox::down(&root)).unwrap();
    assert!(root.join("notes.txt").is_file());
    assert!(!root.join("pg").exists() && !root.join("store").exists() && !root.join("env").exists());
}
