//! Checks on secrets, the database, backups and migrations.

use std::time::Duration;

use sqlx::PgConnection;

use super::{Finding, Request};
use crate::pg::{self, DbUrl};
use crate::store::{Store, StoreOptions};

/// Marks of a value nobody filled in: anywhere in the value…
const PLACEHOLDER_PARTS: &[&str] = &["changeme", "change-me", "change_me", "placeholder", "your-", "<"];
/// …as its first word (`xxx`, `TODO: set me`: anywhere, these would also match about one random
/// base64 secret in 500)…
const PLACEHOLDER_WORDS: &[&str] = &["xxx", "todo"];
/// …or the whole value.
const PLACEHOLDER_VALUES: &[&str] = &["secret", "password", "example", "default", "test", "none", "null", "dummy"];

fn is_placeholder(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    let first_word = v.split(|c: char| !c.is_ascii_alphanumeric()).next().unwrap_or_default();
    PLACEHOLDER_PARTS.iter().any(|p| v.contains(p))
        || PLACEHOLDER_WORDS.contains(&first_word)
        || (first_word.len() >= 3 && first_word.chars().all(|c| c == 'x'))
        || PLACEHOLDER_VALUES.contains(&v.as_str())
        || v.chars().all(|c| c == v.chars().next().unwrap_or('x'))
}

/// Words that make a secret guessable wherever they stand in it, however long it is.
const COMMON_WORDS: &[&str] =
    &["password", "passwd", "secret", "changeme", "example", "qwerty", "letmein", "default", "sample"];

fn has_common_word(value: &str) -> bool {
    let v = value.to_ascii_lowercase();
    COMMON_WORDS.iter().any(|w| v.contains(w))
}

/// A stretch this long that repeats an earlier one, or runs through consecutive characters
/// ("aaaa…", "abcd…", "9876…"), carries no key material. Eight keeps real secrets clear: a random
/// 64-hex value holds such a stretch with a probability of about one in a million.
const STRETCH: usize = 8;

/// How many characters carry key material: all but those that continue a repeat of an earlier
/// `STRETCH`-character window (overlaps included, so a short period repeated counts once) or a
/// constant, ascending or descending run of at least `STRETCH` characters (its first counts).
fn novel_chars(value: &str) -> usize {
    let c: Vec<char> = value.chars().collect();
    let mut redundant = vec![false; c.len()];
    let mut seen = std::collections::HashSet::new();
    for end in STRETCH..=c.len() {
        if !seen.insert(&c[end - STRETCH..end]) {
            redundant[end - 1] = true;
        }
    }
    let step = |i: usize| c[i] as i64 - c[i - 1] as i64;
    let mut i = 1;
    while i < c.len() {
        let d = step(i);
        if d.abs() > 1 {
            i += 1;
            continue;
        }
        // c[i - 1], c[i] start a run with step d; `end` is one past its last character.
        let mut end = i + 1;
        while end < c.len() && step(end) == d {
            end += 1;
        }
        if end - (i - 1) >= STRETCH {
            redundant[i..end].iter_mut().for_each(|r| *r = true);
        }
        // The pair that broke the run may start the next one.
        i = end;
    }
    redundant.iter().filter(|r| !**r).count()
}

/// Bits of key material: the alphabet the value uses (hex 4, base64 6, otherwise 6.5 bits per
/// character) times the characters that are not repeats or runs.
fn key_bits(value: &str) -> usize {
    let value = value.trim_end_matches('=');
    let hex = value.chars().all(|c| c.is_ascii_hexdigit());
    let b64 = value.chars().all(|c| c.is_ascii_alphanumeric() || "+/-_".contains(c));
    let per_char = if hex {
        4.0
    } else if b64 {
        6.0
    } else {
        6.5
    };
    (novel_chars(value) as f64 * per_char) as usize
}

