//! `opsbook backup objects`: incremental copy of an object store to a second one.

use crate::cli::MonitorArgs;

use clap::Args;

use super::backup::parse_size;
use super::{Ctx, Result};
use crate::backup::objects::spec::ObjectsSpec;
use crate::backup::objects::{self, ObjectsReport};
use crate::cli::StoreArgs;
use crate::error::Context;
use crate::exit::ExitStatus;
use crate::spec::parse_bytes;
use crate::ui::{progress, table};

#[derive(Debug, Args)]
pub struct ObjectsArgs {
    /// The store to copy: s3://bucket/prefix, file:///path, a directory, or the name of a
    /// [profiles.NAME.stores.STORE] table (its endpoint and credentials apply to URLs under it).
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// Where the copy lives: a second provider (s3://…) or a local directory; same forms as --from.
    #[arg(long, value_name = "URL")]
    pub to: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Object set name: inventories are stored under this set [default: media].
    #[arg(long, value_name = "NAME")]
    pub set: Option<String>,
    /// Objects copied at once [default: 8].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Remove copies whose source was deleted, once the source has been gone for
    /// --retain-deleted. Without it, such copies are kept.
    #[arg(long)]
    pub delete_extraneous: bool,
    /// How long a copy is kept after its source is deleted (e.g. 30d, 12h, 0s) [default: 30d].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub retain_deleted: Option<std::time::Duration>,
    /// Show what would be copied and removed; copy, remove and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Go ahead even when the run would mark or remove more than half of the copy's objects as
    /// deleted at the source (refused otherwise: a wrong or emptied --from looks like that).
    #[arg(long)]
    pub force: bool,
    /// Copy at most about this many bytes in this run (e.g. 50GiB); the rest is left for the
    /// next run.
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub max_bytes: Option<u64>,
    /// Multipart part size [default: 8MiB]. Objects larger than this go multipart, except that
    /// S3 destinations taking unsigned bodies (HTTPS, loopback) stream objects up to
    /// --multipart-threshold in one PutObject.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub part_size: Option<usize>,
    /// Largest object streamed in a single PutObject, without holding it in memory, where the
    /// destination allows it [default: 64MiB; at most 5GiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub multipart_threshold: Option<u64>,
    /// Retries per object after 5xx answers, throttling, timeouts or broken connections, with
    /// exponential backoff [default: 4].
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    #[command(flatten)]
    pub monitor: MonitorArgs,
}

impl ObjectsArgs {
    /// The flags as an object copy spec.
    fn spec(&self) -> ObjectsSpec {
        ObjectsSpec {
            from: self.from.clone(),
            to: self.to.clone(),
            store: self.store.store.clone(),
            set: self.set.clone(),
            concurrency: self.concurrency,
            delete_extraneous: self.delete_extraneous,
            retain_deleted: self.retain_deleted,
            max_bytes: self.max_bytes,
            part_size: self.part_size.map(|p| p as u64),
            multipart_threshold: self.multipart_threshold,
            retries: self.retries,
            monitor: self.monitor.spec(),
        }
    }
}

pub async fn run(ctx: &Ctx<'_>, args: ObjectsArgs) -> Result<ExitStatus> {
    let mut request = crate::settings::objects::resolve(&ctx.config, &args.spec(), args.dry_run)?;
    request.force = args.force;
    let reporter = progress::reporter(ctx.printer, &request.set);
    let report = objects::run_job(&request, reporter.as_ref())
        .await
        .with_context(|| format!("copying objects of set '{}' from {} to {}", request.set, args.from, args.to))?;
    if ctx.printer.is_json() {
        ctx.printer.report(ExitStatus::Success, &report)?;
    } else {
        print_report(ctx, &report)?;
    }
    Ok(ExitStatus::Success)
}

fn print_report(ctx: &Ctx<'_>, r: &ObjectsReport) -> Result<()> {
    let p = ctx.printer;
    if r.dry_run && (!r.copies.is_empty() || !r.removals.is_empty()) {
        let mut t = table::new(&["key", "size", "action"]);
        for c in &r.copies {
            let reason = serde_json::to_value(c.reason)?.as_str().unwrap_or_default().to_string();
            t.add_row(vec![c.key.clone(), table::bytes(c.size), format!("copy ({reason})")]);
        }
        for key in &r.removals {
            t.add_row(vec![key.clone(), String::new(), "remove".into()]);
        }
        p.table(&t)?;
    }
    let verb = if r.dry_run { "would copy" } else { "copied" };
    p.line(format!(
        "objects {} → {} (set {}){}",
        r.from,
        r.to,
        r.set,
        r.id.as_deref().map(|id| format!(", run {id}")).unwrap_or_default()
    ))?;
    p.line(format!(
        "  {verb} {} objects ({}); unchanged {}; resumed {}; source {} objects ({})",
        r.copied,
        table::bytes(r.copied_bytes),
        r.unchanged,
        r.resumed,
        r.source_objects,
        table::bytes(r.source_bytes)
    ))?;
    if r.retained > 0 || r.removed > 0 {
        let removed = if r.dry_run { "would remove" } else { "removed" };
        p.line(format!("  source deleted: kept {} copies, {removed} {}", r.retained, r.removed))?;
    }
    if let Some(why) = &r.refused {
        p.warn(format!("a real run would refuse this plan: {why}"));
    }
    if r.deferred > 0 {
        p.note(format!("{} copies left for the next run by --max-bytes", r.deferred));
    }
    if let Some(key) = &r.inventory_key {
        p.line(format!("  inventory  {key}"))?;
    }
    p.line(format!("  duration   {:.1}s", r.duration_seconds))?;
    Ok(())
}

/// The object copy runs in a store, newest first (for `backup list`).
pub fn print_object_sets(ctx: &Ctx<'_>, runs: &[objects::ObjectSetEntry]) -> Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    let now = chrono::Utc::now();
    let mut t = table::new(&["object set", "run", "time", "age", "objects", "size", "copied", "copy"]);
    for run in runs {
        let s = &run.summary;
        t.add_row(vec![
            s.set.clone(),
            s.id.clone(),
            s.finished.format("%Y-%m-%d %H:%M").to_string(),
            table::age((now - s.finished).num_seconds()),
            s.objects.to_string(),
            table::bytes(s.bytes),
            format!("{} ({})", s.copied, table::bytes(s.copied_bytes)),
            s.to.clone(),
        ]);
    }
    ctx.printer.table(&t)?;
    Ok(())
}
