//! `opsbook provision` against a real PostgreSQL cluster and moto's S3 server: plan, apply,
//! idempotence, privileges of each role, bucket configuration read back through the S3 API, the
//! .env file and its backup, unsafe names, privileged roles, a failure part-way, a provider
//! without the bucket-configuration APIs or with wrong credentials (the s3s-fs server), a
//! concurrent apply, and secrets kept out of the output.

mod support;

use std::path::Path;

use serde_json::Value;
use support::cmd::{all_output, background, code, json, opsbook};
use support::moto::Moto;
use support::pg::{block_on, TestPg};
use support::s3::S3Server;

/// The env file every test starts from.
const ORIGINAL_ENV: &str = "# written by hand\nUNRELATED=keep-me\n\nexport PORT=8080\n";

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
        std::fs::write(d.join(".env.test"), ORIGINAL_ENV).unwrap();
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

    /// Replaces the value of `key` in the profile's provision table.
    fn set_config(&self, key: &str, value: &str) {
        let path = self.path().join("opsbook.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let prefix = format!("{key} = ");
        assert!(text.lines().any(|l| l.starts_with(&prefix)), "{key} not in opsbook.toml");
        let lines: Vec<String> = text
            .lines()
            .map(|l| if l.starts_with(&prefix) { format!("{prefix}\"{value}\"") } else { l.to_string() })
            .collect();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
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

    // The .env file: unrelated lines kept, no access for others, a backup of the previous file.
    let text = std::fs::read_to_string(e.path().join(".env.test")).unwrap();
    assert!(text.starts_with(ORIGINAL_ENV), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(e.path().join(".env.test")).unwrap().permissions().mode() & 0o007, 0);
    // The backup is the file as it was before the run, not the state before its last save.
    assert_eq!(std::fs::read_to_string(e.path().join(".env.test.bak")).unwrap(), ORIGINAL_ENV);
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

#[test]
fn existing_privileged_roles_and_the_admin_user_are_not_taken_over() {
    let moto = Moto::shared();
    let pg = TestPg::shared();
    let admin = pg.admin_url();
    let tag = format!("{}_{}", std::process::id(), rand::random::<u16>());
    let su = format!("su_{tag}");
    let creator = format!("creator_{tag}");
    pg.execute(&admin, &format!("CREATE ROLE {su} LOGIN SUPERUSER; CREATE ROLE {creator} LOGIN CREATEDB BYPASSRLS"));
    let admin_user = opsbook::pg::DbUrl::parse(&admin).unwrap().username().unwrap();
    let cases = [
        ("app_role", su.as_str(), "SUPERUSER"),
        ("owner_role", creator.as_str(), "CREATEDB, BYPASSRLS"),
        ("readonly_role", admin_user.as_str(), "the admin connection's own user"),
    ];
    for (key, role, why) in cases {
        let e = Env::new("privileged");
        e.set_config(key, role);
        for args in [&["provision", "plan"][..], &["provision", "apply", "--yes"][..]] {
            let out = e.run(args, &moto.env());
            let text = all_output(&out);
            assert_eq!(code(&out), 2, "{args:?} with {key} = {role}: {text}");
            assert!(text.contains(&format!("provision.{key} `{role}`")), "names the role: {text}");
            assert!(text.contains(why), "names the attribute: {text}");
            assert!(text.contains("choose another role name"), "says what to do: {text}");
        }
        assert_eq!(std::fs::read_to_string(e.path().join(".env.test")).unwrap(), ORIGINAL_ENV, "nothing written");
        let db = format!("SELECT count(*) FROM pg_database WHERE datname = 'db_{}'", e.suffix);
        assert_eq!(pg.query_i64(&admin, &db), 0, "no database");
    }
    // Nothing happened to the roles: no password, no settings.
    for role in [&su, &creator] {
        let untouched = format!(
            "SELECT rolpassword IS NULL AND NOT EXISTS (SELECT 1 FROM pg_db_role_setting s WHERE s.setrole = a.oid) \
             FROM pg_authid a WHERE rolname = '{role}'"
        );
        assert_eq!(pg.query_string(&admin, &untouched), "true", "{role} untouched");
    }
    pg.execute(&admin, &format!("DROP ROLE {su}; DROP ROLE {creator}"));
}

#[test]
fn a_new_bucket_on_a_provider_without_configuration_apis_is_created_with_those_items_skipped() {
    // s3s-fs implements buckets and objects but answers NotImplemented for versioning,
    // lifecycle, CORS and the public access block.
    let s3 = S3Server::shared();
    let skipped = ["versioning of", "lifecycle of", "CORS of", "public access block of"];

    let e = Env::new("noapi_json");
    let out = e.run(&["provision", "apply", "--yes", "--output", "json"], &s3.env());
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    assert!(s3.root.join(e.bucket()).is_dir(), "bucket created");
    for what in skipped {
        let resource = format!("{what} {}", e.bucket());
        let item = report["items"].as_array().unwrap().iter().find(|i| i["resource"] == resource.as_str());
        let item = item.unwrap_or_else(|| panic!("no item {resource}: {report:#}"));
        assert_eq!(item["action"], "skipped", "{item:#}");
        assert!(item["current"].as_str().unwrap().starts_with("skipped: not supported by this provider"), "{item:#}");
        let line = format!("{resource}: not supported by this provider");
        assert!(
            report["skipped"].as_array().unwrap().iter().any(|a| a.as_str().unwrap().starts_with(&line)),
            "{report:#}"
        );
        assert!(
            !report["applied"].as_array().unwrap().iter().any(|a| a.as_str().unwrap().contains(&resource)),
            "a skipped item is not an applied change: {report:#}"
        );
    }
    let out = e.run(&["provision", "plan", "--output", "json"], &s3.env());
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    for (resource, action) in actions(&json(&out)) {
        let expected = if skipped.iter().any(|s| resource.starts_with(s)) { "skipped" } else { "none" };
        assert_eq!(action, expected, "{resource} after apply");
    }

    let e = Env::new("noapi_human");
    let out = e.run(&["provision", "apply", "--yes"], &s3.env());
    let text = all_output(&out);
    assert_eq!(code(&out), 0, "{text}");
    for what in skipped {
        assert!(text.contains(&format!("skipped: {what} {}: not supported by this provider", e.bucket())), "{text}");
    }
}

#[test]
fn wrong_s3_credentials_fail_the_plan_with_the_credentials_hint() {
    let s3 = S3Server::shared();
    let e = Env::new("badkey");
    let mut envs = s3.env();
    for (k, v) in envs.iter_mut() {
        if k == "AWS_SECRET_ACCESS_KEY" {
            *v = "not-the-secret".into();
        }
    }
    for args in [&["provision", "plan"][..], &["provision", "plan", "--output", "json"][..]] {
        let out = e.run(args, &envs);
        let text = all_output(&out);
        assert_eq!(code(&out), 3, "{args:?}: {text}");
        assert!(text.contains("SignatureDoesNotMatch") && text.contains("check the secret key"), "{text}");
        assert!(!text.contains("not-the-secret"), "{text}");
    }
    let out = e.run(&["provision", "apply", "--yes"], &envs);
    assert_eq!(code(&out), 3, "{}", all_output(&out));
    assert_eq!(std::fs::read_to_string(e.path().join(".env.test")).unwrap(), ORIGINAL_ENV, "nothing applied");
}

/// Holds a PostgreSQL advisory lock in its own session until `release` is sent.
fn hold_advisory_lock(url: &str, key: i64) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let url = opsbook::pg::DbUrl::parse(url).unwrap();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let mut conn = opsbook::pg::connect(&url).await.unwrap();
            sqlx::query("SELECT pg_advisory_lock($1)").bind(key).execute(&mut conn).await.unwrap();
            locked_tx.send(()).unwrap();
            // Nothing else runs on this runtime: waiting here only keeps the session open.
            let _ = release_rx.recv();
            drop(conn);
        });
    });
    locked_rx.recv().expect("the advisory lock is held");
    (release_tx, thread)
}

