//! An object copy's inputs, declared once: the `with` of a runbook `backup-objects` step and what
//! `opsbook backup objects`' flags convert into. `settings::objects` resolves it into an
//! `ObjectsRequest`.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::spec::{opt_bytes, opt_duration, opt_text, MonitorSpec};

/// Which store is copied where, how fast, what happens to copies of deleted sources.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct ObjectsSpec {
    /// The store to copy (the media bucket): a URL (s3://bucket[/prefix], a local path) or the
    /// name of a [profiles.NAME.stores.STORE] table.
    pub from: String,
    /// Where the copy lives: a URL or a store name.
    pub to: String,
    /// Backup store for the inventories [default: OPSBOOK_STORE / profile / sandbox].
    #[serde(default, deserialize_with = "opt_text")]
    pub store: Option<String>,
    /// Object set name: inventories are stored under this set [default: media].
    #[serde(default, deserialize_with = "opt_text")]
    pub set: Option<String>,
    /// Objects copied at once [default: 8].
    pub concurrency: Option<usize>,
    /// Remove copies whose source has been gone for `retain_deleted`.
    #[serde(default)]
    pub delete_extraneous: bool,
    /// How long a copy is kept after its source is deleted (e.g. 30d) [default: 30d].
    #[serde(default, deserialize_with = "opt_duration")]
    #[schemars(with = "Option<String>")]
    pub retain_deleted: Option<Duration>,
    /// Copy at most about this many bytes in this run (e.g. "50GiB").
    #[serde(default, deserialize_with = "opt_bytes")]
    #[schemars(with = "Option<String>")]
    pub max_bytes: Option<u64>,
    /// Multipart part size (e.g. "16MiB") [default: 8MiB].
    #[serde(default, deserialize_with = "opt_bytes")]
    #[schemars(with = "Option<String>")]
    pub part_size: Option<u64>,
    /// Largest object streamed in one PutObject where the destination allows it [default: 64MiB].
    #[serde(default, deserialize_with = "opt_bytes")]
    #[schemars(with = "Option<String>")]
    pub multipart_threshold: Option<u64>,
    /// Retries per object on 5xx, throttling, timeouts and broken connections [default: 4].
    pub retries: Option<u32>,
    #[serde(flatten)]
    pub monitor: MonitorSpec,
}
