//! Resolves a backup spec into one set's `JobSettings`, and the retention policy `prune` applies.

use crate::backup::job::JobSettings;
use crate::backup::manifest::RowCountMethod;
use crate::backup::retention::RetentionPolicy;
use crate::backup::run::BackupRequest;
use crate::backup::spec::{BackupSpec, RowCounts};
use crate::backup::{codec, BackupError, Globals};
use crate::config::Config;
use crate::notify;
use crate::pg::DbUrl;

/// Parts uploaded at once when the spec does not say.
const DEFAULT_UPLOAD_CONCURRENCY: usize = 2;

/// Resolves one set's settings: `given` (flags or a runbook step) over the set's configured
/// spec. With `per_set` (running every set of the profile), a set's own database_url/store are
/// more specific than a global override or environment variable.
pub fn resolve(
    config: &Config,
    given: &BackupSpec,
    set: &str,
    per_set: bool,
    time_zone: Option<&str>,
    force: bool,
) -> Result<JobSettings, BackupError> {
    let configured = config.set(set);
    let spec = given.clone().over(&configured.cloned().unwrap_or_default());
    let own_db = configured.and_then(|c| c.database_url.as_deref()).filter(|_| per_set);
    let own_store = configured.and_then(|c| c.store.as_deref()).filter(|_| per_set);
    let database_url = match own_db {
        Some(own) => config.pick(None, Some(own), "database URL", "")?,
        None => config.database_url(given.database_url.as_deref(), configured)?,
    };
    let database_url = DbUrl::parse_named("--database-url", &database_url)?;
    let store_url = match own_store {
        Some(own) => config.pick(None, Some(own), "store", "")?,
        None => config.store_url(given.store.as_deref(), configured)?,
    };
    let compression = spec.compression.as_deref().unwrap_or("zstd");
    let codec = codec::Codec::parse(compression).map_err(BackupError::Compression)?;
    codec::parse_recipients(&spec.encrypt_to).map_err(BackupError::EncryptTo)?;
    let globals = match (spec.globals.unwrap_or(false), spec.globals_with_passwords.unwrap_or(false)) {
        (false, _) => Globals::Off,
        (true, false) => Globals::WithoutPasswords,
        (true, true) => Globals::WithPasswords,
    };
    let row_counts = match spec.row_counts.unwrap_or(RowCounts::Exact) {
        RowCounts::Exact => Some(RowCountMethod::Exact),
        RowCounts::Estimate => Some(RowCountMethod::Estimate),
        RowCounts::Off => None,
    };
    let in_flight = spec.upload_concurrency.unwrap_or(DEFAULT_UPLOAD_CONCURRENCY);
    if in_flight == 0 {
        return Err(BackupError::UploadConcurrency);
    }
    let part_size = spec.part_size.map(check_part_size).transpose()?;
    if let Some(url) = &spec.monitor.notify_url {
        notify::check_url(url).map_err(|source| BackupError::NotifyUrl { set: set.to_string(), source })?;
    }
    Ok(JobSettings {
        request: BackupRequest {
            set: set.to_string(),
            database_url,
            codec,
            recipients: spec.encrypt_to,
            globals,
            row_counts,
            part_size,
            in_flight,
        },
        store_url,
        notify_url: spec.monitor.notify_url,
        metrics_file: spec.monitor.metrics_file,
        policy: spec.retention,
        tz: config.time_zone(time_zone)?,
        force,
    })
}

/// A part size outside S3's limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartSizeError {
    #[error("part size {size} bytes is below 5 MiB, the S3 minimum for multipart parts")]
    TooSmall { size: u64 },
    #[error(
        "part size {size} bytes is above 5 GiB, the S3 maximum for a part (parts are held in memory: \
         8MiB-64MiB is typical)"
    )]
    TooLarge { size: u64 },
}

/// A multipart part size within S3's limits (5 MiB to 5 GiB).
pub fn check_part_size(size: u64) -> Result<usize, PartSizeError> {
    if size < crate::store::S3_MIN_PART_SIZE as u64 {
        return Err(PartSizeError::TooSmall { size });
    }
    if size > crate::store::S3_MAX_PART_SIZE as u64 {
        return Err(PartSizeError::TooLarge { size });
    }
    Ok(size as usize)
}

/// The retention policy `prune` applies: `given` (flags or a runbook step) over the set's.
pub fn policy(config: &Config, given: &RetentionPolicy, set: &str) -> RetentionPolicy {
    let configured = config.set(set).map(|c| c.retention.clone()).unwrap_or_default();
    given.clone().merge_over(&configured)
}
