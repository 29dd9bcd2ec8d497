//! `opsbook promote-check` against real HTTP peers on 127.0.0.1 and a real PostgreSQL cluster:
//! a passing and a failing case per check where the harness can produce both, waivers (valid
//! and expired), JSON and JUnit shapes, and concurrency.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::cmd::{all_output, code, json, opsbook};
use support::http::HttpPeer;
use support::pg::TestPg;

const GOOD_CSP: &str =
    "default-src 'self'; script-src 'self' 'nonce-r4nd0m'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'";

fn good_app() -> HttpPeer {
    let peer = HttpPeer::start();
    peer.respond(
        "/",
        200,
        &[
            ("content-security-policy", GOOD_CSP),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "strict-origin-when-cross-origin"),
        ],
        "<html></html>",
    );
    peer.respond("/health", 200, &[], "{\"status\":\"ok\"}");
    peer.respond(
        "/metrics",
        200,
        &[("content-type", "text/plain; version=0.0.4")],
        "# HELP up Up.\n# TYPE up gauge\nup 1\n",
    );
    peer.rate_limit("/api/ping", 5);
    peer
}

fn bad_app() -> HttpPeer {
    let peer = HttpPeer::start();
    peer.respond(
        "/",
        200,
        &[
            ("content-security-policy-report-only", "script-src *"),
            ("access-control-allow-origin", "$ORIGIN"),
            ("access-control-allow-credentials", "true"),
        ],
        "<html></html>",
    );
    peer.respond("/health", 503, &[], "down");
    peer.respond("/metrics", 404, &[], "not here");
    peer
}

fn write_env(dir: &Path, jwt: &str) {
    std::fs::write(
        dir.join(".env"),
        format!("JWT_SECRET={jwt}\nAPI_URL=https://api.shop.example\nSMTP_PASSWORD=changeme\n"),
    )
    .unwrap();
}

fn config(dir: &Path, extra: &str) {
    std::fs::write(
        dir.join("opsbook.toml"),
        format!(
            "[profiles.default.promote]\nenvironment = \"staging\"\nrequired_env = [\"API_URL\"]\nrate_limit_path = \"/api/ping\"\nrate_limit_burst = 20\n{extra}"
        ),
    )
    .unwrap();
}

fn check(dir: &Path, args: &[&str]) -> (i32, Value) {
    let out =
        opsbook(dir).args(["promote-check", "--env-file", ".env", "--output", "json"]).args(args).output().unwrap();
    let c = code(&out);
    assert!(c == 0 || c == 1, "{}", all_output(&out));
    (c, json(&out))
}