#[test]
fn a_second_apply_while_one_runs_exits_4_naming_the_holder() {
    let moto = Moto::shared();
    let pg = TestPg::shared();
    let e = Env::new("lock");
    // The first run stops in its last seed until the test lets it go.
    let key = i64::from(rand::random::<u32>());
    std::fs::write(
        e.path().join("seeds/02_wait.sql"),
        format!("SELECT pg_advisory_lock({key}); SELECT pg_advisory_unlock({key});\n"),
    )
    .unwrap();
    // Advisory locks belong to a database: the application database exists already (apply only
    // takes it over) so the test can hold the lock there.
    let db = format!("db_{}", e.suffix);
    pg.execute(&pg.admin_url(), &format!("CREATE DATABASE {db}"));
    let in_db = opsbook::pg::DbUrl::parse(&pg.admin_url()).unwrap().with_database(&db).expose().to_string();
    let (release, holder) = hold_advisory_lock(&in_db, key);
    let mut first = background(e.path())
        .args(["provision", "apply", "--yes"])
        .env("ADMIN_DATABASE_URL", pg.admin_url())
        .envs(moto.env())
        .spawn()
        .unwrap();
    let waiting =
        format!("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid::bigint = {key} AND NOT granted");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    while pg.query_i64(&pg.admin_url(), &waiting) == 0 {
        if let Some(status) = first.try_wait().unwrap() {
            panic!(
                "the first apply ended ({status}) before reaching the seed: {}",
                all_output(&first.wait_with_output().unwrap())
            );
        }
        assert!(std::time::Instant::now() < deadline, "the first apply never reached the seed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // In the background too: without the lock it would reach the same seed and wait there.
    let mut second = background(e.path())
        .args(["provision", "apply", "--yes"])
        .env("ADMIN_DATABASE_URL", pg.admin_url())
        .envs(moto.env())
        .spawn()
        .unwrap();
    let second = loop {
        if second.try_wait().unwrap().is_some() {
            break second.wait_with_output().unwrap();
        }
        if pg.query_i64(&pg.admin_url(), &waiting) > 1 {
            release.send(()).unwrap();
            panic!("the second apply ran alongside the first instead of exiting 4");
        }
        assert!(std::time::Instant::now() < deadline, "the second apply neither ended nor reached the seed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let text = all_output(&second);
    assert_eq!(code(&second), 4, "{text}");
    assert!(text.contains("locked by provision apply (profile default)"), "{text}");
    assert!(text.contains(&format!("pid {}", first.id())), "names the holder: {text}");

    release.send(()).unwrap();
    holder.join().unwrap();
    let first = first.wait_with_output().unwrap();
    assert_eq!(code(&first), 0, "{}", all_output(&first));
    // Released with its holder: the next run finds nothing to do.
    let third = e.run(&["provision", "apply", "--yes"], &moto.env());
    assert_eq!(code(&third), 0, "{}", all_output(&third));
    assert!(all_output(&third).contains("nothing to do"), "{}", all_output(&third));
}
