//! The `sql`, `http`, `shell`, `wait` and `notify` runbook actions, called through the library
//! (`opsbook::runbook::actions::run`) against a real PostgreSQL, a real HTTP server and real
//! child processes.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use opsbook::config::Config;
use opsbook::error::{Classify, ErrorClass};
use opsbook::runbook::actions::{self, ActionCtx, ActionError, Interaction, Outputs};
use serde_json::{json, Value};
use support::http::HttpPeer;
use support::pg::TestPg;

/// A person who is never there: the actions under test must not ask anything.
struct NoPrompt;

impl Interaction for NoPrompt {
    fn can_prompt(&self) -> bool {
        false
    }
    fn confirm(&self, question: &str) -> bool {
        panic!("unexpected confirm: {question}")
    }
    fn type_name(&self, prompt: &str, _expected: &str) -> bool {
        panic!("unexpected type_name: {prompt}")
    }
    fn ask(&self, prompt: &str, _secret: bool) -> Option<String> {
        panic!("unexpected ask: {prompt}")
    }
}

/// How a test runs an action.
struct Env {
    config: Config,
    dry_run: bool,
    base_dir: PathBuf,
}

impl Env {
    fn new() -> Env {
        Env { config: Config::default(), dry_run: false, base_dir: std::env::temp_dir() }
    }

    fn dry() -> Env {
        Env { dry_run: true, ..Env::new() }
    }

    fn in_dir(dir: &Path) -> Env {
        Env { base_dir: dir.to_path_buf(), ..Env::new() }
    }

    async fn run(&self, action: &str, with: Value) -> Result<Outputs, ActionError> {
        let ctx = ActionCtx {
            config: &self.config,
            dry_run: self.dry_run,
            assume_yes: false,
            acks: &[],
            reporter: &opsbook::report::Silent,
            interaction: &NoPrompt,
            base_dir: self.base_dir.clone(),
            step_id: "step-1",
            run_id: "run-abc",
        };
        actions::run(action, with, &ctx).await
    }

    async fn ok(&self, action: &str, with: Value) -> Outputs {
        match self.run(action, with.clone()).await {
            Ok(out) => out,
            Err(e) => panic!("{action} {with} failed: {e:?}"),
        }
    }
}

/// The message of an error of `class`.
fn error_of(class: ErrorClass, result: Result<Outputs, ActionError>) -> String {
    match result {
        Err(e) if e.class() == class => e.to_string(),
        other => panic!("expected a {class:?} error, got {other:?}"),
    }
}

fn failed(result: Result<Outputs, ActionError>) -> String {
    error_of(ErrorClass::Failed, result)
}

fn unavailable(result: Result<Outputs, ActionError>) -> String {
    error_of(ErrorClass::Unavailable, result)
}

