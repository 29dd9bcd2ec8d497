//! `opsbook provision` against a real PostgreSQL cluster and moto's S3 server: plan, apply,
//! idempotence, privileges of each role, bucket configuration read back through the S3 API, the
//! .env file, unsafe names, a failure part-way, and secrets kept out of the output.

mod support;

use std::path::Path;

use serde_json::Value;
use support::cmd::{all_output, code, json, opsbook};
use support::moto::Moto;
use support::pg::{block_on, TestPg};

struct Env {
    dir: tempfile::TempDir,
    suffix: String,
}

impl Env {
    fn new(name: &str) -> Env {
        let suffix = format!("{name}_{}_{}", std::process::id(), rand::random::<u16>());
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("migrations")).unwrap();
        std::fs::create_dir_all(d.join("seeds")).unwrap();
        std::fs::write(
            d.join("migrations/1_items.sql"),
            "CREATE TABLE items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);\n",
        )
        .unwrap();
        std::fs::write(d.join("seeds/01_items.sql"), "INSERT INTO items (name) VALUES ('first'), ('second');\n")
            .unwrap();
        std::fs::write(d.join(".env.test"), "# written by hand\nUNRELATED=keep-me\n\nexport PORT=8080\n").unwrap();
        let env = Env { dir, suffix };
        env.write_config(&env.bucket());
        env
    }

    fn bucket(&self) -> String {
        format!("media-{}", self.suffix.replace('_', "-"))
    }

    fn write_config(&self, bucket: &str) {
        let s = &self.suffix;
        std::fs::write(
            self.path().join("opsbook.toml"),
            format!(
                r#"[profiles.default.provision]
database = "db_{s}"
owner_role = "owner_{s}"
app_role = "app_{s}"
readonly_role = "ro_{s}"
extensions = ["pgcrypto"]
connection_limit = 20
bucket = "{bucket}"
bucket_versioning = true
bucket_cors_origins = ["https://staging.shop.example"]
abort_incomplete_multipart_days = 7
noncurrent_version_expiry_days = 30
env_file = ".env.test"
migrations = "migrations"
seeds = "seeds"
admin_password_file = ".admin-password"
"#
            ),
        )
        .unwrap();
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str], envs: &[(String, String)]) -> std::process::Output {
        opsbook(self.path())
            .args(args)
            .env("ADMIN_DATABASE_URL", TestPg::shared().admin_url())
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }

    fn env_value(&self, key: &str) -> String {
        let text = std::fs::read_to_string(self.path().join(".env.test")).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} not in .env.test:\n{text}"))
            .trim_matches('\'')
            .to_string()
    }
}

fn actions(plan: &Value) -> Vec<(String, String)> {
    plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["resource"].as_str().unwrap().to_string(), i["action"].as_str().unwrap().to_string()))
        .collect()
}

/// Runs SQL as the role whose URL is in the env file; Ok(()) or the error text.
fn as_role(url: &str, sql: &str) -> Result<(), String> {
    let url = opsbook::pg::DbUrl::parse(url).unwrap();
    let sql = sql.to_string();
    block_on(async move {
        let mut conn = opsbook::pg::connect(&url).await.map_err(|e| e.to_string())?;
        sqlx::Executor::execute(&mut conn, sqlx::raw_sql(&sql)).await.map(drop).map_err(|e| e.to_string())
    })
}

