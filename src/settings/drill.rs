//! Resolves a drill spec into a `DrillRequest`: store and set from the profile when not given,
//! files read and checked, URLs parsed, the migration engine's settings taken from the profile.

use std::time::Duration;

use crate::backup::BackupError;
use crate::config::Config;
use crate::drill::{DrillError, DrillRequest, DrillSpec, ObjectsSpec, TargetSpec, Which, DEFAULT_SAMPLE};
use crate::pg::DbUrl;

/// Turns a drill spec into a request: store and set from the profile when not given, files read and
/// checked, URLs parsed.
pub fn resolve(config: &Config, o: &DrillSpec) -> Result<DrillRequest, DrillError> {
    let set = crate::backup::job::set_name(o.set.as_deref())?;
    let store_url = config.store_url(o.store.as_deref(), config.set(&set)).map_err(BackupError::from)?;
    let target = match (&o.target_url, o.ephemeral) {
        (Some(_), true) => return Err(DrillError::TwoTargets),
        (None, false) => return Err(DrillError::NoTarget),
        (Some(url), false) => {
            crate::redact::register_urls_in(url);
            TargetSpec::Server(DbUrl::parse_named("--target-url", url)?)
        }
        // The temp dir, not the state dir: the server runs as `postgres` when we are root and
        // must be able to enter the cluster directory.
        (None, true) => TargetSpec::Ephemeral { parent: std::env::temp_dir().join("opsbook-drills") },
    };
    let migrations = match &o.migrations {
        None => None,
        Some(dir) => {
            // The database URL is replaced by the restored database's when the drill runs.
            let placeholder = DbUrl::parse("postgres://localhost/restored")?;
            let given = crate::migrate::spec::MigrateSpec { migrations: Some(dir.clone()), ..Default::default() };
            let mut settings = super::migrate::settings_for(&config.profile.migrate, placeholder, &given);
            crate::migrate::source::load(&settings.dir)?;
            settings.lock_wait = Duration::from_secs(5);
            Some(settings)
        }
    };
    let check_sql = match &o.check_sql {
        None => None,
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| DrillError::CheckSql { path: path.clone(), source })?;
            if crate::pg::query::split_statements(&text).is_empty() {
                return Err(DrillError::CheckSqlEmpty { path: path.clone() });
            }
            Some((path.clone(), text))
        }
    };
    if o.objects.is_none() && (o.objects_query.is_some() || o.sample.is_some() || o.presign) {
        return Err(DrillError::SamplingWithoutObjects);
    }
    if o.objects.is_none() && o.objects_inventory.is_some() {
        return Err(DrillError::InventoryWithoutObjects);
    }
    let objects = match &o.objects {
        None => None,
        Some(given) => {
            let (url, options) = config.store_with_options("objects", given).map_err(BackupError::from)?;
            if o.presign && !matches!(crate::store::StoreUrl::parse(&url)?, crate::store::StoreUrl::S3 { .. }) {
                return Err(DrillError::PresignLocal { url });
            }
            Some(ObjectsSpec {
                url,
                options,
                sample: o.sample.unwrap_or(DEFAULT_SAMPLE),
                query: o.objects_query.clone(),
                presign: o.presign,
                inventory: o.objects_inventory.clone(),
            })
        }
    };
    let jobs = o.jobs.unwrap_or(1);
    if jobs == 0 {
        return Err(DrillError::NoJobs);
    }
    let identities = match &o.identity {
        None => Vec::new(),
        Some(path) => crate::backup::codec::read_identities(path)?,
    };
    Ok(DrillRequest {
        store_url,
        set,
        which: Which::parse(o.backup.as_deref().unwrap_or("latest")),
        seed: o.seed,
        target,
        globals: o.globals,
        migrations,
        check_sql,
        objects,
        rpo_target: o.rpo_target,
        rto_target: o.rto_target,
        jobs,
        spool_dir: o.spool_dir.clone(),
        keep: o.keep,
        identities,
        notify_url: o.monitor.notify_url.clone(),
        metrics_file: o.monitor.metrics_file.clone(),
    })
}
