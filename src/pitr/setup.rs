//! `pitr setup`: turns WAL archiving on through pgBackRest, idempotently. The plan compares what
//! is with what the profile asks for (directories, the configuration file, the archive settings,
//! the stanza); applying it changes only what differs, then proves the result with
//! `pgbackrest check` (a WAL switch that must reach the repository).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use sqlx::Row;

use super::{conf, Engine, Pitr, PitrError, Repo};
use crate::pg::PgError;

/// What one item of the plan does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Ok,
}

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub item: String,
    pub action: Action,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub stanza: String,
    pub repo: String,
    pub items: Vec<Item>,
    /// archive_mode (or wal_level) changes only when PostgreSQL restarts.
    pub restart_needed: bool,
    #[serde(skip)]
    conf_text: String,
    #[serde(skip)]
    settings: Vec<(&'static str, String)>,
    #[serde(skip)]
    stanza_exists: bool,
}

impl Plan {
    pub fn changes(&self) -> usize {
        self.items.iter().filter(|i| i.action != Action::Ok).count()
    }
}

/// The result of applying a plan.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub changed: usize,
    pub restarted: bool,
    /// `pgbackrest check` passed: a WAL segment reached the repository.
    pub checked: bool,
}

fn item(items: &mut Vec<Item>, name: &str, action: Action, detail: impl Into<String>) {
    items.push(Item { item: name.to_string(), action, detail: detail.into() });
}

/// What setup would change.
pub async fn plan(p: &Pitr, engine: &Engine) -> Result<Plan, PitrError> {
    let mut items = Vec::new();
    let dir_action = if p.dir.is_dir() { Action::Ok } else { Action::Create };
    item(&mut items, "directory", dir_action, p.dir.display().to_string());
    if let Repo::Local(path) = &p.repo {
        let action = if path.is_dir() { Action::Ok } else { Action::Create };
        item(&mut items, "repository", action, path.display().to_string());
    }
    let conf_text = conf::render(p);
    let conf_path = p.conf_path();
    let conf_action = match std::fs::read_to_string(&conf_path) {
        Ok(old) if old == conf_text => Action::Ok,
        Ok(_) => Action::Update,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Action::Create,
        Err(e) => return Err(PitrError::io("read", conf_path, e)),
    };
    item(&mut items, "configuration", conf_action, conf_path.display().to_string());

    let mut conn = crate::pg::connect(&p.db).await?;
    let rows = sqlx::query("SELECT name, setting, unit FROM pg_settings WHERE name IN ('archive_mode', 'archive_command', 'archive_timeout', 'wal_level')")
        .fetch_all(&mut conn)
        .await
        .map_err(|e| PgError::query("read archive settings", p.db.redacted(), e))?;
    let current = |name: &str| -> String {
        rows.iter()
            .find(|r| r.get::<String, _>("name") == name)
            .map(|r| r.get::<String, _>("setting"))
            .unwrap_or_default()
    };
    let mut settings = Vec::new();
    let mut restart_needed = false;
    if current("wal_level") == "minimal" {
        settings.push(("wal_level", "replica".to_string()));
        item(&mut items, "wal_level", Action::Update, "minimal → replica (restart)");
        restart_needed = true;
    }
    let mode = current("archive_mode");
    if mode == "on" || mode == "always" {
        item(&mut items, "archive_mode", Action::Ok, mode);
    } else {
        settings.push(("archive_mode", "on".to_string()));
        item(&mut items, "archive_mode", Action::Update, format!("{mode} → on (restart)"));
        restart_needed = true;
    }
    let command = engine.archive_command();
    let current_command = current("archive_command");
    if current_command == command {
        item(&mut items, "archive_command", Action::Ok, "pgbackrest archive-push");
    } else {
        settings.push(("archive_command", command));
        let was =
            if current_command.is_empty() || current_command == "(disabled)" { "unset" } else { "another command" };
        item(&mut items, "archive_command", Action::Update, format!("{was} → pgbackrest archive-push"));
    }
    let timeout = p.archive_timeout.as_secs();
    let current_timeout: u64 = current("archive_timeout").parse().unwrap_or(0);
    if current_timeout == timeout {
        item(&mut items, "archive_timeout", Action::Ok, format!("{timeout}s"));
    } else {
        settings.push(("archive_timeout", format!("{timeout}s")));
        item(&mut items, "archive_timeout", Action::Update, format!("{current_timeout}s → {timeout}s"));
    }
    let stanza_exists = conf_action != Action::Create && engine.info().await.map(|i| i.exists()).unwrap_or(false);
    let stanza_action = if stanza_exists { Action::Ok } else { Action::Create };
    item(&mut items, "stanza", stanza_action, format!("{} in {}", p.stanza, p.repo.display()));
    Ok(Plan {
        stanza: p.stanza.clone(),
        repo: p.repo.display(),
        items,
        restart_needed,
        conf_text,
        settings,
        stanza_exists,
    })
}