#[test]
fn plan_apply_and_a_second_plan_that_changes_nothing() {
    let moto = Moto::shared();
    let e = Env::new("full");
    let envs = moto.env();

    let out = e.run(&["provision", "plan", "--output", "json"], &envs);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let plan = json(&out);
    for (resource, action) in actions(&plan) {
        assert_eq!(action, "create", "{resource} on an empty environment");
    }

    // Without a terminal, apply needs --yes (exit 5) and changes nothing.
    let out = e.run(&["provision", "apply"], &envs);
    assert_eq!(code(&out), 5, "{}", all_output(&out));
    assert!(!e.path().join(".admin-password").exists());

    let out = e.run(&["provision", "apply", "--yes", "--output", "json"], &envs);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    assert!(report["login_test"].as_str().unwrap().contains(&format!("app_{}", e.suffix)), "{report:#}");

    let out = e.run(&["provision", "plan", "--output", "json"], &envs);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    for (resource, action) in actions(&json(&out)) {
        assert_eq!(action, "none", "{resource} after apply");
    }
    let out = e.run(&["provision", "apply", "--yes"], &envs);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(all_output(&out).contains("nothing to do"), "{}", all_output(&out));

    // Privileges: the app writes data but not schema; read-only reads only.
    let app = e.env_value("DATABASE_URL");
    let ro = e.env_value("READONLY_DATABASE_URL");
    let owner = e.env_value("MIGRATION_DATABASE_URL");
    as_role(&app, "INSERT INTO items (name) VALUES ('from the app')").unwrap();
    let denied = as_role(&app, "CREATE TABLE sneaky (id int)").unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");
    as_role(&ro, "SELECT count(*) FROM items").unwrap();
    let denied = as_role(&ro, "INSERT INTO items (name) VALUES ('no')").unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");
    // Tables the owner creates later are covered by default privileges.
    as_role(&owner, "CREATE TABLE later (id int)").unwrap();
    as_role(&app, "INSERT INTO later VALUES (1)").unwrap();
    as_role(&ro, "SELECT * FROM later").unwrap();
    let pg = TestPg::shared();
    let db = format!("db_{}", e.suffix);
    let in_db = opsbook::pg::DbUrl::parse(&pg.admin_url()).unwrap().with_database(&db).expose().to_string();
    assert_eq!(pg.query_i64(&in_db, "SELECT count(*) FROM items"), 3, "two seed rows + one from the app");
    assert_eq!(pg.query_i64(&in_db, "SELECT count(*) FROM _opsbook_seeds"), 1);
    assert_eq!(pg.query_i64(&in_db, "SELECT count(*) FROM pg_extension WHERE extname = 'pgcrypto'"), 1);
    assert_eq!(
        pg.query_string(&pg.admin_url(), &format!("SELECT datconnlimit FROM pg_database WHERE datname = '{db}'")),
        "20"
    );
    let setting = pg.query_string(
        &pg.admin_url(),
        &format!(
            "SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole \
             WHERE r.rolname = 'app_{}'",
            e.suffix
        ),
    );
    assert!(setting.contains("statement_timeout=30000ms"), "{setting}");
    // Passwords are stored as SCRAM verifiers.
    let verifier = pg.query_string(
        &pg.admin_url(),
        &format!("SELECT rolpassword FROM pg_authid WHERE rolname = 'app_{}'", e.suffix),
    );
    assert!(verifier.starts_with("SCRAM-SHA-256$"), "{verifier}");

    // The .env file: unrelated lines kept, mode 0600, a backup of the previous file.
    let text = std::fs::read_to_string(e.path().join(".env.test")).unwrap();
    assert!(text.starts_with("# written by hand\nUNRELATED=keep-me\n\nexport PORT=8080\n"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(e.path().join(".env.test")).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(e.path().join(".env.test.bak").exists());
    assert!(e.env_value("JWT_SECRET").len() >= 64);
    assert!(e.env_value("ADMIN_PASSWORD_HASH").starts_with("$argon2id$"));
    assert_eq!(e.env_value("S3_BUCKET"), e.bucket());
    let admin_pw = std::fs::read_to_string(e.path().join(".admin-password")).unwrap();
    assert_eq!(std::fs::metadata(e.path().join(".admin-password")).unwrap().permissions().mode() & 0o777, 0o600);
    {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        let hash = e.env_value("ADMIN_PASSWORD_HASH");
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(argon2::Argon2::default().verify_password(admin_pw.trim().as_bytes(), &parsed).is_ok());
    }

    // The bucket as the S3 API reports it.
    let client = moto.client();
    let bucket = e.bucket();
    block_on(async move {
        let v = client.get_bucket_versioning().bucket(&bucket).send().await.unwrap();
        assert_eq!(v.status().map(|s| s.as_str()), Some("Enabled"));
        let l = client.get_bucket_lifecycle_configuration().bucket(&bucket).send().await.unwrap();
        let abort = l.rules().iter().find_map(|r| r.abort_incomplete_multipart_upload()).unwrap();
        assert_eq!(abort.days_after_initiation(), Some(7));
        let expire = l.rules().iter().find_map(|r| r.noncurrent_version_expiration()).unwrap();
        assert_eq!(expire.noncurrent_days(), Some(30));
        let c = client.get_bucket_cors().bucket(&bucket).send().await.unwrap();
        assert_eq!(c.cors_rules()[0].allowed_origins(), ["https://staging.shop.example"]);
        let p = client.get_public_access_block().bucket(&bucket).send().await.unwrap();
        assert_eq!(p.public_access_block_configuration().unwrap().block_public_acls(), Some(true));
    });

    // No generated secret ever reached the output.
    let secrets = [
        app.split(['/', ':', '@']).nth(4).unwrap().to_string(),
        e.env_value("JWT_SECRET"),
        admin_pw.trim().to_string(),
    ];
    for args in [&["provision", "plan"][..], &["provision", "plan", "--output", "json"][..]] {
        let out = e.run(args, &envs);
        let text = all_output(&out);
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "secret in `{args:?}` output");
        }
    }
}

