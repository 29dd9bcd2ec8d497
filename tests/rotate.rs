//! `opsbook rotate-secrets` against a real PostgreSQL cluster (scram-sha-256 for host logins):
//! single and alternating password rotation, crashes after every step then --resume, a failed
//! test rolled back, random keys with a previous value, the lock, and no value in any output.

mod support;

use std::path::Path;

use serde_json::Value;
use support::cmd::{all_output, code, json, opsbook};
use support::pg::{block_on, TestPg};

struct Env {
    dir: tempfile::TempDir,
    role: String,
    db: String,
}

impl Env {
    /// A role that owns a database with a table, its URL in `.env`, and `secrets` in opsbook.toml.
    fn new(name: &str, strategy: &str) -> Env {
        let pg = TestPg::shared();
        let role = format!("r_{name}_{}_{}", std::process::id(), rand::random::<u16>());
        let password = format!("pw{}", rand::random::<u64>());
        pg.execute(&pg.admin_url(), &format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"));
        let db = pg.fresh_db(name);
        let dbname = db.rsplit('/').next().unwrap().to_string();
        pg.execute(&db, &format!("CREATE TABLE notes (id int); GRANT SELECT, INSERT ON notes TO {role}; GRANT CONNECT ON DATABASE {dbname} TO {role}"));
        let url = format!("postgres://{role}:{password}@127.0.0.1:{}/{dbname}", pg.port());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            format!("# app\nDATABASE_URL={url}\nJWT_SECRET=old-secret-value-0123456789abcdef0123456789\nKEEP=me\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("opsbook.toml"),
            format!(
                r#"[[profiles.default.secrets]]
name = "DATABASE_URL"
kind = "postgres-password"
role = "{role}"
strategy = "{strategy}"
store = "dotenv:.env"
max_age = "90d"
grace = "0s"

[[profiles.default.secrets]]
name = "JWT_SECRET"
kind = "random"
bits = 256
store = "dotenv:.env"
max_age = "90d"
grace = "1h"
"#
            ),
        )
        .unwrap();
        Env { dir, role, db }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        opsbook(self.path())
            .args(["rotate-secrets"])
            .args(args)
            .env("ADMIN_DATABASE_URL", TestPg::shared().admin_url())
            .output()
            .unwrap()
    }

    fn value(&self, key: &str) -> Option<String> {
        std::fs::read_to_string(self.path().join(".env"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")).map(|v| v.trim_matches('\'').to_string()))
    }
}

fn login(url: &str) -> Result<(), String> {
    let url = opsbook::pg::DbUrl::parse(url).unwrap();
    block_on(async move {
        let mut conn = opsbook::pg::connect(&url).await.map_err(|e| e.to_string())?;
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM notes")
            .fetch_one(&mut conn)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
}

#[test]
fn single_user_rotation_switches_the_password() {
    let e = Env::new("single", "single");
    let old = e.value("DATABASE_URL").unwrap();
    let out = e.run(&["run", "DATABASE_URL", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    assert_eq!(report["secrets"][0]["steps"], serde_json::json!(["created", "set", "tested", "finished"]));
    let new = e.value("DATABASE_URL").unwrap();
    assert_ne!(new, old);
    login(&new).unwrap();
    let refused = login(&old).unwrap_err();
    assert!(refused.contains("password authentication failed"), "{refused}");
    assert_eq!(e.value("DATABASE_URL_PENDING"), None);
    assert_eq!(e.value("DATABASE_URL_PREVIOUS"), None, "a dead password is not kept");
    assert_eq!(e.value("KEEP").as_deref(), Some("me"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(e.path().join(".env")).unwrap().permissions().mode() & 0o777, 0o600);
    let pw = new.split(['/', ':', '@']).nth(4).unwrap().to_string();
    for args in [&["status"][..], &["status", "--output", "json"][..], &["plan"][..]] {
        let text = all_output(&e.run(args));
        assert!(!text.contains(&pw), "password in `{args:?}` output");
    }
    assert!(!all_output(&out).contains(&pw));
    let status = json(&e.run(&["status", "--output", "json"]));
    let db = status["secrets"].as_array().unwrap().iter().find(|s| s["name"] == "DATABASE_URL").unwrap();
    assert_eq!(db["due"], false);
    assert_eq!(db["fingerprint"].as_str().unwrap().len(), 8);
}

#[test]
fn alternating_rotation_keeps_connected_clients_working() {
    let e = Env::new("alt", "alternating");
    let pg = TestPg::shared();
    // A client connected throughout, with the original login.
    let original = opsbook::pg::DbUrl::parse(&e.value("DATABASE_URL").unwrap()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        block_on(async move {
            let mut conn = opsbook::pg::connect(&original).await.unwrap();
            ready_tx.send(()).unwrap();
            let mut queries = 0;
            loop {
                sqlx::query_scalar::<_, i64>("SELECT count(*) FROM notes")
                    .fetch_one(&mut conn)
                    .await
                    .expect("query on the open connection");
                queries += 1;
                if rx.try_recv().is_ok() {
                    return queries;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    });
    ready_rx.recv().unwrap();
    let mut users = Vec::new();
    for _ in 0..3 {
        let out = e.run(&["run", "DATABASE_URL"]);
        assert_eq!(code(&out), 0, "{}", all_output(&out));
        let url = e.value("DATABASE_URL").unwrap();
        login(&url).unwrap();
        users.push(opsbook::pg::DbUrl::parse(&url).unwrap().username().unwrap());
    }
    tx.send(()).unwrap();
    assert!(client.join().unwrap() > 0);
    assert_eq!(users, vec![format!("{}_a", e.role), format!("{}_b", e.role), format!("{}_a", e.role)]);
    // With grace 0 the previous login was revoked at once.
    let b = format!("{}_b", e.role);
    assert_eq!(
        pg.query_string(&pg.admin_url(), &format!("SELECT rolcanlogin FROM pg_roles WHERE rolname = '{b}'")),
        "false"
    );
    // New logins act as the group role, so what they create belongs to it.
    let url = e.value("DATABASE_URL").unwrap();
    let u = opsbook::pg::DbUrl::parse(&url).unwrap();
    let who = block_on(async move {
        let mut conn = opsbook::pg::connect(&u).await.unwrap();
        sqlx::query_scalar::<_, String>("SELECT current_user::text").fetch_one(&mut conn).await.unwrap()
    });
    assert_eq!(who, e.role);
}

#[test]
fn a_crash_after_any_step_resumes_and_current_always_works() {
    // "stored": the store was written at finish, the journal not yet.
    for step in ["created", "set", "tested", "stored", "finished"] {
        let e = Env::new(&format!("crash_{step}"), "alternating");
        let out = opsbook(e.path())
            .args(["rotate-secrets", "run", "DATABASE_URL"])
            .env("ADMIN_DATABASE_URL", TestPg::shared().admin_url())
            .env("OPSBOOK_ROTATE_CRASH_AFTER", step)
            .output()
            .unwrap();
        assert_eq!(code(&out), 99, "{step}: {}", all_output(&out));
        login(&e.value("DATABASE_URL").unwrap()).unwrap_or_else(|err| panic!("after a crash at {step}: {err}"));
        let status = json(&e.run(&["status", "--output", "json"]));
        let db = status["secrets"].as_array().unwrap().iter().find(|s| s["name"] == "DATABASE_URL").unwrap().clone();
        let journaled = match step {
            "finished" => Value::Null,
            "stored" => Value::from("tested"),
            other => Value::from(other),
        };
        assert_eq!(db["in_progress"], journaled, "{step}");
        let out = e.run(&["run", "--resume", "--output", "json"]);
        assert_eq!(code(&out), 0, "{step}: {}", all_output(&out));
        login(&e.value("DATABASE_URL").unwrap()).unwrap();
        assert_eq!(e.value("DATABASE_URL_PENDING"), None, "{step}");
        let status = json(&e.run(&["status", "--output", "json"]));
        assert!(
            status["secrets"].as_array().unwrap().iter().all(|s| s["in_progress"] == Value::Null),
            "{step}: {status}"
        );
    }
}

#[test]
fn a_failed_test_rolls_back_and_keeps_the_current_value() {
    let e = Env::new("fail", "single");
    let pg = TestPg::shared();
    let old = e.value("DATABASE_URL").unwrap();
    // The new password will be set, but no login can succeed: the test step fails.
    pg.execute(&pg.admin_url(), &format!("ALTER ROLE {} CONNECTION LIMIT 0", e.role));
    let out = e.run(&["run", "DATABASE_URL"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("rolled back"), "{}", all_output(&out));
    assert_eq!(e.value("DATABASE_URL").unwrap(), old, "the store's current value is untouched");
    assert_eq!(e.value("DATABASE_URL_PENDING"), None);
    pg.execute(&pg.admin_url(), &format!("ALTER ROLE {} CONNECTION LIMIT -1", e.role));
    login(&old).expect("the old password was restored");
}

#[test]
fn random_keys_keep_their_previous_value_and_roll_back() {
    let e = Env::new("jwt", "single");
    let old = e.value("JWT_SECRET").unwrap();
    let out = e.run(&["run", "JWT_SECRET"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let new = e.value("JWT_SECRET").unwrap();
    assert_eq!(new.len(), 64, "256 bits, hex");
    assert_eq!(e.value("JWT_SECRET_PREVIOUS").as_deref(), Some(old.as_str()));
    assert!(!all_output(&out).contains(&new) && !all_output(&out).contains(&old));
    let out = e.run(&["rollback", "JWT_SECRET"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(e.value("JWT_SECRET").as_deref(), Some(old.as_str()));
    assert_eq!(e.value("JWT_SECRET_PREVIOUS").as_deref(), Some(new.as_str()));
}

#[test]
fn a_second_run_while_one_holds_the_lock_exits_4() {
    let e = Env::new("lock", "single");
    // Hold the profile's rotation lock the way a running `rotate-secrets run` does.
    let state = e.path().to_path_buf();
    let _guard = {
        // In-process: the same lock file and kind, held until the end of the test.
        std::fs::create_dir_all(state.join("locks")).unwrap();
        let path = state.join("locks").join(format!("rotate-secrets-{}.lock", {
            use sha2::Digest;
            hex::encode(&sha2::Sha256::digest(b"profile default")[..8])
        }));
        let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).unwrap();
        f.try_lock().unwrap();
        f
    };
    let out = e.run(&["run", "--due"]);
    assert_eq!(code(&out), 4, "{}", all_output(&out));
}

#[test]
fn bad_configuration_is_a_usage_error() {
    let e = Env::new("badcfg", "single");
    std::fs::write(
        e.path().join("opsbook.toml"),
        "[[profiles.default.secrets]]\nname = \"X\"\nkind = \"random\"\nstore = \"vault:secret/x\"\n",
    )
    .unwrap();
    let out = e.run(&["status"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("dotenv:PATH"), "{}", all_output(&out));
}

#[test]
fn the_rotate_quarterly_runbook_rotates_what_is_due() {
    let e = Env::new("runbook", "alternating");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = opsbook(e.path())
        .arg("run")
        .arg(repo.join("runbooks/rotate-quarterly.toml"))
        .args(["--ack", "restart", "--output", "json"])
        .env("ADMIN_DATABASE_URL", TestPg::shared().admin_url())
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    let rotate = report["steps"].as_array().unwrap().iter().find(|s| s["id"] == "rotate").unwrap();
    assert_eq!(rotate["outputs"]["rotated"], 2);
    login(&e.value("DATABASE_URL").unwrap()).unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&e.value("JWT_SECRET").unwrap()));
    // Nothing is due any more.
    let plan = e.run(&["plan"]);
    assert!(String::from_utf8_lossy(&plan.stdout).contains("nothing is due"), "{}", all_output(&plan));
}

#[test]
fn the_decommission_runbook_backs_up_archives_and_revokes() {
    let pg = TestPg::shared();
    let e = Env::new("decom", "single");
    pg.load_example(&e.db);
    let store = e.path().join("store");
    let archive = e.path().join("archive");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = opsbook(e.path())
        .arg("run")
        .arg(repo.join("runbooks/decommission.toml"))
        .args(["--param", &format!("env_file={}", e.path().join(".env").display())])
        .args(["--param", &format!("archive_dir={}", archive.display())])
        .args(["--param", &format!("roles={}", e.role)])
        .args(["--yes", "--ack", "revoke-keys", "--output", "json"])
        .env("OPSBOOK_PARAM_ADMIN_DATABASE_URL", pg.admin_url())
        .env("DATABASE_URL", &e.db)
        .env("OPSBOOK_STORE", &store)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    let steps = report["steps"].as_array().unwrap();
    let step = |id: &str| steps.iter().find(|s| s["id"] == id).unwrap();
    assert_eq!(step("verify")["outputs"]["ok"], true);
    let archives: Vec<_> = std::fs::read_dir(&archive).unwrap().flatten().collect();
    assert_eq!(archives.len(), 1, "one configuration archive");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(archives[0].metadata().unwrap().permissions().mode() & 0o077, 0, "archive is private");
    assert_eq!(
        pg.query_string(&pg.admin_url(), &format!("SELECT rolcanlogin FROM pg_roles WHERE rolname = '{}'", e.role)),
        "false"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(pg.password()));
}
