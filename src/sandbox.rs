//! The local sandbox behind `opsbook sandbox up|down|status`: a throwaway Postgres cluster with
//! the example `shop` database loaded, a local object store directory, and an env file users
//! source to point opsbook at them.
//!
//! Layout under the root (the command layer defaults it to `./.opsbook/sandbox`):
//! `pg/` (the cluster, see [`crate::pg::cluster`]), `store/` (the object store), `env` (0600,
//! `DATABASE_URL=...` and `OPSBOOK_STORE=...`; written last, so it marks a complete sandbox).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::ErrorClass;
use crate::pg::{LocalCluster, PgError};

/// The example application database loaded into the sandbox (also used by tests).
pub const EXAMPLE_SQL: &str = include_str!("../examples/shop.sql");

/// The sandbox database name.
pub const DATABASE: &str = "shop";

const PG_DIR: &str = "pg";
const STORE_DIR: &str = "store";
const ENV_FILE: &str = "env";

/// What `sandbox up`/`status` report.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxInfo {
    /// **Contains the sandbox superuser password.** It is shown on purpose: users must export it
    /// as `DATABASE_URL`. Only a throwaway local cluster's password ever appears here.
    pub database_url: String,
    /// Value for `OPSBOOK_STORE` (an absolute local directory).
    pub store: String,
    /// PGDATA of the sandbox cluster.
    pub data_dir: PathBuf,
    pub port: u16,
    pub running: bool,
    /// The env file with `DATABASE_URL` and `OPSBOOK_STORE` (`set -a; . FILE; set +a`).
    pub env_file: PathBuf,
    /// The server log, for when something goes wrong.
    pub log_file: PathBuf,
}

/// Brings the sandbox up: creates it when missing (cluster in `root/pg`, database `shop` loaded
/// from the example schema, `root/store`, `root/env`), starts it when stopped, and returns its
/// info when already running (idempotent). A half-created sandbox (no env file) is rebuilt.
pub async fn up(root: &Path) -> Result<SandboxInfo, PgError> {
    let root = absolute(root)?;
    let pg_dir = root.join(PG_DIR);
    let env_file = root.join(ENV_FILE);

    if LocalCluster::exists(&pg_dir) {
        let cluster = LocalCluster::open(&pg_dir)?;
        if env_file.is_file() {
            let cluster = blocking(move || {
                let mut c = cluster;
                c.start().map(|_| c)
            })
            .await?;
            // The port may have changed if the old one was taken meanwhile.
            write_env(&root, &cluster)?;
            return Ok(info(&root, &cluster, true));
        }
        // A previous `up` died half way: start over.
        blocking(move || cluster.destroy()).await?;
    } else if pg_dir.exists() {
        return Err(PgError::cluster(
            "sandbox up in",
            &root,
            format!(
                "{} exists but holds no opsbook cluster; remove it or choose another sandbox root",
                pg_dir.display()
            ),
            ErrorClass::Usage,
        ));
    }

    std::fs::create_dir_all(&root).map_err(|e| PgError::io("create directory", &root, e))?;
    let dir = pg_dir.clone();
    let cluster = blocking(move || {
        let mut c = LocalCluster::create(&dir)?;
        match c.start() {
            Ok(()) => Ok(c),
            Err(e) => {
                let _ = c.destroy();
                Err(e)
            }
        }
    })
    .await?;

    if let Err(e) = populate(&root, &cluster).await {
        let _ = blocking(move || cluster.destroy()).await;
        return Err(e);
    }
    Ok(info(&root, &cluster, true))
}

async fn populate(root: &Path, cluster: &LocalCluster) -> Result<(), PgError> {
    let url = cluster.create_database(DATABASE).await?;
    let mut conn = crate::pg::connect(&url).await?;
    sqlx::Executor::execute(&mut conn, sqlx::raw_sql(EXAMPLE_SQL))
        .await
        .map_err(|e| PgError::query("load the example shop schema", url.redacted(), e))?;
    let store = root.join(STORE_DIR);
    std::fs::create_dir_all(&store).map_err(|e| PgError::io("create directory", &store, e))?;
    write_env(root, cluster)
}

/// Stops the sandbox and removes what `up` created (`pg/`, `store/`, `env`, and the root when it
/// is then empty). Returns false when there was no sandbox.
pub async fn down(root: &Path) -> Result<bool, PgError> {
    let root = absolute(root)?;
    let pg_dir = root.join(PG_DIR);
    let mut found = false;
    if LocalCluster::exists(&pg_dir) {
        let cluster = LocalCluster::open(&pg_dir)?;
        blocking(move || cluster.destroy()).await?;
        found = true;
    }
    let store = root.join(STORE_DIR);
    if store.exists() {
        std::fs::remove_dir_all(&store).map_err(|e| PgError::io("remove", &store, e))?;
        found = true;
    }
    let env = root.join(ENV_FILE);
    if env.exists() {
        std::fs::remove_file(&env).map_err(|e| PgError::io("remove", &env, e))?;
        found = true;
    }
    // Only removes the root when empty: it may be a directory the user chose.
    let _ = std::fs::remove_dir(&root);
    Ok(found)
}

/// The sandbox's state, or None when there is none under `root`.
pub async fn status(root: &Path) -> Result<Option<SandboxInfo>, PgError> {
    let root = absolute(root)?;
    let pg_dir = root.join(PG_DIR);
    if !LocalCluster::exists(&pg_dir) {
        return Ok(None);
    }
    let cluster = LocalCluster::open(&pg_dir)?;
    let (cluster, running) = blocking(move || {
        let running = cluster.is_running();
        Ok((cluster, running))
    })
    .await?;
    Ok(Some(info(&root, &cluster, running)))
}

fn info(root: &Path, cluster: &LocalCluster, running: bool) -> SandboxInfo {
    SandboxInfo {
        database_url: cluster.url(DATABASE).expose().to_string(),
        store: root.join(STORE_DIR).display().to_string(),
        data_dir: cluster.data_dir.clone(),
        port: cluster.port,
        running,
        env_file: root.join(ENV_FILE),
        log_file: cluster.log_path(),
    }
}

/// Writes `root/env` (0600) atomically.
fn write_env(root: &Path, cluster: &LocalCluster) -> Result<(), PgError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text =
        format!("DATABASE_URL={}\nOPSBOOK_STORE={}\n", cluster.url(DATABASE).expose(), root.join(STORE_DIR).display());
    let path = root.join(ENV_FILE);
    let tmp = root.join(format!("{ENV_FILE}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| PgError::io("write", &tmp, e))?;
    f.write_all(text.as_bytes()).map_err(|e| PgError::io("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| PgError::io("write", &path, e))
}

fn absolute(root: &Path) -> Result<PathBuf, PgError> {
    std::path::absolute(root).map_err(|e| PgError::io("resolve", root, e))
}

/// Runs blocking cluster work (initdb, pg_ctl) off the async worker threads.
async fn blocking<T, F>(f: F) -> Result<T, PgError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, PgError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        PgError::Other(crate::error::ClassifiedError::new(
            ErrorClass::Failed,
            format!("sandbox worker task failed: {e}"),
        ))
    })?
}