#[test]
fn unsafe_names_are_rejected_before_anything_runs() {
    let moto = Moto::shared();
    let e = Env::new("names");
    let config = std::fs::read_to_string(e.path().join("opsbook.toml")).unwrap();
    let evil =
        config.replace(&format!("app_role = \"app_{}\"", e.suffix), "app_role = \"app\\\"; DROP ROLE postgres; --\"");
    std::fs::write(e.path().join("opsbook.toml"), evil).unwrap();
    for cmd in ["plan", "apply"] {
        let out = e.run(&["provision", cmd, "--yes"], &moto.env());
        assert_eq!(code(&out), 2, "{}", all_output(&out));
        assert!(all_output(&out).contains("provision.app_role"), "{}", all_output(&out));
    }
}

#[test]
fn a_failure_part_way_reports_what_was_done_and_a_rerun_completes() {
    let moto = Moto::shared();
    let e = Env::new("partial");
    // The S3 endpoint is down: PostgreSQL steps run, the bucket step fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut down = moto.env();
    for (k, v) in down.iter_mut() {
        if k == "AWS_ENDPOINT_URL" {
            *v = format!("http://127.0.0.1:{closed}");
        }
    }
    let out = e.run(&["provision", "apply", "--yes"], &down);
    assert_eq!(code(&out), 3, "S3 unavailable: {}", all_output(&out));
    let text = all_output(&out);
    assert!(text.contains("provision stopped at"), "{text}");
    assert!(text.contains("done: create role"), "{text}");
    assert!(text.contains("not done:"), "{text}");
    // The roles' passwords made it to the env file, so nothing is lost.
    assert!(e.env_value("DATABASE_URL").contains(&format!("app_{}", e.suffix)));

    let out = e.run(&["provision", "apply", "--yes", "--output", "json"], &moto.env());
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let out = e.run(&["provision", "plan", "--output", "json"], &moto.env());
    for (resource, action) in actions(&json(&out)) {
        assert_eq!(action, "none", "{resource} after the re-run");
    }
}

#[test]
fn the_provision_runbook_applies_with_yes() {
    let moto = Moto::shared();
    let e = Env::new("runbook");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = opsbook(e.path())
        .args(["run"])
        .arg(repo.join("runbooks/provision.toml"))
        .args(["--yes", "--ack", "keys", "--ack", "dns-tls", "--output", "json"])
        .env("ADMIN_DATABASE_URL", TestPg::shared().admin_url())
        .envs(moto.env())
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    let steps = report["steps"].as_array().unwrap();
    let step = |id: &str| steps.iter().find(|s| s["id"] == id).unwrap();
    assert!(step("plan")["outputs"]["changes"].as_i64().unwrap() > 10);
    assert_eq!(step("verify")["outputs"]["changes"], 0);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&e.env_value("JWT_SECRET")));
}
