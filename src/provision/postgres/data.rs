//! Provision's migrations and seeds: planned from the migration engine's status and the
//! `_opsbook_seeds` table, applied as the owner role (each seed once, in its own transaction).

use std::path::PathBuf;

use sqlx::Executor;

use super::{exec, q, stored_url};
use crate::pg;
use crate::provision::{Action, Item, Op, RoleKind, StepError, Target};

fn migrations_dir(t: &Target) -> Option<PathBuf> {
    t.config.migrations.clone()
}

fn seed_files(t: &Target) -> Result<Vec<(String, String)>, StepError> {
    let Some(dir) = &t.config.seeds else { return Ok(Vec::new()) };
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| StepError {
        message: format!("read seeds directory {}: {e}", dir.display()),
        class: crate::error::ErrorClass::Usage,
    })?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".sql") && !name.starts_with('.') {
            let text = std::fs::read_to_string(entry.path())
                .map_err(|e| StepError::failed(format!("read seed {}: {e}", entry.path().display())))?;
            files.push((name, text));
        }
    }
    files.sort();
    Ok(files)
}

const SEEDS_DDL: &str = "CREATE TABLE IF NOT EXISTS _opsbook_seeds (name text PRIMARY KEY, checksum bytea NOT NULL, \
     applied_at timestamptz NOT NULL DEFAULT now(), applied_by text NOT NULL DEFAULT current_user)";

/// Migrations and seeds; `db_exists` comes from the plan of the database, which already looked.
pub(crate) async fn plan_data(t: &Target, db_exists: bool) -> Result<Vec<Item>, StepError> {
    let c = &t.config;
    let mut items = Vec::new();
    let in_db = t.admin.with_database(&c.database);
    if let Some(dir) = migrations_dir(t) {
        let source = crate::migrate::source::load(&dir)?;
        let total = source.versioned.len() + source.repeatable.len();
        let (current, pending) = if db_exists {
            let given = crate::migrate::spec::MigrateSpec { migrations: Some(dir.clone()), ..Default::default() };
            let settings = crate::settings::migrate::settings_for(&t.migrate_config, in_db.clone(), &given);
            let status = crate::migrate::status(&settings).await?;
            let pending = status.problems().count();
            (
                format!(
                    "{} applied, {pending} pending or drifted",
                    status.count(crate::migrate::engine::State::Applied)
                ),
                pending,
            )
        } else {
            ("database not created yet".into(), total)
        };
        items.push(Item {
            resource: format!("migrations in {}", dir.display()),
            current,
            desired: format!("all {total} applied (as {})", c.owner_role),
            action: if pending == 0 {
                Action::None
            } else if db_exists {
                Action::Update
            } else {
                Action::Create
            },
            op: Op::Migrations,
        });
    }
    let seeds = seed_files(t)?;
    if !seeds.is_empty() {
        let applied: Vec<String> = if db_exists {
            let mut conn = pg::connect(&in_db).await?;
            let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass('_opsbook_seeds')::text")
                .fetch_one(&mut conn)
                .await
                .map_err(|e| q("look up _opsbook_seeds", &in_db, e))?;
            if exists.is_some() {
                sqlx::query_scalar("SELECT name FROM _opsbook_seeds")
                    .fetch_all(&mut conn)
                    .await
                    .map_err(|e| q("read _opsbook_seeds", &in_db, e))?
            } else {
                Vec::new()
            }
        } else {
            Vec::new()
        };
        let todo: Vec<&str> =
            seeds.iter().map(|(n, _)| n.as_str()).filter(|n| !applied.iter().any(|a| a == n)).collect();
        items.push(Item {
            resource: format!("seeds in {}", c.seeds.as_ref().map(|d| d.display().to_string()).unwrap_or_default()),
            current: format!("{} of {} applied", seeds.len() - todo.len(), seeds.len()),
            desired: "each seed file applied once".into(),
            action: if todo.is_empty() {
                Action::None
            } else if applied.is_empty() {
                Action::Create
            } else {
                Action::Update
            },
            op: Op::Seeds,
        });
    }
    Ok(items)
}

/// Runs the pending migrations as the owner role.
pub(super) async fn apply_migrations(t: &Target) -> Result<(), StepError> {
    let dir = migrations_dir(t).expect("planned with a migrations directory");
    let owner_url = stored_url(t, RoleKind::Owner)?;
    let given = crate::migrate::spec::MigrateSpec { migrations: Some(dir), ..Default::default() };
    let settings = crate::settings::migrate::settings_for(&t.migrate_config, owner_url, &given);
    // A new environment has no traffic to protect: lint findings are recorded, not enforced.
    let opts = crate::migrate::engine::UpOptions { target: None, allow_unsafe: true, ignore_missing: false };
    crate::migrate::up(&settings, opts, &crate::report::Silent).await?;
    Ok(())
}

/// Applies the seed files not yet recorded, each in its own transaction, as the owner role.
pub(super) async fn apply_seeds(t: &Target) -> Result<(), StepError> {
    let owner_url = stored_url(t, RoleKind::Owner)?;
    let mut conn = pg::connect(&owner_url).await?;
    exec(&mut conn, &owner_url, SEEDS_DDL, "create _opsbook_seeds").await?;
    let applied: Vec<String> = sqlx::query_scalar("SELECT name FROM _opsbook_seeds")
        .fetch_all(&mut conn)
        .await
        .map_err(|e| q("read _opsbook_seeds", &owner_url, e))?;
    for (name, text) in seed_files(t)? {
        if applied.contains(&name) {
            continue;
        }
        exec(&mut conn, &owner_url, "BEGIN", "begin").await?;
        if let Err(e) = conn.execute(sqlx::raw_sql(&text)).await {
            let _ = exec(&mut conn, &owner_url, "ROLLBACK", "rollback").await;
            return Err(StepError::failed(format!("seed {name}: {}", pg::query::describe_sql_error(&e))));
        }
        sqlx::query("INSERT INTO _opsbook_seeds (name, checksum) VALUES ($1, $2)")
            .bind(&name)
            .bind(crate::migrate::source::checksum(&text))
            .execute(&mut conn)
            .await
            .map_err(|e| q("record seed", &owner_url, e))?;
        exec(&mut conn, &owner_url, "COMMIT", "commit").await?;
    }
    Ok(())
}
