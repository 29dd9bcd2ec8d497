//! Resolves a PITR spec (flags or a runbook step) over the profile's `[pitr]` table, the
//! environment and the sandbox into the `Pitr` the library runs: the data directory and socket,
//! the superuser connection, the repository with its S3 settings and secrets, retention,
//! compression and the RPO targets.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::pg::DbUrl;
use crate::pitr::{Pitr, PitrError, PitrSpec, Repo, S3Repo};
use crate::store::StoreUrl;

pub const DEFAULT_STANZA: &str = "main";
pub const DEFAULT_KEEP_FULL: u32 = 2;
pub const DEFAULT_PROCESS_MAX: u32 = 2;
pub const DEFAULT_ARCHIVE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_RPO_TARGET: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_FULL_INTERVAL: Duration = Duration::from_secs(8 * 86_400);

fn config_error(e: ConfigError) -> PitrError {
    PitrError::setting("config", e.to_string())
}

/// The resolved configuration for `given` over the profile's `[pitr]` table.
pub fn resolve(config: &Config, given: PitrSpec) -> Result<Pitr, PitrError> {
    let base = config.profile.pitr.clone();
    let spec = given.over(&base);
    let stanza = spec.stanza.clone().unwrap_or_else(|| DEFAULT_STANZA.into());
    if stanza.is_empty() || !stanza.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(PitrError::setting(
            "stanza",
            format!("'{stanza}' is not a stanza name: use letters, digits, '-' and '_'"),
        ));
    }
    let sandbox_pg = config.sandbox.as_ref().and_then(|s| s.env_file.parent()).map(|root| root.join("pg"));
    let pg_path = match (&spec.pg_path, &sandbox_pg) {
        (Some(p), _) => absolute(p)?,
        (None, Some(pg)) if pg.join("data").is_dir() => absolute(&pg.join("data"))?,
        _ => {
            return Err(PitrError::setting(
                "pg_path",
                format!(
                    "not set: set pg_path in [profiles.{}.pitr] to the cluster's data directory (SHOW data_directory), \
                     or start `opsbook sandbox up` to try PITR on a local cluster",
                    config.profile_name
                ),
            ))
        }
    };
    let db = database(config, &spec)?;
    let socket_dir = match (&spec.socket_dir, db.host()) {
        (Some(dir), _) => dir.clone(),
        (None, Some(h)) if h.starts_with('/') => PathBuf::from(h),
        _ => match &sandbox_pg {
            Some(pg) if pg.join("sock").is_dir() && absolute(pg).is_ok_and(|pg| pg_path.starts_with(pg)) => {
                absolute(&pg.join("sock"))?
            }
            _ => PathBuf::from("/var/run/postgresql"),
        },
    };
    let store = config.store_url(None, None).map_err(config_error)?;
    let repo_text = spec.repo.clone().unwrap_or_else(|| default_repo(&store));
    let repo = repo(config, &repo_text, spec.ca_file.as_deref())?;
    let (compress_type, compress_level) = compression(spec.compression.as_deref())?;
    let cipher_pass = match &spec.cipher_pass {
        Some(raw) => {
            let pass = config.resolve("pitr.cipher_pass", raw).map_err(config_error)?;
            crate::redact::register(&pass);
            Some(pass)
        }
        None => None,
    };
    let keep_full = spec.keep_full.unwrap_or(DEFAULT_KEEP_FULL);
    if keep_full == 0 {
        return Err(PitrError::setting("keep_full", "must be at least 1"));
    }
    let (records, records_options) = config.store_with_options("store", &store).map_err(config_error)?;
    Ok(Pitr {
        profile: config.profile_name.clone(),
        dir: match &spec.dir {
            Some(d) => absolute(d)?,
            None => pg_path.parent().unwrap_or(Path::new("/")).join("pgbackrest"),
        },
        stanza,
        pg_port: db.port().unwrap_or(5432),
        pg_path,
        socket_dir,
        db,
        repo,
        keep_full,
        keep_diff: spec.keep_diff,
        compress_type,
        compress_level,
        cipher_pass,
        process_max: spec.process_max.unwrap_or(DEFAULT_PROCESS_MAX).max(1),
        archive_timeout: spec.archive_timeout.unwrap_or(DEFAULT_ARCHIVE_TIMEOUT),
        rpo_target: spec.rpo_target.unwrap_or(DEFAULT_RPO_TARGET),
        full_interval: spec.full_interval.unwrap_or(DEFAULT_FULL_INTERVAL),
        records,
        records_options,
        monitor: spec.monitor,
    })
}

