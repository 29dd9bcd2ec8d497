//! How backup runs fail: nothing half-written, the lock, heartbeats and metrics, and secrets
//! kept out of output and out of the dump tool's argv.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use support::cmd::{all_output, code, json, opsbook};
use support::http::HttpPeer;
use support::pg::TestPg;
use support::s3::S3Server;

fn run(dir: &Path, args: &[&str], envs: &[(String, String)]) -> Output {
    let mut cmd = opsbook(dir);
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// A directory of PostgreSQL client tools in which pg_dump is the real one run through a
/// script: it records its own argv, and with `fail_after` bytes it cuts the dump short and
/// exits 1 — a dump failing mid-stream.
fn wrapped_tools(dir: &Path, fail_after: Option<u64>) -> PathBuf {
    let real = opsbook::pg::discover(0).unwrap();
    let bin = dir.join("pgbin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["pg_restore", "pg_dumpall", "psql"] {
        std::os::unix::fs::symlink(real.bin_dir.join(tool), bin.join(tool)).unwrap();
    }
    let body = match fail_after {
        Some(n) => {
            format!("\"$REAL\" \"$@\" | head -c {n}\necho 'pg_dump: error: simulated failure mid-stream' >&2\nexit 1\n")
        }
        None => "exec \"$REAL\" \"$@\"\n".to_string(),
    };
    let script = format!(
        "#!/bin/sh\nREAL='{}'\nif [ \"$1\" = --version ]; then exec \"$REAL\" --version; fi\ntr '\\0' ' ' < /proc/$$/cmdline > '{}/argv-'$$\n{body}",
        real.pg_dump().display(),
        dir.display()
    );
    let path = bin.join("pg_dump");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// A database whose dump is tens of MiB even compressed, so uploads go multipart.
fn big_db(pg: &TestPg) -> String {
    let db = pg.fresh_db("big");
    pg.execute(
        &db,
        "CREATE TABLE blobs (id int PRIMARY KEY, a text, b text);
         INSERT INTO blobs SELECT i, md5(i::text) || md5((i * 7)::text) || md5((i * 13)::text),
                                     md5((i * 3)::text) || md5((i * 11)::text)
         FROM generate_series(1, 400000) i;",
    );
    db
}

#[test]
fn pg_dump_failing_mid_stream_leaves_no_manifest_and_no_upload() {
    let pg = TestPg::shared();
    let s3 = S3Server::shared();
    let db = big_db(pg);
    let dir = tempfile::tempdir().unwrap();
    let bin = wrapped_tools(dir.path(), Some(30_000_000));
    let mut envs = s3.env();
    envs.push(("PG_BIN".into(), bin.display().to_string()));
    let url = s3.url("midstream");
    let out = run(
        dir.path(),
        &["backup", "run", "--database-url", &db, "--store", &url, "--part-size", "5MiB", "--row-counts", "off"],
        &envs,
    );
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("simulated failure mid-stream"), "{}", all_output(&out));
    // Nothing in the store: no manifest, no data object, no pending multipart upload.
    let objects = s3.list("midstream/");
    assert!(objects.is_empty(), "objects left behind: {objects:?}");
    // Only this test's uploads: the server is shared with tests running at the same time.
    let pending: Vec<_> = s3.pending_uploads().into_iter().filter(|(k, _)| k.starts_with("midstream/")).collect();
    assert!(pending.is_empty(), "multipart upload not aborted: {pending:?}");
    let list = run(dir.path(), &["backup", "list", "--store", &url, "--output", "json"], &s3.env());
    assert_eq!(json(&list)["backups"].as_array().unwrap().len(), 0);
}

#[test]
fn password_never_in_child_argv_or_output() {
    let pg = TestPg::shared();
    let db = pg.fresh_db("argv");
    pg.load_example(&db);
    let password = pg.password().to_string();
    assert!(db.contains(&password), "the test URL carries the password");
    let dir = tempfile::tempdir().unwrap();
    let bin = wrapped_tools(dir.path(), None);
    let store = dir.path().join("store");
    let out = run(
        dir.path(),
        &[
            "backup",
            "run",
            "--database-url",
            &db,
            "--store",
            store.to_str().unwrap(),
            "--globals",
            "-vvv",
            "--log-format",
            "json",
        ],
        &[("PG_BIN".into(), bin.display().to_string())],
    );
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(!all_output(&out).contains(&password), "password leaked into output");
    let argv: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("argv-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(!argv.is_empty(), "the wrapper recorded pg_dump's argv");
    for line in &argv {
        assert!(line.contains("--dbname="), "{line}");
        assert!(!line.contains(&password), "password in pg_dump argv: {line}");
    }
    let json_out = run(
        dir.path(),
        &["backup", "run", "--database-url", &db, "--store", store.to_str().unwrap(), "--output", "json"],
        &[],
    );
    assert!(!all_output(&json_out).contains(&password));
}

#[test]
fn concurrent_run_on_same_set_exits_4_naming_the_holder() {
    let pg = TestPg::shared();
    let db = pg.fresh_db("lock");
    pg.load_example(&db);
    let peer = HttpPeer::start();
    peer.delay("/start", Duration::from_secs(4));
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap().to_string();
    let first = support::cmd::background(dir.path())
        .args(["backup", "run", "--database-url", &db, "--store", &store, "--notify-url", &peer.url("/ping/abc")])
        .spawn()
        .unwrap();
    // Wait until the first run holds the lock (its /start ping arrived).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !peer.received().iter().any(|r| r.path == "/ping/abc/start") {
        assert!(Instant::now() < deadline, "first run never pinged /start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = run(dir.path(), &["backup", "run", "--database-url", &db, "--store", &store], &[]);
    assert_eq!(code(&second), 4, "{}", all_output(&second));
    assert!(all_output(&second).contains("pid"), "names the holder: {}", all_output(&second));
    let first = first.wait_with_output().unwrap();
    assert_eq!(code(&first), 0, "{}", all_output(&first));
    let paths: Vec<String> = peer.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, vec!["/ping/abc/start", "/ping/abc"], "start then success");
    // The lock died with its holder: a later run works.
    let third = run(dir.path(), &["backup", "run", "--database-url", &db, "--store", &store], &[]);
    assert_eq!(code(&third), 0, "{}", all_output(&third));
}

#[test]
fn failure_pings_fail_and_metrics_keep_last_success() {
    let pg = TestPg::shared();
    let db = pg.fresh_db("metrics");
    pg.load_example(&db);
    let peer = HttpPeer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let metrics = dir.path().join("opsbook.prom");
    let common = [
        "--store",
        store.to_str().unwrap(),
        "--notify-url",
        &peer.url("/hc"),
        "--metrics-file",
        metrics.to_str().unwrap(),
    ];
    let mut good = vec!["backup", "run", "--database-url", db.as_str()];
    good.extend(common);
    assert_eq!(code(&run(dir.path(), &good, &[])), 0);
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(text.contains("opsbook_backup_last_run_success{set=\"main\"} 1"), "{text}");
    let success_line =
        text.lines().find(|l| l.starts_with("opsbook_backup_last_success_timestamp_seconds")).unwrap().to_string();
    assert!(
        text.lines().any(|l| l.starts_with("opsbook_backup_last_success_rows{set=\"main\"}") && !l.ends_with(" 0")),
        "{text}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dead = format!("postgres://x:y@127.0.0.1:{port}/db");
    let mut bad = vec!["backup", "run", "--database-url", dead.as_str()];
    bad.extend(common);
    let out = run(dir.path(), &bad, &[]);
    assert_eq!(code(&out), 3, "{}", all_output(&out));
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(text.contains("opsbook_backup_last_run_success{set=\"main\"} 0"), "{text}");
    assert!(text.contains(&success_line), "last success survives a failed run: {text}");
    let received = peer.received();
    let fail = received.iter().find(|r| r.path == "/hc/fail").expect("a /fail ping");
    assert!(fail.body.contains("cannot connect"), "{}", fail.body);
}

/// Backs the big database up into `prefix` on the shared S3 server and interrupts the run once
/// the server has a multipart upload under that prefix. Returns the run's output and the
/// uploads still pending under the prefix.
fn interrupted_backup(prefix: &str) -> (Output, Vec<(String, String)>) {
    let pg = TestPg::shared();
    let s3 = S3Server::shared();
    let db = big_db(pg);
    let dir = tempfile::tempdir().unwrap();
    let url = s3.url(prefix);
    let child = support::cmd::background(dir.path())
        .envs(s3.env())
        .args(["backup", "run", "--database-url", &db, "--store", &url, "--part-size", "5MiB", "--row-counts", "off"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !s3.pending_uploads().iter().any(|(key, _)| key.starts_with(prefix)) {
        assert!(Instant::now() < deadline, "no multipart upload started");
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    let pending = s3.pending_uploads().into_iter().filter(|(k, _)| k.starts_with(prefix)).collect();
    (out, pending)
}

#[test]
fn interrupt_mid_upload_exits_130_and_aborts() {
    let (out, pending) = interrupted_backup("interrupted/");
    assert_eq!(code(&out), 130, "{}", all_output(&out));
    assert!(all_output(&out).contains("interrupted"), "{}", all_output(&out));
    let s3 = S3Server::shared();
    assert!(s3.list("interrupted/").is_empty(), "objects left: {:?}", s3.list("interrupted/"));
    assert!(pending.is_empty(), "upload not aborted: {pending:?}");
}

#[test]
fn interrupt_while_the_upload_is_being_created_still_aborts_it() {
    // Under this prefix the server makes the upload but holds back its id for 2 s: the
    // interrupt lands while the client waits for it.
    let (out, pending) = interrupted_backup(&format!("{}-interrupted/", support::s3::SLOW_CREATE));
    assert_eq!(code(&out), 130, "{}", all_output(&out));
    assert!(pending.is_empty(), "upload not aborted: {pending:?}");
}

#[test]
fn all_sets_share_one_heartbeat_that_fails_when_any_set_fails() {
    let pg = TestPg::shared();
    let db = pg.fresh_db("allping");
    pg.load_example(&db);
    let peer = HttpPeer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        dir.path().join("opsbook.toml"),
        format!(
            "[profiles.default]\nstore = \"{}\"\n[profiles.default.sets.good]\ndatabase_url = \"{db}\"\n\
             [profiles.default.sets.down]\ndatabase_url = \"postgres://x:y@127.0.0.1:{port}/db\"\n",
            dir.path().join("store").display()
        ),
    )
    .unwrap();
    let out = run(dir.path(), &["backup", "run", "--all", "--notify-url", &peer.url("/hc"), "--output", "json"], &[]);
    assert_eq!(code(&out), 3, "{}", all_output(&out));
    // One start and one verdict for the whole run: a failed set is never followed by a green ping.
    let paths: Vec<String> = peer.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, vec!["/hc/start", "/hc/fail"], "{paths:?}");
    let sets = json(&out)["sets"].as_array().unwrap().clone();
    let by_name = |name: &str| sets.iter().find(|s| s["set"] == name).unwrap().clone();
    assert_eq!(by_name("good")["status"], "ok");
    assert_eq!(by_name("down")["exit_code"], 3);
    assert!(by_name("down")["store"].as_str().unwrap().ends_with("store"), "{sets:?}");
}

#[test]
fn a_failed_prune_after_a_good_backup_says_the_backup_is_stored() {
    let pg = TestPg::shared();
    let db = pg.fresh_db("prunefail");
    pg.load_example(&db);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let base = ["backup", "run", "--database-url", db.as_str(), "--store", store.to_str().unwrap()];
    for _ in 0..2 {
        assert_eq!(code(&run(dir.path(), &base, &[])), 0);
    }
    // Keeping 1 of 3 deletes more than half: the guard refuses the prune, not the backup.
    let out = run(dir.path(), &[&base[..], &["--prune", "--keep-last", "1"]].concat(), &[]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("is complete and stored, but pruning after it failed"), "{}", all_output(&out));
    assert!(!all_output(&out).contains("failed\n  caused by"), "{}", all_output(&out));
    let list = run(dir.path(), &["backup", "list", "--store", store.to_str().unwrap(), "--output", "json"], &[]);
    assert_eq!(json(&list)["backups"].as_array().unwrap().len(), 3, "{}", all_output(&list));
}
