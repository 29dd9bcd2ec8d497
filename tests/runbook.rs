//! `opsbook run` and `opsbook runbook`: validation with positions, resume after a failure,
//! dry runs that change nothing, manual and destructive steps without a terminal, secrets kept
//! out of journals, audit log and output, and the shipped runbooks.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use support::cmd::{all_output, code, json, opsbook};
use support::pg::TestPg;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn run(dir: &Path, args: &[&str]) -> Output {
    opsbook(dir).args(args).output().unwrap()
}

fn journal(dir: &Path, run_id: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("runs").join(format!("{run_id}.json"))).unwrap()).unwrap()
}

#[test]
fn shipped_runbooks_validate() {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<String> = std::fs::read_dir(repo().join("runbooks"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    let mut args = vec!["runbook", "validate", "--output", "json"];
    args.extend(files.iter().map(String::as_str));
    let out = run(dir.path(), &args);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(json(&out)["runbooks"].as_array().unwrap().iter().all(|r| r["valid"] == true));
}

#[test]
fn invalid_runbook_reports_file_line_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "bad.toml",
        "name = \"bad\"\n\n[[steps]]\nid = \"one\"\naction = \"teleport\"\n\n[[steps]]\nid = \"two\"\naction = \"shell\"\nwith = { command = \"echo ${params.missing}\" }\n",
    );
    for args in [vec!["runbook", "validate", path.to_str().unwrap()], vec!["run", path.to_str().unwrap()]] {
        let out = run(dir.path(), &args);
        assert_eq!(code(&out), 2, "{}", all_output(&out));
        let text = all_output(&out);
        assert!(text.contains("bad.toml:5:10") && text.contains("unknown action `teleport`"), "{text}");
        assert!(text.contains("bad.toml:10:") && text.contains("params.missing"), "{text}");
    }
    assert!(!dir.path().join("runs").exists(), "nothing ran");
}

