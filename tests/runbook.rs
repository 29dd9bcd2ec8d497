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
with = { command = "echo failing with ${params.token} >&2; exit 3" }
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
    for action in ["backup", "backup-prune", "sql", "http", "shell", "manual", "sandbox", "migrate", "restore-drill"] {
        assert!(schema["x-opsbook-actions"][action].is_object(), "{action}");
    }
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
