//! `opsbook pitr` and `restore-drill --pitr` against a real cluster archiving through a real
//! pgBackRest into a local repository: setup (twice), full and incremental backups, status under
//! writes, drills to a time between two batches of canaries and to the latest point, a broken
//! archive_command, and expiry that keeps the drilled backup. Each test has its own cluster.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cmd::{all_output, code, json, opsbook};
use support::pg::{block_on, TestPg};
use support::s3::S3Server;
use support::tls::TestCa;

struct Pitr {
    pg: Option<TestPg>,
    dir: tempfile::TempDir,
    envs: Vec<(String, String)>,
    _s3: Option<S3Server>,
}

impl Drop for Pitr {
    fn drop(&mut self) {
        if let Some(pg) = self.pg.take() {
            pg.destroy();
        }
    }
}

fn require_pgbackrest() {
    assert!(
        std::process::Command::new("pgbackrest").arg("version").output().is_ok_and(|o| o.status.success()),
        "pgBackRest is missing: `scripts/test` installs it (apt-get install -y pgbackrest)"
    );
}

impl Pitr {
    /// A cluster of its own and a profile whose [pitr] table points at it, with a local
    /// repository and a 5 s archive_timeout.
    fn new(keep_full: u32) -> Pitr {
        Pitr::with_repo(keep_full, None)
    }

    /// The same with the repository on the in-process S3 server, over HTTPS with the test CA.
    fn on_s3() -> Pitr {
        let s3 = S3Server::start_tls();
        let mut t = Pitr::with_repo(2, Some(&s3));
        // pgBackRest checks the certificate's DNS names only (not IP addresses): use localhost.
        t.envs = s3
            .env()
            .into_iter()
            .map(|(k, v)| if k == "AWS_ENDPOINT_URL" { (k, v.replace("127.0.0.1", "localhost")) } else { (k, v) })
            .chain([("PITR_CIPHER_PASS".to_string(), format!("pitr-pass-{:016x}", rand::random::<u64>()))])
            .collect();
        t._s3 = Some(s3);
        t
    }

    fn with_repo(keep_full: u32, s3: Option<&S3Server>) -> Pitr {
        require_pgbackrest();
        let pg = TestPg::start_new();
        let dir = tempfile::tempdir().unwrap();
        let mode =
            |p: &Path, m: u32| std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap();
        // The repository and the drill clusters are used by the `postgres` OS user when root.
        mode(dir.path(), 0o755);
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        mode(&dir.path().join("tmp"), 0o777);
        let cluster = pg.cluster();
        let repo = match s3 {
            None => format!("repo = \"{}\"\n", dir.path().join("repo").display()),
            Some(s3) => {
                // archive_command runs as the server's user, which must read the CA file.
                let ca = dir.path().join("ca.pem");
                std::fs::copy(TestCa::shared().ca_file(), &ca).unwrap();
                mode(&ca, 0o644);
                // An encrypted repository, its passphrase from the environment.
                format!(
                    "repo = \"{}\"\nca_file = \"{}\"\ncipher_pass = \"env:PITR_CIPHER_PASS\"\n",
                    s3.url("pitr"),
                    ca.display()
                )
            }
        };
        let config = format!(
            "[profiles.default]\ndatabase_url = \"{}\"\nstore = \"{}\"\n\n[profiles.default.pitr]\n\
             pg_path = \"{}\"\nsocket_dir = \"{}\"\n{repo}archive_timeout = \"5s\"\nkeep_full = {keep_full}\n",
            pg.admin_url(),
            dir.path().join("store").display(),
            cluster.data_dir.display(),
            cluster.socket_dir().expect("a short cluster path has a socket").display(),
        );
        std::fs::write(dir.path().join("opsbook.toml"), config).unwrap();
        Pitr { pg: Some(pg), dir, envs: Vec::new(), _s3: None }
    }