/// The PITR drill a `restore-drill` spec with `pitr` asks for.
pub fn drill_request(
    config: &Config,
    o: &crate::drill::DrillSpec,
) -> Result<crate::pitr::drill::DrillRequest, PitrError> {
    let refuse = |flag: &str, why: &str| {
        Err(PitrError::setting("drill", format!("{flag} does not apply to a PITR drill: {why}")))
    };
    if o.target_url.is_some() {
        return refuse("--target-url", "it restores into a throwaway local cluster (drop --target-url)");
    }
    if o.objects.is_some() {
        return refuse("--objects", "sample the media bucket with a dump drill");
    }
    if o.set.is_some() || o.backup.as_deref().is_some_and(|b| b != "latest") {
        return refuse("--set/--backup", "pgBackRest picks the newest backup before the target; give --target-time");
    }
    if o.globals || o.identity.is_some() || o.jobs.is_some_and(|j| j > 1) {
        return refuse("--globals/--identity/--jobs", "a physical restore brings the whole cluster, roles included");
    }
    let spec = PitrSpec { stanza: o.stanza.clone(), monitor: o.monitor.clone(), ..Default::default() };
    let pitr = resolve(config, spec)?;
    let target = match o.target_time.as_deref().map(str::trim) {
        None | Some("latest") => crate::pitr::drill::Target::Latest,
        Some("random") => crate::pitr::drill::Target::Random(Duration::from_secs(86_400)),
        Some(text) if text.starts_with("random:") => {
            let within = humantime::parse_duration(&text["random:".len()..])
                .map_err(|e| PitrError::setting("target_time", format!("'{text}': {e} (e.g. random:24h)")))?;
            crate::pitr::drill::Target::Random(within)
        }
        Some(text) => crate::pitr::drill::Target::Time(parse_time(text)?),
    };
    let check_sql = match &o.check_sql {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| PitrError::io("read --check-sql", path, e))?;
            if crate::pg::query::split_statements(&text).is_empty() {
                return Err(PitrError::setting("check_sql", format!("{} holds no SQL statement", path.display())));
            }
            Some((path.clone(), text))
        }
    };
    let migrations = match &o.migrations {
        None => None,
        Some(dir) => {
            let given = crate::migrate::spec::MigrateSpec { migrations: Some(dir.clone()), ..Default::default() };
            let mut settings = super::migrate::settings_for(&config.profile.migrate, pitr.db.clone(), &given);
            crate::migrate::source::load(&settings.dir).map_err(|e| PitrError::setting("migrations", e.to_string()))?;
            settings.lock_wait = Duration::from_secs(5);
            Some(settings)
        }
    };
    Ok(crate::pitr::drill::DrillRequest {
        pitr,
        target,
        parent: std::env::temp_dir().join("opsbook-drills"),
        keep: o.keep,
        check_sql,
        migrations,
        rto_target: o.rto_target,
        recovery_timeout: o.rto_target.map_or(Duration::from_secs(4 * 3600), |r| r * 2),
    })
}

/// A drill's target time ([`crate::spec::parse_time`]).
fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, PitrError> {
    crate::spec::parse_time(text, chrono::Utc::now()).ok_or_else(|| {
        PitrError::setting(
            "target_time",
            format!(
                "'{text}' is not a time: use RFC 3339 (2026-12-07T03:10:00Z), 2026-12-07 03:10:00 (UTC), an age \
                 (20m: that long ago), or latest"
            ),
        )
    })
}

