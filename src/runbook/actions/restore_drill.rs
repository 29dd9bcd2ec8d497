//! The `restore-drill` action: `opsbook restore-drill` as a step. A failed verification fails the
//! step; the drill's figures become outputs.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{ActionCtx, ActionError, Outputs};
use crate::drill::{self, Options};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Store URL [default: OPSBOOK_STORE / profile / sandbox].
    pub store: Option<String>,
    /// Backup set [default: main].
    pub set: Option<String>,
    /// latest (default), random, or a backup id.
    pub backup: Option<String>,
    /// Seed for random selection and object sampling.
    pub seed: Option<u64>,
    /// Server on which a scratch database is created and dropped. Give this or `ephemeral`.
    pub target_url: Option<String>,
    /// Restore into a throwaway local cluster.
    #[serde(default)]
    pub ephemeral: bool,
    /// With ephemeral: restore the globals (roles) too.
    #[serde(default)]
    pub globals: bool,
    /// Migrations directory to apply to the restored database (relative to the runbook).
    pub migrations: Option<String>,
    /// SQL assertions file (relative to the runbook).
    pub check_sql: Option<String>,
    /// Media bucket to sample, s3://bucket[/prefix].
    pub objects: Option<String>,
    /// Objects to sample [default: 20].
    pub sample: Option<usize>,
    /// Keys from this query over the restored database instead of a listing.
    pub objects_query: Option<String>,
    /// Read sampled objects through presigned URLs.
    #[serde(default)]
    pub presign: bool,
    /// Check sampled objects against the newest inventory of this object set.
    pub objects_inventory: Option<String>,
    /// RPO target, e.g. "26h".
    pub rpo_target: Option<String>,
    /// RTO target, e.g. "30m".
    pub rto_target: Option<String>,
    /// pg_restore jobs (1 streams; more spools to a local file).
    pub jobs: Option<usize>,
    /// Leave the restored database or cluster in place.
    #[serde(default)]
    pub keep: bool,
    /// Markdown report file (relative to the runbook).
    pub report: Option<String>,
    /// JUnit XML file (relative to the runbook).
    pub junit: Option<String>,
    /// age identity file for encrypted backups.
    pub identity: Option<String>,
}

fn duration(key: &str, raw: Option<&str>) -> Result<Option<std::time::Duration>, ActionError> {
    raw.filter(|r| !r.trim().is_empty())
        .map(|r| humantime::parse_duration(r.trim()).map_err(|e| ActionError::Input(format!("{key}: {e}"))))
        .transpose()
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.trim().is_empty())
}

pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let path = |v: &Option<String>| non_empty(v).map(|p| ctx.resolve_path(p));
    let options = Options {
        store: non_empty(&input.store).map(String::from),
        set: non_empty(&input.set).map(String::from),
        backup: non_empty(&input.backup).map(String::from),
        seed: input.seed,
        target_url: non_empty(&input.target_url).map(String::from),
        ephemeral: input.ephemeral,
        globals: input.globals,
        migrations: path(&input.migrations),
        check_sql: path(&input.check_sql),
        objects: non_empty(&input.objects).map(String::from),
        sample: input.sample,
        objects_query: non_empty(&input.objects_query).map(String::from),
        presign: input.presign,
        objects_inventory: non_empty(&input.objects_inventory).map(String::from),
        rpo_target: duration("rpo_target", input.rpo_target.as_deref())?,
        rto_target: duration("rto_target", input.rto_target.as_deref())?,
        jobs: input.jobs,
        spool_dir: None,
        keep: input.keep,
        identity: path(&input.identity),
        notify_url: None,
        metrics_file: None,
    };
    let request = drill::resolve(ctx.config, &options).map_err(|e| ActionError::Drill(Box::new(e)))?;
    let mut out = Outputs::new();
    if ctx.dry_run {
        out.insert("dry_run".into(), true.into());
        out.insert(
            "would".into(),
            format!(
                "restore the {} backup of set {} from {}",
                options.backup.as_deref().unwrap_or("latest"),
                request.set,
                request.store_url
            )
            .into(),
        );
        return Ok(out);
    }
    let report = drill::drill(&request, ctx.reporter).await.map_err(|e| ActionError::Drill(Box::new(e)))?;
    if let Some(p) = path(&input.report) {
        crate::redact::write_file(&p, &drill::render::markdown(&crate::redact::redacted(&report)), None)
            .map_err(|e| ActionError::Failed(format!("write {}: {e}", p.display())))?;
    }
    if let Some(p) = path(&input.junit) {
        crate::redact::write_file(&p, &drill::render::junit(&crate::redact::redacted(&report)), None)
            .map_err(|e| ActionError::Failed(format!("write {}: {e}", p.display())))?;
    }
    out.insert("backup_id".into(), report.backup_id.clone().into());
    out.insert("drill_id".into(), report.drill_id.clone().into());
    out.insert("ok".into(), report.ok.into());
    out.insert("rto_seconds".into(), report.rto.seconds.into());
    out.insert("rpo_seconds".into(), report.rpo.seconds.into());
    out.insert("rows".into(), report.tables.iter().filter_map(|t| t.restored).sum::<i64>().into());
    out.insert("seed".into(), report.seed.into());
    if let Some(kept) = &report.kept {
        out.insert("kept".into(), kept.clone().into());
    }
    if !report.ok {
        let failed: Vec<String> = report.failed_steps().map(|s| format!("{}: {}", s.name, s.detail)).collect();
        return Err(ActionError::Failed(format!(
            "restore drill of {} failed: {}",
            report.backup_id,
            failed.join("; ")
        )));
    }
    Ok(out)
}
