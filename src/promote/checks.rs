//! Checks on secrets, the database, backups and migrations.

use std::time::Duration;

use sqlx::PgConnection;

use super::{Finding, Request};
use crate::pg::{self, DbUrl};

/// Marks of a value nobody filled in: anywhere in the value…
const PLACEHOLDER_PARTS: &[&str] = &["changeme", "change-me", "change_me", "todo", "xxx", "placeholder", "your-", "<"];
/// …or the whole value.
const PLACEHOLDER_VALUES: &[&str] = &["secret", "password", "example", "default", "test", "none", "null", "dummy"];

fn is_placeholder(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    PLACEHOLDER_PARTS.iter().any(|p| v.contains(p))
        || PLACEHOLDER_VALUES.contains(&v.as_str())
        || v.chars().all(|c| c == v.chars().next().unwrap_or('x'))
}

/// Bits of key material, estimated from the alphabet the value uses.
fn key_bits(value: &str) -> usize {
    let hex = value.chars().all(|c| c.is_ascii_hexdigit());
    let b64 = value.chars().all(|c| c.is_ascii_alphanumeric() || "+/=-_".contains(c));
    let per_char = if hex {
        4.0
    } else if b64 {
        6.0
    } else {
        6.5
    };
    (value.trim_end_matches('=').len() as f64 * per_char) as usize
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
    if bits < 256 {
        return Finding::fail(
            format!("JWT_SECRET carries about {bits} bits of key material; 256 are needed"),
            "use at least 32 random bytes (64 hex or 43 base64 characters)",
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
    let ctx = match crate::secrets::rotate::context(&req.app_config, req.env("ADMIN_DATABASE_URL")) {
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

fn duration(raw: Option<&str>, default: &str) -> Duration {
    humantime::parse_duration(raw.unwrap_or(default))
        .unwrap_or_else(|_| humantime::parse_duration(default).expect("valid default"))
}

pub(super) async fn backup_retention(req: &Request) -> Finding {
    let Some(url) = &req.store_url else {
        return Finding::skip("no backup store (--store, OPSBOOK_STORE or the profile)");
    };
    let store = match crate::backup::job::open_store(url).await {
        Ok(s) => s,
        Err(e) => return Finding::fail(e.to_string(), "make the store reachable"),
    };
    let catalog = match crate::backup::Catalog::load(&store, Some(&req.set)).await {
        Ok(c) => c,
        Err(e) => return Finding::fail(e.to_string(), "make the store readable"),
    };
    let now = chrono::Utc::now();
    let rpo = duration(req.config.rpo_target.as_deref(), "26h");
    let drill_interval = duration(req.config.drill_interval.as_deref(), "8d");
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
    let policy = set_cfg.map(|c| {
        c.keep_last.is_some()
            || c.keep_hourly.is_some()
            || c.keep_daily.is_some()
            || c.keep_weekly.is_some()
            || c.keep_monthly.is_some()
            || c.keep_yearly.is_some()
            || c.keep_within.is_some()
    });
    if policy != Some(true) {
        problems.push(format!("set '{}' has no retention policy in the profile", req.set));
    } else {
        evidence.push("retention policy configured".into());
    }
    let last_drill =
        catalog.backups.iter().filter_map(|b| b.last_drill.as_ref()).filter(|d| d.ok).map(|d| d.time).max();
    match last_drill {
        Some(t) if (now - t).to_std().unwrap_or_default() <= drill_interval => {
            evidence.push(format!("last passing drill {}", t.format("%Y-%m-%d %H:%M")))
        }
        Some(t) => problems.push(format!(
            "the last passing drill ({}) is older than {}",
            t.format("%Y-%m-%d"),
            humantime::format_duration(drill_interval)
        )),
        None => problems.push("no backup has passed a restore drill".into()),
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
        assert_eq!(key_bits(&"a1".repeat(32)), 256);
        assert!(key_bits("short") < 256);
        assert!(is_placeholder("changeme-in-prod"));
        assert!(is_placeholder("aaaaaaaaaaaa"));
        assert!(!is_placeholder("9f86d081884c7d659a2feaa0c55ad015"));
    }
}