/// The superuser connection: `pitr.database_url`, else the admin URL, else the application's.
fn database(config: &Config, spec: &PitrSpec) -> Result<DbUrl, PitrError> {
    let text = match &spec.database_url {
        Some(raw) => config.resolve("pitr.database_url", raw).map_err(config_error)?,
        None => match &config.profile.admin_database_url {
            Some(raw) => config.resolve("admin_database_url", raw).map_err(config_error)?,
            None => config.database_url(None, None).map_err(config_error)?,
        },
    };
    crate::redact::register_urls_in(&text);
    Ok(DbUrl::parse_named("pitr.database_url", &text)?)
}

fn absolute(p: &Path) -> Result<PathBuf, PitrError> {
    std::path::absolute(p).map_err(|e| PitrError::io("resolve", p, e))
}

/// Beside the dump store, never inside it: `backup list` would otherwise list every WAL
/// segment. `/srv/backups` → `/srv/pitr`; `s3://bucket/backups` → `s3://bucket/pitr`; a store at
/// a bucket's root → `s3://bucket/pitr`.
fn default_repo(store: &str) -> String {
    match StoreUrl::parse(store) {
        Ok(StoreUrl::Local { root }) => root.parent().unwrap_or(Path::new("/")).join("pitr").display().to_string(),
        Ok(StoreUrl::S3 { bucket, prefix }) => match prefix.rsplit_once('/') {
            Some((parent, _)) => format!("s3://{bucket}/{parent}/pitr"),
            None => format!("s3://{bucket}/pitr"),
        },
        Err(_) => format!("{store}-pitr"),
    }
}