pub(super) fn jwt_secret(req: &Request) -> Finding {
    let Some(value) = req.env("JWT_SECRET") else {
        return Finding::fail(
            "JWT_SECRET is not set in the env file or the environment",
            "generate one: `opsbook rotate-secrets run JWT_SECRET` (kind = \"random\", bits = 256)",
        );
    };
    crate::redact::register(value);
    let bits = key_bits(value);
    let distinct = value.chars().collect::<std::collections::HashSet<_>>().len();
    if is_placeholder(value) || distinct < 10 {
        return Finding::fail(
            format!("JWT_SECRET looks like a placeholder or low-entropy string ({distinct} distinct characters)"),
            "replace it with 256+ random bits (rotate-secrets kind = \"random\")",
        );
    }
    if has_common_word(value) {
        return Finding::fail(
            "JWT_SECRET contains a common word (such as password, secret, changeme or example): guessable at any length",
            "replace it with 256+ random bits: `opsbook rotate-secrets run JWT_SECRET` (kind = \"random\")",
        );
    }
    if bits < 256 {
        return Finding::fail(
            format!(
                "JWT_SECRET carries about {bits} bits of key material ({} characters; repeated or sequential stretches add none); 256 are needed",
                value.chars().count()
            ),
            "use at least 32 random bytes (64 hex or 43 base64 characters): `opsbook rotate-secrets run JWT_SECRET`",
        );
    }
    let fingerprint = crate::secrets::rotate::fingerprint(value);
    let compared = match &req.compare_env {
        None => String::new(),
        Some((file, other)) => match other.get("JWT_SECRET").filter(|v| !v.is_empty()) {
            // Tokens signed in one environment would be accepted by the other.
            Some(o) if o == value => {
                return Finding::fail(
                    format!("JWT_SECRET is the same as in {} (fingerprint {fingerprint})", file.display()),
                    "give each environment its own secret: `opsbook rotate-secrets run JWT_SECRET` in one of them",
                )
            }
            Some(o) => {
                crate::redact::register(o);
                format!("; differs from {} (fingerprint {})", file.display(), crate::secrets::rotate::fingerprint(o))
            }
            None => format!("; {} has no JWT_SECRET to compare", file.display()),
        },
    };
    Finding::pass(format!("about {bits} bits, fingerprint {fingerprint}{compared}"))
}

