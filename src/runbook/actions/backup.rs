//! The `backup`, `backup-prune` and `backup-verify` actions: the same library calls as
//! `opsbook backup run | prune | verify`.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{ActionCtx, ActionError, Outputs};
use crate::backup::job;
use crate::backup::prune::{self as prune_lib, PruneOptions};
use crate::backup::retention::RetentionPolicy;
use crate::backup::spec::BackupSpec;
use crate::backup::verify::{self as verify_lib, VerifyOptions};
use crate::backup::{codec, Catalog};
use crate::store::{Store, StoreOptions};

/// The set name and its store, for the actions that read or change a set.
async fn open_set(ctx: &ActionCtx<'_>, store: Option<&str>, set: Option<&str>) -> Result<(String, Store), ActionError> {
    let set = job::set_name(set)?;
    let url = ctx.config.store_url(store, ctx.config.set(&set))?;
    let store = Store::open_url(&url, &StoreOptions::default()).await?;
    Ok((set, store))
}

/// `backup`: dump the database into the store (and optionally prune afterwards). The inputs are
/// the set's [`BackupSpec`] (as in `[profiles.NAME.sets.SET]`) plus the job's own choices.
/// (Inputs that flatten a spec cannot deny unknown fields in serde; runbook validation rejects
/// unknown keys from the schema.)
#[derive(Debug, Deserialize, JsonSchema)]
pub struct Input {
    /// Backup set [default: main].
    pub set: Option<String>,
    /// Prune by the retention rules (or the set's configured policy) after the backup.
    #[serde(default)]
    pub prune: bool,
    /// Allow prune to delete more than half of the set.
    #[serde(default)]
    pub force: bool,
    #[serde(flatten)]
    pub spec: BackupSpec,
}

pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let set = job::set_name(input.set.as_deref())?;
    let mut spec = input.spec;
    spec.monitor.metrics_file = spec.monitor.metrics_file.map(|p| ctx.resolve_path(&p.to_string_lossy()));
    let settings = crate::settings::backup::resolve(ctx.config, &spec, &set, false, None, input.force)?;
    let mut out = Outputs::new();
    out.insert("set".into(), set.clone().into());
    out.insert("store".into(), settings.store_url.clone().into());
    if ctx.dry_run {
        out.insert("dry_run".into(), true.into());
        out.insert(
            "would".into(),
            format!("back up {} into {} set {set}", settings.request.database_url.redacted(), settings.store_url)
                .into(),
        );
        return Ok(out);
    }
    let report = job::run_job(&settings, input.prune, ctx.reporter).await?;
    let manifest = report.backup.expect("a successful job has a manifest");
    out.insert("backup_id".into(), manifest.id.clone().into());
    out.insert("size".into(), manifest.stored_size().into());
    out.insert("raw_size".into(), manifest.objects.iter().map(|o| o.raw_size).sum::<u64>().into());
    out.insert("rows".into(), manifest.row_counts.as_ref().map_or(Value::Null, |r| r.total().into()));
    out.insert("snapshot_time".into(), manifest.snapshot_time.to_rfc3339().into());
    out.insert("duration_seconds".into(), report.duration_seconds.into());
    if let Some(plan) = report.prune {
        out.insert("pruned".into(), plan.deleted().into());
    }
    Ok(out)
}

/// `backup-prune`: apply the retention policy (plan only in a dry run).
pub mod prune {
    use super::*;

    /// `backup-prune` inputs.
    #[derive(Debug, Deserialize, JsonSchema)]
    pub struct Input {
        /// Store URL [default: OPSBOOK_STORE / profile / sandbox].
        pub store: Option<String>,
        /// Backup set [default: main].
        pub set: Option<String>,
        /// Time zone for days, weeks, months and years [default: profile's, else UTC].
        pub tz: Option<String>,
        /// Allow deleting more than half of the set.
        #[serde(default)]
        pub force: bool,
        #[serde(flatten)]
        pub retention: RetentionPolicy,
    }

    pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
        let (set, store) = open_set(ctx, input.store.as_deref(), input.set.as_deref()).await?;
        let opts = PruneOptions {
            policy: crate::settings::backup::policy(ctx.config, &input.retention, &set),
            tz: ctx.config.time_zone(input.tz.as_deref())?,
            force: input.force,
            // A runbook's dry run must fail where its real run would: the guard still applies.
            dry_run: false,
            now: chrono::Utc::now(),
        };
        let _lock = if ctx.dry_run {
            None
        } else {
            Some(
                crate::lock::try_lock(
                    "backup",
                    &format!("set {set} in {}", store.url()),
                    &format!("backup prune --set {set}"),
                )
                .map_err(crate::backup::BackupError::from)?,
            )
        };
        let plan = prune_lib::plan(&store, &set, &opts).await?;
        if !ctx.dry_run {
            prune_lib::apply(&store, &plan).await?;
        }
        let mut out = Outputs::new();
        out.insert("dry_run".into(), ctx.dry_run.into());
        out.insert("kept".into(), plan.kept().into());
        out.insert("deleted".into(), plan.deleted().into());
        out.insert(
            "deleted_ids".into(),
            plan.backups.iter().filter(|v| !v.keep).map(|v| Value::from(v.id.clone())).collect::<Vec<_>>().into(),
        );
        out.insert("orphans".into(), plan.orphans.len().into());
        Ok(out)
    }
}

pub mod verify {
    use super::*;

    /// `backup-verify` inputs.
    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct Input {
        /// Store URL [default: OPSBOOK_STORE / profile / sandbox].
        pub store: Option<String>,
        /// Backup set [default: main].
        pub set: Option<String>,
        /// Backup id (or unique prefix), or "latest".
        #[serde(default = "latest")]
        pub backup: String,
        /// Also decode the archive and read it with pg_restore --list.
        #[serde(default)]
        pub deep: bool,
        /// age identity file for --deep on encrypted backups.
        pub identity: Option<String>,
    }

    fn latest() -> String {
        "latest".into()
    }

    pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
        let (set, store) = open_set(ctx, input.store.as_deref(), input.set.as_deref()).await?;
        let identities = match &input.identity {
            Some(path) => codec::read_identities(&ctx.resolve_path(path))?,
            None => Vec::new(),
        };
        let catalog = Catalog::load(&store, Some(&set)).await?;
        let entry = catalog.find(&set, &input.backup)?;
        let mut out = Outputs::new();
        out.insert("backup_id".into(), entry.id.clone().into());
        if ctx.dry_run {
            out.insert("dry_run".into(), true.into());
            out.insert(
                "would".into(),
                format!("verify backup {set}/{}{}", entry.id, if input.deep { " (deep)" } else { "" }).into(),
            );
            return Ok(out);
        }
        let record =
            verify_lib::verify(&store, entry, &VerifyOptions { deep: input.deep, identities }, ctx.reporter).await?;
        out.insert("ok".into(), record.ok.into());
        out.insert("checks".into(), record.checks.len().into());
        if !record.ok {
            let failed: Vec<String> = record
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{} {}: {}", c.object, c.check, c.detail))
                .collect();
            return Err(ActionError::VerifyFailed { set, id: entry.id.clone(), failed });
        }
        Ok(out)
    }
}

/// `backup-list`: the complete backups of a set, newest first.
pub mod list {
    use super::*;

    /// `backup-list` inputs.
    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct Input {
        /// Store URL [default: OPSBOOK_STORE / profile / sandbox].
        pub store: Option<String>,
        /// Backup set [default: main].
        pub set: Option<String>,
    }

    pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
        let (set, store) = open_set(ctx, input.store.as_deref(), input.set.as_deref()).await?;
        let catalog = Catalog::load(&store, Some(&set)).await?;
        let mut out = Outputs::new();
        out.insert("count".into(), catalog.backups.len().into());
        out.insert("latest".into(), catalog.backups.first().map_or(Value::Null, |b| b.id.clone().into()));
        out.insert("ids".into(), catalog.backups.iter().map(|b| Value::from(b.id.clone())).collect::<Vec<_>>().into());
        out.insert("orphans".into(), catalog.orphans.len().into());
        Ok(out)
    }
}
