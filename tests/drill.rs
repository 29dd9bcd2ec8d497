//! `opsbook restore-drill` against real PostgreSQL and the in-process S3 server: healthy drills,
//! tampered archives, wrong manifests, missing media objects, migrations newer than the backup,
//! ephemeral clusters, and cleanup after failures.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::cmd::{all_output, code, json, opsbook};
use support::pg::TestPg;
use support::s3::S3Server;

struct Drill {
    dir: tempfile::TempDir,
    db: String,
    store: String,
    envs: Vec<(String, String)>,
}

impl Drill {
    /// The example shop database, backed up once into a fresh S3 prefix.
    fn new(name: &str) -> Drill {
        let pg = TestPg::shared();
        let s3 = S3Server::shared();
        let db = pg.fresh_db(name);
        pg.load_example(&db);
        let dir = tempfile::tempdir().unwrap();
        // Ephemeral clusters go to TMPDIR; the server (as `postgres` when root) must reach it.
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.path().join("tmp"), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let store = s3.url(&format!("drills-{name}-{}", std::process::id()));
        let mut envs = s3.env();
        envs.push(("TMPDIR".into(), dir.path().join("tmp").display().to_string()));
        let d = Drill { dir, db, store, envs };
        d.backup();
        d
    }

    fn backup(&self) -> Value {
        let out = self.run(&["backup", "run", "--database-url", &self.db, "--store", &self.store, "--output", "json"]);
        assert_eq!(code(&out), 0, "{}", all_output(&out));
        json(&out)
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        opsbook(self.dir.path()).args(args).envs(self.envs.iter().map(|(k, v)| (k, v))).output().unwrap()
    }