    fn pg(&self) -> &TestPg {
        self.pg.as_ref().expect("cluster")
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        opsbook(self.dir.path())
            .env("TMPDIR", self.dir.path().join("tmp"))
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(args)
            .output()
            .unwrap()
    }

    fn ok_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let out = self.run(&all);
        assert_eq!(code(&out), 0, "{args:?}: {}", all_output(&out));
        json(&out)
    }

    fn setup(&self) {
        self.ok_json(&["pitr", "setup", "--restart", "--yes"]);
    }

    fn sql(&self, sql: &str) {
        let url = opsbook::pg::DbUrl::parse(&self.pg().admin_url()).unwrap();
        let sql = sql.to_string();
        block_on(async move {
            let mut conn = opsbook::pg::connect(&url).await.unwrap();
            sqlx::Executor::execute(&mut conn, sqlx::raw_sql(&sql)).await.unwrap();
        });
    }

    /// Writes a canary through `pitr status --canary` and returns its time.
    fn canary(&self) -> String {
        let out = self.run(&["pitr", "status", "--canary", "--output", "json"]);
        json(&out)["canary"].as_str().expect("canary time").to_string()
    }

    /// Waits until every WAL segment written so far is in the repository.
    fn wait_archived(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = json(&self.run(&["pitr", "status", "--output", "json"]));
            if v["lag_seconds"] == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "WAL not archived within 30 s: {v:#}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }
}

