//! Whole-output snapshots: exit code, stdout and stderr of the main paths of every command, human
//! and JSON, success and the main failures, and the layout of tables at 80 and 120 columns. The
//! snapshots live in tests/snapshots/; what varies between runs (times, ids, ports, temp paths…)
//! is replaced by the filters of `support::env::filters`.
//!
//! Update after an intended change: `INSTA_UPDATE=always cargo test --features fault-injection
//! --test snapshots`, then read the changed `.snap` files.

mod support;

use support::env::TestEnv;
use support::pg::TestPg;

/// The repository's example migrations.
const EXAMPLE_MIGRATIONS: [(&str, &str); 2] = [
    (
        "migrations/20260101000000_product_tags.sql",
        include_str!("../examples/migrations/20260101000000_product_tags.sql"),
    ),
    (
        "migrations/20260102000000_product_tags_index.sql",
        include_str!("../examples/migrations/20260102000000_product_tags_index.sql"),
    ),
];

/// An env with the example shop database loaded; returns its URL.
fn shop(env: &mut TestEnv, name: &str) -> String {
    let pg = TestPg::shared();
    let db = pg.fresh_db(name);
    pg.load_example(&db);
    env.env("DATABASE_URL", db.clone());
    db
}

/// No password of the test cluster in what opsbook printed (for the runs given a URL holding it).
fn no_password(out: &support::env::Outcome) {
    let pw = TestPg::shared().password();
    assert!(!out.stdout.contains(pw) && !out.stderr.contains(pw), "password in the output:\n{}", out.render());
}

#[test]
fn backup_run_list_verify_prune() {
    let mut env = TestEnv::new();
    shop(&mut env, "snap_backup");
    let store = env.join("store");

    let out = env.run(&["backup", "run", "--store", &store, "--set", "shop"]);
    no_password(&out);
    assert_outcome!("backup_run_human", out);
    let out = env.run(&["backup", "run", "--store", &store, "--set", "shop", "--output", "json"]);
    assert_outcome!("backup_run_json", out);

    assert_outcome!("backup_list_human", env.run(&["backup", "list", "--store", &store]));
    assert_outcome!("backup_list_json", env.run(&["backup", "list", "--store", &store, "--output", "json"]));

    assert_outcome!("backup_verify_human", env.run(&["backup", "verify", "--store", &store, "--set", "shop"]));
    assert_outcome!(
        "backup_verify_json",
        env.run(&["backup", "verify", "--store", &store, "--set", "shop", "--output", "json"])
    );

    let prune = ["backup", "prune", "--store", &store, "--set", "shop", "--keep-last", "1", "--dry-run"];
    assert_outcome!("backup_prune_dry_run_human", env.run(&prune));
    assert_outcome!("backup_prune_dry_run_json", env.run(&[&prune[..], &["--output", "json"]].concat()));
}

#[test]
fn backup_failures() {
    let mut env = TestEnv::new();
    shop(&mut env, "snap_backup_fail");
    let store = env.join("store");
    env.ok(&["backup", "run", "--store", &store, "--set", "shop"]);

    // A store directory that does not exist is an input error, not an empty store.
    let missing = env.join("no-such-store");
    assert_outcome!("backup_list_missing_store_human", env.run(&["backup", "list", "--store", &missing]));
    assert_outcome!(
        "backup_list_missing_store_json",
        env.run(&["backup", "list", "--store", &missing, "--output", "json"])
    );

    // Prune without a policy is refused.
    let prune = ["backup", "prune", "--store", &store, "--set", "shop", "--dry-run"];
    assert_outcome!("backup_prune_no_policy_human", env.run(&prune));
    assert_outcome!("backup_prune_no_policy_json", env.run(&[&prune[..], &["--output", "json"]].concat()));

    // A damaged data object fails verification.
    let data = find_file(&env.path().join("store"), &|name| name.starts_with("data"))
        .unwrap_or_else(|| panic!("no data object in the store"));
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0xff;
    }
    std::fs::write(&data, &bytes).unwrap();
    assert_outcome!("backup_verify_damaged_human", env.run(&["backup", "verify", "--store", &store, "--set", "shop"]));
    assert_outcome!(
        "backup_verify_damaged_json",
        env.run(&["backup", "verify", "--store", &store, "--set", "shop", "--output", "json"])
    );
}

