//! Secrets never reach a table, whatever the terminal width: the run summary, `backup list`, the
//! promote-check table and the drill report are rendered with a random secret in their data, at
//! random widths, and compared with the same data holding the mask itself. With box-drawing
//! characters, spaces and newlines removed (so a secret wrapped across lines would be found),
//! the two must be identical — the secret, and for long secrets either half, appears nowhere the
//! mask would not — and identifier columns must be exactly as given.

use proptest::prelude::*;
use serde_json::json;

use crate::redact::{self, MASK};

/// Words a weak secret is often cut from, so short secrets that are substrings of the
/// surrounding text get tried.
const WORDS: [&str; 10] = [
    "secret",
    "administration",
    "password",
    "postgres",
    "restore",
    "shopping",
    "detail",
    "backup",
    "evidence",
    "127.0.0.1",
];

fn secrets() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9._~-]{4,64}",
        (0..WORDS.len(), 0usize..6, 4usize..9).prop_map(|(w, start, len)| {
            let word = WORDS[w];
            let start = start.min(word.len() - 4);
            word[start..(start + len).min(word.len())].to_string()
        }),
    ]
}

fn strip(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace() && !('\u{2500}'..='\u{257F}').contains(c)).collect()
}

fn encoded(secret: &str) -> String {
    url::form_urlencoded::byte_serialize(secret.as_bytes()).collect()
}

