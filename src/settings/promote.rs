//! Resolves a promote-check spec (flags or a runbook step) into a `promote::Request`: the
//! checklist's expectations over the profile's `[promote]`, URLs checked with where they came
//! from, env files read, durations parsed, the rotation context and the set's retention taken
//! from the profile. Missing inputs are not errors: their checks skip.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::promote::{PromoteError, PromoteSpec, Request, DEFAULT_DRILL_INTERVAL, DEFAULT_RPO_TARGET, DEFAULT_TIMEOUT};

/// Flags > environment > the profile's `[promote]` table; missing inputs make their checks skip.
pub fn resolve(config: &Config, spec: &PromoteSpec) -> Result<Request, PromoteError> {
    let profile = &config.profile.promote;
    let checklist = spec.checklist.clone().over(profile);
    for (flag, url) in [("--app-url", &checklist.app_url), ("--web-url", &checklist.web_url)] {
        if let Some(u) = url {
            url::Url::parse(u).map_err(|source| PromoteError::Url { flag, url: u.clone(), source })?;
        }
    }
    let env = load_env(checklist.env_file.as_deref())?;
    let compare_env = match &checklist.compare_env_file {
        None => None,
        Some(path) => Some((path.clone(), load_compare_env(path)?)),
    };
    let (database_url, store_url) = database_and_store(config, spec)?;
    let given = &spec.checklist;
    let rpo_target =
        duration(config, ("rpo_target", "26h", DEFAULT_RPO_TARGET), [&given.rpo_target, &profile.rpo_target])?;
    let drill_interval = duration(
        config,
        ("drill_interval", "8d", DEFAULT_DRILL_INTERVAL),
        [&given.drill_interval, &profile.drill_interval],
    )?;
    let set = crate::backup::job::set_name(spec.set.as_deref())
        .map_err(|source| PromoteError::Set { name: spec.set.clone().unwrap_or_default(), source })?;
    let migrations = migrations(config, spec, database_url.as_deref())?;
    let prod = checklist
        .environment
        .as_deref()
        .is_some_and(|e| e.eq_ignore_ascii_case("prod") || e.eq_ignore_ascii_case("production"))
        || config.profile_name == "prod"
        || config.profile_name == "production";
    // rotate-secrets reads its status with the admin URL it rotates with: ADMIN_DATABASE_URL
    // (the env file's, else the process's) or the profile's admin_database_url.
    let admin_url = env.get("ADMIN_DATABASE_URL").map(String::as_str).filter(|v| !v.is_empty());
    let rotation = super::rotate::resolve(
        config,
        &crate::secrets::rotate::RotateSpec { admin_database_url: admin_url.map(String::from), ..Default::default() },
    );
    Ok(Request {
        profile: config.profile_name.clone(),
        prod,
        retention_configured: config.set(&set).is_some_and(|c| !c.retention.is_empty()),
        pitr: (config.profile.pitr != crate::pitr::PitrSpec::default())
            .then(|| super::pitr::resolve(config, crate::pitr::PitrSpec::default())),
        checklist,
        database_url,
        store_url,
        set,
        rpo_target,
        drill_interval,
        migrations,
        env,
        compare_env,
        ca_file: spec.ca_file.clone(),
        only: spec.only.clone(),
        skip: spec.skip.clone(),
        timeout: spec.timeout.unwrap_or(DEFAULT_TIMEOUT),
        rotation,
    })
}

/// The database and store URLs (given, else the environment, the profile, the sandbox), when
/// there are any: a URL that cannot work is a usage error naming where it came from.
fn database_and_store(config: &Config, spec: &PromoteSpec) -> Result<(Option<String>, Option<String>), PromoteError> {
    let database_url = config.database_url(spec.database_url.as_deref(), None).ok();
    if let Some(url) = &database_url {
        let origin = source_of(config, spec.database_url.is_some(), "DATABASE_URL", "database_url");
        crate::pg::DbUrl::parse_named(&origin, url).map_err(|source| PromoteError::DatabaseUrl { origin, source })?;
    }
    let store_url = config.store_url(spec.store.as_deref(), None).ok();
    if let Some(url) = &store_url {
        check_store_url(source_of(config, spec.store.is_some(), "OPSBOOK_STORE", "store"), url)?;
    }
    Ok((database_url, store_url))
}

/// The migrations-applied check's settings, when a migrations directory is given or configured
/// and there is a database to compare it with.
fn migrations(
    config: &Config,
    spec: &PromoteSpec,
    database_url: Option<&str>,
) -> Result<Option<crate::migrate::Settings>, PromoteError> {
    let (dir, Some(db)) = (&spec.migrations, database_url) else { return Ok(None) };
    if dir.is_none() && config.profile.migrate.migrations.is_none() {
        return Ok(None);
    }
    let given = crate::migrate::spec::MigrateSpec { migrations: dir.clone(), ..Default::default() };
    super::migrate::resolve(config, Some(db), &given)
        .map(Some)
        .map_err(|e| PromoteError::Migrations { dir: dir.clone(), source: Box::new(e) })
}

/// The process environment with the env file's entries (if it is given) over it; values are
/// registered as secrets so they are never printed.
fn load_env(file: Option<&Path>) -> Result<BTreeMap<String, String>, PromoteError> {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    if let Some(path) = file {
        let flag = "--env-file";
        let f = crate::secrets::EnvFile::load(path).map_err(|source| PromoteError::EnvFile {
            flag,
            path: path.to_path_buf(),
            source,
        })?;
        if !path.exists() {
            return Err(PromoteError::NoEnvFile { flag, path: path.to_path_buf(), hint: "" });
        }
        for (k, v) in f.entries() {
            crate::redact::register_urls_in(&v);
            env.insert(k, v);
        }
    }
    Ok(env)
}

