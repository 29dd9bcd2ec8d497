//! The drill's restore target: a scratch database the drill creates on a server, or a throwaway
//! local cluster. Only what the drill created is ever dropped.

use std::path::{Path, PathBuf};

use sqlx::Executor;

use super::{DrillError, TargetSpec};
use crate::pg::{self, quote_ident, DbUrl, LocalCluster, PgError};

pub enum Target {
    Scratch { admin: DbUrl, name: String, url: DbUrl },
    Ephemeral { cluster: Box<LocalCluster>, dir: PathBuf, url: DbUrl },
}

/// `opsbook_drill_<id>` with the id reduced to what an unquoted identifier allows.
pub fn scratch_name(drill_id: &str) -> String {
    let clean: String =
        drill_id.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    let mut name = format!("opsbook_drill_{clean}");
    name.truncate(63);
    name
}

/// In an ephemeral drill cluster's directory: the pid of the drill that owns it.
pub(crate) const OWNER_FILE: &str = "opsbook-drill.pid";

/// Stops and removes the drill clusters under `parent` whose owning process is gone (a drill
/// killed before its cleanup). Clusters kept with --keep have no owner file and stay.
pub(crate) fn sweep_abandoned(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for dir in entries.flatten().map(|e| e.path()) {
        let is_drill = dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with("drill-"));
        let owner = std::fs::read_to_string(dir.join(OWNER_FILE)).unwrap_or_default();
        let mut words = owner.split_whitespace();
        let (Some(pid), Some(owner_host)) = (words.next().and_then(|p| p.parse::<i32>().ok()), words.next()) else {
            continue;
        };
        // Only this host's processes can be checked (a directory shared with other hosts or
        // containers holds clusters whose owners we cannot see).
        let gone = owner_host == crate::lock::hostname()
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH);
        if !is_drill || !gone {
            continue;
        }
        match LocalCluster::open(&dir).and_then(LocalCluster::destroy) {
            Ok(()) => tracing::warn!("removed drill cluster {} left by process {pid}, which is gone", dir.display()),
            Err(e) => {
                tracing::warn!("drill cluster {} was left by process {pid}; removing it failed: {e}", dir.display())
            }
        }
    }
}

fn blocking_error(e: tokio::task::JoinError) -> DrillError {
    DrillError::Io { op: "local cluster task".into(), source: std::io::Error::other(e) }
}

impl Target {
    /// Creates database `name` on the `admin` server; an existing one is refused
    /// ([`DrillError::ScratchExists`]) and left alone.
    pub(crate) async fn create_named(admin: &DbUrl, name: &str) -> Result<Target, DrillError> {
        let mut conn = pg::connect(admin).await?;
        let sql = format!("CREATE DATABASE {}", quote_ident(name));
        conn.execute(sqlx::raw_sql(&sql)).await.map_err(|e| {
            if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P04") {
                DrillError::ScratchExists { name: name.to_string(), server: admin.redacted() }
            } else {
                DrillError::Pg(PgError::query(format!("create database {name}"), admin.redacted(), e))
            }
        })?;
        let url = admin.with_database(name);
        Ok(Target::Scratch { admin: admin.clone(), name: name.to_string(), url })
    }

    pub async fn create(spec: &TargetSpec, drill_id: &str) -> Result<Target, DrillError> {
        match spec {
            TargetSpec::Server(admin) => Target::create_named(admin, &scratch_name(drill_id)).await,
            TargetSpec::Ephemeral { parent } => {
                let dir = parent.join(format!("drill-{drill_id}"));
                let d = dir.clone();
                let p = parent.clone();
                let cluster = tokio::task::spawn_blocking(move || {
                    sweep_abandoned(&p);
                    let mut cluster = LocalCluster::create(&d)?;
                    // Whose cluster this is: a drill killed outright (kill -9, OOM) leaves it
                    // running, and the next drill removes it once this process is gone.
                    let _ = std::fs::write(
                        d.join(OWNER_FILE),
                        format!("{} {}", std::process::id(), crate::lock::hostname()),
                    );
                    if let Err(e) = cluster.start() {
                        let _ = cluster.destroy();
                        return Err(e);
                    }
                    Ok::<_, PgError>(cluster)
                })
                .await
                .map_err(blocking_error)??;
                let url = match cluster.create_database("drill").await {
                    Ok(url) => url,
                    Err(e) => {
                        let _ = tokio::task::spawn_blocking(move || cluster.destroy()).await;
                        return Err(e.into());
                    }
                };
                crate::redact::register(cluster.password());
                Ok(Target::Ephemeral { cluster: Box::new(cluster), dir, url })
            }
        }
    }

    /// The restored database.
    pub fn url(&self) -> &DbUrl {
        match self {
            Target::Scratch { url, .. } | Target::Ephemeral { url, .. } => url,
        }
    }

    pub fn is_ephemeral(&self) -> bool {
        matches!(self, Target::Ephemeral { .. })
    }

    pub fn describe(&self) -> String {
        match self {
            Target::Scratch { url, .. } => format!("scratch database on {}", url.redacted()),
            Target::Ephemeral { dir, url, .. } => {
                format!("ephemeral cluster in {} ({})", dir.display(), url.redacted())
            }
        }
    }

    /// Drops the scratch database or removes the cluster; with `keep`, leaves it and says where.
    pub async fn cleanup(self, keep: bool) -> Result<Option<String>, DrillError> {
        if keep {
            if let Target::Ephemeral { dir, .. } = &self {
                // Kept on purpose: no later drill may sweep it.
                let _ = std::fs::remove_file(dir.join(OWNER_FILE));
            }
            return Ok(Some(match &self {
                Target::Scratch { name, admin, .. } => {
                    format!("database {name} on {} (drop it with DROP DATABASE {name})", admin.redacted())
                }
                Target::Ephemeral { cluster, dir, url } => format!(
                    "cluster in {} serving {} (password in {}/cluster.json; stop it with `{}`, then remove the \
                     directory)",
                    dir.display(),
                    url.redacted(),
                    dir.display(),
                    cluster.stop_command()
                ),
            }));
        }
        match self {
            Target::Scratch { admin, name, .. } => {
                let mut conn = pg::connect(&admin).await?;
                let force = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&name));
                if conn.execute(sqlx::raw_sql(&force)).await.is_err() {
                    // Servers before 13 have no WITH (FORCE): end the sessions, then drop.
                    let _ = sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
                        .bind(&name)
                        .execute(&mut conn)
                        .await;
                    let plain = format!("DROP DATABASE IF EXISTS {}", quote_ident(&name));
                    conn.execute(sqlx::raw_sql(&plain))
                        .await
                        .map_err(|e| PgError::query(format!("drop scratch database {name}"), admin.redacted(), e))?;
                }
                Ok(None)
            }
            Target::Ephemeral { cluster, .. } => {
                tokio::task::spawn_blocking(move || cluster.destroy()).await.map_err(blocking_error)??;
                Ok(None)
            }
        }
    }
}
