//! Secrets never leak, whatever the output: the quickstart's sandbox password and a URL
//! parameter's password reach no byte of stdout, stderr (also at -vvv), the JSON report, the
//! journal, the audit log or any other file of the state directory; weak secrets neither leak nor
//! corrupt identifiers (check ids, set names, object keys, table headers).

mod support;

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use support::cmd::{all_output, code, json, opsbook};
use support::pg::TestPg;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir`, with the number of times `needle` appears in it.
fn hits_in_files(dir: &Path, needle: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                let n = String::from_utf8_lossy(&bytes).matches(needle).count();
                if n > 0 {
                    found.push((path.display().to_string(), n));
                }
            }
        }
    }
    found
}

fn assert_nowhere(password: &str, outputs: &[&Output], state: &Path) {
    for out in outputs {
        let text = all_output(out);
        assert!(!text.contains(password), "the password reached the output:\n{text}");
    }
    let files = hits_in_files(state, password);
    assert!(files.is_empty(), "the password reached files of the state directory: {files:?}");
    assert!(std::fs::read_dir(state.join("runs")).unwrap().count() > 0, "the runs wrote journals");
    assert!(state.join("audit.jsonl").is_file(), "the runs wrote the audit log");
}

#[test]
fn the_quickstart_leaks_the_sandbox_password_nowhere() {
    let state = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let sandbox = other.path().join("sandbox");
    let quickstart = |args: &[&str]| {
        opsbook(state.path())
            .env("OPSBOOK_SANDBOX_DIR", &sandbox)
            .arg("run")
            .arg(repo().join("runbooks/quickstart.toml"))
            .args(args)
            .output()
            .unwrap()
    };
    let human = quickstart(&["-vvv"]);
    assert_eq!(code(&human), 0, "{}", all_output(&human));
    let env = std::fs::read_to_string(sandbox.join("env")).unwrap();
    let url = env.lines().find_map(|l| l.strip_prefix("DATABASE_URL=")).expect("sandbox env has DATABASE_URL");
    let url = url.trim_matches(|c| c == '\'' || c == '"');
    let password = url::Url::parse(url).unwrap().password().expect("the sandbox URL has a password").to_string();
    assert!(password.len() >= 12, "a generated password: {password}");
    let report = quickstart(&["--output", "json", "-vvv", "--param", "teardown=true"]);
    assert_eq!(code(&report), 0, "{}", all_output(&report));
    let doc = json(&report);
    let sandbox_step = doc["steps"].as_array().unwrap().iter().find(|s| s["id"] == "sandbox").unwrap();
    assert!(
        sandbox_step["outputs"]["database_url"].as_str().unwrap().contains(":***@127.0.0.1"),
        "the URL stays, its password masked: {doc:#}"
    );
    assert_nowhere(&password, &[&human, &report], state.path());
}

#[test]
fn a_url_parameter_keeps_its_password_out_of_every_sink() {
    let state = tempfile::tempdir().unwrap();
    let password = "Url-param-pw-8c1f";
    let target = format!("postgres://app:{password}@127.0.0.1:1/shop");
    let rb = state.path().join("url.toml");
    std::fs::write(
        &rb,
        r#"
name = "url-param"
[params.target]
type = "url"
[[steps]]
id = "show"
action = "shell"
with = { command = "echo target=${params.target}; echo also=${params.target} >&2" }
[[steps]]
id = "connect"
action = "sql"
with = { database_url = "${params.target}", query = "SELECT 1" }
"#,
    )
    .unwrap();
    let run = |extra: &[&str]| {
        opsbook(state.path())
            .args(["run", rb.to_str().unwrap(), "--param", &format!("target={target}")])
            .args(extra)
            .output()
            .unwrap()
    };
    let human = run(&[]);
    let verbose = run(&["-vvv"]);
    let report = run(&["--output", "json", "-vvv"]);
    for out in [&human, &verbose, &report] {
        assert_eq!(code(out), 3, "the unreachable database is a dependency failure: {}", all_output(out));
    }
    let doc = json(&report);
    assert_eq!(doc["steps"][0]["outputs"]["stdout"], "target=postgres://app:***@127.0.0.1:1/shop", "{doc:#}");
    assert_nowhere(password, &[&human, &verbose, &report], state.path());
}

/// The promote-check JSON of a weak JWT secret, with the secret itself replaced by `MASK`.
fn jwt_check(dir: &Path, jwt: &str) -> (i32, Value, String) {
    std::fs::write(dir.join(".env"), format!("JWT_SECRET={jwt}\n")).unwrap();
    let json_out = opsbook(dir)
        .args(["promote-check", "--env-file", ".env", "--only", "jwt-secret", "--output", "json"])
        .output()
        .unwrap();
    let human = opsbook(dir).args(["promote-check", "--env-file", ".env", "--only", "jwt-secret"]).output().unwrap();
    (code(&json_out), json(&json_out), all_output(&human))
}

#[test]
fn weak_secrets_fail_their_check_without_corrupting_identifiers() {
    let dir = tempfile::tempdir().unwrap();
    let (_, reference, reference_human) = jwt_check(dir.path(), "xyzzy-qqqq");
    let reference = &reference["checks"][0];
    for weak in ["secret", "admin", "shop", "1234"] {
        let (c, doc, human) = jwt_check(dir.path(), weak);
        let check = &doc["checks"][0];
        assert_eq!((c, check["status"].as_str()), (1, Some("fail")), "{weak}: {doc:#}");
        for field in ["id", "title", "fix"] {
            assert_eq!(check[field], reference[field], "{weak}: {field} altered: {doc:#}");
        }
        assert!(!doc.to_string().contains(&format!("={weak}")), "{weak} printed: {doc:#}");
        assert!(human.contains("jwt-secret"), "{weak}: the check id in the table:\n{human}");
        let header = |text: &str| text.lines().find(|l| l.contains("evidence")).map(str::to_string);
        assert_eq!(header(&human), header(&reference_human), "{weak}: table header");
    }
}

#[test]
fn a_weak_database_password_leaves_set_names_and_keys_exact() {
    let pg = TestPg::shared();
    let db = pg.fresh_db("weakpw");
    pg.load_example(&db);
    pg.execute(&db, "DO $$ BEGIN CREATE ROLE weakpw LOGIN SUPERUSER PASSWORD 'admin'; EXCEPTION WHEN duplicate_object THEN NULL; END $$");
    let mut url = url::Url::parse(&db).unwrap();
    url.set_username("weakpw").unwrap();
    url.set_password(Some("admin")).unwrap();
    let state = tempfile::tempdir().unwrap();
    let store = state.path().join("store");
    let backup = |set: &str| {
        opsbook(state.path())
            .env("DATABASE_URL", url.as_str())
            .args(["backup", "run", "--store", store.to_str().unwrap(), "--set", set, "--output", "json"])
            .output()
            .unwrap()
    };
    let out = backup("administration");
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let doc = json(&out);
    assert_eq!(doc["set"], "administration", "{doc:#}");
    let keys: Vec<&str> = doc["backup"]["objects"]
        .as_array()
        .map(|o| o.iter().filter_map(|o| o["key"].as_str()).collect())
        .unwrap_or_default();
    assert!(!keys.is_empty() && keys.iter().all(|k| k.contains("administration/")), "{doc:#}");
    assert!(!all_output(&out).contains(":admin@"), "{}", all_output(&out));

    // A set named after the password could only be printed by showing it: refused up front.
    let out = backup("admin");
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("set name"), "{}", all_output(&out));
    assert!(!store.join("admin").exists(), "nothing written for the refused set");
}