    /// restore-drill onto the test server (a scratch database) with extra flags, as JSON.
    fn drill(&self, extra: &[&str]) -> std::process::Output {
        let pg = TestPg::shared();
        let mut args = vec!["restore-drill", "--store", &self.store, "--output", "json"];
        let admin = pg.admin_url();
        if !extra.contains(&"--ephemeral") {
            args.extend(["--target-url", &admin]);
        }
        args.extend(extra);
        self.run(&args)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {report:#}"))
}

/// Whether the scratch database named in a drill report still exists (tests run in parallel,
/// so only this drill's own database is looked for).
fn scratch_left(pg: &TestPg, report: &Value) -> bool {
    let target = report["target"].as_str().unwrap();
    let name = target.rsplit('/').next().unwrap();
    assert!(name.starts_with("opsbook_drill_"), "{target}");
    pg.query_i64(&pg.admin_url(), &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'")) > 0
}

#[test]
fn a_healthy_drill_passes_with_row_counts_and_records_itself() {
    let pg = TestPg::shared();
    let d = Drill::new("healthy");
    let out = d.drill(&["--report", "drill.md", "--junit", "drill.xml", "--rpo-target", "1h", "--rto-target", "10m"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    assert_eq!(report["ok"], true);
    for name in ["select", "target", "download", "restore", "row counts", "rto", "rpo", "cleanup"] {
        assert_eq!(step(&report, name)["outcome"], "passed", "{name}: {report:#}");
    }
    let tables = report["tables"].as_array().unwrap();
    let orders = tables.iter().find(|t| t["table"] == "public.orders").unwrap();
    assert_eq!(orders["expected"], 2000);
    assert_eq!(orders["restored"], 2000);
    assert!(report["rto"]["seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(report["restore_mode"], "stream");
    assert!(!scratch_left(pg, &report), "the scratch database was dropped");

    let md = std::fs::read_to_string(d.path().join("drill.md")).unwrap();
    assert!(md.contains("passed") && md.contains("public.orders | 2000 | 2000"), "{md}");
    let xml = std::fs::read_to_string(d.path().join("drill.xml")).unwrap();
    assert!(xml.contains("<testsuite") && xml.contains("name=\"row counts\"") && !xml.contains("<failure"), "{xml}");

    // The record beside the backup makes it list as drilled.
    let list = d.run(&["backup", "list", "--store", &d.store, "--output", "json"]);
    assert_eq!(code(&list), 0, "{}", all_output(&list));
    assert_eq!(json(&list)["backups"][0]["drilled"]["ok"], true, "{}", all_output(&list));

    // Human output: the step table and the row counts.
    let out = d.run(&["restore-drill", "--store", &d.store, "--target-url", &pg.admin_url()]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("row counts") && text.contains("public.customers") && text.contains("passed"), "{text}");
    assert!(!all_output(&out).contains(pg.password()), "no password in the output");
}

#[test]
fn a_tampered_archive_fails_at_the_checksum_step_and_leaves_nothing_behind() {
    let pg = TestPg::shared();
    let s3 = S3Server::shared();
    let d = Drill::new("tampered");
    let manifest = d.backup();
    let key = manifest["backup"]["objects"].as_array().unwrap().iter().find(|o| o["role"] == "data").unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let prefix = d.store.trim_start_matches("s3://").split_once('/').unwrap().1.to_string();
    let path = s3.object_path(&format!("{prefix}/{key}"));
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0xff;
    }
    std::fs::write(&path, &bytes).unwrap();
    for jobs in ["1", "2"] {
        let out = d.drill(&["--jobs", jobs]);
        assert_eq!(code(&out), 1, "{}", all_output(&out));
        let report = json(&out);
        assert_eq!(report["ok"], false);
        assert_eq!(step(&report, "download")["outcome"], "failed");
        assert!(step(&report, "download")["detail"].as_str().unwrap().contains("checksum mismatch"), "{report:#}");
        assert_ne!(step(&report, "restore")["outcome"], "passed");
        assert_eq!(step(&report, "row counts")["outcome"], "skipped");
        assert_eq!(step(&report, "cleanup")["outcome"], "passed");
        assert!(!scratch_left(pg, &report), "jobs={jobs}: no scratch database left after a failed step");
    }
}

#[test]
fn a_manifest_whose_counts_disagree_fails_verification() {
    let s3 = S3Server::shared();
    let d = Drill::new("counts");
    let report = d.backup();
    let id = report["backup"]["id"].as_str().unwrap().to_string();
    let prefix = d.store.trim_start_matches("s3://").split_once('/').unwrap().1.to_string();
    let manifest_key =
        s3.list(&format!("{prefix}/")).into_iter().find(|k| k.contains(&id) && k.ends_with("manifest.json")).unwrap();
    let path = s3.object_path(&manifest_key);
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["row_counts"]["tables"]["public.orders"] = 1999.into();
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let out = d.drill(&["--backup", &id]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let report = json(&out);
    let counts = step(&report, "row counts");
    assert_eq!(counts["outcome"], "failed");
    assert!(counts["detail"].as_str().unwrap().contains("public.orders has 2000 rows, the backup's snapshot had 1999"));
    assert_eq!(step(&report, "download")["outcome"], "passed");
}

#[test]
fn sampled_copies_are_checked_against_the_object_inventory() {
    let s3 = S3Server::shared();
    let d = Drill::new("inventory");
    let media_prefix = format!("media-inv-{}", std::process::id());
    for i in 0..12 {
        let path = s3.object_path(&format!("{media_prefix}/receipts/r{i}.pdf"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, vec![i as u8; 4000 + i]).unwrap();
    }
    let copy = d.path().join("cold-copy");
    let copy_url = copy.display().to_string();
    let out = d.run(&[
        "backup",
        "objects",
        "--from",
        &s3.url(&media_prefix),
        "--to",
        &copy_url,
        "--store",
        &d.store,
        "--output",
        "json",
    ]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(json(&out)["copied"], 12);

    let out = d.drill(&["--objects", &copy_url, "--objects-inventory", "media", "--sample", "12"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    assert_eq!(report["objects"]["inventory"]["checked"], 12, "{report:#}");
    assert_eq!(report["objects"]["inventory"]["mismatched"], serde_json::json!([]));

    // Same size, one byte different: only the hash can tell.
    let tampered = copy.join("receipts/r3.pdf");
    let mut bytes = std::fs::read(&tampered).unwrap();
    bytes[100] ^= 0xFF;
    std::fs::write(&tampered, bytes).unwrap();
    let out = d.drill(&["--objects", &copy_url, "--objects-inventory", "media", "--sample", "12"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let report = json(&out);
    let mismatched = report["objects"]["inventory"]["mismatched"].as_array().unwrap();
    assert_eq!(mismatched.len(), 1, "{report:#}");
    assert_eq!(mismatched[0]["key"], "receipts/r3.pdf");
    let detail = step(&report, "objects")["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("receipts/r3.pdf") && detail.contains("SHA-256"), "{detail}");

    let out = d.drill(&["--objects", &copy_url, "--objects-inventory", "no-such-set"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("no inventory of object set 'no-such-set'"), "{}", all_output(&out));
}

#[test]
fn missing_media_objects_are_named() {
    let s3 = S3Server::shared();
    let d = Drill::new("objects");
    let media_prefix = format!("media-{}", std::process::id());
    let keys: Vec<String> = (1..=200).filter(|g| g % 10 != 0).map(|g| format!("products/SKU-{g:05}.jpg")).collect();
    for key in &keys {
        let path = s3.object_path(&format!("{media_prefix}/{key}"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, vec![0xAB; 3000]).unwrap();
    }
    let media = s3.url(&media_prefix);
    let query = "SELECT image_key FROM products";
    let all = keys.len().to_string();
    let out = d.drill(&["--objects", &media, "--objects-query", query, "--sample", &all, "--seed", "7"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(json(&out)["objects"]["readable"], keys.len());

    for gone in ["products/SKU-00007.jpg", "products/SKU-00123.jpg"] {
        std::fs::remove_file(s3.object_path(&format!("{media_prefix}/{gone}"))).unwrap();
    }
    let out = d.drill(&["--objects", &media, "--objects-query", query, "--sample", &all, "--presign"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let report = json(&out);
    assert_eq!(report["objects"]["missing"], serde_json::json!(["products/SKU-00007.jpg", "products/SKU-00123.jpg"]));
    assert_eq!(report["objects"]["presigned"], true);
    let detail = step(&report, "objects")["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("SKU-00007.jpg") && detail.contains("SKU-00123.jpg"), "{detail}");

    // Sampling from a listing, reproducible with the seed.
    let a = json(&d.drill(&["--objects", &media, "--sample", "5", "--seed", "42"]));
    let b = json(&d.drill(&["--objects", &media, "--sample", "5", "--seed", "42"]));
    assert_eq!(a["objects"]["sampled_from"], "listing");
    assert_eq!(a["objects"]["sampled"], 5);
    assert_eq!(a["seed"], 42);
    assert_eq!(a["objects"], b["objects"]);
}

#[test]
fn migrations_newer_than_the_backup_apply_during_the_drill() {
    let pg = TestPg::shared();
    let d = Drill::new("migrations");
    let dir = d.path().join("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("1_tags.sql"), "ALTER TABLE products ADD COLUMN tags text[];\n").unwrap();
    let out = d.run(&["migrate", "up", "--migrations", dir.to_str().unwrap(), "--database-url", &d.db]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    d.backup();
    std::fs::write(dir.join("2_notes.sql"), "ALTER TABLE products ADD COLUMN notes text;\n").unwrap();
    std::fs::write(
        d.path().join("checks.sql"),
        "-- every product has a price\nSELECT count(*) = 0 FROM products WHERE price_cents IS NULL;\nSELECT count(*) FROM orders;\n",
    )
    .unwrap();
    let out = d.drill(&["--migrations", dir.to_str().unwrap(), "--check-sql", "checks.sql"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    assert_eq!(report["migrations"]["head_in_backup"], 1);
    assert_eq!(report["migrations"]["applied"], serde_json::json!(["2 notes"]));
    assert_eq!(report["sql_checks"].as_array().unwrap().len(), 2);
    assert_eq!(report["sql_checks"][0]["line"], 2);
    // The source database is untouched: the migration ran only on the restored copy.
    assert_eq!(pg.query_i64(&d.db, "SELECT count(*) FROM _sqlx_migrations"), 1);

    // A failing assertion and a migration that cannot apply both fail the drill, named.
    std::fs::write(d.path().join("bad.sql"), "SELECT count(*) FROM orders WHERE false;\n").unwrap();
    std::fs::write(dir.join("3_broken.sql"), "ALTER TABLE nope ADD COLUMN x int;\n").unwrap();
    let out = d.drill(&["--migrations", dir.to_str().unwrap(), "--check-sql", "bad.sql"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let report = json(&out);
    assert_eq!(step(&report, "check sql")["outcome"], "failed");
    assert!(step(&report, "check sql")["detail"].as_str().unwrap().contains("bad.sql:1"));
    assert_eq!(step(&report, "migrations")["outcome"], "failed");
    assert!(step(&report, "migrations")["detail"].as_str().unwrap().contains("3_broken.sql"));
    assert!(!scratch_left(pg, &report));
}

fn clusters_left(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp.join("opsbook-drills")).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default()
}

#[test]
fn ephemeral_drills_start_and_remove_their_own_cluster() {
    let d = Drill::new("ephemeral");
    let out = d.drill(&["--ephemeral", "--jobs", "2"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    assert!(report["target"].as_str().unwrap().contains("ephemeral cluster"));
    assert_eq!(report["restore_mode"], "spool -j 2");
    assert_eq!(step(&report, "row counts")["outcome"], "passed");
    assert!(clusters_left(&d.path().join("tmp")).is_empty(), "cluster removed");

    // A failing step still removes the cluster.
    std::fs::write(d.path().join("bad.sql"), "SELECT false;\n").unwrap();
    let out = d.drill(&["--ephemeral", "--check-sql", "bad.sql"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(clusters_left(&d.path().join("tmp")).is_empty(), "cluster removed after a failed step");
    let spool: Vec<_> = std::fs::read_dir(d.path().join("tmp"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".dump"))
        .collect();
    assert!(spool.is_empty(), "spool file removed");
}

#[test]
fn a_kept_cluster_says_how_to_stop_it_and_that_command_works() {
    let d = Drill::new("keep");
    let out = d.drill(&["--ephemeral", "--keep"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let kept = json(&out)["kept"].as_str().unwrap().to_string();
    let stop = kept.split_once("stop it with `").and_then(|(_, rest)| rest.split_once('`')).unwrap().0.to_string();
    let cluster = clusters_left(&d.path().join("tmp")).pop().expect("the cluster is kept");
    assert!(cluster.join("data/postmaster.pid").exists(), "kept running");
    // The hint runs as given, whoever we are (as root it must not be a bare `pg_ctl`).
    let status = std::process::Command::new("sh").arg("-c").arg(&stop).status().unwrap();
    assert!(status.success(), "`{stop}` failed");
    assert!(!cluster.join("data/postmaster.pid").exists(), "stopped by `{stop}`");
    std::fs::remove_dir_all(&cluster).unwrap();
}

#[test]
fn a_cluster_left_by_a_killed_drill_is_removed_by_the_next_and_a_kept_one_is_not() {
    let d = Drill::new("sweep");
    let kept_json = |out: &std::process::Output| json(out)["kept"].as_str().unwrap().to_string();
    let first = d.drill(&["--ephemeral", "--keep"]);
    assert_eq!(code(&first), 0, "{}", all_output(&first));
    let second = d.drill(&["--ephemeral", "--keep"]);
    assert_eq!(code(&second), 0, "{}", all_output(&second));
    let mut clusters = clusters_left(&d.path().join("tmp"));
    clusters.sort();
    assert_eq!(clusters.len(), 2, "{clusters:?}");
    let (kept, abandoned) = (clusters[0].clone(), clusters[1].clone());
    // Make the second look like the cluster of a drill that was killed: its owner is gone.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let host = nix::unistd::gethostname().unwrap().to_string_lossy().into_owned();
    std::fs::write(abandoned.join("opsbook-drill.pid"), format!("{} {host}", gone.id())).unwrap();

    let out = d.drill(&["--ephemeral"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(all_output(&out).contains("left by process"), "{}", all_output(&out));
    assert_eq!(clusters_left(&d.path().join("tmp")), vec![kept.clone()], "only the abandoned cluster is removed");
    // The kept one still runs; stop it as its hint says.
    let hint = [kept_json(&first), kept_json(&second)]
        .into_iter()
        .find(|h| h.contains(kept.to_str().unwrap()))
        .expect("a hint names the kept cluster");
    let stop = hint.split_once("stop it with `").and_then(|(_, r)| r.split_once('`')).unwrap().0.to_string();
    assert!(std::process::Command::new("sh").arg("-c").arg(&stop).status().unwrap().success(), "{stop}");
    std::fs::remove_dir_all(&kept).unwrap();
}

#[test]
fn bad_input_is_a_usage_error_and_no_backup_is_a_failure() {
    let pg = TestPg::shared();
    let d = Drill::new("input");
    let out = d.run(&["restore-drill", "--store", &d.store]);
    assert_eq!(code(&out), 2, "a target is required: {}", all_output(&out));
    let out = d.run(&["restore-drill", "--store", &d.store, "--target-url", &pg.admin_url(), "--set", "empty"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("no complete backup"), "{}", all_output(&out));
    let out = d.run(&["restore-drill", "--store", &d.store, "--target-url", "postgres://u:p@127.0.0.1:1/x"]);
    assert_eq!(code(&out), 3, "server unavailable: {}", all_output(&out));
}

#[test]
fn ctrl_c_mid_drill_drops_the_scratch_database_and_exits_130() {
    let pg = TestPg::shared();
    let d = Drill::new("interrupt");
    std::fs::write(d.path().join("slow.sql"), "SELECT pg_sleep(60) IS NULL;\n").unwrap();
    let admin = pg.admin_url();
    let peer = support::http::HttpPeer::start();
    let hc = peer.url("/hc");
    let child = support::cmd::background(d.path())
        .args(["restore-drill", "--store", &d.store, "--target-url", &admin, "--check-sql", "slow.sql"])
        .args(["--notify-url", &hc])
        .envs(d.envs.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the drill is inside the slow assertion on its scratch database.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let busy = "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'opsbook\\_drill\\_%' AND query LIKE '%pg_sleep(60)%'";
    while pg.query_i64(&admin, busy) == 0 {
        assert!(std::time::Instant::now() < deadline, "the drill never reached the slow check");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let name = pg.query_string(
        &admin,
        "SELECT datname FROM pg_stat_activity WHERE datname LIKE 'opsbook\\_drill\\_%' AND query LIKE '%pg_sleep(60)%' LIMIT 1",
    );
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT)
    };
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", all_output(&out));
    assert_eq!(pg.query_i64(&admin, &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'")), 0);
    let fail = peer.received_at("/hc/fail");
    assert!(fail.iter().any(|r| r.body.contains("interrupted")), "an interrupted drill pings /fail: {fail:?}");
}

/// The S3 keys under a store URL of the shared server, and the key prefix of the store.
fn store_keys(s3: &S3Server, store: &str) -> (String, Vec<String>) {
    let prefix = store.trim_start_matches("s3://").split_once('/').unwrap().1.to_string();
    let keys = s3.list(&format!("{prefix}/"));
    (prefix, keys)
}

#[test]
fn a_drill_that_stops_on_an_error_pings_fail_updates_metrics_and_writes_its_reports() {
    let d = Drill::new("errors");
    let peer = support::http::HttpPeer::start();
    let metrics = d.path().join("drill.prom");
    let common = |target: &str| -> Vec<String> {
        [
            "restore-drill",
            "--store",
            &d.store,
            "--target-url",
            target,
            "--notify-url",
            &peer.url("/hc"),
            "--metrics-file",
            metrics.to_str().unwrap(),
            "--report",
            "drill.md",
            "--junit",
            "drill.xml",
            "--output",
            "json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args = common(&TestPg::shared().admin_url());
    let out = d.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(text.contains("opsbook_drill_last_run_success{set=\"main\"} 1"), "{text}");

    // A target server that is down: the drill stops at the target step, after its start ping.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let secret = "drill-target-secret-pw";
    let args = common(&format!("postgres://u:{secret}@127.0.0.1:{port}/x"));
    let out = d.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code(&out), 3, "{}", all_output(&out));
    let paths: Vec<String> = peer.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/hc/start", "/hc", "/hc/start", "/hc/fail"], "{paths:?}");
    let fail = peer.received_at("/hc/fail").pop().unwrap();
    assert!(fail.body.contains("127.0.0.1") && !fail.body.contains(secret), "{}", fail.body);
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(text.contains("opsbook_drill_last_run_success{set=\"main\"} 0"), "{text}");
    assert!(text.contains("opsbook_drill_last_success_timestamp_seconds"), "the last success stays: {text}");
    let md = std::fs::read_to_string(d.path().join("drill.md")).unwrap();
    assert!(md.contains("FAILED") && md.contains("| target | **FAILED**"), "{md}");
    assert!(!md.contains(secret), "{md}");
    let xml = std::fs::read_to_string(d.path().join("drill.xml")).unwrap();
    assert!(xml.contains("name=\"target\"") && xml.contains("<failure"), "{xml}");
    assert!(!xml.contains(secret), "{xml}");
}

#[test]
fn a_wrong_age_identity_is_the_reported_failure_in_both_restore_modes() {
    let d = Drill::new("wrongkey");
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let out = d.run(&["backup", "run", "--database-url", &d.db, "--store", &d.store, "--encrypt-to", &recipient]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    use age::secrecy::ExposeSecret;
    let wrong = age::x25519::Identity::generate();
    std::fs::write(d.path().join("wrong.key"), wrong.to_string().expose_secret()).unwrap();
    for jobs in ["1", "2"] {
        let out = d.drill(&["--identity", "wrong.key", "--jobs", jobs]);
        assert_eq!(code(&out), 1, "jobs={jobs}: {}", all_output(&out));
        let report = json(&out);
        let download = step(&report, "download");
        assert_eq!(download["outcome"], "failed", "jobs={jobs}: {report:#}");
        assert!(download["detail"].as_str().unwrap().contains("none of the identities"), "jobs={jobs}: {report:#}");
        let restore = step(&report, "restore");
        assert_eq!(restore["outcome"], "skipped", "jobs={jobs}: {report:#}");
        assert!(!restore["detail"].as_str().unwrap().contains("checksum"), "jobs={jobs}: {report:#}");
        assert_ne!(step(&report, "rto")["outcome"], "passed", "nothing was restored: {report:#}");
        assert_eq!(report["rto"]["ok"], false);
    }
}

#[test]
fn zero_jobs_and_presign_on_a_local_copy_are_usage_errors() {
    let d = Drill::new("usage");
    let out = d.drill(&["--jobs", "0"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("--jobs"), "{}", all_output(&out));
    let local = d.path().join("media");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("a.jpg"), b"a").unwrap();
    let out = d.drill(&["--objects", local.to_str().unwrap(), "--presign"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("--presign"), "{}", all_output(&out));
    assert!(json(&out).get("steps").is_none(), "refused before the drill started: {}", all_output(&out));
}

#[test]
fn an_unreadable_manifest_skips_that_backup_only() {
    let s3 = S3Server::shared();
    let d = Drill::new("badmanifest");
    let good = d.backup()["backup"]["id"].as_str().unwrap().to_string();
    let bad = d.backup()["backup"]["id"].as_str().unwrap().to_string();
    let (_, keys) = store_keys(s3, &d.store);
    let manifest_key = keys.iter().find(|k| k.contains(&bad) && k.ends_with("manifest.json")).unwrap().clone();
    let path = s3.object_path(&manifest_key);
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    let bad_dir = manifest_key.trim_end_matches("manifest.json").to_string();
    let in_bad_dir = |keys: &[String]| keys.iter().filter(|k| k.starts_with(&bad_dir)).count();
    let before = in_bad_dir(&keys);

    let list = d.run(&["backup", "list", "--store", &d.store, "--output", "json"]);
    assert_eq!(code(&list), 0, "{}", all_output(&list));
    let listed: Vec<String> =
        json(&list)["backups"].as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.contains(&good) && !listed.contains(&bad), "{listed:?}");
    let short_key = manifest_key.split_once('/').unwrap().1;
    assert!(all_output(&list).contains(short_key), "the warning names the manifest: {}", all_output(&list));
    let unreadable = &json(&list)["unreadable"];
    assert_eq!(unreadable.as_array().map(Vec::len), Some(1), "{unreadable}");
    assert!(unreadable[0]["manifest_key"].as_str().unwrap().ends_with(short_key), "{unreadable}");

    let out = d.drill(&[]);
    assert_eq!(code(&out), 0, "the newest readable backup is drilled: {}", all_output(&out));
    assert_eq!(json(&out)["backup_id"], good.as_str());
    let out = d.run(&["backup", "verify", &good, "--store", &d.store]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let out = d.drill(&["--backup", &bad]);
    assert_ne!(code(&out), 0, "{}", all_output(&out));
    assert!(all_output(&out).contains(short_key), "{}", all_output(&out));

    // Retention neither counts nor deletes a backup whose manifest it could not read.
    let out = d.run(&["backup", "prune", "--store", &d.store, "--keep-last", "1", "--force", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let (_, keys) = store_keys(s3, &d.store);
    assert_eq!(in_bad_dir(&keys), before, "the unreadable backup is left alone");
    let list = d.run(&["backup", "list", "--store", &d.store, "--output", "json"]);
    assert_eq!(json(&list)["backups"].as_array().unwrap().len(), 1, "{}", all_output(&list));
}

#[test]
fn the_inventory_checked_is_the_one_of_the_sampled_copy_and_must_compare_something() {
    let s3 = S3Server::shared();
    let d = Drill::new("invcopies");
    let put = |prefix: &str, key: &str, body: Vec<u8>| {
        let path = s3.object_path(&format!("{prefix}/{key}"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, body).unwrap();
    };
    let (media_a, media_b) = (format!("media-a-{}", std::process::id()), format!("media-b-{}", std::process::id()));
    for i in 0..12 {
        put(&media_a, &format!("receipts/r{i}.pdf"), vec![i as u8; 3000 + i]);
    }
    for i in 0..5 {
        put(&media_b, &format!("avatars/u{i}.png"), vec![i as u8; 100 + i]);
    }
    let copy = |from: &str, name: &str| -> (String, Value) {
        let to = d.path().join(name).display().to_string();
        let out = d.run(&[
            "backup",
            "objects",
            "--from",
            &s3.url(from),
            "--to",
            &to,
            "--store",
            &d.store,
            "--output",
            "json",
        ]);
        assert_eq!(code(&out), 0, "{}", all_output(&out));
        (to, json(&out))
    };
    // Two copies under the same set; the newer inventory describes the other copy.
    let (copy_a, run_a) = copy(&media_a, "copy-a");
    copy(&media_b, "copy-b");
    let out = d.drill(&["--objects", &copy_a, "--objects-inventory", "media", "--sample", "12"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    assert_eq!(report["objects"]["inventory"]["run"], run_a["id"], "{report:#}");
    assert_eq!(report["objects"]["inventory"]["checked"], 12, "{report:#}");

    // A copy whose sampled objects its inventory does not list: nothing compared, no pass.
    let (copy_c, _) = copy(&media_a, "copy-c");
    let dir_c = Path::new(&copy_c);
    std::fs::remove_dir_all(dir_c.join("receipts")).unwrap();
    for i in 0..4 {
        std::fs::write(dir_c.join(format!("stray-{i}.bin")), vec![7u8; 50]).unwrap();
    }
    let out = d.drill(&["--objects", &copy_c, "--objects-inventory", "media"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let report = json(&out);
    assert_eq!(report["objects"]["inventory"]["checked"], 0, "{report:#}");
    let detail = step(&report, "objects")["detail"].as_str().unwrap().to_string();
    assert_eq!(step(&report, "objects")["outcome"], "failed", "{report:#}");
    assert!(detail.contains("no sampled object could be compared"), "{detail}");

    // A copy no inventory of the set describes.
    let other = d.path().join("not-a-copy");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("x.bin"), b"x").unwrap();
    let out = d.drill(&["--objects", other.to_str().unwrap(), "--objects-inventory", "media"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("describes the copy"), "{}", all_output(&out));
}
