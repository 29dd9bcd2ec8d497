//! `opsbook dlq-replay` against a real PostgreSQL cluster and a real webhook receiver on
//! 127.0.0.1 that can fail, delay, answer 429 with Retry-After or 410: replay all, each filter,
//! dry runs, the rate measured at the receiver, retries, permanent failures, the breaker, two
//! concurrent replays, kill -9 then replay again, signatures checked by the Standard Webhooks
//! reference library, stats thresholds, purge with its archive, mapped columns, and the http source.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use support::cmd::{all_output, background, code, json, opsbook};
use support::pg::TestPg;
use support::receiver::Receiver;

struct Env {
    pg: &'static TestPg,
    db: String,
    dir: tempfile::TempDir,
    rx: Receiver,
}

impl Env {
    /// A fresh database with the default table (made by `dlq-replay init`) and a receiver.
    fn new(name: &str) -> Env {
        let pg = TestPg::shared();
        let env = Env { pg, db: pg.fresh_db(name), dir: tempfile::tempdir().unwrap(), rx: Receiver::start() };
        let out = env.run(&["init"]);
        assert_eq!(code(&out), 0, "{}", all_output(&out));
        assert!(all_output(&out).contains("created table opsbook_dead_letters"), "{}", all_output(&out));
        env
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `opsbook dlq-replay ARGS --database-url DB`.
    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let mut cmd = opsbook(self.dir());
        cmd.arg("dlq-replay").args(args).args(["--database-url", &self.db]);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Inserts `n` dead letters to `path` on the receiver; payload `{"seq":"<tag>-<i>"}`.
    fn insert(&self, n: usize, path: &str, tag: &str, event: &str, tenant: &str, age: &str) {
        self.pg.execute(
            &self.db,
            &format!(
                "INSERT INTO opsbook_dead_letters (target_url, payload, event_type, tenant, failed_at, headers) \
                 SELECT '{url}', '{{\"seq\":\"{tag}-' || g || '\"}}', '{event}', '{tenant}', now() - interval '{age}', \
                 '{{\"x-origin\":\"gateway\"}}'::jsonb FROM generate_series(1, {n}) g",
                url = self.rx.url(path)
            ),
        );
    }

    fn remaining(&self) -> i64 {
        self.pg.query_i64(&self.db, "SELECT count(*) FROM opsbook_dead_letters")
    }

    /// How often each payload arrived with a 2xx.
    fn delivered_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for a in self.rx.delivered() {
            *counts.entry(a.body).or_default() += 1;
        }
        counts
    }

    fn delivered_tags(&self) -> BTreeSet<String> {
        self.delivered_counts().into_keys().collect()
    }
}

fn seqs(tag: &str, n: usize) -> BTreeSet<String> {
    (1..=n).map(|i| format!("{{\"seq\":\"{tag}-{i}\"}}")).collect()
}