fn status_of(doc: &Value, id: &str) -> String {
    doc["checks"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap_or_else(|| panic!("no check {id}: {doc:#}"))
        ["status"]
        .as_str()
        .unwrap()
        .to_string()
}

const GOOD_JWT: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

const WEB: &str = "jwt-secret,csp,cors,security-headers,health,metrics,rate-limits,otel,required-env";

#[test]
fn a_good_application_passes_the_web_and_secret_checks() {
    let dir = tempfile::tempdir().unwrap();
    let app = good_app();
    let otlp = HttpPeer::start();
    write_env(dir.path(), GOOD_JWT);
    config(dir.path(), "");
    let (c, doc) = check(dir.path(), &["--app-url", &app.url(""), "--only", WEB, "--skip", "otel"]);
    for id in ["jwt-secret", "csp", "cors", "security-headers", "health", "metrics", "rate-limits", "required-env"] {
        assert_eq!(status_of(&doc, id), "pass", "{id}: {doc:#}");
    }
    assert_eq!(c, 0, "{doc:#}");
    // An OTLP endpoint that answers passes; none configured passes as disabled.
    let out = opsbook(dir.path())
        .args(["promote-check", "--only", "otel", "--output", "json"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.url("/v1/traces"))
        .output()
        .unwrap();
    assert_eq!(status_of(&json(&out), "otel"), "pass");
    let (_, doc) = check(dir.path(), &["--only", "otel"]);
    assert!(doc["checks"][0]["evidence"].as_str().unwrap().contains("disabled"));
}

#[test]
fn a_bad_application_fails_each_check_with_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let app = bad_app();
    write_env(dir.path(), "changeme");
    config(dir.path(), "required_env = [\"API_URL\", \"SMTP_PASSWORD\", \"MISSING_ONE\"]\n");
    // (required_env is overridden by the later key; TOML keeps the last one)
    std::fs::write(
        dir.path().join("opsbook.toml"),
        "[profiles.default.promote]\nrequired_env = [\"API_URL\", \"SMTP_PASSWORD\", \"MISSING_ONE\"]\nrate_limit_path = \"/api/ping\"\nrate_limit_burst = 10\n",
    )
    .unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = opsbook(dir.path())
        .args(["promote-check", "--env-file", ".env", "--output", "json", "--app-url", &app.url(""), "--only", WEB])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{closed}"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let doc = json(&out);
    for id in WEB.split(',') {
        assert_eq!(status_of(&doc, id), "fail", "{id}: {doc:#}");
    }
    let evidence = |id: &str| {
        doc["checks"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap()["evidence"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(evidence("csp").contains("Report-Only"));
    assert!(evidence("cors").contains("reflects a foreign Origin"));
    assert!(evidence("required-env").contains("SMTP_PASSWORD holds a placeholder"));
    assert!(evidence("required-env").contains("MISSING_ONE is missing"));
    assert!(evidence("rate-limits").contains("no 429"));
    assert!(!all_output(&out).contains("changeme"), "secret values never printed");
    // HTTP only, no redirect to HTTPS: HSTS fails.
    let (_, doc) = check(dir.path(), &["--app-url", &app.url(""), "--only", "hsts"]);
    assert_eq!(status_of(&doc, "hsts"), "fail");
    assert!(doc["checks"][0]["evidence"].as_str().unwrap().contains("without HTTPS"));
}

#[test]
fn unsafe_csp_directives_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_env(dir.path(), GOOD_JWT);
    let app = HttpPeer::start();
    app.respond(
        "/",
        200,
        &[("content-security-policy", "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval' https:")],
        "",
    );
    let (_, doc) = check(dir.path(), &["--web-url", &app.url(""), "--only", "csp"]);
    let evidence = doc["checks"][0]["evidence"].as_str().unwrap();
    for needle in ["'unsafe-inline'", "'unsafe-eval'", "https:", "object-src", "base-uri"] {
        assert!(evidence.contains(needle), "{needle}: {evidence}");
    }
}

#[test]
fn database_checks_against_a_server_without_tls() {
    let pg = TestPg::shared();
    let db = pg.fresh_db("promote");
    let dir = tempfile::tempdir().unwrap();
    write_env(dir.path(), GOOD_JWT);
    let migrations = dir.path().join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(migrations.join("1_t.sql"), "CREATE TABLE t (id int);\n").unwrap();
    let args = [
        "--database-url",
        &db,
        "--migrations",
        migrations.to_str().unwrap(),
        "--only",
        "db-ssl,pg-stat-statements,migrations-applied",
    ];
    let (c, doc) = check(dir.path(), &args);
    assert_eq!(c, 1);
    assert_eq!(status_of(&doc, "db-ssl"), "fail");
    assert!(doc.to_string().contains("ssl = off"));
    assert!(evidence_of(&doc, "db-ssl").contains("live TCP connection(s) unencrypted"), "{doc:#}");
    assert_eq!(status_of(&doc, "pg-stat-statements"), "fail");
    assert_eq!(status_of(&doc, "migrations-applied"), "fail", "pending migration");
    let out = opsbook(dir.path())
        .args(["migrate", "up", "--migrations", migrations.to_str().unwrap(), "--database-url", &db])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let (_, doc) = check(dir.path(), &args);
    assert_eq!(status_of(&doc, "migrations-applied"), "pass");
    assert!(!doc.to_string().contains(pg.password()));
}

#[test]
fn backup_retention_needs_a_fresh_retained_drilled_backup() {
    let pg = TestPg::shared();
    let db = pg.fresh_db("promote_backups");
    pg.load_example(&db);
    let dir = tempfile::tempdir().unwrap();
    write_env(dir.path(), GOOD_JWT);
    let store = dir.path().join("store");
    // An empty store directory: no backups yet.
    std::fs::create_dir_all(&store).unwrap();
    let store = store.to_str().unwrap();
    let (_, doc) = check(dir.path(), &["--store", store, "--only", "backup-retention"]);
    assert_eq!(status_of(&doc, "backup-retention"), "fail");
    assert!(doc.to_string().contains("no complete backup"), "{doc}");
    std::fs::write(dir.path().join("opsbook.toml"), "[profiles.default.sets.main]\nkeep_daily = 7\n").unwrap();
    let run = |args: &[&str]| {
        let out = opsbook(dir.path()).args(args).output().unwrap();
        assert_eq!(code(&out), 0, "{}", all_output(&out));
    };
    run(&["backup", "run", "--database-url", &db, "--store", store]);
    let (_, doc) = check(dir.path(), &["--store", store, "--only", "backup-retention"]);
    assert!(evidence_of(&doc, "backup-retention").contains("no restore drill is recorded for set 'main'"), "{doc:#}");
    // A failing drill alone proves nothing, and the evidence says a drill ran and failed.
    std::fs::write(dir.path().join("bad.sql"), "SELECT false;\n").unwrap();
    let drill = |extra: &[&str], want: i32| {
        let out = opsbook(dir.path())
            .args(["restore-drill", "--store", store, "--target-url", &pg.admin_url()])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(code(&out), want, "{}", all_output(&out));
    };
    drill(&["--check-sql", "bad.sql"], 1);
    let (_, doc) = check(dir.path(), &["--store", store, "--only", "backup-retention"]);
    assert_eq!(status_of(&doc, "backup-retention"), "fail", "{doc:#}");
    assert!(evidence_of(&doc, "backup-retention").contains("none of the 1 restore drill(s)"), "{doc:#}");
    drill(&[], 0);
    let (c, doc) = check(dir.path(), &["--store", store, "--only", "backup-retention"]);
    assert_eq!(status_of(&doc, "backup-retention"), "pass", "{doc:#}");
    assert_eq!(c, 0);
    // A later failing drill of the same backup does not hide the passing one within drill_interval.
    drill(&["--check-sql", "bad.sql"], 1);
    let drills = std::fs::read_dir(store_dir_of_backup(Path::new(store)))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("drill-"))
        .count();
    assert_eq!(drills, 3, "three drill records beside the one backup");
    let (c, doc) = check(dir.path(), &["--store", store, "--only", "backup-retention"]);
    assert_eq!((c, status_of(&doc, "backup-retention").as_str()), (0, "pass"), "{doc:#}");
    assert!(evidence_of(&doc, "backup-retention").contains("last passing drill"), "{doc:#}");
}

/// The directory of the only backup in a local store (`<set>/<YYYY>/<MM>/<id>/`).
fn store_dir_of_backup(store: &Path) -> std::path::PathBuf {
    let manifests: Vec<_> = walk(store).into_iter().filter(|p| p.ends_with("manifest.json")).collect();
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    manifests[0].parent().unwrap().to_path_buf()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn invalid_durations_in_the_profile_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_env(dir.path(), GOOD_JWT);
    for (key, value, example) in [("rpo_target", "1 secnd", "26h"), ("drill_interval", "weekly", "8d")] {
        std::fs::write(dir.path().join("opsbook.toml"), format!("[profiles.default.promote]\n{key} = \"{value}\"\n"))
            .unwrap();
        let out = opsbook(dir.path()).args(["promote-check", "--only", "backup-retention"]).output().unwrap();
        assert_eq!(code(&out), 2, "{}", all_output(&out));
        let text = all_output(&out);
        for needle in [key, value, "opsbook.toml", example] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
    }
    // Valid values are taken, not replaced by the defaults: a backup-less store fails on its own.
    std::fs::write(
        dir.path().join("opsbook.toml"),
        "[profiles.default.promote]\nrpo_target = \"90m\"\ndrill_interval = \"2w\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("store")).unwrap();
    let (c, doc) = check(dir.path(), &["--store", "store", "--only", "backup-retention"]);
    assert_eq!((c, status_of(&doc, "backup-retention").as_str()), (1, "fail"), "{doc:#}");
}

#[test]
fn bad_database_and_store_urls_are_usage_errors_before_any_check() {
    let dir = tempfile::tempdir().unwrap();
    write_env(dir.path(), GOOD_JWT);
    let out = opsbook(dir.path())
        .args(["promote-check", "--database-url", "not a url", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("--database-url"), "{}", all_output(&out));
    assert!(!all_output(&out).contains("\"checks\""), "no check ran: {}", all_output(&out));
    let out = opsbook(dir.path()).args(["promote-check", "--store", "s3://", "--output", "json"]).output().unwrap();
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    let text = all_output(&out);
    assert!(text.contains("--store") && text.contains("no bucket"), "{text}");
    let out = opsbook(dir.path()).args(["promote-check", "--store", "ftp://host/x"]).output().unwrap();
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("--store"), "{}", all_output(&out));
    // From the environment too (clap reads DATABASE_URL into the flag).
    let out =
        opsbook(dir.path()).args(["promote-check"]).env("DATABASE_URL", "mysql://u:hunter2@h/db").output().unwrap();
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("DATABASE_URL"), "{}", all_output(&out));
    assert!(!all_output(&out).contains("hunter2"), "the password is masked: {}", all_output(&out));
}

#[test]
fn jwt_secrets_with_repeats_runs_or_words_fail() {
    let dir = tempfile::tempdir().unwrap();
    for weak in [
        "0123456789".repeat(7),
        "abcdefghij".repeat(5),
        "Password1234567890Password1234567890Password12345".to_string(),
    ] {
        write_env(dir.path(), &weak);
        let (c, doc) = check(dir.path(), &["--only", "jwt-secret"]);
        assert_eq!((c, status_of(&doc, "jwt-secret").as_str()), (1, "fail"), "{weak}: {doc:#}");
        assert!(!doc.to_string().contains(&weak), "the value is never printed");
    }
    // A base64 secret of 32 random bytes passes.
    write_env(dir.path(), "oHtZt1Ecbi57f8acTOZl8FvFVYb49QJM593oQS3rvGo=");
    let (c, doc) = check(dir.path(), &["--only", "jwt-secret"]);
    assert_eq!((c, status_of(&doc, "jwt-secret").as_str()), (0, "pass"), "{doc:#}");
}

#[test]
fn unreachable_http_targets_say_why() {
    let dir = tempfile::tempdir().unwrap();
    write_env(dir.path(), GOOD_JWT);
    let site = HttpPeer::start_tls();
    site.respond("/health", 200, &[], "ok");
    // No --ca-file: the test CA is not trusted, and the fix names --ca-file.
    let (c, doc) = check(dir.path(), &["--app-url", &site.url(""), "--only", "health"]);
    assert_eq!((c, status_of(&doc, "health").as_str()), (1, "fail"), "{doc:#}");
    let evidence = evidence_of(&doc, "health");
    assert!(evidence.contains("certificate not trusted"), "{evidence}");
    assert!(doc["checks"][0]["fix"].as_str().unwrap().contains("--ca-file"), "{doc:#}");
    // An app that is down: connection refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (_, doc) = check(dir.path(), &["--app-url", &format!("http://127.0.0.1:{closed}"), "--only", "health,cors"]);
    for id in ["health", "cors"] {
        assert_eq!(status_of(&doc, id), "fail", "{doc:#}");
        assert!(evidence_of(&doc, id).contains("connection refused"), "{id}: {doc:#}");
    }
}

#[test]
fn waivers_apply_until_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    write_env(dir.path(), "changeme");
    std::fs::write(
        dir.path().join("opsbook.toml"),
        "[[profiles.default.promote.waivers]]\ncheck = \"jwt-secret\"\nreason = \"legacy tokens until the migration\"\nexpires = \"2999-01-01\"\n",
    )
    .unwrap();
    let (c, doc) = check(dir.path(), &["--only", "jwt-secret"]);
    assert_eq!(c, 0, "{doc:#}");
    assert_eq!(status_of(&doc, "jwt-secret"), "waived");
    assert_eq!(doc["checks"][0]["waiver"]["reason"], "legacy tokens until the migration");
    std::fs::write(
        dir.path().join("opsbook.toml"),
        "[[profiles.default.promote.waivers]]\ncheck = \"jwt-secret\"\nreason = \"old\"\nexpires = \"2020-01-01\"\n",
    )
    .unwrap();
    let (c, doc) = check(dir.path(), &["--only", "jwt-secret"]);
    assert_eq!(c, 1, "an expired waiver no longer waives");
    assert_eq!(status_of(&doc, "jwt-secret"), "fail");
}

#[test]
fn checks_run_concurrently_and_report_as_junit() {
    let dir = tempfile::tempdir().unwrap();
    let app = good_app();
    app.delay("/health", Duration::from_secs(3));
    write_env(dir.path(), GOOD_JWT);
    config(dir.path(), "");
    let start = std::time::Instant::now();
    let out = opsbook(dir.path())
        .args([
            "promote-check",
            "--env-file",
            ".env",
            "--app-url",
            &app.url(""),
            "--only",
            "health,metrics,csp,cors,security-headers",
            "--junit",
            "checks.xml",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    let total = start.elapsed();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let doc = json(&out);
    let secs = |id: &str| {
        doc["checks"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap()["seconds"].as_f64().unwrap()
    };
    // The slow check took its 3 s; the others finished well before it instead of after it.
    assert!(secs("health") >= 3.0);
    assert!(secs("csp") + 1.0 < secs("health") && secs("metrics") + 1.0 < secs("health"), "{doc:#}");
    assert!(total.as_secs_f64() < secs("health") * 2.0, "checks ran concurrently, not one after another: {total:?}");
    for c in doc["checks"].as_array().unwrap() {
        for key in ["id", "title", "status", "evidence", "seconds"] {
            assert!(c.get(key).is_some(), "{key} in {c}");
        }
    }
    let xml = std::fs::read_to_string(dir.path().join("checks.xml")).unwrap();
    assert!(xml.contains("<testsuite") && xml.contains("name=\"health\"") && xml.contains("tests=\"5\""), "{xml}");
    // A per-check timeout turns a hanging dependency into a failure.
    let out = opsbook(dir.path())
        .args(["promote-check", "--app-url", &app.url(""), "--only", "health", "--timeout", "1s", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    assert!(json(&out)["checks"][0]["evidence"].as_str().unwrap().contains("no answer within"));
}

#[test]
fn unknown_check_ids_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = opsbook(dir.path()).args(["promote-check", "--only", "no-such-check"]).output().unwrap();
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("no-such-check"));
}

#[test]
fn the_promote_runbook_stops_at_a_failed_checklist() {
    let pg = TestPg::shared();
    let db = pg.fresh_db("promote_runbook");
    let dir = tempfile::tempdir().unwrap();
    let app = good_app();
    write_env(dir.path(), GOOD_JWT);
    std::fs::create_dir_all(dir.path().join("migrations")).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = opsbook(dir.path())
        .arg("run")
        .arg(repo.join("runbooks/promote.toml"))
        .args(["--param", &format!("app_url={}", app.url(""))])
        .args(["--param", &format!("env_file={}", dir.path().join(".env").display())])
        .args(["--param", &format!("migrations={}", dir.path().join("migrations").display())])
        .args(["--yes", "--ack", "deploy", "--output", "json"])
        .env("DATABASE_URL", &db)
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let report = json(&out);
    let steps = report["steps"].as_array().unwrap();
    let checklist = steps.iter().find(|s| s["id"] == "checklist").unwrap();
    assert_eq!(checklist["status"], "failed", "{report:#}");
    assert!(
        checklist["error"].as_str().unwrap_or_default().contains("db-ssl") || report.to_string().contains("db-ssl"),
        "{report:#}"
    );
    assert!(
        steps.iter().all(|s| s["id"] != "deploy" || s["status"] != "ok"),
        "nothing deployed after a failed checklist"
    );
}

fn evidence_of(doc: &Value, id: &str) -> String {
    doc["checks"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap_or_else(|| panic!("no check {id}: {doc:#}"))
        ["evidence"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn hsts_over_https_with_the_generated_ca() {
    let dir = tempfile::tempdir().unwrap();
    write_env(dir.path(), GOOD_JWT);
    let ca = support::tls::TestCa::shared().ca_file();
    let ca = ca.to_str().unwrap();
    let site = HttpPeer::start_tls();
    site.respond("/preload", 200, &[("strict-transport-security", "max-age=63072000; includeSubDomains; preload")], "");
    site.respond("/no-preload", 200, &[("strict-transport-security", "max-age=31536000; includeSubDomains")], "");
    site.respond("/short", 200, &[("strict-transport-security", "max-age=300; includeSubDomains; preload")], "");
    let hsts = |url: &str, ca: &str| check(dir.path(), &["--web-url", url, "--ca-file", ca, "--only", "hsts"]);

    let (c, doc) = hsts(&site.url("/preload"), ca);
    assert_eq!((c, status_of(&doc, "hsts").as_str()), (0, "pass"), "{doc:#}");
    let (c, doc) = hsts(&site.url("/no-preload"), ca);
    assert_eq!((c, status_of(&doc, "hsts").as_str()), (0, "warn"), "no preload is a warning: {doc:#}");
    assert!(evidence_of(&doc, "hsts").contains("no preload"));
    let (c, doc) = hsts(&site.url("/short"), ca);
    assert_eq!((c, status_of(&doc, "hsts").as_str()), (1, "fail"), "{doc:#}");
    assert!(evidence_of(&doc, "hsts").contains("max-age=300"));

    // Plain HTTP that redirects to HTTPS on the same host passes on the target's header.
    let plain = HttpPeer::start();
    plain.respond("/", 301, &[("location", &site.url("/preload"))], "");
    let (c, doc) = hsts(&plain.url("/"), ca);
    assert_eq!((c, status_of(&doc, "hsts").as_str()), (0, "pass"), "{doc:#}");
    assert!(evidence_of(&doc, "hsts").contains("redirects to https://127.0.0.1"), "{doc:#}");
    // A redirect to another host does not count.
    plain.respond("/elsewhere", 301, &[("location", &site.url("/preload").replace("127.0.0.1", "localhost"))], "");
    let (_, doc) = hsts(&plain.url("/elsewhere"), ca);
    assert_eq!(status_of(&doc, "hsts"), "fail", "{doc:#}");

    // A certificate the client does not trust is a failure, not a pass.
    let other = support::tls::TestCa::shared().unrelated_ca_file();
    let (c, doc) = hsts(&site.url("/preload"), other.to_str().unwrap());
    assert_eq!((c, status_of(&doc, "hsts").as_str()), (1, "fail"), "{doc:#}");
    assert!(evidence_of(&doc, "hsts").contains("certificate not trusted"), "{doc:#}");
    assert!(doc["checks"][0]["fix"].as_str().unwrap().contains("does not verify against --ca-file"), "{doc:#}");
}

const PAGE: &str = r#"<!doctype html><html><head>
<link rel="stylesheet" href="/app.css"><script src="/app.js" nonce="r4nd0m"></script>
<script src="https://cdn.example/analytics.js"></script></head><body>BODY</body></html>"#;

#[test]
fn csp_over_https_covers_the_page_and_its_assets() {
    let dir = tempfile::tempdir().unwrap();
    write_env(dir.path(), GOOD_JWT);
    let ca = support::tls::TestCa::shared().ca_file();
    let site = HttpPeer::start_tls();
    let html = |extra: &str| PAGE.replace("BODY", extra);
    let page = |path: &str, body: &str| {
        site.respond(path, 200, &[("content-security-policy", GOOD_CSP), ("content-type", "text/html")], body)
    };
    page("/", &html(""));
    site.respond("/app.js", 200, &[("content-type", "text/javascript")], "console.log(1)");
    site.respond("/app.css", 200, &[("content-type", "text/css")], "body{}");
    let csp = |path: &str| {
        check(dir.path(), &["--web-url", &site.url(path), "--ca-file", ca.to_str().unwrap(), "--only", "csp"])
    };

    let (c, doc) = csp("/");
    assert_eq!((c, status_of(&doc, "csp").as_str()), (0, "pass"), "{doc:#}");
    let evidence = evidence_of(&doc, "csp");
    assert!(evidence.contains("2 same-origin asset(s) checked"), "the CDN script is not fetched: {evidence}");
    assert!(evidence.contains("/app.js: under the page's policy"), "{evidence}");
    assert!(!site.received_at("/app.css").is_empty(), "assets were fetched over HTTPS");

    // A framed document served without a policy of its own fails, named in the evidence.
    page("/framed", &html(r#"<iframe src="/embed"></iframe>"#));
    site.respond("/embed", 200, &[("content-type", "text/html; charset=utf-8")], "<p>widget</p>");
    let (c, doc) = csp("/framed");
    assert_eq!((c, status_of(&doc, "csp").as_str()), (1, "fail"), "{doc:#}");
    assert!(
        evidence_of(&doc, "csp").contains("/embed (text/html; charset=utf-8) is a document without an enforced CSP")
    );

    // A framed document with a weaker policy fails too; a script with one is a warning.
    site.respond("/embed", 200, &[("content-type", "text/html"), ("content-security-policy", "script-src *")], "");
    let (_, doc) = csp("/framed");
    assert_eq!(status_of(&doc, "csp"), "fail", "{doc:#}");
    assert!(evidence_of(&doc, "csp").contains("script-src allows * (any host)"), "{doc:#}");
    page("/legacy", &html(r#"<script src="/legacy.js"></script>"#));
    site.respond(
        "/legacy.js",
        200,
        &[("content-type", "text/javascript"), ("content-security-policy", "script-src 'self' 'unsafe-eval'")],
        "",
    );
    let (c, doc) = csp("/legacy");
    assert_eq!((c, status_of(&doc, "csp").as_str()), (0, "warn"), "{doc:#}");
    assert!(evidence_of(&doc, "csp").contains("/legacy.js sends a weaker CSP than the page"), "{doc:#}");
}

#[test]
fn database_checks_pass_against_a_tls_server() {
    let pg = TestPg::shared_tls();
    let db = pg.fresh_db("promote_tls");
    pg.execute(&db, "CREATE EXTENSION pg_stat_statements");
    let dir = tempfile::tempdir().unwrap();
    write_env(dir.path(), GOOD_JWT);
    std::fs::write(dir.path().join("opsbook.toml"), "[profiles.default.promote]\nenvironment = \"prod\"\n").unwrap();
    let only = ["--only", "db-ssl,pg-stat-statements"];
    let verified = pg.verify_full(&db);
    let (c, doc) = check(dir.path(), &[&["--database-url", verified.as_str()][..], &only].concat());
    assert_eq!(status_of(&doc, "db-ssl"), "pass", "{doc:#}");
    assert_eq!(status_of(&doc, "pg-stat-statements"), "pass", "{doc:#}");
    assert_eq!(c, 0);
    let evidence = evidence_of(&doc, "db-ssl");
    for needle in [
        "server ssl = on",
        "sslmode = verify-full",
        "encrypted = true",
        "all encrypted",
        "scram-sha-256",
        "no md5 verifiers",
    ] {
        assert!(evidence.contains(needle), "{needle}: {evidence}");
    }
    assert!(!doc.to_string().contains(pg.password()));

    // In prod, TLS without certificate verification is not enough.
    let (_, doc) = check(dir.path(), &["--database-url", &format!("{db}?sslmode=require"), "--only", "db-ssl"]);
    assert_eq!(status_of(&doc, "db-ssl"), "fail", "{doc:#}");
    assert!(evidence_of(&doc, "db-ssl").contains("does not require TLS with verify-full"), "{doc:#}");
    // A server certificate the URL's root does not vouch for: no connection, a failure.
    let other = support::tls::TestCa::shared().unrelated_ca_file();
    let wrong_root = format!("{db}?sslmode=verify-full&sslrootcert={}", other.display());
    let (_, doc) = check(dir.path(), &["--database-url", &wrong_root, "--only", "db-ssl"]);
    assert_eq!(status_of(&doc, "db-ssl"), "fail", "{doc:#}");
    // A role left with an md5 verifier fails; so does pg_stat_statements preloaded but not installed.
    let role = format!("legacy_{}", std::process::id());
    pg.execute(&db, &format!("SET password_encryption = 'md5'; CREATE ROLE {role} LOGIN PASSWORD 'old-md5-pw'"));
    let bare = pg.verify_full(&pg.fresh_db("promote_tls_bare"));
    let (c, doc) = check(dir.path(), &[&["--database-url", bare.as_str()][..], &only].concat());
    pg.execute(&db, &format!("DROP ROLE {role}"));
    assert_eq!(c, 1);
    assert!(evidence_of(&doc, "db-ssl").contains("1 role(s) still have md5 password verifiers"), "{doc:#}");
    assert_eq!(status_of(&doc, "pg-stat-statements"), "fail", "{doc:#}");
    assert!(evidence_of(&doc, "pg-stat-statements").contains("installed = false"), "{doc:#}");
}

#[test]
fn jwt_secret_must_differ_from_the_other_environment() {
    let dir = tempfile::tempdir().unwrap();
    write_env(dir.path(), GOOD_JWT);
    std::fs::write(dir.path().join("staging.env"), format!("JWT_SECRET={GOOD_JWT}\n")).unwrap();
    let out = opsbook(dir.path())
        .args(["promote-check", "--env-file", ".env", "--compare-env-file", "staging.env", "--only", "jwt-secret"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let text = all_output(&out);
    assert!(text.contains("same as in staging.env"), "{text}");
    let fingerprint = opsbook::secrets::rotate::fingerprint(GOOD_JWT);
    assert_eq!(fingerprint.len(), 8);
    assert!(text.contains(&fingerprint), "evidence by fingerprint: {text}");
    assert!(!text.contains(GOOD_JWT), "the value is never printed");

    let other = "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b";
    std::fs::write(dir.path().join("staging.env"), format!("JWT_SECRET={other}\n")).unwrap();
    let (c, doc) = check(dir.path(), &["--compare-env-file", "staging.env", "--only", "jwt-secret"]);
    assert_eq!((c, status_of(&doc, "jwt-secret").as_str()), (0, "pass"), "{doc:#}");
    assert!(evidence_of(&doc, "jwt-secret").contains("differs from staging.env"));
    assert!(!doc.to_string().contains(other));
    // A missing comparison file is an input error naming the flag.
    let out = opsbook(dir.path()).args(["promote-check", "--compare-env-file", "nope.env"]).output().unwrap();
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("--compare-env-file nope.env"));
}

#[test]
fn db_credentials_rotated_reads_the_rotation_state() {
    let pg = TestPg::shared();
    let dir = tempfile::tempdir().unwrap();
    // Nothing declared: unknown, which fails in prod and warns elsewhere.
    write_env(dir.path(), GOOD_JWT);
    std::fs::write(dir.path().join("opsbook.toml"), "[profiles.default.promote]\nenvironment = \"prod\"\n").unwrap();
    let (c, doc) = check(dir.path(), &["--only", "db-credentials-rotated"]);
    assert_eq!((c, status_of(&doc, "db-credentials-rotated").as_str()), (1, "fail"), "{doc:#}");
    assert!(evidence_of(&doc, "db-credentials-rotated").contains("no rotation evidence"), "{doc:#}");
    std::fs::write(dir.path().join("opsbook.toml"), "[profiles.default.promote]\nenvironment = \"staging\"\n").unwrap();
    let (c, doc) = check(dir.path(), &["--only", "db-credentials-rotated"]);
    assert_eq!((c, status_of(&doc, "db-credentials-rotated").as_str()), (0, "warn"), "{doc:#}");

    // Declared, never rotated: fails; after a real rotation: passes.
    let role = format!("r_promote_{}", std::process::id());
    let password = format!("pw{}", rand::random::<u64>());
    pg.execute(&pg.admin_url(), &format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"));
    let db = pg.fresh_db("promote_rotated");
    let dbname = db.rsplit('/').next().unwrap().to_string();
    pg.execute(&db, &format!("GRANT CONNECT ON DATABASE {dbname} TO {role}"));
    std::fs::write(
        dir.path().join(".env"),
        format!("JWT_SECRET={GOOD_JWT}\nDATABASE_URL=postgres://{role}:{password}@127.0.0.1:{}/{dbname}\n", pg.port()),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("opsbook.toml"),
        format!(
            "[profiles.default.promote]\nenvironment = \"prod\"\n\n[[profiles.default.secrets]]\nname = \"DATABASE_URL\"\nkind = \"postgres-password\"\nrole = \"{role}\"\nstore = \"dotenv:.env\"\nmax_age = \"90d\"\n"
        ),
    )
    .unwrap();
    let rotated = || {
        let out = opsbook(dir.path())
            .args(["promote-check", "--env-file", ".env", "--only", "db-credentials-rotated", "--output", "json"])
            .env("ADMIN_DATABASE_URL", pg.admin_url())
            .output()
            .unwrap();
        (code(&out), json(&out))
    };
    let (c, doc) = rotated();
    assert_eq!((c, status_of(&doc, "db-credentials-rotated").as_str()), (1, "fail"), "{doc:#}");
    assert!(evidence_of(&doc, "db-credentials-rotated").contains("DATABASE_URL never rotated"), "{doc:#}");
    let out = opsbook(dir.path())
        .args(["rotate-secrets", "run", "DATABASE_URL"])
        .env("ADMIN_DATABASE_URL", pg.admin_url())
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let (c, doc) = rotated();
    assert_eq!((c, status_of(&doc, "db-credentials-rotated").as_str()), (0, "pass"), "{doc:#}");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(evidence_of(&doc, "db-credentials-rotated").contains(&format!("DATABASE_URL rotated {today}")), "{doc:#}");
    assert!(!doc.to_string().contains(&password));
}

#[test]
fn cors_compares_the_answers_with_the_configured_allowlist() {
    let dir = tempfile::tempdir().unwrap();
    let app = HttpPeer::start();
    app.respond("/", 200, &[("access-control-allow-origin", "https://shop.example"), ("vary", "Origin")], "ok");
    write_env(dir.path(), GOOD_JWT);
    config(dir.path(), "cors_allowlist = [\"https://shop.example\"]\n");
    let (_, doc) = check(dir.path(), &["--app-url", &app.url(""), "--only", "cors"]);
    assert_eq!(status_of(&doc, "cors"), "pass", "{doc:#}");
    config(dir.path(), "cors_allowlist = [\"https://shop.example\", \"https://admin.shop.example\"]\n");
    let (_, doc) = check(dir.path(), &["--app-url", &app.url(""), "--only", "cors"]);
    assert_eq!(status_of(&doc, "cors"), "warn", "{doc:#}");
    assert!(doc["checks"][0]["evidence"]
        .as_str()
        .unwrap()
        .contains("https://admin.shop.example (got 'https://shop.example')"));
    let star = HttpPeer::start();
    star.respond("/", 200, &[("access-control-allow-origin", "*")], "ok");
    let (_, doc) = check(dir.path(), &["--app-url", &star.url(""), "--only", "cors"]);
    assert_eq!(status_of(&doc, "cors"), "warn", "{doc:#}");
    assert!(doc["checks"][0]["evidence"].as_str().unwrap().contains("although an allowlist is configured"));
}