/// Runs at a terminal width of `columns` and snapshots the whole outcome, with pgBackRest's
/// labels, WAL names and PITR drill ids filtered (wide enough that no time or size wraps).
fn snapshot(t: &Pitr, name: &str, columns: u16, args: &[&str]) {
    let out = opsbook(t.dir.path())
        .env("TMPDIR", t.dir.path().join("tmp"))
        .env("COLUMNS", columns.to_string())
        .envs(t.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(args)
        .output()
        .unwrap();
    let outcome = support::env::Outcome::of(&out, t.dir.path());
    let mut settings = outcome.settings();
    settings.set_snapshot_path("snapshots");
    for (pattern, replacement) in [
        (r"\d{8}-\d{6}F_\d{8}-\d{6}([DI])", "YYYYMMDD-HHMMSSF_YYYYMMDD-HHMMSS$1"),
        (r"\d{8}-\d{6}F", "YYYYMMDD-HHMMSSF"),
        (r"\b\d{8}T\d{6}Z-[0-9a-f]{4}\b", "YYYYMMDDTHHMMSSZ-xxxx"),
        (r"\b[0-9A-F]{24}\b", "WWWWWWWWWWWWWWWWWWWWWWWW"),
        (r"\b\d+s → \d+s", "Ns → Ns"),
        (r"(HH:MM:SS)\.\d{3}Z", "$1.sssZ"),
    ] {
        settings.add_filter(pattern, replacement);
    }
    settings.bind(|| insta::assert_snapshot!(name, outcome.render()));
}

fn labels(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

#[test]
fn setup_twice_then_full_and_incremental_backups() {
    let t = Pitr::new(2);
    snapshot(&t, "pitr_setup_plan_columns_120", 120, &["pitr", "setup", "--dry-run"]);
    let plan = t.ok_json(&["pitr", "setup", "--dry-run"]);
    assert_eq!(plan["plan"]["restart_needed"], true, "{plan:#}");
    assert!(!t.repo().exists(), "a dry run changes nothing");

    // Without --restart everything else is applied, and the restart it needs is named.
    let out = t.run(&["pitr", "setup"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("takes effect only after PostgreSQL restarts"), "{}", all_output(&out));
    let conf = std::fs::read_to_string(t.pg().cluster().dir.join("pgbackrest/main.conf")).unwrap();
    assert!(conf.contains("repo1-retention-full=2"), "{conf}");

    t.setup();
    let again = t.ok_json(&["pitr", "setup"]);
    assert_eq!(again["applied"]["changed"], 0, "the second setup is a no-op: {again:#}");
    assert!(again["plan"]["items"].as_array().unwrap().iter().all(|i| i["action"] == "ok"), "{again:#}");

    let metrics = t.dir.path().join("pitr.prom");
    let full = t.ok_json(&["pitr", "backup", "--type", "full", "--metrics-file", metrics.to_str().unwrap()]);
    assert_eq!(full["backup"]["kind"], "full", "{full:#}");
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(prom.contains("opsbook_pitr_backup_last_run_success{stanza=\"main\"} 1"), "{prom}");
    assert!(prom.contains("opsbook_pitr_backup_duration_seconds{stanza=\"main\",type=\"full\"}"), "{prom}");
    t.sql("CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g");
    let incr = t.ok_json(&["pitr", "backup", "--type", "incr"]);
    assert_eq!(incr["backup"]["kind"], "incr", "{incr:#}");
    assert_eq!(incr["backup"]["prior"], full["backup"]["label"], "{incr:#}");

    let status = t.ok_json(&["pitr", "check"]);
    assert_eq!(status["newest_full"]["label"], full["backup"]["label"]);
    assert_eq!(status["newest_incr"]["label"], incr["backup"]["label"]);
    assert!(status["problems"].as_array().unwrap().is_empty(), "{status:#}");

    // promote-check's pitr check reads the same.
    let promote = t.ok_json(&["promote-check", "--only", "pitr"]);
    let check = &promote["checks"].as_array().unwrap().iter().find(|c| c["id"] == "pitr").cloned().unwrap();
    assert_eq!(check["status"], "pass", "{promote:#}");
}

#[test]
fn status_under_writes_stays_within_archive_timeout() {
    let t = Pitr::new(2);
    t.setup();
    t.ok_json(&["pitr", "backup"]);
    let url = opsbook::pg::DbUrl::parse(&t.pg().admin_url()).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            block_on(async move {
                let mut conn = opsbook::pg::connect(&url).await.unwrap();
                sqlx::Executor::execute(&mut conn, "CREATE TABLE w (id serial, at timestamptz DEFAULT now())")
                    .await
                    .unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    sqlx::Executor::execute(&mut conn, "INSERT INTO w DEFAULT VALUES").await.unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
    };
    let mut worst = 0;
    let until = Instant::now() + Duration::from_secs(14);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_secs(2));
        let v = t.ok_json(&["pitr", "status"]);
        worst = worst.max(v["lag_seconds"].as_i64().expect("a lag while archiving"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    // archive_timeout (5 s) bounds the lag; allow for the archiver's own cycle and a slow machine.
    assert!(worst <= 5 + 10, "lag reached {worst}s under steady writes");
}

#[test]
fn drills_reach_a_time_between_two_canary_batches_and_the_latest_point() {
    let t = Pitr::new(2);
    t.setup();
    t.ok_json(&["pitr", "backup", "--type", "full"]);
    let _first = t.canary();
    let before = t.canary();
    std::thread::sleep(Duration::from_millis(1500));
    let target = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    std::thread::sleep(Duration::from_millis(1500));
    let _after = t.canary();
    let last = t.canary();
    t.wait_archived();

    snapshot(&t, "pitr_drill_columns_120", 120, &["restore-drill", "--pitr", "--target-time", &target]);
    let drill = t.ok_json(&["restore-drill", "--pitr", "--target-time", &target]);
    assert_eq!(drill["ok"], true, "{drill:#}");
    let restored = drill["restored_point"].as_str().unwrap();
    assert!(chrono_eq(restored, &before), "the earlier batch is present, the later absent: {drill:#}");
    assert!(drill["measured_rpo_seconds"].as_f64().unwrap() >= 1.0, "{drill:#}");
    assert!(drill["record_key"].as_str().unwrap().starts_with("pitr/drills/main/"), "{drill:#}");

    let checks = t.dir.path().join("checks.sql");
    std::fs::write(
        &checks,
        "SELECT count(*) FROM opsbook_pitr_canary;\nSELECT count(*) = 4 FROM opsbook_pitr_canary;\n",
    )
    .unwrap();
    let latest = t.ok_json(&["restore-drill", "--pitr", "--target", "latest", "--check-sql", checks.to_str().unwrap()]);
    assert_eq!(latest["ok"], true, "{latest:#}");
    assert_eq!(latest["sql_checks"].as_array().unwrap().len(), 2, "{latest:#}");
    assert!(chrono_eq(latest["restored_point"].as_str().unwrap(), &last), "{latest:#}");

    // The drill's restorable point shows in status; the throwaway clusters are gone.
    let status = t.ok_json(&["pitr", "status"]);
    assert!(chrono_eq(status["restorable_point"].as_str().unwrap(), &last), "{status:#}");
    let left: Vec<_> = std::fs::read_dir(t.dir.path().join("tmp/opsbook-drills")).unwrap().collect();
    assert!(left.is_empty(), "drill clusters left behind: {left:?}");

    // A check that does not hold fails the drill, named by file and line.
    std::fs::write(
        &checks,
        "SELECT count(*) FROM opsbook_pitr_canary;\nSELECT count(*) > 99 FROM opsbook_pitr_canary;\n",
    )
    .unwrap();
    let out = t.run(&["restore-drill", "--pitr", "--check-sql", checks.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let failed = json(&out);
    assert!(failed["steps"].to_string().contains("checks.sql:2: returned f"), "{failed:#}");
}

fn chrono_eq(a: &str, b: &str) -> bool {
    let p = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros();
    p(a) == p(b)
}

#[test]
fn a_drill_to_a_time_before_every_backup_fails_and_names_it() {
    let t = Pitr::new(2);
    t.setup();
    t.ok_json(&["pitr", "backup", "--type", "full"]);
    let out = t.run(&["restore-drill", "--pitr", "--target-time", "2001-01-01 00:00:00", "--output", "json"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let v = json(&out);
    assert!(v["error"].as_str().unwrap().contains("no backup of stanza main finished before"), "{v:#}");
    snapshot(
        &t,
        "pitr_drill_before_every_backup",
        100,
        &["restore-drill", "--pitr", "--target-time", "2001-01-01 00:00:00"],
    );
    snapshot(&t, "pitr_drill_bad_time", 100, &["restore-drill", "--pitr", "--target-time", "yesterday"]);
    snapshot(
        &t,
        "pitr_drill_with_target_url",
        100,
        &["restore-drill", "--pitr", "--target-url", "postgres://x@127.0.0.1/db"],
    );
    let out = t.run(&["restore-drill", "--pitr", "--target-time", "yesterday"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("RFC 3339"), "{}", all_output(&out));
}

#[test]
fn a_broken_archive_command_fails_status_and_check_and_is_named() {
    let t = Pitr::new(2);
    t.setup();
    t.ok_json(&["pitr", "backup", "--type", "full"]);
    t.sql("ALTER SYSTEM SET archive_command = 'false'");
    t.sql("SELECT pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(500));
    let deadline = Instant::now() + Duration::from_secs(30);
    let out = loop {
        t.sql("SELECT pg_switch_wal() FROM (SELECT txid_current()) x");
        let out = t.run(&["pitr", "status", "--output", "json"]);
        if json(&out)["archiver"]["failed_count"].as_i64().unwrap() > 0 {
            break out;
        }
        assert!(Instant::now() < deadline, "archiving never failed: {}", all_output(&out));
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let v = json(&out);
    let problems = v["problems"].to_string();
    assert!(problems.contains("archiving fails: WAL 0000"), "{v:#}");
    let check = t.run(&["pitr", "check"]);
    assert_eq!(code(&check), 1, "{}", all_output(&check));
    assert!(all_output(&check).contains("PROBLEM archiving"), "{}", all_output(&check));
    let promote = t.run(&["promote-check", "--only", "pitr", "--output", "json"]);
    assert_eq!(code(&promote), 1, "{}", all_output(&promote));
    assert!(json(&promote).to_string().contains("archiving fails"), "{}", all_output(&promote));
    // Setup puts the command back.
    t.ok_json(&["pitr", "setup"]);
}

#[test]
fn expiry_never_removes_the_newest_drilled_backup() {
    let mut t = Pitr::new(1);
    // Drill clusters this deep have no room for a Unix socket in their directory.
    let deep = t.dir.path().join("tmp").join("a-temp-directory-deep-enough-that-no-unix-socket-path-fits-inside-it");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::set_permissions(&deep, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    t.envs.push(("TMPDIR".into(), deep.display().to_string()));
    t.setup();
    let a = t.ok_json(&["pitr", "backup", "--type", "full"]);
    let a = a["backup"]["label"].as_str().unwrap().to_string();
    t.canary();
    t.wait_archived();
    let drill = t.ok_json(&["restore-drill", "--pitr"]);
    assert_eq!(drill["backup"], a.as_str(), "{drill:#}");

    // keep_full = 1 would expire A after B; the drill keeps it.
    let b = t.ok_json(&["pitr", "backup", "--type", "full"]);
    assert_eq!(b["protected"], a.as_str(), "{b:#}");
    assert_eq!(b["retention_full"], 2, "{b:#}");
    let expire = t.ok_json(&["pitr", "expire"]);
    assert!(labels(&expire["kept"]).contains(&a), "{expire:#}");
    assert!(labels(&expire["expired"]).is_empty(), "{expire:#}");

    // Once B is drilled, A is no longer protected and goes.
    t.canary();
    t.wait_archived();
    let drill = t.ok_json(&["restore-drill", "--pitr"]);
    assert_eq!(drill["backup"], b["backup"]["label"], "{drill:#}");
    let expire = t.ok_json(&["pitr", "expire"]);
    assert_eq!(labels(&expire["expired"]), vec![a.clone()], "{expire:#}");
}

#[test]
fn an_s3_repository_over_tls_archives_backs_up_and_restores() {
    let t = Pitr::on_s3();
    let setup = t.ok_json(&["pitr", "setup", "--restart", "--yes"]);
    assert!(setup["plan"]["repo"].as_str().unwrap().starts_with("s3://"), "{setup:#}");
    let conf = std::fs::read_to_string(t.pg().cluster().dir.join("pgbackrest/main.conf")).unwrap();
    assert!(conf.contains("repo1-type=s3") && conf.contains("repo1-storage-ca-file="), "{conf}");
    assert!(conf.contains("repo1-cipher-type=aes-256-cbc"), "{conf}");
    let full = t.ok_json(&["pitr", "backup", "--type", "full"]);
    assert_eq!(full["backup"]["kind"], "full");
    let canary = t.canary();
    t.wait_archived();
    let drill = t.ok_json(&["restore-drill", "--pitr", "--target", "latest"]);
    assert_eq!(drill["ok"], true, "{drill:#}");
    assert!(chrono_eq(drill["restored_point"].as_str().unwrap(), &canary), "{drill:#}");
    // The repository's secret key and passphrase never appear in what opsbook prints.
    let status = t.run(&["pitr", "status", "-vv"]);
    for key in ["AWS_SECRET_ACCESS_KEY", "PITR_CIPHER_PASS"] {
        let secret = &t.envs.iter().find(|(k, _)| k == key).unwrap().1;
        assert!(!all_output(&status).contains(secret.as_str()), "{key}: {}", all_output(&status));
        assert!(!drill.to_string().contains(secret.as_str()), "{key} in the drill report");
    }
    let info = t.ok_json(&["pitr", "status"]);
    assert!(info["newest_full"]["label"].is_string(), "{info:#}");
}