fn repo(config: &Config, text: &str, ca_file: Option<&Path>) -> Result<Repo, PitrError> {
    let (url, options) = config.store_with_options("pitr.repo", text).map_err(config_error)?;
    match StoreUrl::parse(&url)? {
        StoreUrl::Local { root } => Ok(Repo::Local(root)),
        StoreUrl::S3 { bucket, prefix } => {
            let c = crate::store::foreign_client(&url, &bucket, &options)?;
            let (endpoint, port) = match &c.endpoint {
                None => (format!("s3.{}.amazonaws.com", c.region), None),
                Some(e) => {
                    let parsed =
                        url::Url::parse(e).map_err(|err| PitrError::setting("repo", format!("endpoint {e}: {err}")))?;
                    if parsed.scheme() != "https" {
                        return Err(PitrError::setting(
                            "repo",
                            format!("pgBackRest reaches S3 only over HTTPS; the endpoint {e} is plain HTTP"),
                        ));
                    }
                    (parsed.host_str().unwrap_or_default().to_string(), parsed.port())
                }
            };
            let Some((key, secret)) = c.credentials else {
                return Err(PitrError::setting(
                    "repo",
                    format!(
                        "pgBackRest needs an access key for {url}: set access_key and secret_key in the profile's \
                         [stores] entry for it, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                    ),
                ));
            };
            crate::redact::register(&secret);
            Ok(Repo::S3(S3Repo {
                bucket: c.bucket,
                path: format!("/{prefix}"),
                endpoint,
                port,
                region: c.region,
                key,
                secret,
                path_style: c.path_style,
                ca_file: ca_file.map(Path::to_path_buf),
            }))
        }
    }
}

/// "zst", "zst:3", "lz4", "gz:6", "bz2", "none"; "zstd" is taken for "zst".
fn compression(given: Option<&str>) -> Result<(String, Option<u32>), PitrError> {
    let text = given.unwrap_or("zst");
    let (kind, level) = match text.split_once(':') {
        Some((k, l)) => {
            let level = l.trim().parse::<u32>().map_err(|_| {
                PitrError::setting("compression", format!("'{text}': the level after ':' must be a number, e.g. zst:3"))
            })?;
            (k.trim(), Some(level))
        }
        None => (text.trim(), None),
    };
    let kind = match kind {
        "zstd" | "zst" => "zst",
        "lz4" | "gz" | "bz2" | "none" => kind,
        other => {
            return Err(PitrError::setting(
                "compression",
                format!("'{other}' is not one of zst, lz4, gz, bz2, none (with an optional level: zst:3)"),
            ))
        }
    };
    Ok((kind.to_string(), level))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_repository_sits_beside_the_store() {
        assert_eq!(super::default_repo("/srv/backups"), "/srv/pitr");
        assert_eq!(super::default_repo("s3://b/prod/backups"), "s3://b/prod/pitr");
        assert_eq!(super::default_repo("s3://b/backups"), "s3://b/pitr");
        assert_eq!(super::default_repo("s3://b"), "s3://b/pitr");
    }

    /// Every `[pitr]` key written in opsbook.toml reads back as written; a misspelt one is refused.
    #[test]
    fn the_pitr_table_round_trips() {
        let full = crate::pitr::PitrSpec {
            stanza: Some("app".into()),
            pg_path: Some("/var/lib/postgresql/15/main".into()),
            database_url: Some("env:PITR_URL".into()),
            socket_dir: Some("/run/postgresql".into()),
            repo: Some("s3://b/pitr".into()),
            ca_file: Some("/etc/ssl/ca.pem".into()),
            dir: Some("/etc/pgbackrest".into()),
            keep_full: Some(3),
            keep_diff: Some(6),
            compression: Some("zst:3".into()),
            cipher_pass: Some("env:PASS".into()),
            process_max: Some(4),
            archive_timeout: Some(std::time::Duration::from_secs(30)),
            rpo_target: Some(std::time::Duration::from_secs(600)),
            full_interval: Some(std::time::Duration::from_secs(7 * 86_400)),
            monitor: crate::spec::MonitorSpec {
                notify_url: Some("https://hc-ping.com/x".into()),
                metrics_file: Some("/var/lib/node_exporter/pitr.prom".into()),
            },
        };
        let mut value = serde_json::to_value(&full).unwrap();
        assert_eq!(
            value.as_object().unwrap().len(),
            crate::spec::field_names::<crate::pitr::PitrSpec>().len(),
            "the example sets every field"
        );
        for key in ["archive_timeout", "rpo_target", "full_interval"] {
            let secs = value[key]["secs"].as_u64().unwrap();
            value[key] = format!("{secs}s").into();
        }
        let table: toml::Table = serde_json::from_value(value).unwrap();
        let text = format!("[profiles.prod.pitr]\n{}", toml::to_string(&table).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opsbook.toml");
        std::fs::write(&path, &text).unwrap();
        let config = crate::config::Config::load(Some(&path), Some("prod")).unwrap();
        assert_eq!(config.profile.pitr, full, "{text}");
        std::fs::write(&path, "[profiles.prod.pitr]\nkeep_fulll = 3\n").unwrap();
        let err = crate::config::Config::load(Some(&path), Some("prod")).unwrap_err().to_string();
        assert!(err.contains("keep_fulll"), "{err}");
    }

    #[test]
    fn target_times() {
        let t = |s: &str| super::parse_time(s).map(|t| t.to_rfc3339());
        assert_eq!(t("2026-12-07T03:10:00Z").unwrap(), "2026-12-07T03:10:00+00:00");
        assert_eq!(t("2026-12-07 03:10:00").unwrap(), "2026-12-07T03:10:00+00:00");
        assert_eq!(t("2026-12-07 04:10:00+01:00").unwrap(), "2026-12-07T03:10:00+00:00");
        assert_eq!(t("2026-12-07 03:10").unwrap(), "2026-12-07T03:10:00+00:00");
        assert!(t("yesterday").unwrap_err().to_string().contains("RFC 3339"));
    }

    #[test]
    fn compression_names_and_levels() {
        assert_eq!(super::compression(None).unwrap(), ("zst".into(), None));
        assert_eq!(super::compression(Some("zstd:3")).unwrap(), ("zst".into(), Some(3)));
        assert!(super::compression(Some("brotli")).unwrap_err().to_string().contains("zst, lz4"));
        assert!(super::compression(Some("gz:x")).is_err());
    }
}
