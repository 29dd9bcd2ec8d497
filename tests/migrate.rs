//! `opsbook migrate` against a real PostgreSQL cluster: applying, idempotence, concurrency,
//! check/validate/dry-run/lint, lock handling, and interop with sqlx's own Migrator.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::cmd::{all_output, background, code, json, opsbook};
use support::pg::{block_on, TestPg};

/// A temp work dir with a `migrations` directory holding `files`.
fn project(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, sql) in files {
        std::fs::write(dir.join(name), sql).unwrap();
    }
    (tmp, dir)
}

fn migrate(tmp: &Path, url: &str, args: &[&str]) -> std::process::Output {
    opsbook(tmp).arg("migrate").args(args).env("DATABASE_URL", url).output().unwrap()
}

fn table_exists(pg: &TestPg, url: &str, name: &str) -> bool {
    pg.query_string(url, &format!("SELECT to_regclass('{name}') IS NOT NULL")) == "true"
}

const SHOP: &str = "CREATE TABLE products (id bigint PRIMARY KEY, name text NOT NULL);\n";

#[test]
fn up_applies_in_order_records_like_sqlx_and_is_idempotent() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_up");
    let (tmp, _dir) = project(&[
        ("1_products.sql", SHOP),
        ("2_tags.sql", "ALTER TABLE products ADD COLUMN tags text[];\n"),
        ("3_orders.up.sql", "CREATE TABLE orders (id bigint PRIMARY KEY, product_id bigint);\n"),
        ("3_orders.down.sql", "DROP TABLE orders;\n"),
        ("README.md", "not a migration"),
    ]);
    let out = migrate(tmp.path(), &url, &["up", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let report = json(&out);
    let versions: Vec<i64> =
        report["applied"].as_array().unwrap().iter().map(|a| a["version"].as_i64().unwrap()).collect();
    assert_eq!(versions, vec![1, 2, 3]);
    assert_eq!(report["head"], 3);

    assert!(table_exists(pg, &url, "orders"));
    assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'tags'"), 1);
    // Rows exactly as sqlx writes them: description from the file name, SHA-384 of the bytes,
    // success, a real execution time.
    assert_eq!(pg.query_string(&url, "SELECT description FROM _sqlx_migrations WHERE version = 2"), "tags");
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha384::digest(b"ALTER TABLE products ADD COLUMN tags text[];\n"))
    };
    assert_eq!(pg.query_string(&url, "SELECT encode(checksum, 'hex') FROM _sqlx_migrations WHERE version = 2"), sha);
    assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM _sqlx_migrations WHERE success AND execution_time > 0"), 3);
    assert_eq!(pg.query_string(&url, "SELECT description FROM _sqlx_migrations WHERE version = 3"), "orders");
    // The side log says who, where, and the lint verdict.
    assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM _opsbook_migrations WHERE kind = 'versioned'"), 3);
    assert_eq!(pg.query_string(&url, "SELECT lint FROM _opsbook_migrations WHERE version = 1"), "clean");
    assert!(pg.query_string(&url, "SELECT applied_by FROM _opsbook_migrations WHERE version = 1").contains(" as "));

    let again = migrate(tmp.path(), &url, &["up"]);
    assert_eq!(code(&again), 0, "{}", all_output(&again));
    assert!(all_output(&again).contains("up to date"), "{}", all_output(&again));
    assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM _sqlx_migrations"), 3);
    assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM _opsbook_migrations"), 3);
}