pub(super) async fn credentials_rotated(req: &Request) -> Finding {
    // rotate-secrets reads its status with the admin URL it rotates with (ADMIN_DATABASE_URL or
    // the profile's admin_database_url).
    let spec = crate::secrets::rotate::RotateSpec {
        admin_database_url: req.env("ADMIN_DATABASE_URL").map(String::from),
        ..Default::default()
    };
    let ctx = match crate::settings::rotate::resolve(&req.app_config, &spec) {
        Ok(c) => c,
        Err(e) => {
            let message = format!("no rotation evidence: {e}");
            let fix = "declare the database credentials in [[profiles.X.secrets]] and rotate them with rotate-secrets";
            return if req.prod { Finding::fail(message, fix) } else { Finding::warn(message, fix) };
        }
    };
    let standings = match crate::secrets::rotate::status(&ctx).await {
        Ok(s) => s,
        Err(e) => return Finding::fail(format!("cannot read rotation status: {e}"), ""),
    };
    let db: Vec<_> = standings.iter().filter(|s| s.kind == crate::secrets::rotate::Kind::PostgresPassword).collect();
    if db.is_empty() {
        let message = "no postgres-password secret is declared, so rotation is unknown";
        let fix = "add the DATABASE_URL as kind = \"postgres-password\" in [[profiles.X.secrets]]";
        return if req.prod { Finding::fail(message, fix) } else { Finding::warn(message, fix) };
    }
    let stale: Vec<String> = db
        .iter()
        .filter(|s| s.rotated_at.is_none() || s.due)
        .map(|s| match s.rotated_at {
            None => format!("{} never rotated", s.name),
            Some(t) => format!("{} last rotated {}", s.name, t.format("%Y-%m-%d")),
        })
        .collect();
    if stale.is_empty() {
        Finding::pass(
            db.iter()
                .map(|s| {
                    format!(
                        "{} rotated {}",
                        s.name,
                        s.rotated_at.map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        )
    } else {
        Finding::fail(stale.join("; "), "run `opsbook rotate-secrets run --due`")
    }
}

async fn connect(req: &Request) -> Result<(PgConnection, DbUrl), Finding> {
    let Some(raw) = req.database_url.as_deref() else {
        return Err(Finding::skip("no database URL (--database-url, DATABASE_URL or the profile)"));
    };
    let url = DbUrl::parse(raw).map_err(|e| Finding::fail(e.to_string(), "fix the database URL"))?;
    let conn = pg::conn::connect_timeout(&url, Duration::from_secs(10))
        .await
        .map_err(|e| Finding::fail(e.to_string(), "make the database reachable from here"))?;
    Ok((conn, url))
}

async fn setting(conn: &mut PgConnection, name: &str) -> String {
    sqlx::query_scalar::<_, String>(&format!("SELECT current_setting('{name}', true)"))
        .fetch_one(&mut *conn)
        .await
        .unwrap_or_default()
}

pub(super) async fn db_ssl(req: &Request) -> Finding {
    let (mut conn, url) = match connect(req).await {
        Ok(c) => c,
        Err(f) => return f,
    };
    let mut problems = Vec::new();
    let mut evidence = Vec::new();
    let ssl = setting(&mut conn, "ssl").await;
    evidence.push(format!("server ssl = {ssl}"));
    if ssl != "on" {
        problems.push("the server has ssl = off".to_string());
    }
    let mode =
        url.query_value("sslmode").or_else(|| url.query_value("ssl-mode")).unwrap_or_else(|| "prefer (default)".into());
    evidence.push(format!("URL sslmode = {mode}"));
    let wanted: &[&str] = if req.prod { &["verify-full"] } else { &["require", "verify-ca", "verify-full"] };
    if !wanted.iter().any(|w| mode.eq_ignore_ascii_case(w)) {
        problems.push(format!("the URL does not require TLS{}", if req.prod { " with verify-full" } else { "" }));
    }
    let encrypted: Option<bool> = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_optional(&mut conn)
        .await
        .ok()
        .flatten();
    evidence.push(format!("this connection encrypted = {}", encrypted.unwrap_or(false)));
    if encrypted != Some(true) {
        problems.push("this connection is not encrypted".into());
    }
    // Every live TCP client session, not only ours (Unix-socket sessions cannot use TLS; other
    // roles' addresses are visible only to superusers and pg_read_all_stats).
    let live = "SELECT count(*), count(*) FILTER (WHERE NOT s.ssl) FROM pg_stat_ssl s \
                JOIN pg_stat_activity a ON a.pid = s.pid \
                WHERE a.backend_type = 'client backend' AND a.client_addr IS NOT NULL";
    match sqlx::query_as::<_, (i64, i64)>(live).fetch_one(&mut conn).await {
        Ok((total, 0)) => evidence.push(format!("{total} live TCP connection(s), all encrypted")),
        Ok((total, plain)) => problems.push(format!("{plain} of {total} live TCP connection(s) unencrypted")),
        Err(_) => evidence.push("live connections not checked (pg_stat_ssl unreadable)".into()),
    }
    let enc = setting(&mut conn, "password_encryption").await;
    evidence.push(format!("password_encryption = {enc}"));
    if enc != "scram-sha-256" {
        problems.push(format!("password_encryption is {enc}"));
    }
    match sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_authid WHERE rolpassword LIKE 'md5%'")
        .fetch_one(&mut conn)
        .await
    {
        Ok(0) => evidence.push("no md5 verifiers".into()),
        Ok(n) => problems.push(format!("{n} role(s) still have md5 password verifiers")),
        Err(_) => evidence.push("md5 verifiers not checked (pg_authid needs superuser)".into()),
    }
    if problems.is_empty() {
        Finding::pass(evidence.join("; "))
    } else {
        Finding::fail(
            format!("{} ({})", problems.join("; "), evidence.join("; ")),
            "enable ssl on the server, use sslmode=verify-full in the URL, set password_encryption = scram-sha-256 and reset md5 passwords",
        )
    }
}

pub(super) async fn pg_stat_statements(req: &Request) -> Finding {
    let (mut conn, _) = match connect(req).await {
        Ok(c) => c,
        Err(f) => return f,
    };
    let installed: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')")
            .fetch_one(&mut conn)
            .await
            .unwrap_or(false);
    let preload = setting(&mut conn, "shared_preload_libraries").await;
    let preloaded = preload.split(',').any(|l| l.trim().trim_matches('"') == "pg_stat_statements");
    match (installed, preloaded) {
        (true, true) => Finding::pass("installed and in shared_preload_libraries"),
        _ => Finding::fail(
            format!("installed = {installed}, shared_preload_libraries = '{preload}'"),
            "add pg_stat_statements to shared_preload_libraries (restart) and CREATE EXTENSION pg_stat_statements",
        ),
    }
}

pub(super) async fn migrations_applied(req: &Request) -> Finding {
    let Some(settings) = &req.migrations else {
        return Finding::skip("no migrations directory (--migrations, or the profile's migrate.dir)");
    };
    match crate::migrate::status(settings).await {
        Ok(status) => {
            let problems: Vec<String> = status
                .problems()
                .map(|e| {
                    format!(
                        "{} {} ({})",
                        e.version.map_or_else(|| "R".into(), |v| v.to_string()),
                        e.description,
                        e.state.as_str()
                    )
                })
                .collect();
            if problems.is_empty() {
                Finding::pass(format!("{} applied, head {}", status.entries.len(), status.head.unwrap_or_default()))
            } else {
                Finding::fail(problems.join(", "), "run `opsbook migrate up` (and `migrate validate` for drift)")
            }
        }
        Err(e) => Finding::fail(e.to_string(), "see `opsbook migrate status`"),
    }
}

pub(super) async fn backup_retention(req: &Request) -> Finding {
    let Some(url) = &req.store_url else {
        return Finding::skip("no backup store (--store, OPSBOOK_STORE or the profile)");
    };
    let store = match Store::open_url(url, &StoreOptions::default()).await {
        Ok(s) => s,
        Err(e) => return Finding::fail(e.to_string(), "make the store reachable"),
    };
    let catalog = match crate::backup::Catalog::load(&store, Some(&req.set)).await {
        Ok(c) => c,
        Err(e) => return Finding::fail(e.to_string(), "make the store readable"),
    };
    let now = chrono::Utc::now();
    let rpo = req.rpo_target;
    let drill_interval = req.drill_interval;
    let mut problems = Vec::new();
    let mut evidence = Vec::new();
    match catalog.backups.first() {
        None => problems.push(format!("set '{}' has no complete backup", req.set)),
        Some(b) => {
            let age = (now - b.manifest.snapshot_time).to_std().unwrap_or_default();
            evidence.push(format!(
                "newest backup {} is {} old",
                b.id,
                humantime::format_duration(Duration::from_secs(age.as_secs()))
            ));
            if age > rpo {
                problems.push(format!(
                    "the newest backup is older than the RPO target {}",
                    humantime::format_duration(rpo)
                ));
            }
        }
    }
    let set_cfg = req.app_config.set(&req.set);
    let policy = set_cfg.map(|c| !c.retention.is_empty());
    if policy != Some(true) {
        problems.push(format!("set '{}' has no retention policy in the profile", req.set));
    } else {
        evidence.push("retention policy configured".into());
    }
    let drills = match drill_history(&store, &catalog).await {
        Ok(d) => d,
        Err(e) => return Finding::fail(e.to_string(), "make the store readable"),
    };
    match drills.last_passed {
        Some(t) if (now - t).to_std().unwrap_or_default() <= drill_interval => {
            evidence.push(format!("last passing drill {}", t.format("%Y-%m-%d %H:%M")))
        }
        Some(t) => problems.push(format!(
            "the last passing drill ({}) is older than {}",
            t.format("%Y-%m-%d"),
            humantime::format_duration(drill_interval)
        )),
        None if drills.recorded == 0 => problems.push(format!("no restore drill is recorded for set '{}'", req.set)),
        None => problems
            .push(format!("none of the {} restore drill(s) recorded for set '{}' passed", drills.recorded, req.set)),
    }
    if problems.is_empty() {
        Finding::pass(evidence.join("; "))
    } else {
        Finding::fail(
            problems.join("; "),
            "schedule `backup run` (runbooks/nightly-backup.toml), set keep_* in [profiles.X.sets.SET], and run `restore-drill` weekly",
        )
    }
}

/// What the drill records beside the backups say.
struct DrillHistory {
    /// How many drill records the backups hold.
    recorded: usize,
    /// The newest passing drill, whatever drills followed it.
    last_passed: Option<chrono::DateTime<chrono::Utc>>,
}

/// Every drill record of the catalog's backups, not only each backup's newest: a failed drill
/// after a passing one does not undo the proof the passing one gave. Records are named
/// `drill-<UTC timestamp>.json`, so they are read newest first until one passed; an unreadable
/// record is skipped as the catalog skips it.
async fn drill_history(
    store: &crate::store::Store,
    catalog: &crate::backup::Catalog,
) -> Result<DrillHistory, crate::store::StoreError> {
    use crate::backup::catalog::{file_name, read_record, record_keys};
    use futures::stream::{self, StreamExt};
    let mut keys: Vec<String> =
        catalog.backups.iter().flat_map(|b| record_keys(&b.objects, "drill-")).map(String::from).collect();
    keys.sort_by(|a, b| file_name(b).cmp(file_name(a)));
    let recorded = keys.len();
    let mut records = stream::iter(keys)
        .map(|key| async move { read_record::<crate::backup::manifest::DrillSummary>(store, &key).await })
        .buffered(8);
    while let Some(record) = records.next().await {
        if let Some(d) = record?.filter(|d| d.ok) {
            return Ok(DrillHistory { recorded, last_passed: Some(d.time) });
        }
    }
    Ok(DrillHistory { recorded, last_passed: None })
}

pub(super) fn required_env(req: &Request) -> Finding {
    if req.config.required_env.is_empty() {
        return Finding::skip("no required_env in the profile's [promote] table");
    }
    let mut problems = Vec::new();
    for key in &req.config.required_env {
        match req.env(key) {
            None => problems.push(format!("{key} is missing or empty")),
            Some(v) if is_placeholder(v) => problems.push(format!("{key} holds a placeholder")),
            Some(v) if v.contains("://") && url::Url::parse(v).is_err() => {
                problems.push(format!("{key} is not a valid URL"))
            }
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Finding::pass(format!("{} variables set", req.config.required_env.len()))
    } else {
        Finding::fail(problems.join("; "), "set real values in the environment or the env file")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_material_estimates() {
        assert_eq!(key_bits("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"), 256);
        assert!(key_bits(&"a1".repeat(32)) < 256, "a repeated pair");
        assert!(key_bits("short") < 256);
        assert!(is_placeholder("changeme-in-prod"));
        assert!(is_placeholder("aaaaaaaaaaaa"));
        assert!(!is_placeholder("9f86d081884c7d659a2feaa0c55ad015"));
        assert!(is_placeholder("xxx-replace-me") && is_placeholder("XXXXXXXX") && is_placeholder("TODO: set it"));
        // Random base64 holds "xxx" or "todo" now and then: only a first word made of them counts.
        assert!(!is_placeholder("q3xXxLr8/TodoPz0kV2cW9s1yYb7nE4uR6tA5mJ0hGf="));
        assert!(!is_placeholder("xxxQ3Lr8TodoPz0kV2cW9s1yYb7nE4uR6tA5mJ0hGf"));
    }

    /// The values the QA pass found passing: repeats, short alphabets and words.
    #[test]
    fn low_entropy_secrets_are_refused() {
        for weak in [
            "0123456789".repeat(7),
            "abcdefghij".repeat(5),
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".into(),
            format!("{0}{0}", "9f86d081884c7d659a2feaa0c55ad015"),
            "zYx9".repeat(20),
        ] {
            assert!(key_bits(&weak) < 256, "{weak}: {} bits", key_bits(&weak));
        }
        assert!(has_common_word("Password1234567890Password1234567890Password12345"));
        assert!(has_common_word("my-JWT-Secret-for-the-shop-api-do-not-share-2024!"));
        assert!(!has_common_word("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"));
    }

    /// Real random secrets of 32 bytes pass, hex and base64 (standard and URL-safe, padded or not).
    #[test]
    fn random_secrets_keep_passing() {
        use base64::Engine;
        use rand::RngCore;
        for _ in 0..100 {
            let hex = crate::secrets::hex_key(32);
            assert!(key_bits(&hex) >= 256 && !has_common_word(&hex) && !is_placeholder(&hex), "{hex}");
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            for b64 in [
                base64::engine::general_purpose::STANDARD.encode(bytes),
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
            ] {
                assert!(key_bits(&b64) >= 256 && !has_common_word(&b64), "{b64}: {} bits", key_bits(&b64));
            }
        }
    }
}