/// Applies `plan`. A needed restart happens only with `restart`; without it, everything else is
/// applied and the result is [`PitrError::RestartNeeded`].
pub async fn apply(p: &Pitr, engine: &Engine, plan: &Plan, restart: bool) -> Result<Applied, PitrError> {
    for sub in ["", "log", "lock", "spool"] {
        private_dir(&p.dir.join(sub), engine)?;
    }
    if let Repo::Local(path) = &p.repo {
        private_dir(path, engine)?;
    }
    write_conf(&p.conf_path(), &plan.conf_text, engine)?;
    if !plan.settings.is_empty() {
        let mut conn = crate::pg::connect(&p.db).await?;
        for (name, value) in &plan.settings {
            let sql = format!("ALTER SYSTEM SET {name} = {}", crate::pg::quote_literal(value));
            sqlx::Executor::execute(&mut conn, sqlx::raw_sql(&sql))
                .await
                .map_err(|e| PgError::query(format!("set {name}"), p.db.redacted(), e))?;
        }
        sqlx::query("SELECT pg_reload_conf()")
            .execute(&mut conn)
            .await
            .map_err(|e| PgError::query("reload the configuration", p.db.redacted(), e))?;
    }
    if !plan.stanza_exists {
        engine.run("stanza-create", &[]).await?;
    }
    let mut restarted = false;
    if plan.restart_needed {
        if !restart {
            return Err(PitrError::RestartNeeded {
                hint: format!(
                    "everything else is in place; restart it (`opsbook pitr setup --restart`, or your service \
                     manager, e.g. `systemctl restart postgresql`), then run `opsbook pitr setup` again to check \
                     archiving (stanza {})",
                    p.stanza
                ),
            });
        }
        restart_cluster(p, engine).await?;
        restarted = true;
    }
    // Settings reloaded a moment ago may not be live yet in every backend.
    tokio::time::sleep(Duration::from_millis(200)).await;
    engine.run("check", &[]).await?;
    Ok(Applied { changed: plan.changes(), restarted, checked: true })
}

/// Creates `dir` (0750) owned by pgBackRest's user; an existing directory is left as it is.
fn private_dir(dir: &Path, engine: &Engine) -> Result<(), PitrError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| PitrError::io("create directory", dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))
        .map_err(|e| PitrError::io("chmod", dir, e))?;
    chown(dir, engine)
}

fn chown(path: &Path, engine: &Engine) -> Result<(), PitrError> {
    match &engine.owner {
        Some(o) => {
            std::os::unix::fs::chown(path, Some(o.uid), Some(o.gid)).map_err(|e| PitrError::io("chown", path, e))
        }
        None => Ok(()),
    }
}

/// Writes the configuration file atomically, 0600, owned by pgBackRest's user (it holds the
/// repository's secrets).
fn write_conf(path: &Path, text: &str, engine: &Engine) -> Result<(), PitrError> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    crate::files::write_atomic(path, text.as_bytes(), Some(0o600)).map_err(|e| PitrError::io("write", path, e))?;
    chown(path, engine)
}

/// Restarts the cluster with `pg_ctl restart` (which reuses the options it was started with) as
/// the data directory's owner.
async fn restart_cluster(p: &Pitr, engine: &Engine) -> Result<(), PitrError> {
    let version = std::fs::read_to_string(p.pg_path.join("PG_VERSION"))
        .map_err(|e| PitrError::io("read", p.pg_path.join("PG_VERSION"), e))?;
    let major = version.trim();
    let mut pg_ctl = Path::new("/usr/lib/postgresql").join(major).join("bin/pg_ctl");
    if !pg_ctl.is_file() {
        pg_ctl = crate::pg::tools::discover_server()?.pg_ctl;
    }
    // An opsbook cluster (sandbox, drill) keeps its server log beside the data directory.
    let log = match p.pg_path.parent() {
        Some(parent) if parent.join("cluster.json").is_file() => parent.join("postgres.log"),
        _ => p.dir.join("log").join("postgresql-restart.log"),
    };
    let mut cmd = tokio::process::Command::new(&pg_ctl);
    cmd.arg("restart")
        .arg("-D")
        .arg(&p.pg_path)
        .args(["-m", "fast", "-w", "-t", "120", "-l"])
        .arg(&log)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .current_dir("/");
    if let Some(o) = &engine.owner {
        cmd.uid(o.uid).gid(o.gid).env("HOME", &o.home);
    }
    let out = cmd.output().await.map_err(|e| PitrError::io("run", &pg_ctl, e))?;
    if !out.status.success() {
        return Err(PitrError::Pg(PgError::Tool {
            op: format!("restart PostgreSQL in {}", p.pg_path.display()),
            program: pg_ctl,
            detail: format!("{} (server log: {})", String::from_utf8_lossy(&out.stderr).trim(), log.display()),
        }));
    }
    Ok(())
}