#[test]
fn target_stops_at_a_version() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_target");
    let (tmp, _dir) = project(&[
        ("1_products.sql", SHOP),
        ("2_a.sql", "ALTER TABLE products ADD COLUMN a text;"),
        ("3_b.sql", "ALTER TABLE products ADD COLUMN b text;"),
    ]);
    let out = migrate(tmp.path(), &url, &["up", "--target", "2"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(pg.query_i64(&url, "SELECT max(version) FROM _sqlx_migrations"), 2);
    let out = migrate(tmp.path(), &url, &["up", "--target", "7"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
}

#[test]
fn two_concurrent_ups_apply_each_migration_exactly_once() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_race");
    let slow = |n: u32| format!("SELECT pg_sleep(0.4);\nINSERT INTO runs (migration) VALUES ({n});\n");
    let (tmp, _dir) = project(&[
        ("1_runs.sql", "CREATE TABLE runs (migration int NOT NULL, at timestamptz DEFAULT clock_timestamp());\n"),
        ("2_a.sql", &slow(2)),
        ("3_b.sql", &slow(3)),
        ("4_c.sql", &slow(4)),
    ]);
    let spawn = || {
        background(tmp.path())
            .args(["migrate", "up", "--lock-wait", "30s"])
            .env("DATABASE_URL", &url)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(code(&a), 0, "{}", all_output(&a));
    assert_eq!(code(&b), 0, "{}", all_output(&b));
    assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM runs"), 3, "each data migration ran once");
    assert_eq!(pg.query_i64(&url, "SELECT count(DISTINCT migration) FROM runs"), 3);
    assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM _sqlx_migrations"), 4);
    let outputs = format!("{}{}", all_output(&a), all_output(&b));
    assert!(outputs.contains("up to date"), "one of them found nothing left to do:\n{outputs}");
}

#[test]
fn check_fails_on_pending_and_passes_when_applied() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_check");
    let (tmp, dir) = project(&[("1_products.sql", SHOP)]);
    let out = migrate(tmp.path(), &url, &["check"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("pending"), "{}", all_output(&out));
    assert!(!table_exists(pg, &url, "_sqlx_migrations"), "check is read-only");

    assert_eq!(code(&migrate(tmp.path(), &url, &["up"])), 0);
    let out = migrate(tmp.path(), &url, &["check", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(json(&out)["entries"][0]["state"], "applied");

    // A new file is pending again; a deleted one shows as missing.
    std::fs::write(dir.join("2_more.sql"), "ALTER TABLE products ADD COLUMN more text;").unwrap();
    std::fs::rename(dir.join("1_products.sql"), tmp.path().join("gone.sql")).unwrap();
    let out = migrate(tmp.path(), &url, &["check", "--output", "json"]);
    assert_eq!(code(&out), 1);
    let states: Vec<String> =
        json(&out)["entries"].as_array().unwrap().iter().map(|e| e["state"].as_str().unwrap().to_string()).collect();
    assert_eq!(states, vec!["missing", "pending"]);
    let out = migrate(tmp.path(), &url, &["up"]);
    assert_eq!(code(&out), 1, "a missing file blocks up: {}", all_output(&out));
    assert!(all_output(&out).contains("--ignore-missing"));
    let out = migrate(tmp.path(), &url, &["up", "--ignore-missing"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
}

#[test]
fn validate_tells_cosmetic_from_semantic_drift() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_validate");
    let (tmp, dir) = project(&[
        ("1_products.sql", "-- products\nCREATE TABLE products (id bigint PRIMARY KEY, name text);\n"),
        ("2_price.sql", "ALTER TABLE products ADD COLUMN price numeric;\n"),
    ]);
    assert_eq!(code(&migrate(tmp.path(), &url, &["up"])), 0);
    let out = migrate(tmp.path(), &url, &["validate"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));

    // Cosmetic: CRLF, BOM, a different comment, extra indentation.
    std::fs::write(
        dir.join("1_products.sql"),
        "\u{feff}-- the products table\r\nCREATE TABLE products (\r\n  id bigint PRIMARY KEY,\r\n  name text\r\n);\r\n",
    )
    .unwrap();
    // Semantic: a different type.
    std::fs::write(dir.join("2_price.sql"), "ALTER TABLE products ADD COLUMN price integer;\n").unwrap();
    let out = migrate(tmp.path(), &url, &["validate", "--output", "json"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let doc = json(&out);
    let drift = doc["drift"].as_array().unwrap();
    assert_eq!(drift[0]["version"], 1);
    assert_eq!(drift[0]["kind"], "cosmetic");
    assert_eq!(drift[1]["kind"], "semantic");
    assert_eq!(drift[1]["removed"][0], "ALTER TABLE products ADD COLUMN price numeric");
    assert_eq!(drift[1]["added"][0], "ALTER TABLE products ADD COLUMN price integer");

    // up refuses while files drifted, as sqlx would.
    let out = migrate(tmp.path(), &url, &["up"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));

    // Repairing records the cosmetic change only; the semantic one still fails.
    let out = migrate(tmp.path(), &url, &["validate", "--repair-cosmetic"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    std::fs::write(dir.join("2_price.sql"), "ALTER TABLE products ADD COLUMN price numeric;\n").unwrap();
    let out = migrate(tmp.path(), &url, &["validate"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(code(&migrate(tmp.path(), &url, &["check"])), 0);
}

#[test]
fn dry_run_reports_locks_and_leaves_the_schema_unchanged() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_dry");
    let (tmp, dir) = project(&[("1_products.sql", SHOP)]);
    assert_eq!(code(&migrate(tmp.path(), &url, &["up"])), 0);
    std::fs::write(dir.join("2_sku.sql"), "ALTER TABLE products ADD COLUMN sku text;\n").unwrap();
    std::fs::write(dir.join("3_tags.sql"), "CREATE TABLE tags (id bigint PRIMARY KEY, name text);\n").unwrap();
    let before = pg.schema_dump(&url);
    let out = migrate(tmp.path(), &url, &["dry-run", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let doc = json(&out);
    let first = &doc["migrations"][0];
    assert_eq!(first["outcome"], "ok");
    let locks = first["locks"].as_array().unwrap();
    assert!(
        locks
            .iter()
            .any(|l| l["relation"] == "products" && l["mode"] == "AccessExclusiveLock" && l["new_object"] == false),
        "{locks:?}"
    );
    let second = doc["migrations"][1]["locks"].as_array().unwrap();
    assert!(second.iter().any(|l| l["relation"] == "tags" && l["new_object"] == true), "{second:?}");
    assert_eq!(pg.schema_dump(&url), before, "dry-run rolled everything back");
    assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM _sqlx_migrations"), 1);

    let human = migrate(tmp.path(), &url, &["dry-run"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("AccessExclusiveLock on table products"));

    // A failing migration fails the dry run (exit 1) and names the file and line.
    std::fs::write(dir.join("4_bad.sql"), "SELECT 1;\nALTER TABLE nope ADD COLUMN x int;\n").unwrap();
    let out = migrate(tmp.path(), &url, &["dry-run"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("4_bad.sql:2"), "{}", all_output(&out));
    assert_eq!(pg.schema_dump(&url), before);
}

#[test]
fn dry_run_cannot_roll_back_no_transaction_files_so_it_only_lints_them() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_dry_notx");
    let (tmp, _dir) = project(&[
        ("1_products.sql", SHOP),
        ("2_idx.sql", "-- no-transaction\nCREATE INDEX CONCURRENTLY products_name ON products (name);\n"),
    ]);
    let out = migrate(tmp.path(), &url, &["dry-run", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(json(&out)["migrations"][1]["outcome"], "cannot-dry-run");
    // And up runs it outside a transaction (CONCURRENTLY would fail inside one).
    let out = migrate(tmp.path(), &url, &["up"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(table_exists(pg, &url, "products_name"));
}

#[test]
fn lint_catches_the_classic_zero_downtime_mistakes() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("index.sql", "CREATE INDEX products_name ON products (name);\n", "require-concurrent-index-creation"),
        ("notnull.sql", "ALTER TABLE products ADD COLUMN sku text NOT NULL;\n", "adding-required-field"),
        (
            "fk.sql",
            "ALTER TABLE orders ADD CONSTRAINT orders_product FOREIGN KEY (product_id) REFERENCES products (id);\n",
            "adding-foreign-key-constraint",
        ),
        ("type.sql", "ALTER TABLE products ALTER COLUMN price TYPE bigint;\n", "changing-column-type"),
        ("drop.sql", "ALTER TABLE products DROP COLUMN legacy;\n", "ban-drop-column"),
        ("rename.sql", "ALTER TABLE products RENAME COLUMN name TO title;\n", "renaming-column"),
    ];
    for (file, sql, rule) in cases {
        std::fs::write(tmp.path().join(file), sql).unwrap();
        let out = opsbook(tmp.path()).args(["migrate", "lint", file, "--output", "json"]).output().unwrap();
        assert_eq!(code(&out), 1, "{file}: {}", all_output(&out));
        let doc = json(&out);
        let rules: Vec<&str> =
            doc["findings"].as_array().unwrap().iter().map(|f| f["rule"].as_str().unwrap()).collect();
        assert!(rules.contains(&rule), "{file}: expected {rule}, got {rules:?}");
        assert_eq!(doc["findings"][0]["line"], 1);
    }
    // The human form is file:line:col: severity[rule] message, with help.
    let out = opsbook(tmp.path()).args(["migrate", "lint", "index.sql"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("index.sql:1:1: error[require-concurrent-index-creation]"), "{text}");
    assert!(text.contains("help:"), "{text}");

    // The lock-safe forms pass.
    std::fs::write(
        tmp.path().join("safe.sql"),
        "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS products_name ON products (name);\n",
    )
    .unwrap();
    let out = opsbook(tmp.path()).args(["migrate", "lint", "safe.sql"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
}

#[test]
fn syntax_errors_name_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("bad.sql"), "SELECT 1;\n\nCREAT TABLE x (id int);\n").unwrap();
    let out = opsbook(tmp.path()).args(["migrate", "lint", "bad.sql"]).output().unwrap();
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("bad.sql:3:"), "{}", all_output(&out));
    assert!(all_output(&out).contains("syntax-error"), "{}", all_output(&out));

    // Running it: PostgreSQL's own error, located in the file; nothing recorded for it, the
    // migration before it stays applied.
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_syntax");
    let (proj, _dir) = project(&[("1_products.sql", SHOP), ("2_bad.sql", "SELECT 1;\n\nCREAT TABLE x (id int);\n")]);
    let out = migrate(proj.path(), &url, &["up", "--allow-unsafe"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let text = all_output(&out);
    assert!(text.contains("2_bad.sql:3"), "{text}");
    assert!(text.contains("syntax error"), "{text}");
    assert!(text.contains("1 migration(s) before it"), "{text}");
    assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM _sqlx_migrations"), 1);
}

#[test]
fn up_refuses_lint_errors_unless_allowed() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_unsafe");
    let (tmp, _dir) =
        project(&[("1_products.sql", SHOP), ("2_idx.sql", "CREATE INDEX products_name ON products (name);\n")]);
    let out = migrate(tmp.path(), &url, &["up"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("require-concurrent-index-creation"), "{}", all_output(&out));
    assert!(!table_exists(pg, &url, "products"), "nothing applied when refusing");
    let out = migrate(tmp.path(), &url, &["up", "--allow-unsafe"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(pg.query_string(&url, "SELECT lint FROM _opsbook_migrations WHERE version = 2"), "unsafe-allowed");
}

#[test]
fn malformed_file_names_are_errors_not_skipped() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_badname");
    for bad in ["V1_single_underscore.sql", "2a_typo.sql", "R__.sql"] {
        let (tmp, _dir) = project(&[("1_products.sql", SHOP), (bad, "SELECT 1;")]);
        let out = migrate(tmp.path(), &url, &["status"]);
        assert_eq!(code(&out), 2, "{bad}: {}", all_output(&out));
        assert!(all_output(&out).contains(bad), "{bad}: {}", all_output(&out));
    }
    let (tmp, _dir) = project(&[("1_a.sql", "SELECT 1;"), ("1_b.sql", "SELECT 2;")]);
    let out = migrate(tmp.path(), &url, &["status"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("version 1 is also used"), "{}", all_output(&out));
}

#[test]
fn flyway_names_and_repeatables() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_flyway");
    let (tmp, dir) = project(&[
        ("V1__products.sql", SHOP),
        ("V2__price.sql", "ALTER TABLE products ADD COLUMN price numeric;\n"),
        ("R__product_view.sql", "CREATE OR REPLACE VIEW product_names AS SELECT name FROM products;\n"),
    ]);
    let out = migrate(tmp.path(), &url, &["up", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let files: Vec<String> =
        json(&out)["applied"].as_array().unwrap().iter().map(|a| a["file"].as_str().unwrap().to_string()).collect();
    assert_eq!(files, vec!["V1__products.sql", "V2__price.sql", "R__product_view.sql"]);
    assert!(table_exists(pg, &url, "product_names"));
    // Repeatables live only in the side log (sqlx would not know their versions).
    assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM _sqlx_migrations"), 2);

    assert!(all_output(&migrate(tmp.path(), &url, &["up"])).contains("up to date"));
    std::fs::write(
        dir.join("R__product_view.sql"),
        "CREATE OR REPLACE VIEW product_names AS SELECT name, price FROM products;\n",
    )
    .unwrap();
    assert_eq!(code(&migrate(tmp.path(), &url, &["check"])), 1, "a changed repeatable is pending");
    let out = migrate(tmp.path(), &url, &["up"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(
        pg.query_i64(&url, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'product_names'"),
        2
    );

    // `new` follows the directory's style.
    let out = opsbook(tmp.path()).args(["migrate", "new", "Add SKU"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let created: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("__add_sku.sql"))
        .collect();
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(created[0].starts_with('V'));
}

#[test]
fn new_creates_timestamped_files_that_sort_after_existing_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| opsbook(tmp.path()).args(["migrate", "new"]).args(args).output().unwrap();
    assert_eq!(code(&run(&["create products"])), 0);
    assert_eq!(code(&run(&["add tags", "--reversible"])), 0);
    let mut names: Vec<String> = std::fs::read_dir(tmp.path().join("migrations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0].ends_with("_create_products.sql"), "{names:?}");
    assert!(names[1].ends_with("_add_tags.down.sql") && names[2].ends_with("_add_tags.up.sql"), "{names:?}");
    let v = |n: &str| n.split('_').next().unwrap().parse::<i64>().unwrap();
    assert!(v(&names[1]) > v(&names[0]), "versions increase even within one second: {names:?}");
    assert!(v(&names[0]) > 20_000_000_000_000, "timestamp versions: {names:?}");
}

#[test]
fn baseline_records_without_running() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_baseline");
    pg.execute(&url, SHOP);
    let (tmp, _dir) = project(&[
        ("1_products.sql", SHOP),
        ("2_price.sql", "ALTER TABLE products ADD COLUMN price numeric;"),
        ("3_sku.sql", "ALTER TABLE products ADD COLUMN sku text;"),
    ]);
    let out = migrate(tmp.path(), &url, &["baseline", "2"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'price'"), 0);
    assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM _opsbook_migrations WHERE kind = 'baseline'"), 2);
    let out = migrate(tmp.path(), &url, &["up", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(json(&out)["applied"][0]["version"], 3);
    assert_eq!(json(&out)["applied"].as_array().unwrap().len(), 1);
    let out = migrate(tmp.path(), &url, &["baseline", "0"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
}

#[test]
fn a_held_lock_gives_exit_4_naming_the_holder() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_lock");
    let (tmp, _dir) = project(&[("1_products.sql", SHOP)]);
    // Hold the lock with sqlx's own Migrate::lock: the same key as `sqlx migrate run`.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let holder_url = url.clone();
    let holder = std::thread::spawn(move || {
        block_on(async move {
            use sqlx::migrate::Migrate;
            use sqlx::{ConnectOptions, Connection};
            let opts: sqlx::postgres::PgConnectOptions = holder_url.parse().unwrap();
            let mut conn = opts.application_name("sqlx-holder").connect().await.unwrap();
            conn.lock().await.unwrap();
            held_tx.send(()).unwrap();
            let _ = rx.recv();
            conn.unlock().await.unwrap();
            conn.close().await.unwrap();
        })
    });
    held_rx.recv().unwrap();
    let start = std::time::Instant::now();
    let out = migrate(tmp.path(), &url, &["up", "--lock-wait", "1s"]);
    tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(code(&out), 4, "{}", all_output(&out));
    let text = all_output(&out);
    assert!(text.contains("sqlx-holder") && text.contains("pid "), "{text}");
    assert!(!text.contains(pg.password()), "no password in the message");
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(!table_exists(pg, &url, "products"));
    // Once released, it goes through.
    assert_eq!(code(&migrate(tmp.path(), &url, &["up"])), 0);
}

#[test]
fn lock_timeout_is_retried_then_fails_clearly() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_locktimeout");
    pg.execute(&url, SHOP);
    let (tmp, _dir) = project(&[("1_sku.sql", "ALTER TABLE products ADD COLUMN sku text;\n")]);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let holder_url = url.clone();
    let holder = std::thread::spawn(move || {
        block_on(async move {
            let mut conn = opsbook::pg::connect(&opsbook::pg::DbUrl::parse(&holder_url).unwrap()).await.unwrap();
            sqlx::Executor::execute(&mut conn, sqlx::raw_sql("BEGIN; LOCK TABLE products IN ACCESS SHARE MODE"))
                .await
                .unwrap();
            held_tx.send(()).unwrap();
            let _ = rx.recv();
            sqlx::Executor::execute(&mut conn, sqlx::raw_sql("COMMIT")).await.unwrap();
        })
    });
    held_rx.recv().unwrap();
    let out = migrate(tmp.path(), &url, &["up", "--lock-timeout", "100ms"]);
    tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let text = all_output(&out);
    assert!(text.contains("after 4 attempts"), "{text}");
    assert!(text.contains("lock_timeout"), "{text}");
    assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM _sqlx_migrations"), 0);
    assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'sku'"), 0);
}

fn sqlx_migrator(dir: &Path) -> sqlx::migrate::Migrator {
    block_on(sqlx::migrate::Migrator::new(dir.to_path_buf())).unwrap()
}

async fn sqlx_conn(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await.unwrap()
}

#[test]
fn interop_with_sqlx_migrator_both_ways() {
    let pg = TestPg::shared();
    let files = [
        ("20260101000000_products.sql", SHOP),
        ("20260102000000_price.sql", "ALTER TABLE products ADD COLUMN price numeric;\n"),
        ("20260103000000_idx.sql", "-- no-transaction\nCREATE INDEX CONCURRENTLY products_name ON products (name);\n"),
    ];
    let (tmp, dir) = project(&files);

    // opsbook first: sqlx's Migrator finds nothing to do and no checksum mismatch.
    let url = pg.fresh_db("mig_interop_a");
    assert_eq!(code(&migrate(tmp.path(), &url, &["up"])), 0);
    let migrator = sqlx_migrator(&dir);
    let u = url.clone();
    block_on(async move {
        let mut conn = sqlx_conn(&u).await;
        migrator.run_direct(&mut conn).await.expect("sqlx accepts opsbook's history");
    });
    assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM _sqlx_migrations"), 3);

    // sqlx first: opsbook sees everything applied, applies nothing.
    let url = pg.fresh_db("mig_interop_b");
    let migrator = sqlx_migrator(&dir);
    let u = url.clone();
    block_on(async move {
        let mut conn = sqlx_conn(&u).await;
        migrator.run_direct(&mut conn).await.unwrap();
    });
    let out = migrate(tmp.path(), &url, &["check"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let out = migrate(tmp.path(), &url, &["up", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(json(&out)["applied"], Value::Array(vec![]));

    // A new file added later: opsbook applies it, sqlx agrees it is done.
    std::fs::write(dir.join("20260104000000_sku.sql"), "ALTER TABLE products ADD COLUMN sku text;\n").unwrap();
    assert_eq!(code(&migrate(tmp.path(), &url, &["up"])), 0);
    let migrator = sqlx_migrator(&dir);
    let u = url.clone();
    block_on(async move {
        let mut conn = sqlx_conn(&u).await;
        migrator.run_direct(&mut conn).await.unwrap();
    });
    assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM _sqlx_migrations"), 4);
}

#[test]
fn status_reports_other_tools_history() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_others");
    pg.execute(
        &url,
        "CREATE TABLE flyway_schema_history (installed_rank int PRIMARY KEY, version varchar(50), \
           description varchar(200) NOT NULL, type varchar(20) NOT NULL, script varchar(1000) NOT NULL, \
           checksum int, installed_by varchar(100) NOT NULL, installed_on timestamp NOT NULL DEFAULT now(), \
           execution_time int NOT NULL, success boolean NOT NULL);
         INSERT INTO flyway_schema_history VALUES
           (1, '1', 'init', 'SQL', 'V1__init.sql', 1, 'me', now(), 5, true),
           (2, '2', 'users', 'SQL', 'V2__users.sql', 2, 'me', now(), 5, true);
         CREATE TABLE _prisma_migrations (id varchar(36) PRIMARY KEY, checksum varchar(64) NOT NULL,
           finished_at timestamptz, migration_name varchar(255) NOT NULL, logs text, rolled_back_at timestamptz,
           started_at timestamptz NOT NULL DEFAULT now(), applied_steps_count int NOT NULL DEFAULT 0);
         INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name)
           VALUES ('a', 'x', now(), '20240101_init'), ('b', 'y', NULL, '20240102_failed');
         CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL);
         INSERT INTO schema_migrations VALUES (7, false);",
    );
    let (tmp, _dir) = project(&[("1_products.sql", SHOP)]);
    let out = migrate(tmp.path(), &url, &["status", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let doc = json(&out);
    let others = doc["other_tools"].as_array().unwrap();
    let find = |tool: &str| others.iter().find(|o| o["tool"] == tool).unwrap_or_else(|| panic!("{tool}: {others:?}"));
    assert_eq!(find("flyway")["applied"], 2);
    assert_eq!(find("flyway")["latest"], "2 users");
    assert_eq!(find("prisma")["applied"], 1);
    assert_eq!(find("prisma")["latest"], "20240101_init");
    assert_eq!(find("golang-migrate")["latest"], "7");
    let human = migrate(tmp.path(), &url, &["status"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("flyway history (flyway_schema_history): 2 applied"));
}

#[test]
fn lint_config_in_the_profile_changes_severity() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("drop.sql"), "ALTER TABLE products DROP COLUMN legacy;\n").unwrap();
    std::fs::write(tmp.path().join("opsbook.toml"), "[profiles.default.migrate.lint]\nwarn = [\"ban-drop-column\"]\n")
        .unwrap();
    let out = opsbook(tmp.path()).args(["migrate", "lint", "drop.sql"]).output().unwrap();
    assert_eq!(code(&out), 0, "a warning does not fail: {}", all_output(&out));
    assert!(all_output(&out).contains("warning[ban-drop-column]"), "{}", all_output(&out));
    std::fs::write(tmp.path().join("opsbook.toml"), "[profiles.default.migrate.lint]\nexclude = [\"no-such-rule\"]\n")
        .unwrap();
    let out = opsbook(tmp.path()).args(["migrate", "lint", "drop.sql"]).output().unwrap();
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("no-such-rule"));
}

#[test]
fn transaction_control_in_a_file_is_refused_before_anything_runs() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_txctl");
    pg.execute(&url, "CREATE TABLE products (id int); INSERT INTO products SELECT generate_series(1, 100);");
    let (tmp, _dir) = project(&[
        ("1_note.sql", "BEGIN;\nALTER TABLE products ADD COLUMN note text;\nCOMMIT;\n"),
        ("2_trim.sql", "DELETE FROM products WHERE id > 10;\n"),
    ]);
    // A COMMIT inside the file would end the dry run's transaction and make it real.
    for args in [&["dry-run"][..], &["up"], &["up", "--allow-unsafe"]] {
        let out = migrate(tmp.path(), &url, args);
        assert_eq!(code(&out), 2, "{args:?}: {}", all_output(&out));
        let text = all_output(&out);
        assert!(text.contains("1_note.sql") && text.contains("line 1: BEGIN"), "{text}");
        assert!(text.contains("-- no-transaction"), "says how to fix: {text}");
        assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM products"), 100, "{args:?} changed rows");
        assert_eq!(
            pg.query_i64(&url, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'"),
            0,
            "{args:?} changed the schema"
        );
    }
}

#[test]
fn dry_run_never_runs_a_file_the_parser_cannot_read() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_dry_unparsed");
    pg.execute(&url, SHOP);
    let (tmp, _dir) = project(&[
        ("1_sku.sql", "ALTER TABLE products ADD COLUMN sku text;\n"),
        ("2_odd.sql", "SELECT 1;\nCREAT TABLE x (id int);\n"),
    ]);
    let out = migrate(tmp.path(), &url, &["dry-run", "--output", "json"]);
    let doc = json(&out);
    assert_eq!(doc["migrations"][0]["outcome"], "ok", "{doc}");
    assert_eq!(doc["migrations"][1]["outcome"], "cannot-dry-run", "{doc}");
    assert!(doc["migrations"][1]["error"].as_str().unwrap().contains("parser cannot read it"), "{doc}");
    assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'sku'"), 0);
}

#[test]
fn statements_that_need_no_transaction_get_their_own_file() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_notx_multi");
    pg.execute(&url, SHOP);
    // Alone in a transactional file: lint flags it, up refuses it by line (PostgreSQL would).
    let (tmp, _dir) =
        project(&[("1_idx.sql", "\nCREATE INDEX CONCURRENTLY IF NOT EXISTS p_name ON products (name);\n")]);
    let out = opsbook(tmp.path()).args(["migrate", "lint", "migrations/1_idx.sql"]).output().unwrap();
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("requires-no-transaction"), "{}", all_output(&out));
    let out = migrate(tmp.path(), &url, &["up"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("line 2: CREATE INDEX cannot run inside a transaction"), "{}", all_output(&out));
    // A no-transaction file runs each of its statements on its own.
    let (tmp, _dir) = project(&[(
        "1_idx.sql",
        "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS p_name ON products (name);\n\
         DROP INDEX CONCURRENTLY IF EXISTS p_old;\n",
    )]);
    let out = migrate(tmp.path(), &url, &["up"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(table_exists(pg, &url, "p_name"));
}

#[test]
fn a_failing_statement_is_named_by_its_line() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_line");
    let (tmp, _dir) = project(&[(
        "1_rows.sql",
        "CREATE TABLE t (id int PRIMARY KEY);\n-- seed\nINSERT INTO t VALUES (1);\n\nINSERT INTO t VALUES (1);\n",
    )]);
    let out = migrate(tmp.path(), &url, &["up"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("1_rows.sql:5"), "{}", all_output(&out));
    assert!(!table_exists(pg, &url, "t"), "rolled back");
}

#[test]
fn a_migration_that_changes_search_path_is_still_recorded() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_search_path");
    let (tmp, _dir) = project(&[
        ("1_app.sql", "CREATE SCHEMA app;\nSET LOCAL search_path TO app;\nCREATE TABLE users (id bigint);\n"),
        // SET LOCAL ended with the migration's transaction: this lands in public.
        ("2_orders.sql", "CREATE TABLE orders (id bigint);\n"),
        (
            "3_empty_path.sql",
            "SELECT pg_catalog.set_config('search_path', '', false);\nCREATE TABLE public.t (id int);\n",
        ),
    ]);
    let out = migrate(tmp.path(), &url, &["up"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(table_exists(pg, &url, "app.users"));
    assert!(table_exists(pg, &url, "public.orders"), "the history write leaked search_path into the next file");
    assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM public._sqlx_migrations"), 3);
    assert_eq!(code(&migrate(tmp.path(), &url, &["check"])), 0);
}

#[test]
fn baseline_needs_the_version_of_a_file() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_baseline_typo");
    let (tmp, _dir) = project(&[("1_a.sql", "CREATE TABLE a (id int);"), ("2_b.sql", "CREATE TABLE b (id int);")]);
    let out = migrate(tmp.path(), &url, &["baseline", "20"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("no migration in"), "{}", all_output(&out));
    assert!(
        !table_exists(pg, &url, "_sqlx_migrations") || pg.query_i64(&url, "SELECT count(*) FROM _sqlx_migrations") == 0
    );
}

#[test]
fn repeatables_with_the_same_description_are_refused() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_rep_dup");
    let (tmp, _dir) = project(&[("R__views_a.sql", "SELECT 1;"), ("R__views a.sql", "SELECT 2;")]);
    let out = migrate(tmp.path(), &url, &["up"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("unique descriptions"), "{}", all_output(&out));
}

#[test]
fn interrupt_cancels_the_running_statement_and_applies_nothing_more() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("mig_interrupt");
    let (tmp, _dir) = project(&[
        ("1_slow.sql", "CREATE TABLE s1 (id bigint);\nSELECT pg_sleep(60);\n"),
        ("2_next.sql", "CREATE TABLE s2 (id bigint);\n"),
    ]);
    let child = background(tmp.path()).env("DATABASE_URL", &url).args(["migrate", "up"]).spawn().unwrap();
    let sleeping = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%' AND state = 'active'";
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while pg.query_i64(&url, sleeping) == 0 {
        assert!(std::time::Instant::now() < deadline, "the slow migration never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", all_output(&out));
    assert!(
        all_output(&out).contains("interrupted during migration 1 slow: it was rolled back"),
        "{}",
        all_output(&out)
    );
    // The statement was cancelled on the server, not left running with its locks.
    assert_eq!(pg.query_i64(&url, sleeping), 0, "the statement still runs after opsbook exited");
    assert!(!table_exists(pg, &url, "s1") && !table_exists(pg, &url, "s2"));
    assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM _sqlx_migrations"), 0);
}
