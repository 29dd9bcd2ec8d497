//! backup run | list | verify | prune against a real Postgres cluster, a real S3 protocol
//! server (s3s-fs, SigV4) and local directories; restores use stock pg_restore.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use support::cmd::{all_output, code, json, opsbook};
use support::pg::TestPg;
use support::s3::S3Server;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env { dir: tempfile::tempdir().unwrap() }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn store_dir(&self) -> PathBuf {
        self.path().join("store")
    }
    fn run(&self, args: &[&str], envs: &[(String, String)]) -> Output {
        let mut cmd = opsbook(self.path());
        cmd.args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

fn ok(out: &Output) -> Value {
    assert_eq!(code(out), 0, "expected success:\n{}", all_output(out));
    json(out)
}

/// The stored data object, decoded to a pg_dump custom-format file.
fn decode_to_file(stored: &[u8], identity: Option<&age::x25519::Identity>, dest: &Path) {
    let plain: Box<dyn std::io::Read> = match identity {
        None => Box::new(stored),
        Some(id) => {
            let d = age::Decryptor::new(stored).unwrap();
            Box::new(d.decrypt(std::iter::once(id as &dyn age::Identity)).unwrap())
        }
    };
    let mut decoder = zstd::stream::read::Decoder::new(plain).unwrap();
    let mut file = std::fs::File::create(dest).unwrap();
    std::io::copy(&mut decoder, &mut file).unwrap();
}

/// Restores with stock pg_restore into a new database and checks row counts and schema.
fn restore_and_compare(pg: &TestPg, source_url: &str, dump: &Path, manifest: &Value) {
    let target = pg.fresh_db("restored");
    let tools = opsbook::pg::discover(0).unwrap();
    let status = std::process::Command::new(tools.pg_restore())
        .args(["--exit-on-error", "--no-owner", "--dbname"])
        .arg(pg.dsn_without_password(&target))
        .arg(dump)
        .envs(pg.child_env())
        .status()
        .unwrap();
    assert!(status.success(), "pg_restore failed");
    let tables = manifest["row_counts"]["tables"].as_object().expect("row counts in manifest");
    assert!(tables.len() >= 4, "example has several tables: {tables:?}");
    for (table, count) in tables {
        let restored = pg.query_i64(&target, &format!("SELECT count(*) FROM {table}"));
        let original = pg.query_i64(source_url, &format!("SELECT count(*) FROM {table}"));
        assert_eq!(restored, count.as_i64().unwrap(), "{table} in restored db vs manifest");
        assert_eq!(restored, original, "{table} in restored db vs source");
    }
    assert_eq!(pg.schema_dump(&target), pg.schema_dump(source_url), "schema differs after restore");
}

fn data_key(manifest: &Value) -> String {
    manifest["objects"].as_array().unwrap().iter().find(|o| o["role"] == "data").unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn local_store_backup_list_verify_restore() {
    let pg = TestPg::shared();
    let db = pg.fresh_db("local");
    pg.load_example(&db);
    let env = Env::new();
    let store = env.store_dir();
    let store = store.to_str().unwrap();

    let report = ok(
        &env.run(&["backup", "run", "--database-url", &db, "--store", store, "--set", "shop", "--output", "json"], &[])
    );
    assert_eq!(report["status"], "ok");
    assert_eq!(report["exit_code"], 0);
    let manifest = &report["backup"];
    let id = manifest["id"].as_str().unwrap();
    assert_eq!(manifest["row_counts"]["method"], "exact");
    // The manifest is really in the store, at the documented layout.
    let key = data_key(manifest);
    let dir = key.rsplit_once('/').unwrap().0;
    assert!(key.starts_with("shop/20"), "{key}");
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(env.store_dir().join(dir).join("manifest.json")).unwrap()).unwrap();
    assert_eq!(&on_disk, manifest);
    let stored = std::fs::read(env.store_dir().join(&key)).unwrap();
    assert_eq!(stored.len() as u64, manifest["objects"][0]["size"].as_u64().unwrap());

    let list = ok(&env.run(&["backup", "list", "--store", store, "--output", "json"], &[]));
    assert_eq!(list["backups"][0]["id"], id);
    assert!(list["backups"][0]["verified"].is_null());

    let verify =
        ok(&env.run(&["backup", "verify", "--store", store, "--set", "shop", "--deep", "--output", "json"], &[]));
    assert_eq!(verify["ok"], true);
    assert!(verify["checks"].as_array().unwrap().iter().any(|c| c["check"] == "decode" && c["ok"] == true));
    let list = ok(&env.run(&["backup", "list", "--store", store, "--output", "json"], &[]));
    assert_eq!(list["backups"][0]["verified"]["ok"], true, "verify record stored beside the manifest");

    let human = env.run(&["backup", "list", "--store", store], &[]);
    assert_eq!(code(&human), 0);
    assert!(String::from_utf8_lossy(&human.stdout).contains(id));

    let dump = env.path().join("restore.pgdump");
    decode_to_file(&stored, None, &dump);
    restore_and_compare(pg, &db, &dump, manifest);
}

/// libpq's Unix-socket form with credentials and an empty host, as a cron job on the database
/// host writes it: the connection and pg_dump both go through the socket named in the query.
#[test]
fn backup_over_a_unix_socket_url_with_credentials() {
    let pg = TestPg::shared();
    let db = pg.fresh_db("socket");
    pg.load_example(&db);
    let name = opsbook::pg::DbUrl::parse(&db).unwrap().database().unwrap();
    let sock = pg.cluster().socket_dir().expect("the test cluster listens on a Unix socket");
    let url = format!("postgres://postgres:{}@/{name}?host={}&port={}", pg.password(), sock.display(), pg.port());
    let env = Env::new();
    let store = env.store_dir();
    let store = store.to_str().unwrap();

    let out =
        env.run(&["backup", "run", "--database-url", &url, "--store", store, "--set", "sock", "--output", "json"], &[]);
    assert!(!all_output(&out).contains(pg.password()), "password leaked:\n{}", all_output(&out));
    let report = ok(&out);
    let manifest = &report["backup"];
    assert_eq!(manifest["database"], name.as_str());
    assert_eq!(manifest["row_counts"]["method"], "exact");
    let stored = std::fs::read(env.store_dir().join(data_key(manifest))).unwrap();
    let dump = env.path().join("restore.pgdump");
    decode_to_file(&stored, None, &dump);
    restore_and_compare(pg, &db, &dump, manifest);
}

#[test]
fn s3_store_backup_verify_restore() {
    let pg = TestPg::shared();
    let s3 = S3Server::shared();
    let db = pg.fresh_db("s3");
    pg.load_example(&db);
    let env = Env::new();
    let url = s3.url("backups-roundtrip");
    let report = ok(&env.run(
        &["backup", "run", "--database-url", &db, "--store", &url, "--set", "shop", "--globals", "--output", "json"],
        &s3.env(),
    ));
    let manifest = &report["backup"];
    assert_eq!(manifest["objects"].as_array().unwrap().len(), 2, "data + globals");
    let verify = ok(&env.run(
        &["backup", "verify", "latest", "--store", &url, "--set", "shop", "--deep", "--output", "json"],
        &s3.env(),
    ));
    assert_eq!(verify["ok"], true, "{verify}");
    let list = ok(&env.run(&["backup", "list", "--store", &url, "--set", "shop", "--output", "json"], &s3.env()));
    assert_eq!(list["backups"].as_array().unwrap().len(), 1);
    let stored = std::fs::read(s3.object_path(&format!("backups-roundtrip/{}", data_key(manifest)))).unwrap();
    let dump = env.path().join("restore.pgdump");
    decode_to_file(&stored, None, &dump);
    restore_and_compare(pg, &db, &dump, manifest);
}

#[test]
fn encrypted_backup_needs_the_identity() {
    let pg = TestPg::shared();
    let db = pg.fresh_db("enc");
    pg.load_example(&db);
    let env = Env::new();
    let store = env.store_dir();
    let store = store.to_str().unwrap();
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let report = ok(&env.run(
        &["backup", "run", "--database-url", &db, "--store", store, "--encrypt-to", &recipient, "--output", "json"],
        &[],
    ));
    let manifest = &report["backup"];
    assert_eq!(manifest["encryption"]["recipients"][0], recipient);
    assert!(data_key(manifest).ends_with(".age"));

    let no_id = env.run(&["backup", "verify", "--store", store, "--deep"], &[]);
    assert_eq!(code(&no_id), 2, "{}", all_output(&no_id));
    assert!(all_output(&no_id).contains("--identity"), "{}", all_output(&no_id));

    let wrong = age::x25519::Identity::generate();
    use age::secrecy::ExposeSecret;
    std::fs::write(env.path().join("wrong.key"), wrong.to_string().expose_secret()).unwrap();
    let bad =
        env.run(&["backup", "verify", "--store", store, "--deep", "--identity", "wrong.key", "--output", "json"], &[]);
    // The key is wrong, not the backup: a usage error, and no failed verification on record.
    assert_eq!(code(&bad), 2, "{}", all_output(&bad));
    assert!(all_output(&bad).contains("none of the identities in --identity"), "{}", all_output(&bad));
    assert!(all_output(&bad).contains("nothing was recorded"), "{}", all_output(&bad));
    let listed = ok(&env.run(&["backup", "list", "--store", store, "--output", "json"], &[]));
    assert!(listed["backups"][0]["verified"].is_null(), "{listed}");

    std::fs::write(env.path().join("right.key"), identity.to_string().expose_secret()).unwrap();
    let good = ok(
        &env.run(&["backup", "verify", "--store", store, "--deep", "--identity", "right.key", "--output", "json"], &[])
    );
    assert_eq!(good["ok"], true);
    let secret = identity.to_string().expose_secret().to_string();
    assert!(!all_output(
        &env.run(&["backup", "verify", "--store", store, "--deep", "--identity", "right.key", "-vvv"], &[])
    )
    .contains(&secret));

    let stored = std::fs::read(env.store_dir().join(data_key(manifest))).unwrap();
    let dump = env.path().join("restore.pgdump");
    decode_to_file(&stored, Some(&identity), &dump);
    restore_and_compare(pg, &db, &dump, manifest);
}

#[test]
fn unreachable_postgres_exits_3() {
    let env = Env::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://app:hunter2-secret@127.0.0.1:{port}/shop");
    let out = env.run(&["backup", "run", "--database-url", &url, "--store", env.store_dir().to_str().unwrap()], &[]);
    assert_eq!(code(&out), 3, "{}", all_output(&out));
    assert!(!all_output(&out).contains("hunter2-secret"), "{}", all_output(&out));
    assert!(all_output(&out).contains("127.0.0.1"), "{}", all_output(&out));
}

#[test]
fn s3_auth_failure_exits_3() {
    let pg = TestPg::shared();
    let s3 = S3Server::shared();
    let db = pg.fresh_db("auth");
    let env = Env::new();
    let mut envs = s3.env();
    for (k, v) in envs.iter_mut() {
        if k == "AWS_SECRET_ACCESS_KEY" {
            *v = "definitely-not-the-secret-key".into();
        }
    }
    let out = env.run(&["backup", "run", "--database-url", &db, "--store", &s3.url("auth")], &envs);
    assert_eq!(code(&out), 3, "{}", all_output(&out));
    assert!(!all_output(&out).contains("definitely-not-the-secret-key"));
}

#[test]
fn unknown_store_scheme_exits_2() {
    let env = Env::new();
    let out =
        env.run(&["backup", "run", "--database-url", "postgres://u:p@127.0.0.1:1/db", "--store", "gs://bucket/x"], &[]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("gs://bucket/x"), "{}", all_output(&out));
}

#[test]
fn list_of_empty_store_and_missing_backup() {
    let env = Env::new();
    let store = env.store_dir();
    std::fs::create_dir_all(&store).unwrap();
    let list = ok(&env.run(&["backup", "list", "--store", store.to_str().unwrap(), "--output", "json"], &[]));
    assert_eq!(list["backups"].as_array().unwrap().len(), 0);
    let out = env.run(&["backup", "verify", "--store", store.to_str().unwrap()], &[]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("no complete backup"), "{}", all_output(&out));
    // An id the user typed that matches nothing is bad input, like an ambiguous prefix.
    let out = env.run(&["backup", "verify", "nosuch", "--store", store.to_str().unwrap()], &[]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("backup nosuch not found in set"), "{}", all_output(&out));
}

#[test]
fn estimated_row_counts_never_record_zero_for_a_table_without_statistics() {
    let pg = TestPg::shared();
    let db = pg.fresh_db("estimate");
    pg.execute(&db, "CREATE TABLE fresh AS SELECT g AS id FROM generate_series(1, 777) g");
    // Never vacuumed or analyzed: Postgres has no estimate (-1), and opsbook counts it instead.
    assert_eq!(pg.query_i64(&db, "SELECT reltuples::bigint FROM pg_class WHERE relname = 'fresh'"), -1);
    let env = Env::new();
    let store = env.store_dir();
    let report = ok(&env.run(
        &[
            "backup",
            "run",
            "--database-url",
            &db,
            "--store",
            store.to_str().unwrap(),
            "--row-counts",
            "estimate",
            "--output",
            "json",
        ],
        &[],
    ));
    let counts = &report["backup"]["row_counts"];
    assert_eq!(counts["method"], "estimate");
    assert_eq!(counts["tables"]["public.fresh"], 777, "{counts}");
}
