//! `opsbook restore --into`: a dump backup restored into a new database on the shared test
//! cluster from a local store and from S3 — row counts, refusing an existing name, `--before`,
//! `--dry-run`, a damaged backup, a failed or interrupted restore, the runbook action.

mod support;

use std::path::Path;

use serde_json::Value;
use support::cmd::{all_output, code, json, opsbook};
use support::pg::TestPg;

/// The example shop database and a local store in a temp dir.
struct Source {
    dir: tempfile::TempDir,
    db: String,
    store: String,
}

impl Source {
    fn new(name: &str) -> Source {
        let pg = TestPg::shared();
        let db = pg.fresh_db(name);
        pg.load_example(&db);
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store").display().to_string();
        Source { dir, db, store }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        opsbook(self.dir.path()).args(args).output().unwrap()
    }

    fn backup(&self) -> String {
        self.backup_json()["backup"]["id"].as_str().unwrap().to_string()
    }

    fn backup_json(&self) -> Value {
        let out = self.run(&["backup", "run", "--database-url", &self.db, "--store", &self.store, "--output", "json"]);
        assert_eq!(code(&out), 0, "{}", all_output(&out));
        json(&out)
    }

    fn restore(&self, into: &str, extra: &[&str]) -> std::process::Output {
        let admin = TestPg::shared().admin_url();
        let mut args = vec!["restore", "--store", &self.store, "--target-url", &admin, "--into", into];
        args.extend(extra);
        args.extend(["--output", "json"]);
        self.run(&args)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A database name for a restore, unique in this test process (and shaped like the harness's).
fn new_name(tag: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(900);
    format!("t_{tag}_{}_{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

fn exists(name: &str) -> bool {
    let pg = TestPg::shared();
    pg.query_i64(&pg.admin_url(), &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'")) > 0
}

fn url_of(name: &str) -> String {
    let pg = TestPg::shared();
    let admin = pg.admin_url();
    let (server, _) = admin.rsplit_once('/').unwrap();
    format!("{server}/{name}")
}

fn drop_db(name: &str) {
    let pg = TestPg::shared();
    pg.execute(&pg.admin_url(), &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

fn count(url: &str, table: &str) -> i64 {
    TestPg::shared().query_i64(url, &format!("SELECT count(*) FROM {table}"))
}

#[test]
fn restores_into_a_new_database_with_the_sources_row_counts() {
    let src = Source::new("restore_new");
    let id = src.backup();
    let into = new_name("restored");
    let out = src.restore(&into, &[]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report: Value = json(&out);
    assert_eq!(report["backup_id"], id.as_str());
    assert_eq!(report["database"], into.as_str());
    assert_eq!(report["created"], true);
    let names: Vec<&str> = report["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["select", "target", "verify", "create", "restore", "row counts"], "{report:#}");
    assert!(!report["tables"].as_array().unwrap().is_empty());
    for table in ["products", "orders"] {
        assert_eq!(count(&url_of(&into), table), count(&src.db, table), "{table}");
    }
    drop_db(&into);
}

#[test]
fn parallel_jobs_restore_the_same_rows() {
    let src = Source::new("restore_jobs");
    src.backup();
    let into = new_name("restored_jobs");
    let out = src.restore(&into, &["--jobs", "2", "--backup", "latest"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(json(&out)["restore_mode"], "spool -j 2");
    assert_eq!(count(&url_of(&into), "orders"), count(&src.db, "orders"));
    drop_db(&into);
}

#[test]
fn an_existing_database_is_refused_and_left_unchanged() {
    let src = Source::new("restore_exists");
    src.backup();
    let pg = TestPg::shared();
    let existing = pg.fresh_db("restore_existing");
    pg.execute(&existing, "CREATE TABLE keep_me (n int); INSERT INTO keep_me VALUES (1), (2), (3)");
    let name = existing.rsplit('/').next().unwrap().split('?').next().unwrap().to_string();
    let out = src.restore(&name, &[]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("already exists"), "{}", all_output(&out));
    assert_eq!(count(&existing, "keep_me"), 3);
    assert_eq!(pg.query_i64(&existing, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), 1);
}

#[test]
fn before_picks_the_newest_backup_older_than_the_time() {
    let src = Source::new("restore_before");
    let pg = TestPg::shared();
    let first = src.backup();
    let orders = count(&src.db, "orders");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Whole seconds, after the first snapshot and before the second.
    let between = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    pg.execute(&src.db, "DELETE FROM order_items; DELETE FROM orders");
    let second = src.backup();
    assert_ne!(first, second);

    let old = new_name("restored_before");
    let out = src.restore(&old, &["--before", &between]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(json(&out)["backup_id"], first.as_str());
    assert_eq!(count(&url_of(&old), "orders"), orders);

    let new = new_name("restored_latest");
    let out = src.restore(&new, &[]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(json(&out)["backup_id"], second.as_str());
    assert_eq!(count(&url_of(&new), "orders"), 0);

    let out = src.restore(&new_name("none"), &["--before", "2001-01-01 00:00"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    let out = src.restore(&new_name("both"), &["--before", &between, "--backup", &first]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    drop_db(&old);
    drop_db(&new);
}

#[test]
fn dry_run_creates_nothing() {
    let src = Source::new("restore_dry");
    let id = src.backup();
    let into = new_name("restored_dry");
    let out = src.restore(&into, &["--dry-run", "--backup", &id[..12]]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["created"], false);
    assert_eq!(report["backup_id"], id.as_str());
    assert!(!exists(&into));
    // Nothing written to the store either: no verify record.
    let records = walk(&src.path().join("store"));
    assert!(!records.iter().any(|p| p.contains("verify-")), "{records:?}");
}

#[test]
fn a_damaged_backup_is_refused_before_any_database_is_created() {
    let src = Source::new("restore_damaged");
    let manifest = src.backup_json();
    let objects = manifest["backup"]["objects"].as_array().unwrap();
    let key = objects.iter().find(|o| o["role"] == "data").unwrap()["key"].as_str().unwrap();
    let data = src.path().join("store").join(key);
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let into = new_name("restored_damaged");
    let out = src.restore(&into, &[]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("failed verification"), "{}", all_output(&out));
    assert!(!exists(&into));
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

#[test]
fn a_runbook_step_restores_into_a_new_database() {
    let src = Source::new("restore_runbook");
    src.backup();
    let into = new_name("restored_runbook");
    let rb = src.path().join("restore.toml");
    let admin = TestPg::shared().admin_url();
    std::fs::write(
        &rb,
        format!(
            "name = \"restore\"\n\n[[steps]]\nid = \"restore\"\naction = \"restore\"\nwith = {{ store = \"{}\", \
             target_url = \"{admin}\", into = \"{into}\" }}\n",
            src.store
        ),
    )
    .unwrap();
    let out = src.run(&["run", rb.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(json(&out)["steps"][0]["status"], "ok");
    assert_eq!(count(&url_of(&into), "orders"), count(&src.db, "orders"));
    // Again: the database now exists, so the step fails as bad input and changes nothing.
    let out = src.run(&["run", rb.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    drop_db(&into);
}

#[test]
fn a_restore_that_fails_after_creating_the_database_drops_it() {
    let src = Source::new("restore_fails");
    src.backup();
    let into = new_name("restored_fails");
    // --jobs 2 spools to TMPDIR, which cannot be created (under a regular file): the restore
    // fails after the database was created.
    let blocker = src.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let admin = TestPg::shared().admin_url();
    let out = opsbook(src.path())
        .args(["restore", "--store", &src.store, "--target-url", &admin, "--into", &into, "--jobs", "2"])
        .env("TMPDIR", blocker.join("tmp"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("spool"), "{}", all_output(&out));
    assert!(!exists(&into), "the partial database was dropped");
}

#[test]
fn ctrl_c_after_the_database_was_created_drops_it_and_exits_130() {
    let src = Source::new("restore_interrupt");
    src.backup();
    let into = new_name("restored_interrupt");
    let admin = TestPg::shared().admin_url();
    let child = support::cmd::background(src.path())
        .args(["restore", "--store", &src.store, "--target-url", &admin, "--into", &into])
        .env("OPSBOOK_RESTORE_PAUSE_AFTER_CREATE", "60")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !exists(&into) {
        assert!(std::time::Instant::now() < deadline, "the restore never created its database");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT)
    };
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", all_output(&out));
    assert!(all_output(&out).contains("interrupted"), "{}", all_output(&out));
    assert!(!exists(&into), "the interrupted restore's database was dropped");
}

#[test]
fn restores_from_an_s3_store() {
    let pg = TestPg::shared();
    let s3 = support::s3::S3Server::shared();
    let db = pg.fresh_db("restore_s3");
    pg.load_example(&db);
    let dir = tempfile::tempdir().unwrap();
    let store = s3.url(&format!("restore-{}", std::process::id()));
    let envs = s3.env();
    let run = |args: &[&str]| opsbook(dir.path()).args(args).envs(envs.iter().map(|(k, v)| (k, v))).output().unwrap();
    let out = run(&["backup", "run", "--database-url", &db, "--store", &store]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let into = new_name("restored_s3");
    let admin = pg.admin_url();
    let out = run(&["restore", "--store", &store, "--target-url", &admin, "--into", &into, "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(json(&out)["status"], "ok");
    for table in ["customers", "order_items"] {
        assert_eq!(count(&url_of(&into), table), count(&db, table), "{table}");
    }
    drop_db(&into);
}
