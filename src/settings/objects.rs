//! Resolves an object copy's spec (flags or a runbook step) with the environment and
//! opsbook.toml into an `ObjectsRequest`, shared by `backup objects` and the `backup-objects`
//! action.

use std::time::Duration;

use crate::backup::objects::copy::RetryPolicy;
use crate::backup::objects::plan::Deletion;
use crate::backup::objects::spec::ObjectsSpec;
use crate::backup::objects::{ObjectsError, ObjectsRequest, StoreSpec, DEFAULT_RETAIN_DELETED, DEFAULT_SET};
use crate::config::Config;

/// Default objects copied at once.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Default part size: objects up to this size are one PutObject; larger ones go multipart.
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// Default largest object streamed in one PutObject (where the destination allows streaming).
/// Above it, multipart keeps a failed transfer from restarting a whole large object.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 64 << 20;
/// S3 refuses a single PutObject above 5 GiB.
const MAX_SINGLE_PUT: u64 = 5 << 30;
pub const DEFAULT_RETRIES: u32 = 4;

/// The request for one run: `o` with the profile's stores, the defaults, and `dry_run`.
pub fn resolve(config: &Config, o: &ObjectsSpec, dry_run: bool) -> Result<ObjectsRequest, ObjectsError> {
    let set = o.set.as_deref().unwrap_or(DEFAULT_SET);
    crate::backup::layout::check_set_name(set, "object set name")?;
    let concurrency = o.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    if concurrency == 0 {
        return Err(ObjectsError::NoConcurrency);
    }
    let part_size = o.part_size.map_or(DEFAULT_PART_SIZE, |p| p as usize);
    if part_size < crate::store::S3_MIN_PART_SIZE {
        return Err(ObjectsError::PartSize { size: part_size });
    }
    let multipart_threshold = o.multipart_threshold.unwrap_or(DEFAULT_MULTIPART_THRESHOLD);
    if multipart_threshold > MAX_SINGLE_PUT {
        return Err(ObjectsError::MultipartThreshold { threshold: multipart_threshold });
    }
    let spec = |key: &'static str, given: &str| -> Result<StoreSpec, ObjectsError> {
        if given.trim().is_empty() {
            return Err(ObjectsError::EmptyStore { flag: key });
        }
        let (url, options) = config.store_with_options(key, given)?;
        // A bare word that names no configured store was probably meant as one.
        let bare = !given.contains('/') && !given.contains(':');
        let hint = (bare && !config.profile.stores.contains_key(given)).then(|| {
            let names: Vec<&str> = config.profile.stores.keys().map(String::as_str).collect();
            format!(
                "'{given}' is not a store of profile '{}' ({})",
                config.profile_name,
                if names.is_empty() { "it has none".to_string() } else { format!("its stores: {}", names.join(", ")) }
            )
        });
        Ok(StoreSpec { url, options, hint })
    };
    let store_url = config.store_url(o.store.as_deref(), None)?;
    Ok(ObjectsRequest {
        from: spec("--from", &o.from)?,
        to: spec("--to", &o.to)?,
        store: spec("--store", &store_url)?,
        set: set.to_string(),
        concurrency,
        deletion: Deletion {
            delete_extraneous: o.delete_extraneous,
            window: o.retain_deleted.unwrap_or(DEFAULT_RETAIN_DELETED),
        },
        dry_run,
        max_bytes: o.max_bytes,
        part_size,
        multipart_threshold,
        retry: RetryPolicy {
            retries: o.retries.unwrap_or(DEFAULT_RETRIES),
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        },
        notify_url: o.monitor.notify_url.clone(),
        metrics_file: o.monitor.metrics_file.clone(),
        // The command sets it from --force; a runbook step never overrides the guard.
        force: false,
    })
}