/// The four renderers, over data holding `secret` (its URL form where it sits in a URL).
fn render_all(secret: &str, width: u16) -> Vec<String> {
    let url = format!("postgres://postgres:{}@127.0.0.1:5432/shop", encoded(secret));
    let journal: crate::runbook::journal::RunJournal = serde_json::from_value(json!({
        "run_id": "20261207T190107-9be5d837", "runbook": "quickstart", "path": "runbooks/quickstart.toml",
        "sha256": "00", "started": "2026-12-07T19:01:07Z", "status": "failed", "dry_run": false,
        "params": {"set": "quickstart"},
        "steps": [
            {"id": "sandbox", "action": "sandbox", "status": "ok", "attempts": 1, "name": null,
             "outputs": {"database_url": url, "store": "/tmp/store"}},
            {"id": "data", "action": "sql", "status": "ok", "attempts": 1, "name": null,
             "outputs": {"value": format!("token {secret} end")}},
            {"id": "backup", "action": "backup", "status": "failed", "attempts": 2, "name": null,
             "error": format!("connect to {url}: password {secret} rejected")},
        ]
    }))
    .expect("journal fixture");
    let mut tables = vec![super::run::summary_table(&journal)];

    let rows = [super::backup_list::ListRow {
        kind: "dump",
        set: "shop",
        id: "20261207T185311Z-5533d35b",
        time: chrono::DateTime::UNIX_EPOCH,
        snapshot_time: chrono::DateTime::UNIX_EPOCH,
        age_seconds: 3600,
        size: 1 << 30,
        raw_size: 1 << 31,
        compression: format!("zstd:3 ({secret})"),
        encrypted: false,
        verified: None,
        drilled: None,
        rows: None,
    }];
    tables.push(super::backup_list::list_table(&rows));

    let checks: Vec<crate::promote::CheckResult> = serde_json::from_value(json!([
        {"id": "jwt-secret", "title": "JWT secret is strong", "status": "fail",
         "evidence": format!("JWT_SECRET={secret} is a common word"), "fix": "rotate-secrets run --only jwt", "seconds": 0.0},
        {"id": "db-ssl", "title": "Database SSL", "status": "pass", "evidence": format!("{url} uses sslmode=require"),
         "seconds": 0.1},
    ]))
    .expect("checks fixture");
    tables.push(super::promote_check::checks_table(&checks));

    let report: crate::drill::DrillReport = serde_json::from_value(json!({
        "tool": "opsbook", "drill_id": "20261207T185347Z-7153", "time": "2026-12-07T19:00:00Z",
        "started": "2026-12-07T18:59:00Z", "ok": false, "store": "/tmp/store", "set": "shop",
        "backup_id": "20261207T185311Z-5533d35b", "backup_snapshot": null, "seed": 7, "target": url,
        "restore_mode": "stream", "restored_bytes": 0, "tables": [], "row_count_method": null, "sql_checks": [],
        "rto": {"seconds": 1.0, "ok": true}, "rto_seconds_per_gib": null, "rpo": {"seconds": 1.0, "ok": true},
        "steps": [
            {"name": "restore", "outcome": "failed", "seconds": 1.5,
             "detail": format!("pg_restore into {url} failed: role password {secret} expired")},
            {"name": "row counts", "outcome": "skipped", "seconds": 0.0, "detail": "not reached"},
        ]
    }))
    .expect("drill fixture");
    tables.push(super::restore_drill::steps_table(&report.steps));

    tables
        .iter_mut()
        .map(|t| {
            t.set_width(width);
            t.to_string()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn no_table_shows_a_secret_at_any_width(secret in secrets(), width in 40u16..=200, registered in any::<bool>()) {
        // A typed secret is registered before any output; an untyped one is known only from the
        // URL it sits in, which the table registers before it masks any cell.
        if registered {
            redact::register(&secret);
        }
        let shown = render_all(&secret, width);
        let masked = render_all(MASK, width);
        for (shown, masked) in shown.iter().zip(&masked) {
            let (s, m) = (strip(shown), strip(masked));
            prop_assert_eq!(&s, &m, "secret {:?} at width {}:\n{}", secret, width, shown);
            let mut pieces = vec![secret.as_str()];
            if secret.len() >= 12 {
                pieces.extend([&secret[..secret.len() / 2], &secret[secret.len() / 2..]]);
            }
            for piece in pieces {
                prop_assert!(
                    s.matches(piece).count() <= m.matches(piece).count(),
                    "{:?} of secret {:?} shows at width {}:\n{}", piece, secret, width, shown
                );
            }
        }
    }
}

#[test]
fn weak_secrets_leave_identifiers_and_headers_exact() {
    let baseline = render_all("Kq7-unrelated-Zx9", 80);
    for weak in ["secret", "admin", "shop", "1234", "backup", "restore"] {
        redact::register(weak);
        let shown = render_all(weak, 80);
        for (shown, base) in shown.iter().zip(&baseline) {
            for ident in
                ["jwt-secret", "rotate-secrets", "20261207T185311Z-5533d35b", "quickstart", "sandbox", "backup"]
            {
                assert_eq!(shown.matches(ident).count(), base.matches(ident).count(), "{weak}: {ident} in\n{shown}");
            }
            let header = |t: &str| t.lines().nth(1).map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "));
            assert_eq!(header(shown), header(base), "{weak}: header changed");
        }
    }
}

#[test]
fn reports_rendered_from_masked_data_read_back_whole() {
    // `redact::redacted` round-trips a report through JSON before Markdown/JUnit render it: every
    // field that may be left out when serialized must read back (a missing `serde(default)`
    // would panic there).
    let secret = "Rt7-roundtrip-secret-91";
    redact::register(secret);
    let checks: Vec<crate::promote::CheckResult> = serde_json::from_value(json!([
        {"id": "db-ssl", "title": "Database SSL", "status": "pass", "evidence": format!("pw {secret}"), "seconds": 0.1}
    ]))
    .expect("checks");
    let masked = redact::redacted(&checks);
    assert_eq!(masked[0].evidence, "pw ***");
    assert_eq!(masked[0].fix, "");
    let report: crate::drill::DrillReport = serde_json::from_value(json!({
        "tool": "opsbook", "drill_id": "d", "time": "2026-12-07T19:00:00Z", "started": "2026-12-07T18:59:00Z",
        "ok": true, "store": "/s", "set": "shop", "backup_id": "b", "backup_snapshot": null, "seed": 1,
        "target": "t", "restore_mode": "stream", "restored_bytes": 0, "tables": [], "row_count_method": null,
        "sql_checks": [], "rto": {"seconds": 1.0, "ok": true}, "rto_seconds_per_gib": null,
        "rpo": {"seconds": 1.0, "ok": true}, "steps": [{"name": "restore", "outcome": "passed", "seconds": 1.0,
        "detail": format!("into {secret}")}]
    }))
    .expect("report");
    let masked = redact::redacted(&report);
    assert_eq!(masked.steps[0].detail, "into ***");
    assert!(crate::drill::render::markdown(&masked).contains("into ***"));
}
