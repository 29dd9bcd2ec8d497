//! Resolves a restore spec into a `RestoreRequest`: store and set from the profile when not
//! given, the backup pick and the target parsed, the identity read.

use crate::backup::BackupError;
use crate::config::Config;
use crate::pg::DbUrl;
use crate::restore::{parse_time, Pick, RestoreError, RestoreRequest, RestoreSpec};

pub fn resolve(config: &Config, o: &RestoreSpec) -> Result<RestoreRequest, RestoreError> {
    let set = crate::backup::job::set_name(o.set.as_deref())?;
    let store_url = config.store_url(o.store.as_deref(), config.set(&set)).map_err(BackupError::from)?;
    let pick = match (o.backup.as_deref(), o.before.as_deref()) {
        (Some(_), Some(_)) => return Err(RestoreError::BackupAndBefore),
        (_, Some(time)) => Pick::Before(parse_time(time)?),
        (None | Some("latest"), None) => Pick::Latest,
        (Some(id), None) => Pick::Id(id.to_string()),
    };
    let url = o.target_url.as_deref().ok_or(RestoreError::NoTarget)?;
    crate::redact::register_urls_in(url);
    let server = DbUrl::parse_named("--target-url", url)?;
    let database = o.into.clone().ok_or(RestoreError::NoInto)?;
    if database.is_empty() || database.len() > 63 {
        return Err(RestoreError::BadName { name: database });
    }
    let jobs = o.jobs.unwrap_or(1);
    if jobs == 0 {
        return Err(RestoreError::NoJobs);
    }
    let identities = match &o.identity {
        None => Vec::new(),
        Some(path) => crate::backup::codec::read_identities(path)?,
    };
    Ok(RestoreRequest { store_url, set, pick, server, database, jobs, identities, dry_run: o.dry_run })
}
