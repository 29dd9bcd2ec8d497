//! The `backup-objects` action: the same library call as `opsbook backup objects`.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{ActionCtx, ActionError, Outputs};
use crate::backup::objects;
use crate::backup::objects::settings::{self, ObjectsOverrides};

/// `backup-objects` inputs.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The store to copy: a URL or a [profiles.NAME.stores.STORE] name.
    pub from: String,
    /// Where the copy lives: a URL or a store name.
    pub to: String,
    /// Backup store for the inventories [default: OPSBOOK_STORE / profile / sandbox].
    pub store: Option<String>,
    /// Object set name [default: media].
    pub set: Option<String>,
    /// Objects copied at once [default: 8].
    pub concurrency: Option<usize>,
    /// Remove copies whose source has been gone for `retain_deleted`.
    #[serde(default)]
    pub delete_extraneous: bool,
    /// How long copies of deleted sources are kept (e.g. 30d) [default: 30d].
    pub retain_deleted: Option<String>,
    /// Copy at most about this many bytes in this run.
    pub max_bytes: Option<u64>,
    /// Part size in bytes for multipart copies [default: 8 MiB].
    pub part_size: Option<usize>,
    /// Objects up to this many bytes stream in one PutObject where the destination allows it
    /// [default: 64 MiB].
    pub multipart_threshold: Option<u64>,
    /// Retries per object on 5xx, throttling and timeouts [default: 4].
    pub retries: Option<u32>,
    /// Healthchecks-style ping URL.
    pub notify_url: Option<String>,
    /// Prometheus textfile to update.
    pub metrics_file: Option<String>,
}

/// Runbook parameters that were not given interpolate to "": treat them as unset.
fn given(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

impl From<objects::ObjectsError> for ActionError {
    fn from(e: objects::ObjectsError) -> Self {
        ActionError::Objects(Box::new(e))
    }
}

pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let retain_deleted = given(input.retain_deleted)
        .map(|d| humantime::parse_duration(&d).map_err(|e| ActionError::Input(format!("retain_deleted: {e}"))))
        .transpose()?;
    let overrides = ObjectsOverrides {
        from: input.from,
        to: input.to,
        store: given(input.store),
        set: given(input.set),
        concurrency: input.concurrency,
        delete_extraneous: input.delete_extraneous,
        retain_deleted,
        dry_run: ctx.dry_run,
        max_bytes: input.max_bytes,
        part_size: input.part_size,
        multipart_threshold: input.multipart_threshold,
        retries: input.retries,
        notify_url: given(input.notify_url),
        metrics_file: given(input.metrics_file).map(|p| ctx.resolve_path(&p)),
    };
    let request = settings::resolve(ctx.config, &overrides)?;
    let mut out = Outputs::new();
    out.insert("set".into(), request.set.clone().into());
    if ctx.dry_run {
        out.insert("dry_run".into(), true.into());
        out.insert(
            "would".into(),
            format!(
                "copy new and changed objects from {} to {} (set {})",
                request.from.url, request.to.url, request.set
            )
            .into(),
        );
        return Ok(out);
    }
    let report = objects::run_job(&request, ctx.reporter).await?;
    out.insert("run_id".into(), report.id.clone().into());
    out.insert("copied".into(), report.copied.into());
    out.insert("copied_bytes".into(), report.copied_bytes.into());
    out.insert("unchanged".into(), report.unchanged.into());
    out.insert("resumed".into(), report.resumed.into());
    out.insert("retained".into(), report.retained.into());
    out.insert("removed".into(), report.removed.into());
    out.insert("deferred".into(), report.deferred.into());
    out.insert("inventory_key".into(), report.inventory_key.clone().into());
    Ok(out)
}