/// The first file under `dir` whose name matches (depth first, sorted).
fn find_file(dir: &std::path::Path, matches: &dyn Fn(&str) -> bool) -> Option<std::path::PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    entries.into_iter().find_map(|path| {
        if path.is_dir() {
            find_file(&path, matches)
        } else {
            matches(&path.file_name().unwrap().to_string_lossy()).then_some(path)
        }
    })
}

#[test]
fn backup_list_tables_at_80_and_120_columns() {
    let mut env = TestEnv::new();
    shop(&mut env, "snap_list_cols");
    let store = env.join("store");
    for set in ["shop", "shop", "analytics"] {
        env.ok(&["backup", "run", "--store", &store, "--set", set]);
    }
    // At 80 columns the time, age and size cells wrap mid-value: their digits are masked.
    env.columns(80);
    assert_outcome!("backup_list_columns_80", env.run(&["backup", "list", "--store", &store]).masking_table_digits());
    env.columns(120);
    assert_outcome!("backup_list_columns_120", env.run(&["backup", "list", "--store", &store]).masking_table_digits());
}

#[test]
fn restore_drill_onto_a_target_url() {
    let mut env = TestEnv::new();
    shop(&mut env, "snap_drill");
    let store = env.join("store");
    env.ok(&["backup", "run", "--store", &store]);
    let admin = TestPg::shared().admin_url();

    let out = env.run(&["restore-drill", "--store", &store, "--target-url", &admin]);
    no_password(&out);
    assert_outcome!("restore_drill_human", out);
    assert_outcome!(
        "restore_drill_json",
        env.run(&["restore-drill", "--store", &store, "--target-url", &admin, "--output", "json"])
    );
}

#[test]
fn restore_into_a_new_database() {
    let mut env = TestEnv::new();
    shop(&mut env, "snap_restore");
    let store = env.join("store");
    env.ok(&["backup", "run", "--store", &store]);
    let pg = TestPg::shared();
    let admin = pg.admin_url();
    // A fixed name (shaped like the harness's, so it is filtered): its width stays the same.
    let into = "t_snap_restored_1_1";
    pg.execute(&admin, &format!("DROP DATABASE IF EXISTS {into} WITH (FORCE)"));
    let restore = ["restore", "--store", &store, "--target-url", &admin, "--into", into];

    let out = env.run(&[&restore[..], &["--dry-run"]].concat());
    no_password(&out);
    assert_outcome!("restore_dry_run_human", out);
    let out = env.run(&restore);
    no_password(&out);
    assert_outcome!("restore_human", out);
    assert_outcome!("restore_existing_human", env.run(&restore));
    pg.execute(&admin, &format!("DROP DATABASE IF EXISTS {into} WITH (FORCE)"));
}

#[test]
fn restore_drill_failures() {
    let env = TestEnv::new();
    let empty = env.join("empty-store");
    std::fs::create_dir_all(&empty).unwrap();
    let admin = TestPg::shared().admin_url();

    assert_outcome!(
        "restore_drill_no_backups_human",
        env.run(&["restore-drill", "--store", &empty, "--target-url", &admin])
    );
    assert_outcome!(
        "restore_drill_no_backups_json",
        env.run(&["restore-drill", "--store", &empty, "--target-url", &admin, "--output", "json"])
    );
    assert_outcome!("restore_drill_no_target_human", env.run(&["restore-drill", "--store", &empty]));
    assert_outcome!("restore_drill_no_target_json", env.run(&["restore-drill", "--store", &empty, "--output", "json"]));
}

/// A backfill after the example migrations. Its pause makes it take 100 ms to 1 s, so the `time`
/// column of `migrate up` is always 6 characters wide (`4.7 ms`, `12 ms` and `150 ms` are 6, 5 and
/// 6): its width no longer depends on whether the other migrations took 9 or 11 ms.
const SLOW_BACKFILL: (&str, &str) = (
    "migrations/20260103000000_backfill_product_tags.sql",
    "UPDATE products SET tags = ARRAY['featured'] WHERE id % 50 = 0;\nSELECT pg_sleep(0.15);\n",
);