/// The entries of another environment's env file, which must exist; values are registered as
/// secrets so they are never printed.
fn load_compare_env(path: &Path) -> Result<BTreeMap<String, String>, PromoteError> {
    let flag = "--compare-env-file";
    if !path.is_file() {
        let hint = " (give the other environment's .env file)";
        return Err(PromoteError::NoEnvFile { flag, path: path.to_path_buf(), hint });
    }
    let f = crate::secrets::EnvFile::load(path).map_err(|source| PromoteError::EnvFile {
        flag,
        path: path.to_path_buf(),
        source,
    })?;
    let entries = f.entries();
    for v in entries.values() {
        crate::redact::register_urls_in(v);
    }
    Ok(entries)
}

/// Where a URL came from, for errors: the flag (which clap also fills from `env`), the variable
/// (read by runbook steps), the profile key, or the sandbox.
fn source_of(config: &Config, given: bool, env: &str, key: &str) -> String {
    if given {
        return format!("--{} (or {env})", key.replace('_', "-"));
    }
    if std::env::var(env).is_ok_and(|v| !v.is_empty()) {
        return env.to_string();
    }
    let profile = &config.profile;
    let configured = if key == "store" { profile.store.is_some() } else { profile.database_url.is_some() };
    match (&config.path, configured) {
        (Some(path), true) => format!("{key} in {} [profiles.{}]", path.display(), config.profile_name),
        _ => format!("the sandbox's {env}"),
    }
}

/// A store URL that cannot be opened is a usage error before any check runs: it must parse, and
/// an `s3://` URL without a bucket needs R2_BUCKET (as `Store::open` fills it in).
fn check_store_url(origin: String, url: &str) -> Result<(), PromoteError> {
    let parsed = match crate::store::StoreUrl::parse(url) {
        Ok(parsed) => parsed,
        Err(e) => return Err(PromoteError::StoreUrl { origin, url: url.to_string(), source: Box::new(e) }),
    };
    let r2_bucket = std::env::var("R2_BUCKET").is_ok_and(|v| !v.trim().is_empty());
    if matches!(&parsed, crate::store::StoreUrl::S3 { bucket, .. } if bucket.is_empty()) && !r2_bucket {
        return Err(PromoteError::StoreBucket { origin, url: url.to_string() });
    }
    Ok(())
}

/// The duration `key` as the step gives it, else as the profile's `[promote]` table does, else
/// `default` (written `example`). A value that does not parse is an error naming the key, where
/// it was written and the value.
fn duration(
    config: &Config,
    (key, example, default): (&'static str, &'static str, Duration),
    [given, profile]: [&Option<String>; 2],
) -> Result<Duration, PromoteError> {
    let (raw, origin) = match (given, profile) {
        (Some(raw), _) => (raw, "the promote-check inputs".to_string()),
        (None, Some(raw)) => {
            let file = config.path.as_ref().map_or_else(|| "opsbook.toml".into(), |p| p.display().to_string());
            (raw, format!("{file} [profiles.{}.promote]", config.profile_name))
        }
        (None, None) => return Ok(default),
    };
    humantime::parse_duration(raw.trim()).map_err(|e| PromoteError::Duration {
        key,
        value: raw.clone(),
        origin,
        example,
        source: Box::new(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promote::ChecklistSpec;

    fn config(promote: ChecklistSpec) -> Config {
        let mut config =
            Config { profile_name: "staging".into(), path: Some("ops/opsbook.toml".into()), ..Default::default() };
        config.profile.promote = promote;
        config
    }

    fn spec(checklist: ChecklistSpec) -> PromoteSpec {
        // Given, so the test does not depend on DATABASE_URL or OPSBOOK_STORE.
        PromoteSpec {
            checklist,
            database_url: Some("postgres://localhost/app".into()),
            store: Some("backups".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_step_overrides_the_profiles_checklist_and_bad_durations_say_where_they_were_written() {
        let profile = ChecklistSpec {
            app_url: Some("https://api.example".into()),
            rpo_target: Some("2h".into()),
            required_env: vec!["SMTP_URL".into()],
            ..Default::default()
        };
        let req =
            resolve(&config(profile), &spec(ChecklistSpec { rpo_target: Some("3h".into()), ..Default::default() }))
                .unwrap();
        assert_eq!((req.rpo_target, req.drill_interval), (Duration::from_secs(3 * 3600), DEFAULT_DRILL_INTERVAL));
        assert_eq!(req.checklist.app_url.as_deref(), Some("https://api.example"));
        assert_eq!((req.checklist.required_env.as_slice(), req.prod), (&["SMTP_URL".to_string()][..], false));

        let weekly = ChecklistSpec { drill_interval: Some("weekly".into()), ..Default::default() };
        let err = resolve(&config(ChecklistSpec::default()), &spec(weekly.clone())).unwrap_err().to_string();
        assert!(
            err.contains("drill_interval = \"weekly\" in the promote-check inputs") && err.contains("\"8d\""),
            "{err}"
        );
        let err = resolve(&config(weekly), &spec(ChecklistSpec::default())).unwrap_err().to_string();
        assert!(err.contains("in ops/opsbook.toml [profiles.staging.promote]"), "{err}");
    }
}
