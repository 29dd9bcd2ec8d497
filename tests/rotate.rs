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
    // The file keeps its mode, less any access for others.
    assert_eq!(std::fs::metadata(e.path().join(".env")).unwrap().permissions().mode() & 0o007, 0);
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

/// The crash tests set OPSBOOK_ROTATE_CRASH_AFTER, which only a build with the `fault-injection`
/// feature obeys: without it they fail here rather than skip or pass without crashing. (A runtime
/// failure, not a `const` assertion, so the rest of this file still builds and runs.)
fn needs_fault_injection() {
    if !cfg!(feature = "fault-injection") {
        panic!("crash tests need --features fault-injection: run them through scripts/test");
    }
}

#[test]
fn a_crash_after_any_step_resumes_and_current_always_works() {
    needs_fault_injection();
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
        // Grace 0: the replaced login was revoked, whichever step the crash hit.
        assert_eq!(e.value("DATABASE_URL_PREVIOUS"), None, "{step}");
        let pg = TestPg::shared();
        let sql = format!("SELECT rolcanlogin FROM pg_roles WHERE rolname = '{}'", e.role);
        assert_eq!(pg.query_string(&pg.admin_url(), &sql), "false", "{step}: the replaced login still works");
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
    // The value in use again was never rotated: no rotation evidence, due again.
    let jwt = standing(&e.run(&["status", "--output", "json"]), "JWT_SECRET");
    assert_eq!(jwt["rotated_at"], Value::Null, "{jwt}");
    assert_eq!(jwt["due"], true, "{jwt}");
    assert!(jwt["revoke_pending"].is_string(), "the rolled-away value is scheduled for removal: {jwt}");
    // The next run removes the rolled-away value.
    let out = e.run(&["run", "--resume"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(e.value("JWT_SECRET_PREVIOUS"), None);
    assert_eq!(e.value("JWT_SECRET").as_deref(), Some(old.as_str()));
}

/// One secret's entry in `status --output json`.
fn standing(out: &std::process::Output, name: &str) -> Value {
    json(out)["secrets"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap().clone()
}

#[test]
fn rollback_restores_the_rotation_evidence_and_revokes_the_rolled_away_login() {
    let e = Env::new("altrb", "alternating");
    let pg = TestPg::shared();
    // Keep the previous login for an hour, so there is something to roll back to.
    let toml =
        std::fs::read_to_string(e.path().join("opsbook.toml")).unwrap().replacen("grace = \"0s\"", "grace = \"1h\"", 1);
    std::fs::write(e.path().join("opsbook.toml"), toml).unwrap();
    let out = e.run(&["run", "DATABASE_URL"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let a_url = e.value("DATABASE_URL").unwrap();
    let first = standing(&e.run(&["status", "--output", "json"]), "DATABASE_URL");
    let out = e.run(&["run", "DATABASE_URL"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let b_url = e.value("DATABASE_URL").unwrap();
    let b = opsbook::pg::DbUrl::parse(&b_url).unwrap().username().unwrap();
    assert_eq!(b, format!("{}_b", e.role));
    assert_eq!(e.value("DATABASE_URL_PREVIOUS").as_deref(), Some(a_url.as_str()));

    let out = e.run(&["rollback", "DATABASE_URL"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(e.value("DATABASE_URL").as_deref(), Some(a_url.as_str()));
    login(&a_url).unwrap();
    // The evidence is the first rotation's, the one that put the login in use again.
    let now = standing(&e.run(&["status", "--output", "json"]), "DATABASE_URL");
    assert_eq!(now["rotated_at"], first["rotated_at"], "{now}");
    assert_eq!(now["next_due"], first["next_due"], "{now}");
    assert_eq!(now["fingerprint"], first["fingerprint"], "{now}");
    assert_eq!(now["due"], false, "{now}");
    assert!(now["revoke_pending"].is_string(), "the rolled-away login is scheduled for revocation: {now}");

    // The next run revokes the login rolled away from, and forgets its URL.
    let out = e.run(&["run", "--resume", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(
        pg.query_string(&pg.admin_url(), &format!("SELECT rolcanlogin FROM pg_roles WHERE rolname = '{b}'")),
        "false"
    );
    assert!(login(&b_url).is_err(), "the rolled-away login still works");
    assert_eq!(e.value("DATABASE_URL_PREVIOUS"), None);
    login(&e.value("DATABASE_URL").unwrap()).unwrap();
}

#[test]
fn a_random_value_without_grace_keeps_no_previous_value() {
    let e = Env::new("nograce", "single");
    let toml = std::fs::read_to_string(e.path().join("opsbook.toml")).unwrap().replace("grace = \"1h\"\n", "");
    std::fs::write(e.path().join("opsbook.toml"), toml).unwrap();
    let out = e.run(&["run", "JWT_SECRET", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let steps = json(&out)["secrets"][0]["steps"].clone();
    assert_eq!(steps.as_array().unwrap().last().unwrap(), "revoked value JWT_SECRET_PREVIOUS", "{steps}");
    assert_eq!(e.value("JWT_SECRET_PREVIOUS"), None, "no grace: the previous value is removed at once");
    assert_eq!(e.value("JWT_SECRET").unwrap().len(), 64);
}

#[test]
fn an_unreachable_admin_database_exits_3() {
    let e = Env::new("noadmin", "alternating");
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = opsbook(e.path())
        .args(["rotate-secrets", "run", "DATABASE_URL"])
        .env("ADMIN_DATABASE_URL", format!("postgres://admin:secret@127.0.0.1:{port}/postgres"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", all_output(&out));
    assert!(all_output(&out).contains("set: "), "{}", all_output(&out));
}

#[test]
fn an_unreachable_gateway_exits_3() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let toml = format!(
        r#"[[profiles.default.secrets]]
name = "GATEWAY_TOKEN"
kind = "http-credential"
store = "dotenv:.env"
create = {{ url = "http://127.0.0.1:{port}/v1/keys", value_path = "data.token" }}
test = {{ url = "http://127.0.0.1:{port}/v1/me", headers = {{ Authorization = "Bearer {{new}}" }} }}
"#
    );
    let p = Plain::new(&toml, "GATEWAY_TOKEN=t0-original-token\n", vec![]);
    let out = p.run(&["run", "GATEWAY_TOKEN"]);
    assert_eq!(code(&out), 3, "{}", all_output(&out));
    assert_eq!(p.value("GATEWAY_TOKEN").as_deref(), Some("t0-original-token"));
    assert_eq!(p.value("GATEWAY_TOKEN_PENDING"), None);
}

#[test]
fn a_password_hash_without_plaintext_file_is_refused_without_a_terminal() {
    let toml = r#"[[profiles.p.secrets]]
name = "ADMIN_PASSWORD_HASH"
kind = "password-hash"
store = "dotenv:.env"
"#;
    let p = Plain::new(toml, "ADMIN_PASSWORD_HASH=old-hash\n", vec![]);
    // stderr is a pipe here, as in CI or under cron.
    for args in [&["run", "ADMIN_PASSWORD_HASH"][..], &["run", "--due"][..]] {
        let out = opsbook(p.dir.path())
            .args(["--profile", "p", "rotate-secrets"])
            .args(args)
            .args(["--output", "json", "--log-format", "json"])
            .output()
            .unwrap();
        assert_eq!(code(&out), 2, "{args:?}: {}", all_output(&out));
        assert!(all_output(&out).contains("plaintext_file"), "{}", all_output(&out));
        assert!(!all_output(&out).contains("shown once"), "{}", all_output(&out));
        assert_eq!(p.value("ADMIN_PASSWORD_HASH").as_deref(), Some("old-hash"), "nothing was rotated");
        assert_eq!(p.value("ADMIN_PASSWORD_HASH_PENDING"), None);
    }

    // With a plaintext_file (relative to the config file) the plaintext goes there, and nowhere else.
    std::fs::write(p.dir.path().join("opsbook.toml"), format!("{toml}plaintext_file = \"admin-password.txt\"\n"))
        .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = opsbook(p.dir.path())
        .current_dir(elsewhere.path())
        .arg("--config")
        .arg(p.dir.path().join("opsbook.toml"))
        .args(["--profile", "p", "rotate-secrets", "run", "ADMIN_PASSWORD_HASH"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let plaintext = std::fs::read_to_string(p.dir.path().join("admin-password.txt")).unwrap();
    assert_eq!(plaintext.trim().len(), 24);
    assert!(!all_output(&out).contains(plaintext.trim()));
    assert!(p.value("ADMIN_PASSWORD_HASH").unwrap().starts_with("$argon2id$"));
}

#[test]
fn a_relative_dotenv_store_is_relative_to_the_config_file() {
    let e = Env::new("reldir", "single");
    let old = e.value("JWT_SECRET").unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = opsbook(e.path())
        .current_dir(elsewhere.path())
        .arg("--config")
        .arg(e.path().join("opsbook.toml"))
        .args(["rotate-secrets", "run", "JWT_SECRET"])
        .env("ADMIN_DATABASE_URL", TestPg::shared().admin_url())
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(!elsewhere.path().join(".env").exists(), "a new .env was created in the working directory");
    let new = e.value("JWT_SECRET").unwrap();
    assert_ne!(new, old, "the .env beside the config file was rotated");
    assert_eq!(e.value("JWT_SECRET_PREVIOUS").as_deref(), Some(old.as_str()));
    let jwt = standing(&e.run(&["status", "--output", "json"]), "JWT_SECRET");
    assert_eq!(jwt["fingerprint"].as_str().unwrap(), &opsbook::secrets::rotate::fingerprint(&new));
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
        "[[profiles.default.secrets]]\nname = \"X\"\nkind = \"random\"\nstore = \"gcp-sm:x\"\n",
    )
    .unwrap();
    let out = e.run(&["status"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("dotenv:PATH, aws-sm:SECRET_ID or vault:MOUNT/PATH"), "{}", all_output(&out));
    for (extra, message) in [
        ("kind = \"s3-access-key\"\nstore = \"dotenv:.env\"\n", "needs user"),
        ("kind = \"random\"\nstore = \"vault:secret\"\n", "vault:MOUNT/PATH"),
        ("kind = \"random\"\nstore = \"dotenv:.env\"\nuser = \"u\"\n", "user applies to kind s3-access-key only"),
        ("kind = \"http-credential\"\nstore = \"dotenv:.env\"\n", "needs a create call and a test call"),
    ] {
        std::fs::write(e.path().join("opsbook.toml"), format!("[[profiles.default.secrets]]\nname = \"X\"\n{extra}"))
            .unwrap();
        let out = e.run(&["plan"]);
        assert_eq!(code(&out), 2, "{}", all_output(&out));
        assert!(all_output(&out).contains(message), "{message}: {}", all_output(&out));
    }
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

// ----- other stores and kinds: Vault KV v2 (local server), Secrets Manager and IAM (moto), a
// gateway issuing credentials over HTTP -----

/// A directory with opsbook.toml and .env, and the extra environment every run gets.
struct Plain {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Plain {
    fn new(toml: &str, dotenv: &str, env: Vec<(String, String)>) -> Plain {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("opsbook.toml"), toml).unwrap();
        std::fs::write(dir.path().join(".env"), dotenv).unwrap();
        Plain { dir, env }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        opsbook(self.dir.path()).arg("rotate-secrets").args(args).envs(self.env.clone()).output().unwrap()
    }

    fn value(&self, key: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join(".env"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")).map(|v| v.trim_matches('\'').to_string()))
    }
}

#[test]
fn vault_store_keeps_other_keys_writes_with_cas_and_stamps_rotated_at() {
    let vault = support::vault::Vault::start();
    vault.write(
        "secret/shop/prod",
        [("JWT_SECRET", "old-jwt-0123456789abcdef0123456789abcdef"), ("SMTP_HOST", "mail.internal")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let toml = r#"[[profiles.default.secrets]]
name = "JWT_SECRET"
kind = "random"
store = "vault:secret/shop/prod"
max_age = "90d"
grace = "1h"
"#;
    let env = vec![("VAULT_ADDR".to_string(), vault.addr.clone()), ("VAULT_TOKEN".to_string(), vault.token.clone())];
    let p = Plain::new(toml, "", env);
    let out = p.run(&["run", "JWT_SECRET"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let data = vault.latest("secret/shop/prod");
    let new = data["JWT_SECRET"].clone();
    assert_eq!(new.len(), 64, "256 bits as hex");
    assert_eq!(data["JWT_SECRET_PREVIOUS"], "old-jwt-0123456789abcdef0123456789abcdef");
    assert_eq!(data["SMTP_HOST"], "mail.internal", "other keys are kept");
    assert!(!data.contains_key("JWT_SECRET_PENDING"));
    let secret = vault.secret("secret/shop/prod").unwrap();
    assert_eq!(
        secret.versions.len(),
        3,
        "one write for pending, one for finish, each checked against the version read"
    );
    assert_eq!(secret.versions[1]["JWT_SECRET_PENDING"], new, "the pending value was written before it became current");
    let stamped = chrono::DateTime::parse_from_rfc3339(&secret.custom_metadata["rotated_at"]).unwrap();
    assert!((chrono::Utc::now() - stamped.to_utc()).num_seconds().abs() < 120);
    for text in [all_output(&out), all_output(&p.run(&["status", "--output", "json"]))] {
        assert!(!text.contains(&new) && !text.contains(&vault.token), "a value or the token in output: {text}");
    }

    let no_token = Plain::new(toml, "", vec![("VAULT_ADDR".to_string(), vault.addr.clone())]);
    let out = no_token.run(&["run", "JWT_SECRET"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("VAULT_TOKEN is not set"), "{}", all_output(&out));
    let wrong = Plain::new(
        toml,
        "",
        vec![("VAULT_ADDR".to_string(), vault.addr.clone()), ("VAULT_TOKEN".to_string(), "hvs.wrong".to_string())],
    );
    let out = wrong.run(&["status"]);
    assert_ne!(code(&out), 0);
    assert!(all_output(&out).contains("403"), "{}", all_output(&out));
    assert_eq!(vault.secret("secret/shop/prod").unwrap().versions.len(), 3, "nothing written without access");
}

#[test]
fn secrets_manager_labels_follow_the_protocol_through_a_crash_and_a_rollback() {
    needs_fault_injection();
    let moto = support::moto::Moto::shared();
    let sm = aws_sdk_secretsmanager::Client::new(&moto.sdk_config());
    let id = format!("shop/prod/jwt-{}", rand::random::<u32>());
    block_on(sm.create_secret().name(&id).secret_string("old-jwt-0123456789abcdef0123456789abcdef").send()).unwrap();
    let labelled = |label: &str| -> Option<String> {
        block_on(sm.get_secret_value().secret_id(&id).version_stage(label).send())
            .ok()
            .and_then(|o| o.secret_string().map(String::from))
    };
    let toml = format!(
        r#"[[profiles.default.secrets]]
name = "JWT_SECRET"
kind = "random"
store = "aws-sm:{id}"
grace = "1h"
"#
    );
    let p = Plain::new(&toml, "", moto.env());

    let out = p.run(&["run", "JWT_SECRET"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let first = labelled("AWSCURRENT").unwrap();
    assert_eq!(first.len(), 64);
    assert_eq!(labelled("AWSPREVIOUS").as_deref(), Some("old-jwt-0123456789abcdef0123456789abcdef"));
    assert_eq!(labelled("AWSPENDING"), None, "no pending label after finish");

    // A crash right after create: AWSPENDING holds the new value, AWSCURRENT is untouched.
    let out = opsbook(p.dir.path())
        .args(["rotate-secrets", "run", "JWT_SECRET"])
        .envs(moto.env())
        .env("OPSBOOK_ROTATE_CRASH_AFTER", "created")
        .output()
        .unwrap();
    assert_eq!(code(&out), 99, "{}", all_output(&out));
    let pending = labelled("AWSPENDING").unwrap();
    assert_eq!(labelled("AWSCURRENT").as_deref(), Some(first.as_str()));
    let out = p.run(&["run", "--resume"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(labelled("AWSCURRENT").as_deref(), Some(pending.as_str()), "resume finishes the same pending value");
    assert_eq!(labelled("AWSPREVIOUS").as_deref(), Some(first.as_str()));
    assert_eq!(labelled("AWSPENDING"), None);

    let out = p.run(&["rollback", "JWT_SECRET"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(labelled("AWSCURRENT").as_deref(), Some(first.as_str()));
    assert_eq!(labelled("AWSPREVIOUS").as_deref(), Some(pending.as_str()));
    let text = all_output(&out) + &all_output(&p.run(&["status", "--output", "json"]));
    assert!(!text.contains(&first) && !text.contains(&pending), "a value in output: {text}");
}

#[test]
fn s3_access_keys_are_created_probed_stored_and_the_old_one_deleted() {
    let moto = support::moto::Moto::shared();
    let config = moto.sdk_config();
    let iam = aws_sdk_iam::Client::new(&config);
    let user = format!("shop-media-{}", rand::random::<u32>());
    let bucket = format!("media-keys-{}", rand::random::<u32>());
    block_on(iam.create_user().user_name(&user).send()).unwrap();
    block_on(moto.client().create_bucket().bucket(&bucket).send()).unwrap();
    let k1 = block_on(iam.create_access_key().user_name(&user).send()).unwrap().access_key.unwrap();
    let keys = || -> Vec<String> {
        let out = block_on(iam.list_access_keys().user_name(&user).send()).unwrap();
        let mut ids: Vec<String> =
            out.access_key_metadata().iter().map(|k| k.access_key_id().unwrap().to_string()).collect();
        ids.sort();
        ids
    };
    let toml = |grace: &str| {
        format!(
            r#"[[profiles.default.secrets]]
name = "AWS_SECRET_ACCESS_KEY"
kind = "s3-access-key"
user = "{user}"
bucket = "s3://{bucket}"
store = "dotenv:.env"
grace = "{grace}"
"#
        )
    };
    let dotenv = format!(
        "AWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\nAPP=shop\n",
        k1.access_key_id(),
        k1.secret_access_key()
    );
    let p = Plain::new(&toml("0s"), &dotenv, moto.env());
    let out = p.run(&["run", "AWS_SECRET_ACCESS_KEY", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let steps = json(&out)["secrets"][0]["steps"].clone();
    assert_eq!(steps[4], format!("revoked key {}", k1.access_key_id()), "{steps}");
    let k2 = p.value("AWS_ACCESS_KEY_ID").unwrap();
    let s2 = p.value("AWS_SECRET_ACCESS_KEY").unwrap();
    assert_ne!(k2, k1.access_key_id());
    assert_eq!(keys(), vec![k2.clone()], "the old key is deleted once the (zero) grace is over");
    assert_eq!(p.value("AWS_ACCESS_KEY_ID_PREVIOUS"), None);
    assert_eq!(p.value("APP").as_deref(), Some("shop"));
    let listed = block_on(moto.client().list_objects_v2().bucket(&bucket).send()).unwrap();
    assert_eq!(listed.key_count(), Some(0), "the probe object is deleted");
    assert!(!all_output(&out).contains(&s2));

    // With a grace period both keys live until it ends; a third key would exceed IAM's two.
    std::fs::write(p.dir.path().join("opsbook.toml"), toml("1h")).unwrap();
    let out = p.run(&["run", "AWS_SECRET_ACCESS_KEY"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let k3 = p.value("AWS_ACCESS_KEY_ID").unwrap();
    assert_eq!(p.value("AWS_ACCESS_KEY_ID_PREVIOUS").as_deref(), Some(k2.as_str()));
    let mut both = vec![k2.clone(), k3.clone()];
    both.sort();
    assert_eq!(keys(), both);
    let out = p.run(&["run", "AWS_SECRET_ACCESS_KEY"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("IAM allows two"), "{}", all_output(&out));
    assert_eq!(keys(), both, "nothing created or deleted");

    // Rolling back puts the previous key back and revokes the newer one on the next run.
    let out = p.run(&["rollback", "AWS_SECRET_ACCESS_KEY"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(p.value("AWS_ACCESS_KEY_ID").as_deref(), Some(k2.as_str()));
    let out = p.run(&["run", "--resume"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(keys(), vec![k2.clone()]);
    assert_eq!(p.value("AWS_ACCESS_KEY_ID_PREVIOUS"), None);
}

/// A gateway issuing bearer credentials: POST /v1/keys (admin) creates one, GET /v1/me accepts
/// an active one, DELETE /v1/keys/ID (admin) revokes. `reject` makes /v1/me refuse new keys.
struct Gateway {
    addr: std::net::SocketAddr,
    admin: String,
    keys: std::sync::Arc<std::sync::Mutex<Vec<(String, String, bool)>>>,
    reject: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Gateway {
    fn start() -> Gateway {
        use std::sync::atomic::Ordering;
        let admin = format!("adm-{}", rand::random::<u64>());
        let keys: std::sync::Arc<std::sync::Mutex<Vec<(String, String, bool)>>> = Default::default();
        keys.lock().unwrap().push(("k0".into(), "t0-original-token".into(), true));
        let reject = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (k, a, r) = (keys.clone(), admin.clone(), reject.clone());
        let addr = support::server::serve(move |req| {
            let bearer = req.header("authorization").and_then(|h| h.strip_prefix("Bearer ")).unwrap_or("").to_string();
            let mut keys = k.lock().unwrap();
            match (req.method.as_str(), req.path.as_str()) {
                ("POST", "/v1/keys") if bearer == a => {
                    let id = format!("k{}", keys.len());
                    let token = format!("tok-{}", rand::random::<u64>());
                    keys.push((id.clone(), token.clone(), true));
                    (201, serde_json::json!({ "data": { "id": id, "token": token } }).to_string())
                }
                ("GET", "/v1/me") => {
                    let active = keys.iter().any(|(_, t, on)| *t == bearer && *on);
                    let original = bearer == "t0-original-token";
                    if active && (original || !r.load(Ordering::SeqCst)) {
                        (200, "{\"ok\":true}".into())
                    } else {
                        (401, "{\"error\":\"bad token\"}".into())
                    }
                }
                ("DELETE", path) if bearer == a && path.starts_with("/v1/keys/") => {
                    let id = path.trim_start_matches("/v1/keys/");
                    match keys.iter_mut().find(|(i, _, _)| i == id) {
                        Some(key) => {
                            key.2 = false;
                            (204, String::new())
                        }
                        None => (404, "{}".into()),
                    }
                }
                _ => (403, "{\"error\":\"forbidden\"}".into()),
            }
        });
        Gateway { addr, admin, keys, reject }
    }

    fn active(&self) -> Vec<String> {
        self.keys.lock().unwrap().iter().filter(|k| k.2).map(|k| k.0.clone()).collect()
    }
}

#[test]
fn http_credentials_rotate_through_configured_calls_and_a_failed_test_revokes_the_new_one() {
    let gw = Gateway::start();
    let base = format!("http://{}", gw.addr);
    let toml = format!(
        r#"[[profiles.default.secrets]]
name = "GATEWAY_TOKEN"
kind = "http-credential"
store = "dotenv:.env"
id_name = "GATEWAY_TOKEN_ID"
grace = "0s"
create = {{ url = "{base}/v1/keys", headers = {{ Authorization = "Bearer {{env:GATEWAY_ADMIN}}" }}, body = '{{"label": "opsbook"}}', value_path = "data.token", id_path = "$.data.id" }}
test = {{ url = "{base}/v1/me", headers = {{ Authorization = "Bearer {{new}}" }} }}
revoke = {{ url = "{base}/v1/keys/{{previous_id}}", headers = {{ Authorization = "Bearer {{env:GATEWAY_ADMIN}}" }} }}
"#
    );
    let env = vec![("GATEWAY_ADMIN".to_string(), gw.admin.clone())];
    let p = Plain::new(&toml, "GATEWAY_TOKEN=t0-original-token\nGATEWAY_TOKEN_ID=k0\n", env);
    let out = p.run(&["run", "GATEWAY_TOKEN"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let token = p.value("GATEWAY_TOKEN").unwrap();
    assert!(token.starts_with("tok-"));
    assert_eq!(p.value("GATEWAY_TOKEN_ID").as_deref(), Some("k1"));
    assert_eq!(gw.active(), vec!["k1".to_string()], "the old credential is revoked after the (zero) grace");
    assert!(!all_output(&out).contains(&token) && !all_output(&out).contains(&gw.admin));

    gw.reject.store(true, std::sync::atomic::Ordering::SeqCst);
    let out = p.run(&["run", "GATEWAY_TOKEN"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("test failed"), "{}", all_output(&out));
    assert!(all_output(&out).contains("401"), "{}", all_output(&out));
    assert_eq!(p.value("GATEWAY_TOKEN").as_deref(), Some(token.as_str()), "the current value is untouched");
    assert_eq!(p.value("GATEWAY_TOKEN_PENDING"), None);
    assert_eq!(gw.active(), vec!["k1".to_string()], "the failed new credential (k2) is revoked");

    let bad = toml.replace("{previous_id}", "{old_id}");
    let b = Plain::new(&bad, "GATEWAY_TOKEN=x\n", vec![]);
    let out = b.run(&["plan"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("unknown placeholder {old_id}"), "{}", all_output(&out));
}