#[test]
fn migrate_status_lint_check_up() {
    let mut env = TestEnv::new();
    shop(&mut env, "snap_migrate");
    for (name, sql) in EXAMPLE_MIGRATIONS.into_iter().chain([SLOW_BACKFILL]) {
        env.write(name, sql);
    }

    assert_outcome!("migrate_status_pending_human", env.run(&["migrate", "status"]));
    assert_outcome!("migrate_status_pending_json", env.run(&["migrate", "status", "--output", "json"]));
    assert_outcome!("migrate_check_pending_human", env.run(&["migrate", "check"]));
    assert_outcome!("migrate_check_pending_json", env.run(&["migrate", "check", "--output", "json"]));
    assert_outcome!("migrate_lint_clean_human", env.run(&["migrate", "lint"]));
    assert_outcome!("migrate_lint_clean_json", env.run(&["migrate", "lint", "--output", "json"]));

    let out = env.run(&["migrate", "up"]);
    no_password(&out);
    assert_outcome!("migrate_up_human", out);
    assert_outcome!("migrate_up_again_json", env.run(&["migrate", "up", "--output", "json"]));
    assert_outcome!("migrate_status_applied_human", env.run(&["migrate", "status"]));
    assert_outcome!("migrate_check_applied_json", env.run(&["migrate", "check", "--output", "json"]));
}

#[test]
fn migrate_up_json_and_lint_errors() {
    let mut env = TestEnv::new();
    shop(&mut env, "snap_migrate_json");
    for (name, sql) in EXAMPLE_MIGRATIONS {
        env.write(name, sql);
    }
    assert_outcome!("migrate_up_json", env.run(&["migrate", "up", "--output", "json"]));

    // The same migrations, then a blocking index build and a NOT NULL column without a default.
    for (name, sql) in EXAMPLE_MIGRATIONS {
        env.write(&name.replace("migrations/", "unsafe/"), sql);
    }
    env.write(
        "unsafe/20260201000000_orders_index.sql",
        "CREATE INDEX orders_created_idx ON orders (created_at);\nALTER TABLE orders ADD COLUMN note text NOT NULL;\n",
    );
    let lint = ["migrate", "lint", "--migrations", "unsafe"];
    assert_outcome!("migrate_lint_errors_human", env.run(&lint));
    assert_outcome!("migrate_lint_errors_json", env.run(&[&lint[..], &["--output", "json"]].concat()));
    // up refuses a pending migration with lint errors.
    assert_outcome!("migrate_up_lint_errors_human", env.run(&["migrate", "up", "--migrations", "unsafe"]));
    assert_outcome!(
        "migrate_up_lint_errors_json",
        env.run(&["migrate", "up", "--migrations", "unsafe", "--output", "json"])
    );
}

const GOOD_JWT: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

#[test]
fn promote_check_secrets_and_environment() {
    let env = TestEnv::new();
    env.write(
        "opsbook.toml",
        "[profiles.default.promote]\nenvironment = \"staging\"\nrequired_env = [\"API_URL\", \"SMTP_PASSWORD\"]\n",
    );
    let check = ["promote-check", "--env-file", ".env", "--only", "jwt-secret,required-env"];

    env.write(
        ".env",
        &format!("JWT_SECRET={GOOD_JWT}\nAPI_URL=https://api.shop.example\nSMTP_PASSWORD=Zq8-vT3k-pL0x\n"),
    );
    assert_outcome!("promote_check_good_human", env.run(&check));
    assert_outcome!("promote_check_good_json", env.run(&[&check[..], &["--output", "json"]].concat()));

    env.write(".env", "JWT_SECRET=changeme\nAPI_URL=\nSMTP_PASSWORD=changeme\n");
    let out = env.run(&check);
    assert!(!out.stdout.contains("changeme") && !out.stderr.contains("changeme"), "{}", out.render());
    assert_outcome!("promote_check_weak_human", out);
    assert_outcome!("promote_check_weak_json", env.run(&[&check[..], &["--output", "json"]].concat()));
}

const PASSING_RUNBOOK: &str = r#"name = "greet"
description = "Says hello twice"

[[steps]]
id = "hello"
action = "shell"
with = { command = "echo hello" }

[[steps]]
id = "again"
action = "shell"
with = { command = "echo hello again" }
"#;