#[test]
fn failing_step_resumes_without_rerunning_earlier_steps() {
    let dir = tempfile::tempdir().unwrap();
    let rb = write(
        dir.path(),
        "resume.toml",
        r#"
name = "resume-test"
[[steps]]
id = "count"
action = "shell"
with = { command = "echo ran >> counter.txt" }
[[steps]]
id = "needs-flag"
action = "shell"
with = { command = "test -f flag" }
[[steps]]
id = "after"
action = "shell"
with = { command = "echo after >> counter.txt" }
"#,
    );
    let out = run(dir.path(), &["run", rb.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let report = json(&out);
    assert_eq!(report["status"], "failed");
    assert_eq!(report["steps"][0]["status"], "ok");
    assert_eq!(report["steps"][1]["status"], "failed");
    assert_eq!(report["steps"][2]["status"], "skipped");
    let run_id = report["run_id"].as_str().unwrap().to_string();
    assert_eq!(journal(dir.path(), &run_id)["steps"][1]["status"], "failed", "journal saved");

    std::fs::write(dir.path().join("flag"), "").unwrap();
    let out = run(dir.path(), &["run", rb.to_str().unwrap(), "--resume", &run_id, "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    assert_eq!(report["run_id"], run_id.as_str());
    assert!(report["steps"].as_array().unwrap().iter().all(|s| s["status"] == "ok"), "{report}");
    let counter = std::fs::read_to_string(dir.path().join("counter.txt")).unwrap();
    assert_eq!(counter, "ran\nafter\n", "step 1 ran once, step 3 ran after the resume");

    let again = run(dir.path(), &["run", rb.to_str().unwrap(), "--resume", &run_id]);
    assert_eq!(code(&again), 2, "a completed run cannot be resumed: {}", all_output(&again));
}

#[test]
fn dry_run_changes_neither_database_nor_store() {
    let pg = TestPg::shared();
    let db = pg.fresh_db("dryrun");
    pg.load_example(&db);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let rb = write(
        dir.path(),
        "dry.toml",
        r#"
name = "dry"
[params.db]
type = "string"
required = true
[params.store]
type = "string"
required = true
[[steps]]
id = "insert"
action = "sql"
with = { database_url = "${params.db}", query = "INSERT INTO customers (email, name) VALUES ('dry@example.com', 'Dry Run')" }
[[steps]]
id = "backup"
action = "backup"
with = { database_url = "${params.db}", store = "${params.store}" }
[[steps]]
id = "prune"
action = "backup-prune"
with = { store = "${params.store}", keep_last = 1 }
[[steps]]
id = "touch"
action = "shell"
with = { command = "touch created-by-shell" }
"#,
    );
    let before = pg.query_i64(&db, "SELECT count(*) FROM customers");
    let db_param = format!("db={db}");
    let store_param = format!("store={}", store.display());
    let out = run(
        dir.path(),
        &["run", rb.to_str().unwrap(), "--dry-run", "--param", &db_param, "--param", &store_param, "--output", "json"],
    );
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    assert!(report["steps"].as_array().unwrap().iter().all(|s| s["status"] == "ok"), "{report}");
    assert_eq!(pg.query_i64(&db, "SELECT count(*) FROM customers"), before, "no row inserted");
    assert!(!store.exists() || std::fs::read_dir(&store).unwrap().next().is_none(), "store untouched");
    assert!(!dir.path().join("created-by-shell").exists(), "shell step shown, not run");
}

#[test]
fn manual_and_destructive_steps_need_a_person_or_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    let rb = write(
        dir.path(),
        "manual.toml",
        r#"
name = "manual"
[[steps]]
id = "check-dns"
action = "manual"
with = { instructions = "Point the DNS record at the new load balancer" }
[[steps]]
id = "wipe"
action = "shell"
destructive = true
confirm = "type-name"
target = "staging"
with = { command = "echo wiped > wiped.txt" }
"#,
    );
    let out = run(dir.path(), &["run", rb.to_str().unwrap()]);
    assert_eq!(code(&out), 5, "{}", all_output(&out));
    assert!(all_output(&out).contains("--ack check-dns"), "{}", all_output(&out));

    let out = run(dir.path(), &["run", rb.to_str().unwrap(), "--ack", "check-dns"]);
    assert_eq!(code(&out), 5, "destructive step without --yes: {}", all_output(&out));
    assert!(!dir.path().join("wiped.txt").exists());

    let out = run(dir.path(), &["run", rb.to_str().unwrap(), "--ack", "check-dns", "--yes", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(dir.path().join("wiped.txt").exists());
    let report = json(&out);
    assert!(report["steps"][0]["outputs"]["acknowledged_by"].as_str().unwrap().contains("--ack check-dns"));
}

#[test]
fn secret_params_stay_out_of_journal_audit_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cr3t-token-value-42";
    let rb = write(
        dir.path(),
        "secret.toml",
        r#"
name = "secret"
[params.token]
type = "secret"
[[steps]]
id = "use"
action = "shell"
with = { command = "echo token=$TOKEN; echo token=$TOKEN >&2", env = { TOKEN = "${params.token}" } }
[[steps]]
id = "fail"
action = "shell"
with = { command = "echo failing with $TOKEN >&2; exit 3", env = { TOKEN = "${params.token}" } }
"#,
    );
    let out = opsbook(dir.path())
        .env("OPSBOOK_PARAM_TOKEN", secret)
        .args(["run", rb.to_str().unwrap(), "--output", "json", "-vv"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(!all_output(&out).contains(secret), "secret in output: {}", all_output(&out));
    let report = json(&out);
    assert!(report["steps"][0]["outputs"]["stdout"].as_str().unwrap().contains("token=***"), "{report}");
    let run_id = report["run_id"].as_str().unwrap();
    let journal_text = std::fs::read_to_string(dir.path().join("runs").join(format!("{run_id}.json"))).unwrap();
    assert!(!journal_text.contains(secret), "secret in journal");
    assert!(!journal_text.contains("\"token\""), "secret param not recorded: {journal_text}");
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(!audit.contains(secret), "secret in audit log");
    let events: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.first().unwrap()["event"], "run_started");
    assert_eq!(events.last().unwrap()["event"], "run_finished");
    assert!(events.iter().all(|e| e["sha256"].as_str().map(str::len) == Some(64) && e["who"].is_string()));
}

#[test]
fn parameters_are_typed_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let rb = write(
        dir.path(),
        "params.toml",
        r#"
name = "params"
[params.env]
type = "string"
enum = ["staging", "prod"]
required = true
[params.n]
type = "int"
default = 3
[[steps]]
id = "echo"
action = "shell"
with = { command = "echo ${params.env} ${params.n}" }
"#,
    );
    let p = rb.to_str().unwrap();
    let out = run(dir.path(), &["run", p]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("--param env="), "{}", all_output(&out));
    let out = run(dir.path(), &["run", p, "--param", "env=dev"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("staging, prod"), "{}", all_output(&out));
    let out = run(dir.path(), &["run", p, "--param", "env=prod", "--param", "n=x"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    let out = run(dir.path(), &["run", p, "--param", "bogus=1", "--param", "env=prod"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    let out = run(dir.path(), &["run", p, "--param", "env=prod", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(json(&out)["steps"][0]["outputs"]["stdout"], "prod 3");
}

#[test]
fn locked_runbook_refuses_a_second_run() {
    let dir = tempfile::tempdir().unwrap();
    let rb = write(
        dir.path(),
        "locked.toml",
        "name = \"locked\"\nlock = true\n[[steps]]\nid = \"slow\"\naction = \"shell\"\nwith = { command = \"touch started; sleep 3\" }\n",
    );
    let first = support::cmd::background(dir.path()).args(["run", rb.to_str().unwrap()]).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !dir.path().join("started").exists() {
        assert!(std::time::Instant::now() < deadline, "first run never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = run(dir.path(), &["run", rb.to_str().unwrap()]);
    assert_eq!(code(&second), 4, "{}", all_output(&second));
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0));
}

#[test]
fn quickstart_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("sandbox");
    let out = opsbook(dir.path())
        .env("OPSBOOK_SANDBOX_DIR", &sandbox)
        .args(["run"])
        .arg(repo().join("runbooks/quickstart.toml"))
        .args(["--param", "teardown=true", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    let steps = report["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["status"] == "ok"), "{report}");
    let step = |id: &str| steps.iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("no step {id}: {report}"));
    assert_eq!(step("lint")["outputs"]["files"], 2);
    assert_eq!(step("migrate")["outputs"]["applied"], 2);
    assert_eq!(step("migrate")["outputs"]["head"], 20260102000000i64);
    let backup_id = step("backup")["outputs"]["backup_id"].as_str().unwrap();
    assert_eq!(step("list")["outputs"]["latest"], backup_id);
    assert_eq!(step("verify")["outputs"]["ok"], true);
    assert_eq!(step("drill")["outputs"]["ok"], true);
    assert_eq!(step("drill")["outputs"]["backup_id"], backup_id);
    assert!(step("drill")["outputs"]["rows"].as_i64().unwrap() > 8000);
    assert!(!sandbox.join("pg").exists(), "teardown removed the sandbox");
    // The password of the sandbox never reached the report.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("postgres:postgres@"));
}

#[test]
fn deploy_checks_lints_dry_runs_confirms_and_applies() {
    let pg = TestPg::shared();
    let db = pg.fresh_db("deploy");
    pg.load_example(&db);
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(migrations.join("1_notes.sql"), "ALTER TABLE products ADD COLUMN notes text;\n").unwrap();
    let deploy = |extra: &[&str]| {
        opsbook(dir.path())
            .env("DATABASE_URL", &db)
            .args(["run"])
            .arg(repo().join("runbooks/deploy.toml"))
            .args(["--param", &format!("migrations={}", migrations.display()), "--output", "json"])
            .args(extra)
            .output()
            .unwrap()
    };
    // No terminal and no --yes: stops at the confirmation (exit 5) with nothing applied.
    let out = deploy(&[]);
    assert_eq!(code(&out), 5, "{}", all_output(&out));
    assert_eq!(pg.query_i64(&db, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'notes'"), 0);

    let out = deploy(&["--yes"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    let steps = report["steps"].as_array().unwrap();
    let step = |id: &str| steps.iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("no step {id}: {report}"));
    assert_eq!(step("check")["outputs"]["pending"], 1);
    assert!(step("dry-run")["outputs"]["locks"][0].as_str().unwrap().contains("AccessExclusiveLock on products"));
    assert_eq!(step("up")["outputs"]["applied"], 1);
    assert_eq!(step("verify")["outputs"]["pending"], 0);
    assert_eq!(pg.query_i64(&db, "SELECT count(*) FROM _sqlx_migrations"), 1);

    // An unsafe migration stops the deploy at the lint step, before anything runs.
    std::fs::write(migrations.join("2_idx.sql"), "CREATE INDEX products_notes ON products (notes);\n").unwrap();
    let out = deploy(&["--yes"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("require-concurrent-index-creation"), "{}", all_output(&out));
    assert_eq!(pg.query_i64(&db, "SELECT count(*) FROM _sqlx_migrations"), 1);
}

#[test]
fn schema_is_json_schema_with_actions() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["runbook", "schema"]);
    assert_eq!(code(&out), 0);
    let schema = json(&out);
    assert!(schema["properties"]["steps"].is_object(), "{schema}");
    assert!(schema.get("status").is_none() && schema.get("exit_code").is_none(), "a pure schema document");
    for action in ["backup", "backup-prune", "sql", "http", "shell", "manual", "sandbox", "migrate", "restore-drill"] {
        assert!(schema["x-opsbook-actions"][action].is_object(), "{action}");
    }
    let out = run(dir.path(), &["runbook", "schema", "--output", "json"]);
    let report = json(&out);
    assert_eq!(report["status"], "ok");
    assert!(report["schema"]["properties"]["steps"].is_object(), "{report}");

    // Validation problems are errors, named by file, line and column.
    std::fs::write(
        dir.path().join("bad.toml"),
        "name = \"t\"\n[[steps]]\nid = \"one\"\naction = \"shell\"\nwith = { command = \"true\", bogus = 1 }\n",
    )
    .unwrap();
    let out = run(dir.path(), &["runbook", "validate", "bad.toml"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("error: bad.toml:5:"), "{}", all_output(&out));
}

#[test]
fn nightly_backup_runs_against_a_real_database() {
    let pg = TestPg::shared();
    let db = pg.fresh_db("nightly");
    pg.load_example(&db);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let media = dir.path().join("media");
    std::fs::create_dir_all(media.join("photos")).unwrap();
    std::fs::write(media.join("photos/1.jpg"), b"jpeg").unwrap();
    let copy = dir.path().join("media-copy");
    let out = opsbook(dir.path())
        .env("DATABASE_URL", &db)
        .env("OPSBOOK_STORE", &store)
        .args(["run"])
        .arg(repo().join("runbooks/nightly-backup.toml"))
        .args(["--param", "set=nightly", "--output", "json"])
        .arg("--param")
        .arg(format!("objects_from={}", media.display()))
        .arg("--param")
        .arg(format!("objects_to={}", copy.display()))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    assert!(report["steps"].as_array().unwrap().iter().all(|s| s["status"] == "ok"), "{report}");
    assert_eq!(report["steps"][1]["outputs"]["kept"], 1);
    assert_eq!(report["steps"][2]["outputs"]["ok"], true);
    assert_eq!(report["steps"][3]["outputs"]["copied"], 1, "{report}");
    assert_eq!(std::fs::read(copy.join("photos/1.jpg")).unwrap(), b"jpeg");
    let list = json(&run(
        dir.path(),
        &["backup", "list", "--store", store.to_str().unwrap(), "--set", "nightly", "--output", "json"],
    ));
    let backup = &list["backups"][0];
    assert_eq!(backup["id"], report["steps"][0]["outputs"]["backup_id"]);
    assert_eq!(backup["verified"]["ok"], true, "the runbook's verify is recorded in the store");
}

/// Waits (with a deadline) until `ready` holds while `child` still runs.
fn wait_for(child: &mut std::process::Child, what: &str, ready: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ready() {
        assert!(child.try_wait().unwrap().is_none(), "the run exited before {what}");
        assert!(std::time::Instant::now() < deadline, "no {what} within 60s");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn ctrl_c_during_a_dlq_replay_step_lets_in_flight_deliveries_finish() {
    let pg = TestPg::shared();
    let db = pg.fresh_db("rb_dlq_sigint");
    let dir = tempfile::tempdir().unwrap();
    let init = run(dir.path(), &["dlq-replay", "init", "--database-url", &db]);
    assert_eq!(code(&init), 0, "{}", all_output(&init));
    let peer = support::http::HttpPeer::start();
    peer.delay("/hook", std::time::Duration::from_secs(2));
    pg.execute(
        &db,
        &format!(
            "INSERT INTO opsbook_dead_letters (target_url, payload, event_type, failed_at) \
             SELECT '{}', '{{\"seq\":' || g || '}}', 'order.paid', now() - interval '1 hour' \
             FROM generate_series(1, 6) g",
            peer.url("/hook")
        ),
    );
    let rb = write(
        dir.path(),
        "replay.toml",
        r#"
name = "replay"
[params.db]
type = "string"
required = true
[[steps]]
id = "replay"
action = "dlq-replay"
with = { mode = "replay", database_url = "${params.db}", concurrency = 2 }
[[steps]]
id = "after"
action = "shell"
with = { command = "echo after >> after.txt" }
"#,
    );
    let mut child = support::cmd::background(dir.path())
        .args(["run", rb.to_str().unwrap(), "--output", "json", "--param"])
        .arg(format!("db={db}"))
        .spawn()
        .unwrap();
    // Both workers' requests are at the receiver, which answers only after 2 s.
    wait_for(&mut child, "two deliveries in flight", || peer.received().len() >= 2);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", all_output(&out));
    let sent: Vec<String> = peer.received().into_iter().map(|r| r.body).collect();
    assert_eq!(sent.len(), 2, "nothing new is sent after Ctrl-C: {sent:?}");
    for body in &sent {
        let left =
            pg.query_i64(&db, &format!("SELECT count(*) FROM opsbook_dead_letters WHERE payload::text = '{body}'"));
        assert_eq!(left, 0, "{body} was delivered during Ctrl-C and must be removed, not sent again");
    }
    assert_eq!(pg.query_i64(&db, "SELECT count(*) FROM opsbook_dead_letters"), 4);
    assert_eq!(pg.query_i64(&db, "SELECT coalesce(sum(attempts), 0) FROM opsbook_dead_letters"), 0);
    let report = json(&out);
    assert_eq!(report["status"], "interrupted", "{report}");
    assert_eq!(report["steps"][0]["status"], "failed", "rows are left: the step is not done: {report}");
    assert!(report["steps"][0]["error"].as_str().unwrap().contains("--resume"), "{report}");
    assert_eq!(report["steps"][1]["status"], "skipped");
    assert_eq!(report["steps"][1]["note"], "interrupted");
    assert!(!dir.path().join("after.txt").exists());

    // The resume replays the rest, each row once, and the skipped step loses its note.
    peer.delay("/hook", std::time::Duration::ZERO);
    let run_id = report["run_id"].as_str().unwrap().to_string();
    let out = opsbook(dir.path())
        .args(["run", rb.to_str().unwrap(), "--resume", &run_id, "--output", "json", "--param"])
        .arg(format!("db={db}"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    assert_eq!(report["steps"][0]["outputs"]["delivered"], 4, "{report}");
    assert_eq!(report["steps"][1]["status"], "ok");
    assert!(report["steps"][1].get("note").is_none(), "stale note: {report}");
    assert_eq!(journal(dir.path(), &run_id)["steps"][1].get("note"), None);
    let mut bodies: Vec<String> = peer.received().into_iter().map(|r| r.body).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!((bodies.len(), peer.received().len()), (6, 6), "every row sent exactly once");
    assert_eq!(pg.query_i64(&db, "SELECT count(*) FROM opsbook_dead_letters"), 0);
}

#[test]
fn resume_never_uses_a_masked_output_and_never_repeats_a_shell_step_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "Sup3r-Secret-PW-77";
    let rb = write(
        dir.path(),
        "masked.toml",
        r#"
name = "masked"
[params.pw]
type = "secret"
[[steps]]
id = "url"
action = "shell"
with = { command = "echo ran >> url-runs.txt; echo \"postgres://app:$PW@db.internal/shop\"", env = { PW = "${params.pw}" } }
[[steps]]
id = "plain"
action = "shell"
with = { command = "echo ran >> plain-runs.txt; echo plain-value" }
[[steps]]
id = "gate"
action = "shell"
with = { command = "test -f flag" }
[[steps]]
id = "use"
action = "shell"
with = { command = "printf '%s %s' \"$URL\" \"$PLAIN\" > used.txt", env = { URL = "${steps.url.outputs.stdout}", PLAIN = "${steps.plain.outputs.stdout}" } }
"#,
    );
    let first = opsbook(dir.path())
        .env("OPSBOOK_PARAM_PW", secret)
        .args(["run", rb.to_str().unwrap(), "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(code(&first), 1, "{}", all_output(&first));
    let run_id = json(&first)["run_id"].as_str().unwrap().to_string();
    let saved = journal(dir.path(), &run_id);
    assert_eq!(saved["steps"][0]["masked"], serde_json::json!(["stdout"]), "{saved}");
    assert!(saved["steps"][1].get("masked").is_none(), "{saved}");
    assert!(!saved.to_string().contains(secret));

    std::fs::write(dir.path().join("flag"), "").unwrap();
    let out = opsbook(dir.path())
        .env("OPSBOOK_PARAM_PW", secret)
        .args(["run", rb.to_str().unwrap(), "--resume", &run_id, "--output", "json"])
        .output()
        .unwrap();
    // A shell command may not be safe to repeat, so the resume is refused rather than run it
    // again (a repeatable action such as `sandbox` is re-run: see the quickstart test).
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    let text = all_output(&out);
    assert!(!text.contains(secret), "{text}");
    assert!(text.contains("step 'url' (shell)") && text.contains("`stdout` held a secret"), "{text}");
    assert!(!dir.path().join("used.txt").exists(), "the masked value was never used");
    let runs = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    assert_eq!(runs("url-runs.txt"), "ran\n", "the secret-bearing step did not run again");
    assert!(!std::fs::read_to_string(dir.path().join("runs").join(format!("{run_id}.json"))).unwrap().contains(secret));
}

#[test]
fn quickstart_resumes_after_a_failed_lint() {
    // The shipped quickstart, copied beside a migrations directory that is missing at first.
    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("sandbox");
    std::fs::create_dir_all(dir.path().join("runbooks")).unwrap();
    let rb = dir.path().join("runbooks/quickstart.toml");
    std::fs::copy(repo().join("runbooks/quickstart.toml"), &rb).unwrap();
    let quickstart = |extra: &[&str]| {
        opsbook(dir.path())
            .env("OPSBOOK_SANDBOX_DIR", &sandbox)
            .arg("run")
            .arg(&rb)
            .args(extra)
            .args(["--output", "json"])
            .output()
            .unwrap()
    };
    let first = quickstart(&["--param", "teardown=true"]);
    assert_ne!(code(&first), 0, "{}", all_output(&first));
    let report = json(&first);
    let status =
        |r: &Value, id: &str| r["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()["status"].clone();
    assert_eq!(status(&report, "lint"), "failed", "{report}");
    assert_eq!(status(&report, "teardown"), "ok", "{report}");
    assert!(!sandbox.join("pg").exists(), "teardown ran");
    let run_id = report["run_id"].as_str().unwrap().to_string();

    let migrations = dir.path().join("examples/migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    for entry in std::fs::read_dir(repo().join("examples/migrations")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), migrations.join(entry.file_name())).unwrap();
    }
    let out = quickstart(&["--resume", &run_id]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    assert!(report["steps"].as_array().unwrap().iter().all(|s| s["status"] == "ok"), "{report}");
    assert_eq!(report["steps"][0]["id"], "sandbox");
    assert!(report["steps"][0]["note"].as_str().unwrap().contains("database_url"), "{report}");
    assert!(!sandbox.join("pg").exists(), "the cleanup step ran again after the resumed steps");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("postgres:postgres@"));
}

#[test]
fn resume_runs_cleanup_steps_again() {
    let dir = tempfile::tempdir().unwrap();
    let rb = write(
        dir.path(),
        "cleanup.toml",
        r#"
name = "cleanup"
[[steps]]
id = "work"
action = "shell"
with = { command = "echo work >> log.txt" }
[[steps]]
id = "gate"
action = "shell"
with = { command = "test -f flag && echo gate >> log.txt" }
[[steps]]
id = "cleanup"
action = "shell"
always = true
with = { command = "echo cleanup >> log.txt" }
"#,
    );
    let out = run(dir.path(), &["run", rb.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let run_id = json(&out)["run_id"].as_str().unwrap().to_string();
    std::fs::write(dir.path().join("flag"), "").unwrap();
    let out = run(dir.path(), &["run", rb.to_str().unwrap(), "--resume", &run_id, "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let log = std::fs::read_to_string(dir.path().join("log.txt")).unwrap();
    assert_eq!(log, "work\ncleanup\ngate\ncleanup\n", "cleanup follows the resumed steps");
}

#[test]
fn a_second_resume_of_the_same_run_is_refused_while_the_first_runs() {
    let dir = tempfile::tempdir().unwrap();
    let rb = write(
        dir.path(),
        "pay.toml",
        r#"
name = "pay"
[[steps]]
id = "pay"
action = "shell"
with = { command = "test -f armed || exit 1; echo paid >> payments.txt; touch started; for i in $(seq 600); do test -f release && break; sleep 0.05; done" }
"#,
    );
    let out = run(dir.path(), &["run", rb.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let run_id = json(&out)["run_id"].as_str().unwrap().to_string();
    std::fs::write(dir.path().join("armed"), "").unwrap();
    let mut first =
        support::cmd::background(dir.path()).args(["run", rb.to_str().unwrap(), "--resume", &run_id]).spawn().unwrap();
    wait_for(&mut first, "the first resume's step", || dir.path().join("started").exists());
    let first_pid = first.id();
    let second = run(dir.path(), &["run", rb.to_str().unwrap(), "--resume", &run_id]);
    std::fs::write(dir.path().join("release"), "").unwrap();
    let first = first.wait_with_output().unwrap();
    assert_eq!(code(&second), 4, "{}", all_output(&second));
    let text = all_output(&second);
    let holder = format!("pid {first_pid}");
    assert!(text.contains(&run_id) && text.contains("--resume") && text.contains(&holder), "{text}");
    assert_eq!(code(&first), 0, "{}", all_output(&first));
    assert_eq!(std::fs::read_to_string(dir.path().join("payments.txt")).unwrap(), "paid\n", "paid once");
}

#[test]
fn dry_run_shows_outputs_only_a_real_run_produces_as_placeholders() {
    let dir = tempfile::tempdir().unwrap();
    let rb = write(
        dir.path(),
        "outputs.toml",
        r#"
name = "outputs"
[[steps]]
id = "a"
action = "shell"
with = { command = "echo hello" }
[[steps]]
id = "b"
action = "shell"
with = { command = "echo got ${steps.a.outputs.stdout}" }
[[steps]]
id = "c"
action = "shell"
with = { command = "echo ${steps.a.outputs.nope}" }
"#,
    );
    let out = run(dir.path(), &["run", rb.to_str().unwrap(), "--dry-run", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    let would = report["steps"][1]["outputs"]["would"].as_str().unwrap();
    assert!(would.contains("got <output of steps.a: stdout, known after a real run>"), "{report}");

    // A real run still fails on an output that does not exist.
    let out = run(dir.path(), &["run", rb.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    let report = json(&out);
    assert_eq!(report["steps"][1]["outputs"]["stdout"], "got hello");
    assert!(report["steps"][2]["error"].as_str().unwrap().contains("${steps.a.outputs.nope} has no value"), "{report}");

    // The shipped quarterly rotation: its last step quotes fingerprints only a real rotation makes.
    std::fs::write(
        dir.path().join("opsbook.toml"),
        "[[profiles.default.secrets]]\nname = \"JWT_SECRET\"\nkind = \"random\"\nbits = 256\nstore = \"dotenv:.env\"\nmax_age = \"90d\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join(".env"), "JWT_SECRET=old-value-123456\n").unwrap();
    let out = opsbook(dir.path())
        .args(["run"])
        .arg(repo().join("runbooks/rotate-quarterly.toml"))
        .args(["--dry-run", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    let instructions = report["steps"][2]["outputs"]["instructions"].as_str().unwrap();
    assert!(instructions.contains("<output of steps.rotate: fingerprints, known after a real run>"), "{report}");
    assert_eq!(std::fs::read_to_string(dir.path().join(".env")).unwrap(), "JWT_SECRET=old-value-123456\n");
}

#[test]
fn secret_parameters_stay_out_of_a_shell_steps_argv() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "Sup3rSecretPW-in-argv";
    let bad = write(
        dir.path(),
        "argv.toml",
        "name = \"argv\"\n[params.pw]\ntype = \"secret\"\n[[steps]]\nid = \"login\"\naction = \"shell\"\nwith = { command = \"mysql --password=${params.pw}\" }\n[[steps]]\nid = \"direct\"\naction = \"shell\"\nwith = { argv = [\"login\", \"${params.pw}\"] }\n",
    );
    for args in [vec!["runbook", "validate", bad.to_str().unwrap()], vec!["run", bad.to_str().unwrap()]] {
        let out = opsbook(dir.path()).env("OPSBOOK_PARAM_PW", secret).args(&args).output().unwrap();
        assert_eq!(code(&out), 2, "{}", all_output(&out));
        let text = all_output(&out);
        assert!(text.contains("argv.toml:7:") && text.contains("env = { PW = \"${params.pw}\" }"), "{text}");
        assert!(text.contains("argv.toml:11:") && text.contains("secret parameter `pw` in `argv`"), "{text}");
        assert!(!text.contains(secret));
    }
    assert!(!dir.path().join("runs").exists(), "nothing ran");

    // Through `env` the child gets the value, and its argv does not hold it.
    let good = write(
        dir.path(),
        "env.toml",
        "name = \"env\"\n[params.pw]\ntype = \"secret\"\n[[steps]]\nid = \"login\"\naction = \"shell\"\nwith = { command = \"tr '\\\\0' ' ' < /proc/$$/cmdline > argv.txt; printf %s \\\"$PW\\\" > pw.txt\", env = { PW = \"${params.pw}\" } }\n",
    );
    let out =
        opsbook(dir.path()).env("OPSBOOK_PARAM_PW", secret).args(["run", good.to_str().unwrap()]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(std::fs::read_to_string(dir.path().join("pw.txt")).unwrap(), secret);
    let argv = std::fs::read_to_string(dir.path().join("argv.txt")).unwrap();
    assert!(argv.starts_with("sh -c") && !argv.contains(secret), "{argv}");
}