fn input_error(result: Result<Outputs, ActionError>) -> String {
    error_of(ErrorClass::Usage, result)
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A database with the example shop loaded.
fn shop_db(prefix: &str) -> String {
    let pg = TestPg::shared();
    let url = pg.fresh_db(prefix);
    pg.load_example(&url);
    url
}

// --- sql ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn sql_outputs_and_expectations() {
    let url = shop_db("sql_outputs");
    let env = Env::new();

    let out = env
        .ok(
            "sql",
            json!({"database_url": url, "query": "SELECT count(*) AS n FROM customers", "expect": {"value": "500"}}),
        )
        .await;
    assert_eq!(out["rows"], json!(1));
    assert_eq!(out["value"], json!("500"));
    assert_eq!(out["columns"], json!(["n"]));

    let out = env
        .ok(
            "sql",
            json!({"database_url": url, "query": "SELECT id, email FROM customers WHERE country = 'DE' ORDER BY id",
                   "expect": {"rows": 50, "rows_min": 10}}),
        )
        .await;
    assert_eq!(out["rows"], json!(50));
    assert_eq!(out["value"], json!("10"));
    assert_eq!(out["columns"], json!(["id", "email"]));

    // Text forms of other types: numeric, boolean, NULL, no rows.
    let out = env.ok("sql", json!({"database_url": url, "query": "SELECT 12.50::numeric(6,2), true"})).await;
    assert_eq!(out["value"], json!("12.50"));
    let out =
        env.ok("sql", json!({"database_url": url, "query": "SELECT count(*) > 0 FROM orders", "expect": true})).await;
    assert_eq!(out["value"], json!("true"));
    let out = env.ok("sql", json!({"database_url": url, "query": "SELECT NULL::int"})).await;
    assert_eq!(out["value"], Value::Null);
    let out = env
        .ok("sql", json!({"database_url": url, "query": "SELECT 1 FROM customers WHERE false", "expect": {"rows": 0}}))
        .await;
    assert_eq!((out["rows"].clone(), out["value"].clone()), (json!(0), Value::Null));

    // Statements that change rows count the rows they changed.
    let out = env
        .ok(
            "sql",
            json!({"database_url": url, "query": "UPDATE products SET stock = stock + 1 WHERE id <= 7", "expect": {"rows": 7}}),
        )
        .await;
    assert_eq!(out["rows"], json!(7));

    // Expectations that do not hold say what was expected and what came back.
    let msg = failed(
        env.run(
            "sql",
            json!({"database_url": url, "query": "SELECT count(*) FROM staff_users", "expect": {"value": "4"}}),
        )
        .await,
    );
    assert!(msg.contains("expected value `4`") && msg.contains("got `3`"), "{msg}");
    let msg = failed(
        env.run("sql", json!({"database_url": url, "query": "SELECT * FROM staff_users", "expect": {"rows": 5}})).await,
    );
    assert!(msg.contains("expected 5 rows, got 3"), "{msg}");
    let msg = failed(
        env.run("sql", json!({"database_url": url, "query": "SELECT * FROM staff_users", "expect": {"rows_min": 4}}))
            .await,
    );
    assert!(msg.contains("expected at least 4 rows, got 3"), "{msg}");
    let msg = failed(
        env.run(
            "sql",
            json!({"database_url": url, "query": "SELECT count(*) FROM staff_users WHERE false", "expect": true}),
        )
        .await,
    );
    assert!(msg.contains("expected true") && msg.contains("got `0`"), "{msg}");
    assert!(!msg.contains(TestPg::shared().password()), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_file_with_several_statements_and_default_database() {
    let url = shop_db("sql_file");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sql")).unwrap();
    std::fs::write(
        dir.path().join("sql/audit.sql"),
        "-- several statements in one file\nCREATE TABLE audit (n int);\nBEGIN;\n\
         INSERT INTO audit SELECT generate_series(1, 4);\nCOMMIT;\n",
    )
    .unwrap();
    let mut env = Env::in_dir(dir.path());
    env.config.profile.database_url = Some(url.clone());

    // `file` resolves against the runbook directory; no database_url: the profile's.
    let out = env.ok("sql", json!({"file": "sql/audit.sql", "expect": {"rows": 4}})).await;
    assert_eq!(out["rows"], json!(4), "the INSERT, not the trailing COMMIT");
    assert_eq!(TestPg::shared().query_i64(&url, "SELECT count(*) FROM audit"), 4);

    let out = env.ok("sql", json!({"query": "SELECT 'a'; SELECT 'b' AS second"})).await;
    assert_eq!((out["value"].clone(), out["columns"].clone()), (json!("b"), json!(["second"])));

    let msg = input_error(env.run("sql", json!({"file": "sql/missing.sql"})).await);
    assert!(msg.contains("missing.sql"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_errors_name_query_and_database_without_password() {
    let pg = TestPg::shared();
    let url = shop_db("sql_errors");
    let env = Env::new();

    let msg = failed(
        env.run("sql", json!({"database_url": url, "query": "SELECT * FROM no_such_table\nWHERE id = 1"})).await,
    );
    assert!(msg.contains("SELECT * FROM no_such_table"), "{msg}");
    assert!(msg.contains("does not exist") && msg.contains("42P01"), "{msg}");
    assert!(msg.contains(&format!(":{}/", pg.port())) && msg.contains("***"), "{msg}");
    assert!(!msg.contains(pg.password()), "{msg}");

    let down = url.replace(&format!(":{}/", pg.port()), &format!(":{}/", closed_port()));
    let msg = unavailable(env.run("sql", json!({"database_url": down, "query": "SELECT 1"})).await);
    assert!(!msg.contains(pg.password()), "{msg}");

    input_error(env.run("sql", json!({"database_url": url})).await);
    input_error(env.run("sql", json!({"database_url": url, "query": "SELECT 1", "file": "x.sql"})).await);
    input_error(env.run("sql", json!({"database_url": url, "query": "SELECT 1", "expect": {"rowz": 1}})).await);
    input_error(env.run("sql", json!({"database_url": url, "query": "SELECT 1", "bogus": 1})).await);
    input_error(env.run("sql", json!({"database_url": "mysql://x", "query": "SELECT 1"})).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_dry_run_changes_nothing() {
    let pg = TestPg::shared();
    let url = shop_db("sql_dry");
    let before = pg.query_i64(&url, "SELECT count(*) FROM customers");
    let out = Env::dry()
        .ok(
            "sql",
            json!({"database_url": url,
                   "query": "INSERT INTO customers (email, full_name, country) VALUES ('dry@example.com', 'Dry Run', 'DE')",
                   "expect": {"rows": 1}}),
        )
        .await;
    assert_eq!(out["dry_run"], json!(true));
    let would = out["would"].as_str().unwrap();
    assert!(would.contains("INSERT INTO customers") && !would.contains(pg.password()), "{would}");
    assert_eq!(pg.query_i64(&url, "SELECT count(*) FROM customers"), before);
}

// --- http --------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn http_expectations_pass_and_outputs() {
    let peer = HttpPeer::start();
    peer.respond("/health", 200, &[("X-App-Version", "1.4.2"), ("Content-Type", "application/json")], r#"{"ok":true}"#);
    let env = Env::new();

    let out = env
        .ok(
            "http",
            json!({"url": peer.url("/health"), "expect_body_contains": "\"ok\":true",
                   "expect_header": {"x-app-version": "1.4", "CONTENT-TYPE": "json"}}),
        )
        .await;
    assert_eq!(out["status"], json!(200));
    assert_eq!(out["body"], json!(r#"{"ok":true}"#));
    assert_eq!(out["headers"]["x-app-version"], json!("1.4.2"));
    assert!(out["duration_ms"].is_u64());

    // POST with a JSON body and headers; a list of acceptable statuses.
    peer.respond("/deploy", 201, &[], "created");
    let out = env
        .ok(
            "http",
            json!({"url": peer.url("/deploy"), "method": "post", "json": {"ref": "v1.4.2"},
                   "headers": {"X-Trace": "t-1"}, "expect_status": [200, 201]}),
        )
        .await;
    assert_eq!(out["status"], json!(201));
    let got = peer.received_at("/deploy").pop().unwrap();
    assert_eq!(got.method, "POST");
    assert_eq!(serde_json::from_str::<Value>(&got.body).unwrap(), json!({"ref": "v1.4.2"}));
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.header("x-trace"), Some("t-1"));

    // An expected non-2xx.
    peer.respond("/gone", 410, &[], "");
    let out = env.ok("http", json!({"url": peer.url("/gone"), "expect_status": "4xx"})).await;
    assert_eq!(out["status"], json!(410));
}

#[tokio::test(flavor = "multi_thread")]
async fn http_expectations_fail_with_expected_and_got() {
    let peer = HttpPeer::start();
    peer.respond("/down", 503, &[], &format!("maintenance {}", "x".repeat(1000)));
    peer.respond("/page", 200, &[("X-App-Version", "1.3.0")], "hello world");
    let env = Env::new();

    let msg = failed(env.run("http", json!({"url": peer.url("/down")})).await);
    assert!(msg.contains("expected status 2xx, got 503") && msg.contains("maintenance"), "{msg}");
    assert!(msg.len() < 450, "body excerpt is bounded: {msg}");

    let msg = failed(env.run("http", json!({"url": peer.url("/page"), "expect_status": 204})).await);
    assert!(msg.contains("expected status 204, got 200"), "{msg}");

    let msg = failed(env.run("http", json!({"url": peer.url("/page"), "expect_body_contains": "goodbye"})).await);
    assert!(msg.contains("`goodbye`") && msg.contains("hello world"), "{msg}");

    let msg =
        failed(env.run("http", json!({"url": peer.url("/page"), "expect_header": {"x-app-version": "1.4"}})).await);
    assert!(msg.contains("x-app-version") && msg.contains("`1.4`") && msg.contains("1.3.0"), "{msg}");

    let msg = failed(env.run("http", json!({"url": peer.url("/page"), "expect_header": {"x-missing": ""}})).await);
    assert!(msg.contains("no x-missing header"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn http_bearer_token_is_sent_and_never_shown() {
    let token = format!("tok-{}-s3cr3t", std::process::id());
    let var = "OPSBOOK_TEST_RUNBOOK_HTTP_TOKEN";
    std::env::set_var(var, &token);
    let peer = HttpPeer::start();
    // A server that echoes the token back in an error body.
    peer.respond(
        "/denied",
        401,
        &[("WWW-Authenticate", &format!("Bearer error=\"{token}\""))],
        &format!("bad token {token}"),
    );
    let env = Env::new();

    env.ok("http", json!({"url": peer.url("/ok"), "bearer_token_env": var})).await;
    let got = peer.received_at("/ok").pop().unwrap();
    assert_eq!(got.header("authorization"), Some(format!("Bearer {token}").as_str()));

    let msg = failed(env.run("http", json!({"url": peer.url("/denied"), "bearer_token_env": var})).await);
    assert!(msg.contains("401") && !msg.contains(&token), "{msg}");
    let msg = failed(
        env.run(
            "http",
            json!({"url": peer.url("/denied"), "bearer_token_env": var, "expect_status": 401,
                               "expect_header": {"www-authenticate": "nope"}}),
        )
        .await,
    );
    assert!(!msg.contains(&token), "{msg}");
    let msg = unavailable(
        env.run("http", json!({"url": format!("http://127.0.0.1:{}/x", closed_port()), "bearer_token_env": var})).await,
    );
    assert!(!msg.contains(&token), "{msg}");

    let msg = input_error(
        env.run("http", json!({"url": peer.url("/ok"), "bearer_token_env": "OPSBOOK_TEST_UNSET_VAR"})).await,
    );
    assert!(msg.contains("OPSBOOK_TEST_UNSET_VAR"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn http_unreachable_slow_and_dry_run() {
    let env = Env::new();
    let msg = unavailable(env.run("http", json!({"url": format!("http://127.0.0.1:{}/", closed_port())})).await);
    assert!(msg.contains("cannot connect"), "{msg}");

    let peer = HttpPeer::start();
    peer.delay("/slow", Duration::from_secs(5));
    let started = Instant::now();
    let msg = unavailable(env.run("http", json!({"url": peer.url("/slow"), "timeout": "300ms"})).await);
    assert!(msg.contains("no answer within 300ms"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(3));

    let out = Env::dry().ok("http", json!({"url": peer.url("/hook"), "method": "DELETE"})).await;
    assert_eq!(out["would"], json!(format!("DELETE {}", peer.url("/hook"))));
    assert!(peer.received_at("/hook").is_empty(), "a dry run sends nothing");

    input_error(env.run("http", json!({"url": "ftp://example.com/"})).await);
    input_error(env.run("http", json!({"url": peer.url("/"), "timeout": "soon"})).await);
    input_error(env.run("http", json!({"url": peer.url("/"), "body": "a", "json": {}})).await);
}

// --- shell -------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn shell_runs_and_captures() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("work")).unwrap();
    let env = Env::in_dir(dir.path());

    let out = env.ok("shell", json!({"command": "echo '  hello '; echo warn >&2"})).await;
    assert_eq!(out["exit_code"], json!(0));
    assert_eq!(out["stdout"], json!("hello"));
    assert_eq!(out["stderr"], json!("warn\n"));

    // The default working directory is the runbook's.
    let out = env.ok("shell", json!({"command": "pwd -P"})).await;
    assert_eq!(out["stdout"], json!(dir.path().canonicalize().unwrap().display().to_string()));

    // env and a cwd relative to the runbook directory.
    let out = env
        .ok("shell", json!({"command": "printf '%s:%s' \"$GREETING\" \"$(basename \"$PWD\")\"", "env": {"GREETING": "hi"}, "cwd": "work"}))
        .await;
    assert_eq!(out["stdout"], json!("hi:work"));

    // argv runs without a shell: no word splitting, no expansion.
    let out = env.ok("shell", json!({"argv": ["printf", "%s|", "a b", "$HOME"]})).await;
    assert_eq!(out["stdout"], json!("a b|$HOME|"));

    let out = env.ok("shell", json!({"command": "echo quiet; exit 3", "expect_exit": [0, 3], "capture": false})).await;
    assert_eq!(out["exit_code"], json!(3));
    assert!(out.get("stdout").is_none());

    // Large output is bounded.
    let out = env.ok("shell", json!({"command": "head -c 200000 /dev/zero | tr '\\0' x"})).await;
    assert_eq!(out["stdout"].as_str().unwrap().len(), 64 * 1024);
    assert_eq!(out["stdout_truncated"], json!(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_failures() {
    let env = Env::new();
    let msg = failed(env.run("shell", json!({"command": "echo started; echo 'disk full' >&2; exit 4"})).await);
    assert!(msg.contains("exited with 4") && msg.contains("expected 0") && msg.contains("disk full"), "{msg}");

    let msg = failed(env.run("shell", json!({"argv": ["true"], "expect_exit": 1})).await);
    assert!(msg.contains("exited with 0 (expected 1)"), "{msg}");

    let msg = unavailable(env.run("shell", json!({"argv": ["opsbook-no-such-program-x", "--help"]})).await);
    assert!(msg.contains("not found"), "{msg}");
    let msg = unavailable(env.run("shell", json!({"command": "opsbook-no-such-program-x --help"})).await);
    assert!(msg.contains("127"), "{msg}");

    failed(env.run("shell", json!({"command": "true", "cwd": "/nonexistent/opsbook-dir"})).await);
    input_error(env.run("shell", json!({"command": "true", "argv": ["true"]})).await);
    input_error(env.run("shell", json!({"argv": []})).await);
    input_error(env.run("shell", json!({"command": "true", "timeout": "1s"})).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_dry_run_does_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("created");
    let out = Env::dry().ok("shell", json!({"command": format!("touch {}", marker.display())})).await;
    assert_eq!(out["dry_run"], json!(true));
    assert!(out["would"].as_str().unwrap().contains("touch"), "{out:?}");
    assert!(!marker.exists(), "a dry run must not run the command");
    Env::dry().ok("shell", json!({"argv": ["touch", marker.display().to_string()]})).await;
    assert!(!marker.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_child_and_its_group_die_when_the_step_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let env = Env::in_dir(dir.path());
    let run = env.run("shell", json!({"command": "sleep 60 & echo $! > bg.pid; echo $$ > sh.pid; wait"}));
    assert!(tokio::time::timeout(Duration::from_millis(1500), run).await.is_err(), "still running");
    let read_pid = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap().trim().parse::<i32>().unwrap();
    for pid in [read_pid("sh.pid"), read_pid("bg.pid")] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // Gone, or a zombie waiting for a parent to reap it.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(')').next().unwrap_or("").trim().chars().next();
            if stat.is_empty() || state == Some('Z') {
                break;
            }
            assert!(Instant::now() < deadline, "process {pid} still running: {stat}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// --- wait --------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn wait_duration_and_dry_run() {
    let started = Instant::now();
    let out = Env::new().ok("wait", json!({"duration": "300ms"})).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(out["waited_ms"].as_u64().unwrap() >= 300, "{out:?}");

    let started = Instant::now();
    let out = Env::dry().ok("wait", json!({"duration": "10m"})).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(out["would"], json!("wait 10m"));

    input_error(Env::new().run("wait", json!({"duration": "1s", "until_http": "http://127.0.0.1:1/"})).await);
    input_error(Env::new().run("wait", json!({})).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_until_http_polls_until_2xx() {
    let peer = HttpPeer::start();
    peer.respond("/ready", 503, &[], "starting");
    let env = Env::new();
    let flip = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        peer.respond("/ready", 200, &[], "ok");
    };
    let (result, ()) = tokio::join!(
        env.run("wait", json!({"until_http": peer.url("/ready"), "interval": "100ms", "timeout": "10s"})),
        flip
    );
    let out = result.unwrap();
    assert!(out["waited_ms"].as_u64().unwrap() >= 700, "{out:?}");
    assert!(out["attempts"].as_u64().unwrap() >= 3, "{out:?}");
    assert!(peer.received_at("/ready").len() >= 3);

    // Never ready: gives up after the timeout with the last answer.
    peer.respond("/never", 503, &[], "still starting");
    let started = Instant::now();
    let msg = failed(
        env.run("wait", json!({"until_http": peer.url("/never"), "interval": "100ms", "timeout": "600ms"})).await,
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(msg.contains("gave up after 600ms") && msg.contains("503") && msg.contains("still starting"), "{msg}");

    // A server that is down counts as not ready yet.
    let msg = failed(
        env.run(
            "wait",
            json!({"until_http": format!("http://127.0.0.1:{}/", closed_port()), "interval": "100ms", "timeout": "300ms"}),
        )
        .await,
    );
    assert!(msg.contains("cannot connect"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_until_sql_returns_true() {
    let pg = TestPg::shared();
    let url = pg.fresh_db("wait_sql");
    pg.execute(
        &url,
        "CREATE TABLE migration_state (done boolean NOT NULL); INSERT INTO migration_state VALUES (false);",
    );
    let flip_url = url.clone();
    let flip = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(600));
        TestPg::shared().execute(&flip_url, "UPDATE migration_state SET done = true");
    });
    let out = Env::new()
        .ok(
            "wait",
            json!({"until_sql": "SELECT done FROM migration_state", "database_url": url, "interval": "100ms", "timeout": "20s"}),
        )
        .await;
    flip.await.unwrap();
    assert!(out["waited_ms"].as_u64().unwrap() >= 500, "{out:?}");

    let msg = failed(
        Env::new()
            .run(
                "wait",
                json!({"until_sql": "SELECT count(*) FROM migration_state WHERE NOT done", "database_url": url,
                                "interval": "100ms", "timeout": "400ms"}),
            )
            .await,
    );
    assert!(msg.contains("returned `0`"), "{msg}");
}

// --- notify ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn notify_posts_the_payload() {
    let peer = HttpPeer::start();
    let env = Env::new();
    let secret = format!("notify-secret-{}", std::process::id());
    opsbook::redact::register(&secret);

    let out = env
        .ok(
            "notify",
            json!({"url": peer.url("/hooks/ops"), "message": format!("restore drill passed (key {secret})"),
                   "data": {"channel": "#ops", "rows": 500}, "headers": {"X-Team": "ops"}}),
        )
        .await;
    assert_eq!(out["status"], json!(200));
    let got = peer.received_at("/hooks/ops").pop().unwrap();
    assert_eq!(got.method, "POST");
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.header("x-team"), Some("ops"));
    let payload: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(
        payload,
        json!({"text": "restore drill passed (key ***)", "runbook_step": "step-1", "run_id": "run-abc",
               "channel": "#ops", "rows": 500})
    );

    peer.respond("/hooks/broken", 500, &[], "invalid_token");
    let msg = failed(env.run("notify", json!({"url": peer.url("/hooks/broken"), "message": "x"})).await);
    assert!(msg.contains("500") && msg.contains("invalid_token"), "{msg}");
    unavailable(
        env.run("notify", json!({"url": format!("http://127.0.0.1:{}/", closed_port()), "message": "x"})).await,
    );

    let out = Env::dry().ok("notify", json!({"url": peer.url("/hooks/dry"), "message": "hello"})).await;
    assert_eq!(out["payload"]["text"], json!("hello"));
    assert!(peer.received_at("/hooks/dry").is_empty(), "a dry run sends nothing");
}

/// Every action's input has a schema with a description for each field.
#[test]
fn input_schemas_describe_every_field() {
    let schemas = actions::input_schemas();
    for action in ["sql", "http", "shell", "wait", "notify"] {
        let props = schemas[action]["properties"].as_object().unwrap_or_else(|| panic!("{action}: no properties"));
        for (name, prop) in props {
            assert!(prop.get("description").is_some(), "{action}.{name} has no description: {prop}");
        }
    }
}

/// The engine may run steps on spawned tasks: an action's future must be Send.
#[test]
fn action_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let env = Env::new();
    let future = env.run("sql", json!({"query": "SELECT 1"}));
    assert_send(&future);
}