const FAILING_RUNBOOK: &str = r#"name = "nightly-check"
description = "A shell step, then a step that fails, then one that never runs"

[[steps]]
id = "prepare"
action = "shell"
with = { command = "echo preparing the nightly check" }

[[steps]]
id = "needs-flag"
action = "shell"
with = { command = "echo 'the flag file is missing' >&2; test -f flag" }

[[steps]]
id = "report"
action = "shell"
with = { command = "echo all done" }
"#;

#[test]
fn run_a_tiny_runbook() {
    let mut env = TestEnv::new();
    let ok = env.write("greet.toml", PASSING_RUNBOOK).display().to_string();
    let failing = env.write("nightly.toml", FAILING_RUNBOOK).display().to_string();

    assert_outcome!("run_ok_human", env.run(&["run", &ok]));
    assert_outcome!("run_failed_json", env.run(&["run", &failing, "--output", "json"]));
    env.columns(80);
    assert_outcome!("run_failed_columns_80", env.run(&["run", &failing]));
    env.columns(120);
    assert_outcome!("run_failed_columns_120", env.run(&["run", &failing]));
}

const BACKUP_AND_MIGRATE_RUNBOOK: &str = r#"name = "deploy"
description = "Back up, apply the migrations, check them"

[[steps]]
id = "backup"
action = "backup"
with = { store = "store", set = "shop" }

[[steps]]
id = "pending"
action = "migrate"
with = { mode = "check", allow_pending = true, migrations = "migrations" }

[[steps]]
id = "migrate"
action = "migrate"
with = { migrations = "migrations" }

[[steps]]
id = "check"
action = "migrate"
with = { mode = "check", migrations = "migrations" }
"#;

#[test]
fn run_a_runbook_that_backs_up_and_migrates() {
    let mut env = TestEnv::new();
    shop(&mut env, "snap_run_deploy");
    for (name, sql) in EXAMPLE_MIGRATIONS {
        env.write(name, sql);
    }
    let runbook = env.write("deploy.toml", BACKUP_AND_MIGRATE_RUNBOOK).display().to_string();
    // At 80 columns each output of the backup step wraps onto a line of its own, so the width of
    // the raw `duration_seconds` (9 or 10 decimals) cannot change the table's.
    env.columns(80);
    let out = env.run(&["run", &runbook]);
    no_password(&out);
    assert_outcome!("run_backup_and_migrate_columns_80", out);
}

#[test]
fn runbook_validate_an_invalid_runbook() {
    let env = TestEnv::new();
    let bad = env.write(
        "bad.toml",
        "name = \"bad\"\n\n[[steps]]\nid = \"one\"\naction = \"teleport\"\n\n[[steps]]\nid = \"two\"\naction = \"shell\"\nwith = { command = \"echo ${params.missing}\" }\n",
    );
    let bad = bad.display().to_string();
    assert_outcome!("runbook_validate_invalid_human", env.run(&["runbook", "validate", &bad]));
    assert_outcome!("runbook_validate_invalid_json", env.run(&["runbook", "validate", &bad, "--output", "json"]));
}

#[test]
fn usage_errors_and_an_unreachable_database() {
    let env = TestEnv::new();
    let store = env.join("store");

    assert_outcome!("usage_unknown_flag", env.run(&["backup", "run", "--no-such-flag"]));
    assert_outcome!("usage_unknown_flag_json", env.run(&["backup", "run", "--no-such-flag", "--output", "json"]));

    let bad_url = ["backup", "run", "--database-url", "mysql://app@db.internal/shop", "--store", &store];
    assert_outcome!("usage_bad_database_url", env.run(&bad_url));
    assert_outcome!("usage_bad_database_url_json", env.run(&[&bad_url[..], &["--output", "json"]].concat()));

    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://app:pa55-w0rd-x@127.0.0.1:{port}/shop");
    let unreachable = ["backup", "run", "--database-url", &url, "--store", &store];
    let out = env.run(&unreachable);
    assert!(!out.render().contains("pa55-w0rd-x"), "{}", out.render());
    assert_outcome!("unreachable_database", out);
    assert_outcome!("unreachable_database_json", env.run(&[&unreachable[..], &["--output", "json"]].concat()));
}