#[test]
fn replay_all_delivers_removes_and_reports() {
    let env = Env::new("all");
    env.insert(25, "/hooks/a", "a", "order.paid", "t1", "1 hour");
    env.insert(5, "/hooks/b", "b", "user.created", "t2", "2 days");
    // 30 is above the default confirmation threshold: without a terminal that needs --yes.
    let out = env.run(&["replay"]);
    assert_eq!(code(&out), 5, "{}", all_output(&out));
    assert_eq!(env.rx.count(), 0, "nothing is sent before the confirmation");

    let out = env.run(&["replay", "--yes", "--concurrency", "4", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let doc = json(&out);
    assert_eq!(doc["plan"]["count"], 30);
    assert_eq!(doc["report"]["delivered"], 30);
    assert_eq!(doc["report"]["failed"], 0);
    assert_eq!(env.remaining(), 0);
    let mut expected = seqs("a", 25);
    expected.extend(seqs("b", 5));
    assert_eq!(env.delivered_tags(), expected);
    let a = &env.rx.arrivals()[0];
    assert_eq!(a.method, "POST");
    assert_eq!(a.header("x-origin"), Some("gateway"), "stored headers are replayed");
    assert_eq!(a.header("content-type"), Some("application/json"));
    let id = a.header("webhook-id").expect("webhook-id is sent without a signing secret too");
    assert!(id.starts_with("dlq_"), "no event id stored: derived from the row id: {a:?}");
    assert_eq!(a.header("idempotency-key"), Some(format!("{id}-0").as_str()), "{a:?}");
    assert_eq!(a.header("webhook-signature"), None, "unsigned without a secret");
}

#[test]
fn stored_webhook_id_is_replayed_and_credentials_never_reach_output() {
    let env = Env::new("headers");
    env.pg.execute(
        &env.db,
        &format!(
            "INSERT INTO opsbook_dead_letters (target_url, payload, headers) VALUES ('{}', 'p1', \
             '{{\"Webhook-Id\":\"msg_2LxOrig\",\"Authorization\":\"Bearer sk_live_abc123\",\"X-Api-Key\":\"key-98765\",\
             \"Cookie\":\"sid=cookie-4242\",\"x-origin\":\"gateway\"}}'::jsonb)",
            env.rx.url("/hooks/h")
        ),
    );
    let secrets = ["sk_live_abc123", "key-98765", "cookie-4242"];
    let clean = |what: &str, out: &Output| {
        let text = all_output(out);
        for s in secrets {
            assert!(!text.contains(s), "{what}: {s} leaked: {text}");
        }
    };
    let out = env.run(&["list", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    clean("list", &out);
    let headers = &json(&out)["items"][0]["headers"];
    assert_eq!(headers["Authorization"], "***", "{headers}");
    assert_eq!(headers["x-origin"], "gateway", "{headers}");
    let out = env.run(&["replay", "--dry-run", "--output", "json"]);
    clean("dry-run plan", &out);
    assert_eq!(json(&out)["plan"]["sample"][0]["headers"]["X-Api-Key"], "***");
    let out = env.run(&["replay", "--yes", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    clean("report", &out);
    let a = &env.rx.arrivals()[0];
    assert_eq!(a.header("webhook-id"), Some("msg_2LxOrig"), "the stored webhook-id is the original event id");
    assert_eq!(a.header("idempotency-key"), Some("msg_2LxOrig-0"));
    assert_eq!(a.header("authorization"), Some("Bearer sk_live_abc123"), "credentials are still delivered");
    assert_eq!(a.header("x-api-key"), Some("key-98765"));
    assert_eq!(a.headers.iter().filter(|(k, _)| k == "webhook-id").count(), 1, "{a:?}");
}

#[test]
fn a_database_error_after_a_2xx_is_reported_and_the_rest_goes_on() {
    let env = Env::new("dberror");
    // The first row cannot be deleted: its delivery succeeds, then the removal fails.
    env.pg.execute(
        &env.db,
        &format!(
            "INSERT INTO opsbook_dead_letters (target_url, payload) VALUES ('{}', 'stuck'); \
             CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN IF OLD.payload = 'stuck' THEN RAISE EXCEPTION 'row is pinned'; END IF; RETURN OLD; END $$; \
             CREATE TRIGGER pin BEFORE DELETE ON opsbook_dead_letters FOR EACH ROW EXECUTE FUNCTION refuse();",
            env.rx.url("/hooks/a")
        ),
    );
    env.insert(3, "/hooks/a", "a", "order.paid", "t1", "1 hour");
    let out = env.run(&["replay", "--yes", "--concurrency", "1", "--output", "json"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let report = &json(&out)["report"];
    assert_eq!(report["delivered"], 3, "the worker went on after the error: {report}");
    assert_eq!(report["failed"], 1, "{report}");
    let error = report["failures"][0]["error"].as_str().unwrap();
    assert!(error.contains("delivered, removal failed: will be re-sent") && error.contains("row is pinned"), "{error}");
    assert_eq!(env.delivered_tags(), {
        let mut all = seqs("a", 3);
        all.insert("stuck".into());
        all
    });
    assert_eq!(env.pg.query_string(&env.db, "SELECT string_agg(payload, ',') FROM opsbook_dead_letters"), "stuck");
}

#[test]
fn losing_the_dlq_database_mid_run_exits_3_and_keeps_every_row() {
    let env = Env::new("dblost");
    env.insert(5, "/hooks/a", "a", "order.paid", "t1", "1 hour");
    let dbname = env.db.rsplit('/').next().unwrap().to_string();
    // The first removal (after its 2xx) takes the database away: from then on it refuses
    // connections (through dblink, so that survives the rollback), and the removing session ends.
    env.pg.execute(
        &env.db,
        &format!(
            "CREATE EXTENSION IF NOT EXISTS dblink; \
             CREATE FUNCTION lose_db() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               PERFORM dblink_exec('{admin}', 'ALTER DATABASE {dbname} ALLOW_CONNECTIONS false'); \
               PERFORM pg_terminate_backend(pg_backend_pid()); RETURN OLD; END $$; \
             CREATE TRIGGER lose BEFORE DELETE ON opsbook_dead_letters FOR EACH ROW EXECUTE FUNCTION lose_db();",
            admin = env.pg.admin_url()
        ),
    );
    let out = env.run(&["replay", "--yes", "--concurrency", "1", "--output", "json"]);
    env.pg.execute(&env.pg.admin_url(), &format!("ALTER DATABASE {dbname} ALLOW_CONNECTIONS true"));
    assert_eq!(code(&out), 3, "{}", all_output(&out));
    let doc = json(&out);
    assert_eq!(doc["exit_code"], 3, "{doc}");
    let report = &doc["report"];
    assert_eq!(report["skipped_by_reason"]["source_unavailable"], 4, "{report}");
    assert_eq!(env.rx.delivered().len(), 1, "nothing sent after the database was lost");
    assert_eq!(env.remaining(), 5, "the delivered row's removal was rolled back; every row is still in the DLQ");
}

#[test]
fn a_zero_timeout_is_a_usage_error_and_sends_nothing() {
    let env = Env::new("timeout0");
    env.insert(2, "/hooks/a", "a", "order.paid", "t1", "1 hour");
    for flag in ["--timeout", "--connect-timeout"] {
        let out = env.run(&["replay", "--yes", flag, "0s"]);
        assert_eq!(code(&out), 2, "{flag}: {}", all_output(&out));
        assert!(all_output(&out).contains(&format!("{flag} must be longer than 0s")), "{}", all_output(&out));
    }
    assert_eq!(env.rx.count(), 0, "nothing was sent");
    assert_eq!(env.pg.query_i64(&env.db, "SELECT sum(attempts) FROM opsbook_dead_letters"), 0, "no failure recorded");
}

#[test]
fn idle_in_transaction_timeout_does_not_cut_a_slow_delivery() {
    let env = Env::new("idle");
    env.pg.execute(
        &env.db,
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET idle_in_transaction_session_timeout = %L', \
         current_database(), '200ms'); END $$",
    );
    env.insert(2, "/hooks/a", "a", "order.paid", "t1", "1 hour");
    // Each delivery holds its claiming transaction idle for longer than the server allows.
    env.rx.delay(Duration::from_millis(800));
    let out = env.run(&["replay", "--yes", "--concurrency", "1", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(json(&out)["report"]["delivered"], 2);
    assert_eq!(env.remaining(), 0);
}

#[test]
fn query_errors_name_the_fix() {
    let env = Env::new("qerr");
    let out = env.run(&["list", "--table", "no_such_table"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    let text = all_output(&out);
    assert!(text.contains("opsbook dlq-replay init") && text.contains("[profiles.NAME.dlq] table"), "{text}");
    std::fs::write(env.dir().join("opsbook.toml"), "[profiles.default.dlq.columns]\nevent_type = \"kind\"\n").unwrap();
    let out = env.run(&["stats"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("[profiles.NAME.dlq.columns]"), "{}", all_output(&out));
    std::fs::remove_file(env.dir().join("opsbook.toml")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let out = opsbook(env.dir())
        .args(["dlq-replay", "list", "--database-url", &format!("postgres://u:p@127.0.0.1:{port}/db")])
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "connection refused: {}", all_output(&out));
}

#[test]
fn flags_of_the_other_source_are_refused_not_ignored() {
    let env = Env::new("flags");
    for (args, message) in [
        (&["list", "--token-env", "API_TOKEN"][..], "--token-env applies to the http source only"),
        (&["list", "--tenant-header", "X-Org"][..], "--tenant-header applies to the http source only"),
        (&["list", "--source-url", "http://127.0.0.1:9/v1/webhooks", "--table", "t"][..], "--table applies"),
        (
            &["replay", "--source-url", "http://127.0.0.1:9/v1/webhooks", "--signing-secret-env", "S", "--yes"][..],
            "--signing-secret-env applies to the Postgres source",
        ),
    ] {
        let out = env.run(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", all_output(&out));
        assert!(all_output(&out).contains(message), "{args:?}: {}", all_output(&out));
    }
}

#[test]
fn each_filter_selects_only_its_dead_letters() {
    let env = Env::new("filters");
    env.insert(3, "/hooks/shop", "paid", "order.paid", "acme", "30 minutes");
    env.insert(3, "/hooks/crm", "user", "user.created", "acme", "3 days");
    env.insert(3, "/wa/send", "wa", "whatsapp.message", "globex", "10 days");
    let replay = |args: &[&str]| {
        let mut all = vec!["replay", "--yes"];
        all.extend_from_slice(args);
        let out = env.run(&all);
        assert_eq!(code(&out), 0, "{args:?}: {}", all_output(&out));
    };
    replay(&["--event", "user.created"]);
    assert_eq!(env.delivered_tags(), seqs("user", 3));
    replay(&["--tenant", "globex", "--limit", "2"]);
    let mut expected = seqs("user", 3);
    expected.extend(seqs("wa", 2));
    assert_eq!(env.delivered_tags(), expected, "limit takes the oldest first");
    replay(&["--endpoint", "*/hooks/shop"]);
    expected.extend(seqs("paid", 3));
    assert_eq!(env.delivered_tags(), expected);
    assert_eq!(env.remaining(), 1);

    env.insert(2, "/hooks/new", "new", "order.paid", "acme", "5 minutes");
    env.insert(2, "/hooks/old", "old", "order.paid", "acme", "40 days");
    replay(&["--since", "1h"]);
    expected.extend(seqs("new", 2));
    assert_eq!(env.delivered_tags(), expected);
    replay(&["--until", "20d"]);
    expected.extend(seqs("old", 2));
    assert_eq!(env.delivered_tags(), expected);
    let last: i64 = env.pg.query_i64(&env.db, "SELECT min(id) FROM opsbook_dead_letters");
    replay(&["--id", &last.to_string()]);
    expected.extend(seqs("wa", 3));
    assert_eq!(env.delivered_tags(), expected);
    assert_eq!(env.remaining(), 0);

    let out = env.run(&["replay", "--since", "yesterday"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("--since"), "{}", all_output(&out));
}

#[test]
fn dry_run_sends_nothing_and_shows_the_plan() {
    let env = Env::new("dry");
    env.insert(40, "/hooks/a", "a", "order.paid", "t1", "1 hour");
    let out = env.run(&["replay", "--dry-run", "--rate", "10"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let text = all_output(&out);
    assert!(text.contains("40 dead letter(s) to replay, about 4s at 10/s"), "{text}");
    assert!(text.contains("dry run: nothing was sent"), "{text}");
    assert_eq!(env.rx.count(), 0);
    assert_eq!(env.remaining(), 40);
    let out = env.run(&["replay", "--dry-run", "--output", "json"]);
    let doc = json(&out);
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["plan"]["count"], 40);
    assert_eq!(doc["plan"]["sample"].as_array().unwrap().len(), 5);
    assert_eq!(env.rx.count(), 0);
}

#[test]
fn rate_limit_holds_at_the_receiver() {
    let env = Env::new("rate");
    env.insert(61, "/hooks/a", "a", "order.paid", "t1", "1 hour");
    let out = env.run(&["replay", "--yes", "--rate", "20", "--concurrency", "8"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let mut times: Vec<_> = env.rx.arrivals().iter().map(|a| a.at).collect();
    times.sort();
    assert_eq!(times.len(), 61);
    let span = times.last().unwrap().duration_since(times[0]).as_secs_f64();
    let measured = 60.0 / span;
    // Never faster than the rate (the limiter's guarantee, +5% for clock granularity). A busy
    // machine can only make it slower, so the lower bound is loose: the limiter must not
    // throttle far below the rate. bench/dlq.sh measures the accuracy (±5%) on a quiet machine.
    assert!(measured <= 20.0 * 1.05, "measured {measured:.2}/s for --rate 20: faster than the limit");
    assert!(measured >= 20.0 * 0.5, "measured {measured:.2}/s for --rate 20: far below the limit");
}

#[test]
fn retries_with_backoff_and_retry_after_then_succeed() {
    let env = Env::new("retry");
    env.insert(1, "/hooks/flaky", "flaky", "order.paid", "t1", "1 hour");
    env.insert(1, "/hooks/busy", "busy", "order.paid", "t1", "1 hour");
    env.rx.fail_first("/hooks/flaky", 2, 503, None);
    env.rx.fail_first("/hooks/busy", 1, 429, Some("1"));
    let out = env.run(&["replay", "--yes", "--retries", "3", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(json(&out)["report"]["delivered"], 2);
    assert_eq!(json(&out)["report"]["requests"], 5);
    assert_eq!(env.remaining(), 0);
    let busy: Vec<_> = env.rx.arrivals().into_iter().filter(|a| a.path == "/hooks/busy").collect();
    assert_eq!(busy.len(), 2);
    assert!(busy[1].at.duration_since(busy[0].at) >= Duration::from_secs(1), "Retry-After: 1 was honoured");
    let keys: BTreeSet<_> = env
        .rx
        .arrivals()
        .iter()
        .filter(|a| a.path == "/hooks/flaky")
        .map(|a| a.header("idempotency-key").unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 1, "the Idempotency-Key is stable across retries");
}

#[test]
fn permanent_failure_stays_with_attempts_and_a_later_replay_gets_a_fresh_key() {
    let env = Env::new("perm");
    env.insert(1, "/hooks/bad", "bad", "order.paid", "t1", "1 hour");
    env.insert(1, "/hooks/good", "good", "order.paid", "t1", "1 hour");
    env.rx.always("/hooks/bad", 400, "{\"error\":\"unknown customer\"}");
    let out = env.run(&["replay", "--yes"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("delivered 1, failed 1, skipped 0"), "{}", all_output(&out));
    assert_eq!(env.rx.arrivals().iter().filter(|a| a.path == "/hooks/bad").count(), 1, "a 400 is not retried");
    assert_eq!(env.remaining(), 1);
    assert_eq!(env.pg.query_i64(&env.db, "SELECT attempts FROM opsbook_dead_letters"), 1);
    let err = env.pg.query_string(&env.db, "SELECT last_error FROM opsbook_dead_letters");
    assert!(err.contains("HTTP 400") && err.contains("unknown customer"), "{err}");
    let out = env.run(&["replay", "--yes"]);
    assert_eq!(code(&out), 1);
    assert_eq!(env.pg.query_i64(&env.db, "SELECT attempts FROM opsbook_dead_letters"), 2);
    let keys: BTreeSet<_> = env
        .rx
        .arrivals()
        .iter()
        .filter(|a| a.path == "/hooks/bad")
        .map(|a| a.header("idempotency-key").unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 2, "a recorded failure gives the next replay a new key: {keys:?}");
}

#[test]
fn a_timed_out_delivery_keeps_its_idempotency_key_for_the_next_replay() {
    let env = Env::new("ambiguous");
    env.insert(1, "/hooks/slow", "slow", "order.paid", "t1", "1 hour");
    let id = env.pg.query_i64(&env.db, "SELECT id FROM opsbook_dead_letters");
    // The target may have processed a request that timed out: the next replay must reuse its key.
    env.rx.delay(Duration::from_secs(3));
    let out = env.run(&["replay", "--yes", "--retries", "0", "--timeout", "300ms"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("timed out"), "{}", all_output(&out));
    assert_eq!(env.pg.query_i64(&env.db, "SELECT attempts FROM opsbook_dead_letters"), 1);
    env.rx.delay(Duration::ZERO);
    let out = env.run(&["replay", "--yes"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let delivered = env.rx.delivered();
    let last = delivered.iter().find(|a| a.path == "/hooks/slow").unwrap();
    assert_eq!(last.header("idempotency-key"), Some(format!("dlq_{id}-0").as_str()), "{last:?}");
}

#[test]
fn gone_endpoint_and_open_breaker_stop_replaying_to_that_endpoint() {
    let gone = Receiver::start();
    let env = Env::new("gone");
    gone.always("/hooks/x", 410, "gone");
    env.pg.execute(
        &env.db,
        &format!(
            "INSERT INTO opsbook_dead_letters (target_url, payload) SELECT '{}', 'g' || g FROM generate_series(1, 5) g",
            gone.url("/hooks/x")
        ),
    );
    env.insert(6, "/hooks/down", "down", "order.paid", "t1", "1 hour");
    env.rx.always("/hooks/down", 500, "down");
    // Another path on the host that answered 410: "gone" is that URL only.
    env.pg.execute(
        &env.db,
        &format!(
            "INSERT INTO opsbook_dead_letters (target_url, payload) SELECT '{}', 'y' || g FROM generate_series(1, 2) g",
            gone.url("/hooks/y")
        ),
    );
    let out =
        env.run(&["replay", "--yes", "--concurrency", "1", "--retries", "0", "--breaker", "2", "--output", "json"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let report = &json(&out)["report"];
    assert_eq!(report["failed"], 3, "{report}");
    assert_eq!(report["skipped_by_reason"]["endpoint_gone"], 4, "{report}");
    assert_eq!(report["skipped_by_reason"]["breaker_open"], 4, "{report}");
    assert_eq!(report["delivered"], 2, "other paths of a host with a 410 are still replayed: {report}");
    assert_eq!(gone.count(), 3);
    assert_eq!(env.rx.count(), 2);
    assert_eq!(env.remaining(), 11, "nothing undelivered leaves the DLQ");
}

#[test]
fn two_concurrent_replays_deliver_each_row_exactly_once() {
    let env = Env::new("concurrent");
    env.insert(200, "/hooks/a", "a", "order.paid", "t1", "1 hour");
    env.rx.delay(Duration::from_millis(10));
    let spawn = || {
        background(env.dir())
            .args([
                "dlq-replay",
                "replay",
                "--yes",
                "--concurrency",
                "8",
                "--output",
                "json",
                "--database-url",
                &env.db,
            ])
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(code(&a), 0, "{}", all_output(&a));
    assert_eq!(code(&b), 0, "{}", all_output(&b));
    let counts = env.delivered_counts();
    assert_eq!(counts.len(), 200);
    assert!(
        counts.values().all(|n| *n == 1),
        "sent twice: {:?}",
        counts.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    let (da, db) =
        (json(&a)["report"]["delivered"].as_u64().unwrap(), json(&b)["report"]["delivered"].as_u64().unwrap());
    assert_eq!(da + db, 200, "every row delivered by exactly one of the two");
    assert_eq!(env.remaining(), 0);
}

/// Holds `FOR UPDATE` on one row in an open transaction until the returned sender is used.
fn hold_row_lock(db: &str, id: i64) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let url = opsbook::pg::DbUrl::parse(db).unwrap();
    let holder = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let mut conn = opsbook::pg::connect(&url).await.unwrap();
            sqlx::raw_sql("BEGIN").execute(&mut conn).await.unwrap();
            sqlx::query("SELECT 1 FROM opsbook_dead_letters WHERE id = $1 FOR UPDATE")
                .bind(id)
                .execute(&mut conn)
                .await
                .unwrap();
            held_tx.send(()).unwrap();
            let _ = release_rx.recv();
            sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
        })
    });
    held_rx.recv().unwrap();
    (release_tx, holder)
}

/// Waits for a background child with a deadline (a hang fails the test instead of blocking it).
fn wait_with_deadline(mut child: std::process::Child, limit: Duration) -> Output {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {limit:?}: {}", all_output(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_row_held_by_another_replay_is_skipped_not_waited_for() {
    let env = Env::new("locked");
    env.insert(3, "/hooks/bad", "bad", "order.paid", "t1", "1 hour");
    env.rx.always("/hooks/bad", 500, "down");
    let held = env.pg.query_i64(&env.db, "SELECT min(id) FROM opsbook_dead_letters");
    let (release, holder) = hold_row_lock(&env.db, held);
    // With a blocking FOR UPDATE this replay would wait for the holder (and later re-send a row
    // the holder failed on): SKIP LOCKED passes over it.
    let child = background(env.dir())
        .args(["dlq-replay", "replay", "--yes", "--retries", "0", "--breaker", "0", "--output", "json"])
        .args(["--database-url", &env.db])
        .spawn()
        .unwrap();
    let out = wait_with_deadline(child, Duration::from_secs(60));
    release.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let report = &json(&out)["report"];
    assert_eq!(report["skipped_by_reason"]["claimed"], 1, "{report}");
    assert_eq!(report["failed"], 2, "{report}");
    assert!(report["failures"].as_array().unwrap().iter().all(|f| f["id"] != held), "{report}");
    assert_eq!(env.pg.query_i64(&env.db, &format!("SELECT attempts FROM opsbook_dead_letters WHERE id = {held}")), 0);
}

#[test]
fn kill_9_mid_replay_then_replay_again_loses_nothing() {
    let env = Env::new("kill");
    env.insert(300, "/hooks/a", "a", "order.paid", "t1", "1 hour");
    env.rx.delay(Duration::from_millis(20));
    let mut child = background(env.dir())
        .args(["dlq-replay", "replay", "--yes", "--concurrency", "4", "--database-url", &env.db])
        .spawn()
        .unwrap();
    while env.rx.count() < 40 {
        assert!(child.try_wait().unwrap().is_none(), "the replay finished before it could be killed");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let left = env.remaining();
    assert!(left > 0 && left < 300, "killed mid-replay: {left} left");
    let out = env.run(&["replay", "--yes", "--concurrency", "4"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(env.delivered_tags(), seqs("a", 300), "every row delivered at least once");
    assert_eq!(env.remaining(), 0);
}

#[test]
fn signatures_verify_with_the_reference_library_and_during_rotation() {
    let env = Env::new("sign");
    env.insert(3, "/hooks/a", "a", "order.paid", "t1", "1 hour");
    env.rx.fail_first("/hooks/a", 1, 503, None);
    let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let new = "whsec_c2Vjb25kLXNlY3JldC1mb3ItdGVzdHMtMDEyMzQ1Njc4OQ==";
    let secrets = format!("{new} {old}");
    let out = env.run_env(&["replay", "--yes", "--signing-secret-env", "HOOK_SECRET"], &[("HOOK_SECRET", &secrets)]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(!all_output(&out).contains("MfKQ9r8"), "secret leaked: {}", all_output(&out));
    let arrivals = env.rx.arrivals();
    assert_eq!(arrivals.len(), 4);
    let retried = arrivals.iter().filter(|a| a.body == arrivals[0].body).collect::<Vec<_>>();
    assert_eq!(retried.len(), 2);
    assert_eq!(retried[0].header("webhook-id"), retried[1].header("webhook-id"), "webhook-id stable across retries");
    // Each arrival must verify under either secret alone, with the reference implementation.
    let mut script = String::from("from standardwebhooks.webhooks import Webhook\nimport json, sys\n");
    script.push_str("cases = json.load(sys.stdin)\nfor c in cases:\n    for s in c['secrets']:\n        Webhook(s).verify(c['body'], c['headers'])\nprint(len(cases))\n");
    let cases: Vec<_> = arrivals
        .iter()
        .map(|a| {
            serde_json::json!({
                "secrets": [old, new],
                "body": a.body,
                "headers": {
                    "webhook-id": a.header("webhook-id").unwrap(),
                    "webhook-timestamp": a.header("webhook-timestamp").unwrap(),
                    "webhook-signature": a.header("webhook-signature").unwrap(),
                }
            })
        })
        .collect();
    support::tools::require("standardwebhooks", "standardwebhooks.webhooks", "the signature tests");
    let mut py = std::process::Command::new(support::tools::python())
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(py.stdin.as_mut().unwrap(), serde_json::to_string(&cases).unwrap().as_bytes()).unwrap();
    let res = py.wait_with_output().unwrap();
    assert!(res.status.success(), "Standard Webhooks verification failed: {}", String::from_utf8_lossy(&res.stderr));
    assert_eq!(String::from_utf8_lossy(&res.stdout).trim(), "4");
    // A tampered body fails verification: the check above can fail.
    let mut tampered = cases[0].clone();
    tampered["body"] = serde_json::Value::from("{\"seq\":\"forged\"}");
    let mut py = std::process::Command::new(support::tools::python())
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(py.stdin.as_mut().unwrap(), serde_json::to_string(&[tampered]).unwrap().as_bytes())
        .unwrap();
    assert!(!py.wait().unwrap().success());

    let out = env.run_env(&["replay", "--yes", "--signing-secret-env", "HOOK_SECRET"], &[("HOOK_SECRET", "whsec_!!")]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("HOOK_SECRET"), "{}", all_output(&out));
}

#[test]
fn stats_counts_and_max_exit_codes() {
    let env = Env::new("stats");
    env.insert(4, "/hooks/a", "a", "order.paid", "t1", "10 minutes");
    env.insert(2, "/wa/send", "w", "whatsapp.message", "t2", "3 days");
    let out = env.run(&["stats", "--max", "6", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let doc = json(&out);
    assert_eq!(doc["stats"]["total"], 6);
    assert_eq!(doc["stats"]["by_event_type"][0], serde_json::json!(["order.paid", 4]));
    assert_eq!(doc["stats"]["by_age"], serde_json::json!([["<1h", 4], ["1d-7d", 2]]));
    assert_eq!(doc["stats"]["by_endpoint"][0], serde_json::json!([format!("http://{}", env.rx.addr), 6]));
    let out = env.run(&["stats", "--max", "5"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("more than --max 5"), "{}", all_output(&out));
    let out = env.run(&["stats", "--max", "5", "--event", "whatsapp.message"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let out = env.run(&["list", "--event", "whatsapp.message", "--output", "json"]);
    assert_eq!(json(&out)["items"].as_array().unwrap().len(), 2);
    assert!(json(&out)["items"][0].get("payload").is_none(), "payloads only on request");
    // Without --max the documented default of 50 applies: the cron alert needs no flag.
    env.insert(44, "/hooks/a", "more", "order.paid", "t1", "10 minutes");
    let out = env.run(&["stats"]);
    assert_eq!(code(&out), 0, "50 is not above the default: {}", all_output(&out));
    env.insert(1, "/hooks/a", "one", "order.paid", "t1", "10 minutes");
    let out = env.run(&["stats"]);
    assert_eq!(code(&out), 1, "51 > the default 50: {}", all_output(&out));
    assert!(all_output(&out).contains("more than --max 50"), "{}", all_output(&out));
}

#[test]
fn purge_archives_then_deletes_and_needs_confirmation() {
    let env = Env::new("purge");
    env.insert(3, "/hooks/a", "old", "order.paid", "t1", "40 days");
    env.insert(2, "/hooks/a", "new", "order.paid", "t1", "1 hour");
    let store = env.dir().join("archive");
    let store_arg = store.to_str().unwrap();
    let out = env.run(&["purge", "--older-than", "30d", "--store", store_arg]);
    assert_eq!(code(&out), 5, "{}", all_output(&out));
    assert_eq!(env.remaining(), 5);
    let out = env.run(&["purge", "--older-than", "30d", "--store", store_arg, "--yes", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(json(&out)["purged"], 3);
    assert_eq!(env.remaining(), 2);
    let files: Vec<_> = walk(&store).into_iter().filter(|p| p.extension().is_some_and(|e| e == "jsonl")).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&files[0]).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["payload"].as_str().unwrap().contains("old-")));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn mapped_columns_of_an_existing_table() {
    let env = Env::new("mapped");
    env.pg.execute(
        &env.db,
        &format!(
            "CREATE TABLE webhook_failures (wid serial PRIMARY KEY, url text NOT NULL, body text NOT NULL, \
             kind text, tries int DEFAULT 0, error text, created timestamptz DEFAULT now(), event_uuid text); \
             INSERT INTO webhook_failures (url, body, kind, event_uuid) VALUES ('{}', 'hello', 'ping', 'evt_42')",
            env.rx.url("/hooks/m")
        ),
    );
    std::fs::write(
        env.dir().join("opsbook.toml"),
        "[profiles.default.dlq]\ntable = \"webhook_failures\"\n[profiles.default.dlq.columns]\nid = \"wid\"\ntarget_url = \"url\"\n\
         payload = \"body\"\nevent_type = \"kind\"\nattempts = \"tries\"\nlast_error = \"error\"\nfailed_at = \"created\"\n\
         event_id = \"event_uuid\"\nmethod = \"\"\nheaders = \"\"\ntenant = \"\"\n",
    )
    .unwrap();
    let out = env
        .run_env(&["replay", "--yes", "--signing-secret-env", "S"], &[("S", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let a = &env.rx.arrivals()[0];
    assert_eq!(a.body, "hello");
    assert_eq!(a.header("webhook-id"), Some("evt_42"), "webhook-id is the original event id");
    assert_eq!(env.pg.query_i64(&env.db, "SELECT count(*) FROM webhook_failures"), 0);
    std::fs::write(env.dir().join("opsbook.toml"), "[profiles.default.dlq]\ntable = \"x; DROP TABLE y\"\n").unwrap();
    let out = env.run(&["list"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("not a plain SQL name"), "{}", all_output(&out));
}

#[test]
fn http_source_lists_and_replays_through_the_service_api() {
    let api = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let items = serde_json::json!({ "items": [
        { "id": 7, "target_url": "https://shop.example/hooks", "event_type": "order.paid", "attempts": 3, "failed_at": "2026-11-20T10:00:00Z" },
        { "id": 8, "target_url": "https://crm.example/in", "event_type": "user.created", "attempts": 1, "failed_at": "2026-11-21T10:00:00Z" },
        { "id": 9, "target_url": "https://shop.example/hooks", "event_type": "order.paid", "attempts": 0, "failed_at": "2026-11-22T10:00:00Z" },
        { "id": 10, "target_url": "https://shop.example/hooks", "event_type": "order.paid", "attempts": 2, "failed_at": "2026-11-22T11:00:00Z" }
    ]});
    api.always("/v1/webhooks/dlq", 200, &items.to_string());
    api.always("/v1/webhooks/dlq/9/replay", 502, "upstream down");
    api.always("/v1/webhooks/dlq/10/replay", 404, "no such dead letter");
    let run = |args: &[&str]| {
        opsbook(dir.path())
            .arg("dlq-replay")
            .args(args)
            .args(["--source-url", &api.url("/v1/webhooks"), "--token-env", "DLQ_TOKEN", "--tenant", "acme"])
            .env("DLQ_TOKEN", "tok-secret-123")
            .output()
            .unwrap()
    };
    let out = run(&["stats", "--output", "json", "--max", "50"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(json(&out)["stats"]["total"], 4);
    let out = run(&["replay", "--yes", "--event", "order.paid", "--retries", "1", "--output", "json"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let report = &json(&out)["report"];
    assert_eq!(report["delivered"], 1);
    assert_eq!(report["failed"], 1);
    assert_eq!(report["failures"][0]["id"], 9);
    assert_eq!(report["skipped_by_reason"]["not_found"], 1, "a 404 means already replayed or gone: {report}");
    let posts: Vec<_> = api.arrivals().into_iter().filter(|a| a.method == "POST").collect();
    let mut paths: Vec<_> = posts.iter().map(|p| p.path.clone()).collect();
    paths.sort();
    assert_eq!(
        paths,
        vec![
            "/v1/webhooks/dlq/10/replay",
            "/v1/webhooks/dlq/7/replay",
            "/v1/webhooks/dlq/9/replay",
            "/v1/webhooks/dlq/9/replay"
        ]
    );
    let keys = |path: &str| {
        posts
            .iter()
            .filter(|p| p.path == path)
            .map(|p| p.header("idempotency-key").map(String::from))
            .collect::<Vec<_>>()
    };
    assert_eq!(keys("/v1/webhooks/dlq/7/replay"), vec![Some("dlq_7-3".to_string())]);
    assert_eq!(keys("/v1/webhooks/dlq/9/replay"), vec![Some("dlq_9-0".to_string()); 2], "one key across retries");
    assert!(api.arrivals().iter().all(|a| a.header("authorization") == Some("Bearer tok-secret-123")));
    assert!(api.arrivals().iter().all(|a| a.header("x-tenant-id") == Some("acme")));
    assert!(!all_output(&out).contains("tok-secret-123"));
    let out = run(&["purge", "--older-than", "1d"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    // --timeout applies to the API calls too.
    api.delay(Duration::from_secs(3));
    let out = run(&["replay", "--yes", "--timeout", "300ms"]);
    assert_eq!(code(&out), 3, "{}", all_output(&out));
    assert!(all_output(&out).contains("timed out"), "{}", all_output(&out));
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn daily_review_runbook_counts_lists_confirms_and_replays() {
    let env = Env::new("runbook");
    env.insert(3, "/hooks/a", "a", "order.paid", "t1", "2 hours");
    let runbook = repo().join("runbooks/dlq-daily-review.toml");
    let run = |extra: &[&str]| {
        opsbook(env.dir())
            .arg("run")
            .arg(&runbook)
            .args(["--param", "max=2", "--param", "limit=2", "--output", "json"])
            .args(extra)
            .env("DATABASE_URL", &env.db)
            .output()
            .unwrap()
    };
    let out = run(&["--dry-run"]);
    assert_eq!(code(&out), 0, "the stats step fails (3 > max 2) and the run continues: {}", all_output(&out));
    let doc = json(&out);
    let dry = |id: &str| doc["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).cloned().unwrap_or_default();
    assert_eq!(dry("stats")["status"], "failed", "{doc}");
    assert_eq!(dry("list")["outputs"]["count"], 2, "{doc}");
    assert_eq!(dry("replay")["outputs"]["planned"], 2, "the replay plans exactly what was listed: {doc}");
    assert_eq!(env.rx.count(), 0, "a dry run sends nothing");
    let out = run(&[]);
    assert_eq!(code(&out), 5, "the confirm step needs a person or --yes: {}", all_output(&out));
    assert_eq!(env.rx.count(), 0);
    let out = run(&["--yes"]);
    let doc = json(&out);
    let steps = doc["steps"].as_array().unwrap_or_else(|| panic!("{doc}"));
    let step = |id: &str| steps.iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("{id}: {doc}"));
    assert_eq!(step("stats")["status"], "failed", "3 > max 2: {doc}");
    assert_eq!(step("list")["outputs"]["count"], 2);
    assert_eq!(step("replay")["outputs"]["delivered"], 2, "the confirmed count is what was sent: {doc}");
    assert_eq!(env.delivered_tags(), seqs("a", 2), "the two oldest, as listed");
    assert_eq!(env.remaining(), 1);
}

#[test]
fn ctrl_c_stops_claiming_lets_in_flight_finish_and_reports() {
    let env = Env::new("sigint");
    env.insert(50, "/hooks/a", "a", "order.paid", "t1", "1 hour");
    env.rx.delay(Duration::from_millis(300));
    let child = background(env.dir())
        .args(["dlq-replay", "replay", "--yes", "--concurrency", "3", "--output", "json", "--database-url", &env.db])
        .spawn()
        .unwrap();
    let mut child = child;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while env.rx.count() < 3 {
        assert!(child.try_wait().unwrap().is_none(), "the replay exited before three deliveries arrived");
        assert!(std::time::Instant::now() < deadline, "three deliveries did not arrive within 60s");
        std::thread::sleep(Duration::from_millis(5));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", all_output(&out));
    let report = &json(&out)["report"];
    assert_eq!(report["interrupted"], true);
    let delivered = report["delivered"].as_u64().unwrap();
    assert!((3..50).contains(&delivered), "{report}");
    assert_eq!(report["skipped_by_reason"]["interrupted"].as_u64().unwrap(), 50 - delivered, "{report}");
    assert_eq!(env.rx.delivered().len() as u64, delivered, "in-flight deliveries finished and were counted");
    assert_eq!(env.remaining(), 50 - delivered as i64, "delivered rows removed, the rest kept");
}

/// Starts a replay in the background, waits (with a deadline) for the first arrival at the
/// receiver, then sends SIGINT and collects the output.
fn interrupt_after_first_arrival(env: &Env, args: &[&str]) -> Output {
    let mut child = background(env.dir())
        .args(["dlq-replay", "replay", "--yes", "--output", "json", "--database-url", &env.db])
        .args(args)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while env.rx.count() < 1 {
        assert!(child.try_wait().unwrap().is_none(), "the replay exited before the first arrival");
        assert!(std::time::Instant::now() < deadline, "nothing arrived within 60s");
        std::thread::sleep(Duration::from_millis(5));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    wait_with_deadline(child, Duration::from_secs(60))
}

#[test]
fn ctrl_c_while_rate_limited_or_backing_off_sends_and_records_nothing_more() {
    // Rows queued behind the rate limiter (one token per 5s) are not sent after Ctrl-C.
    let env = Env::new("sigint_rate");
    env.insert(10, "/hooks/a", "a", "order.paid", "t1", "1 hour");
    let out = interrupt_after_first_arrival(&env, &["--rate", "0.2", "--concurrency", "3"]);
    assert_eq!(code(&out), 130, "{}", all_output(&out));
    let report = &json(&out)["report"];
    assert_eq!(report["delivered"], 1, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["skipped_by_reason"]["interrupted"], 9, "{report}");
    assert_eq!(env.rx.count(), 1, "nothing sent after Ctrl-C");
    assert_eq!(env.remaining(), 9);
    assert_eq!(env.pg.query_i64(&env.db, "SELECT sum(attempts) FROM opsbook_dead_letters"), 0);

    // A row waiting out a Retry-After is rolled back as it was: no failure, no attempt counted.
    let env = Env::new("sigint_backoff");
    env.insert(1, "/hooks/busy", "busy", "order.paid", "t1", "1 hour");
    env.rx.fail_first("/hooks/busy", 5, 503, Some("30"));
    let out = interrupt_after_first_arrival(&env, &["--retries", "3"]);
    assert_eq!(code(&out), 130, "{}", all_output(&out));
    let report = &json(&out)["report"];
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["skipped_by_reason"]["interrupted"], 1, "{report}");
    assert_eq!(env.rx.count(), 1);
    assert_eq!(env.remaining(), 1);
    assert_eq!(env.pg.query_i64(&env.db, "SELECT attempts FROM opsbook_dead_letters"), 0);
    assert_eq!(env.pg.query_string(&env.db, "SELECT last_error FROM opsbook_dead_letters"), "");
}

#[test]
fn history_table_keeps_delivered_rows_and_failures_stay() {
    let env = Env::new("history");
    std::fs::write(
        env.dir().join("opsbook.toml"),
        "[profiles.default.dlq]\nhistory_table = \"dead_letters_delivered\"\n",
    )
    .unwrap();
    let out = env.run(&["init"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(all_output(&out).contains("created table dead_letters_delivered"), "{}", all_output(&out));
    env.insert(4, "/hooks/a", "a", "order.paid", "t1", "1 hour");
    env.insert(1, "/hooks/bad", "bad", "order.paid", "t1", "1 hour");
    env.rx.always("/hooks/bad", 422, "invalid");
    let out = env.run(&["replay", "--yes"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert_eq!(env.remaining(), 1);
    assert_eq!(env.pg.query_i64(&env.db, "SELECT count(*) FROM dead_letters_delivered"), 4);
    assert_eq!(
        env.pg.query_i64(
            &env.db,
            "SELECT count(*) FROM dead_letters_delivered WHERE payload LIKE '%a-%' AND delivered_at IS NOT NULL"
        ),
        4
    );
}

#[test]
fn routine_maintenance_runs_the_weekly_items_and_skips_the_rest() {
    let env = Env::new("routine");
    env.insert(2, "/hooks/a", "a", "order.paid", "t1", "2 hours");
    let out = opsbook(env.dir())
        .arg("run")
        .arg(repo().join("runbooks/routine-maintenance.toml"))
        .args(["--ack", "dependencies", "--ack", "dlq-followup", "--output", "json"])
        .env("DATABASE_URL", &env.db)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let doc = json(&out);
    let status = |id: &str| doc["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()["status"].clone();
    assert_eq!(status("dlq"), "ok");
    assert_eq!(status("dependencies"), "ok");
    assert_eq!(status("drill"), "skipped");
    assert_eq!(status("rotate"), "skipped");
    assert_eq!(doc["steps"][1]["outputs"]["total"], 2, "{doc}");
    assert_eq!(env.rx.count(), 0, "the review replays nothing by itself");
}
