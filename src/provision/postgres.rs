//! PostgreSQL side of provisioning: roles, their settings and passwords, the database,
//! extensions, the public schema, grants and default privileges, migrations and seeds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sqlx::{Executor, PgConnection, Row};

use super::{Action, Item, Op, RoleKind, StepError, Target};
use crate::pg::{self, quote_ident, quote_literal, DbUrl, PgError};
use crate::secrets::SecretStore;

fn q(op: &str, url: &DbUrl, e: sqlx::Error) -> StepError {
    StepError::from(PgError::query(op, url.redacted(), e))
}

async fn exec(conn: &mut PgConnection, url: &DbUrl, sql: &str, op: &str) -> Result<(), StepError> {
    conn.execute(sqlx::raw_sql(sql)).await.map_err(|e| q(op, url, e))?;
    Ok(())
}

fn duration_setting(raw: &str) -> String {
    // PostgreSQL takes ms for these settings; humantime was checked in validate().
    let d = humantime::parse_duration(raw).unwrap_or_default();
    format!("{}ms", d.as_millis())
}

/// `name=value` settings a role should have (ALTER ROLE … SET).
fn desired_settings(t: &Target, kind: RoleKind) -> BTreeMap<String, String> {
    let c = &t.config;
    let mut s = BTreeMap::new();
    if kind != RoleKind::Owner {
        s.insert("statement_timeout".into(), duration_setting(c.statement_timeout.as_deref().unwrap_or("30s")));
    }
    s.insert(
        "idle_in_transaction_session_timeout".into(),
        duration_setting(c.idle_in_transaction_session_timeout.as_deref().unwrap_or("60s")),
    );
    s
}

/// A role's current settings, normalised to ms when they are durations.
async fn role_settings(
    conn: &mut PgConnection,
    admin: &DbUrl,
    role: &str,
) -> Result<BTreeMap<String, String>, StepError> {
    let rows: Vec<Vec<String>> = sqlx::query_scalar(
        "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole \
         WHERE r.rolname = $1 AND s.setdatabase = 0",
    )
    .bind(role)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| q("read role settings", admin, e))?;
    let mut out = BTreeMap::new();
    for entry in rows.into_iter().flatten() {
        if let Some((k, v)) = entry.split_once('=') {
            // Normalise through the server's own parser: 30s and 30000ms are the same.
            let ms: Option<String> = sqlx::query_scalar(
                "SELECT CASE WHEN $1 ~ '^[0-9]+(ms|s|min|h|d)?$' \
                   THEN (extract(epoch FROM (CASE WHEN $1 ~ '^[0-9]+$' THEN $1 || 'ms' ELSE $1 END)::interval) * 1000)::bigint || 'ms' END",
            )
            .bind(v)
            .fetch_one(&mut *conn)
            .await
            .ok()
            .flatten();
            out.insert(k.to_string(), ms.unwrap_or_else(|| v.to_string()));
        }
    }
    Ok(out)
}

fn url_for(t: &Target, role: &str, password: &str) -> DbUrl {
    t.admin.with_credentials(role, password).with_database(&t.config.database)
}

/// Whether the URL stored for a role in the env file logs in.
async fn env_login_works(t: &Target, kind: RoleKind, db_exists: bool) -> (String, bool) {
    let Some(raw) = t.env.get(kind.env_key()) else { return ("missing".into(), false) };
    crate::redact::register_urls_in(&raw);
    let Ok(url) = DbUrl::parse(&raw) else { return ("not a valid URL".into(), false) };
    let role = t.config.role(kind).unwrap_or_default();
    if url.username().as_deref() != Some(role) || url.database().as_deref() != Some(&t.config.database) {
        return (format!("points at another role or database ({})", url.redacted()), false);
    }
    if !db_exists {
        return ("set, database not created yet".into(), false);
    }
    match pg::conn::connect_timeout(&url, std::time::Duration::from_secs(5)).await {
        Ok(_) => ("set, login works".into(), true),
        Err(e) => (format!("set, login fails: {e}"), false),
    }
}

pub(super) async fn plan(t: &Target) -> Result<Vec<Item>, StepError> {
    let c = &t.config;
    let admin_db = &t.admin;
    let mut conn = pg::connect(admin_db).await?;
    let mut items = Vec::new();

    let db_row = sqlx::query(
        "SELECT pg_get_userbyid(datdba)::text, pg_encoding_to_char(encoding)::text, datconnlimit \
         FROM pg_database WHERE datname = $1",
    )
    .bind(&c.database)
    .fetch_optional(&mut conn)
    .await
    .map_err(|e| q("read pg_database", admin_db, e))?;
    let db_exists = db_row.is_some();

    let admin_user: String = sqlx::query_scalar("SELECT session_user::text")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| q("read the admin connection's user", admin_db, e))?;
    for (kind, role) in c.roles() {
        let row = sqlx::query(
            "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls \
             FROM pg_roles WHERE rolname = $1",
        )
        .bind(role)
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| q("read pg_roles", admin_db, e))?;
        if let Some(row) = &row {
            refuse_privileged(kind, role, row, &admin_user)?;
        }
        let exists: Option<bool> = row.map(|r| r.get(0));
        items.push(Item {
            resource: format!("role {role}"),
            current: match exists {
                None => "absent".into(),
                Some(true) => "exists, can log in".into(),
                Some(false) => "exists, NOLOGIN".into(),
            },
            desired: "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE".into(),
            action: match exists {
                None => Action::Create,
                Some(true) => Action::None,
                Some(false) => Action::Update,
            },
            op: super::Op::Role(kind),
        });
        let want = desired_settings(t, kind);
        let have = if exists.is_some() { role_settings(&mut conn, admin_db, role).await? } else { BTreeMap::new() };
        let differs = want.iter().any(|(k, v)| have.get(k) != Some(v));
        let show = |m: &BTreeMap<String, String>| {
            if m.is_empty() {
                "none".to_string()
            } else {
                m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
            }
        };
        items.push(Item {
            resource: format!("settings of role {role}"),
            current: show(&have),
            desired: show(&want),
            action: if !differs {
                Action::None
            } else if exists.is_none() {
                Action::Create
            } else {
                Action::Update
            },
            op: Op::RoleSettings(kind),
        });
        let (current, works) =
            if exists.is_some() { env_login_works(t, kind, db_exists).await } else { ("missing".into(), false) };
        items.push(Item {
            resource: format!("password of {role} → {} in {}", kind.env_key(), t.env.describe()),
            current,
            desired: "generated (SCRAM), URL in the env file".into(),
            action: if works {
                Action::None
            } else if exists.is_none() || t.env.get(kind.env_key()).is_none() {
                Action::Create
            } else {
                Action::Update
            },
            op: Op::Password(kind),
        });
    }

    let encoding = c.encoding.clone().unwrap_or_else(|| "UTF8".into());
    let limit = c.connection_limit.unwrap_or(-1);
    let desired_db = format!("owner {}, encoding {encoding}, connection limit {limit}", c.owner_role);
    match &db_row {
        None => items.push(Item {
            resource: format!("database {}", c.database),
            current: "absent".into(),
            desired: desired_db,
            action: Action::Create,
            op: Op::Database,
        }),
        Some(row) => {
            let (owner, enc, conns): (String, String, i32) = (row.get(0), row.get(1), row.get(2));
            let current = format!("owner {owner}, encoding {enc}, connection limit {conns}");
            if !enc.eq_ignore_ascii_case(&encoding) {
                return Err(StepError::failed(format!(
                    "database {} exists with encoding {enc}, not {encoding}; the encoding cannot be changed in place",
                    c.database
                )));
            }
            items.push(Item {
                resource: format!("database {}", c.database),
                action: if owner == c.owner_role && conns == limit { Action::None } else { Action::Update },
                current,
                desired: desired_db,
                op: Op::Database,
            });
        }
    }

    // Inside the application database (when it exists).
    let mut db_conn = if db_exists { Some(pg::connect(&admin_db.with_database(&c.database)).await?) } else { None };
    let in_db = admin_db.with_database(&c.database);
    let installed: Vec<String> = match &mut db_conn {
        Some(conn) => sqlx::query_scalar("SELECT extname::text FROM pg_extension")
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| q("read pg_extension", &in_db, e))?,
        None => Vec::new(),
    };
    for ext in &c.extensions {
        let have = installed.contains(ext);
        items.push(Item {
            resource: format!("extension {ext}"),
            current: if have { "installed" } else { "absent" }.into(),
            desired: "installed".into(),
            action: if have { Action::None } else { Action::Create },
            op: Op::Extension(ext.clone()),
        });
    }
    let public_create: bool = match &mut db_conn {
        Some(conn) => sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a \
             WHERE n.nspname = 'public' AND a.grantee = 0 AND a.privilege_type = 'CREATE')",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| q("read schema privileges", &in_db, e))?,
        None => true,
    };
    items.push(Item {
        resource: "schema public".into(),
        current: if public_create { "PUBLIC may CREATE" } else { "CREATE revoked from PUBLIC" }.into(),
        desired: "CREATE revoked from PUBLIC".into(),
        action: if !public_create {
            Action::None
        } else if db_exists {
            Action::Update
        } else {
            Action::Create
        },
        op: Op::PublicSchema,
    });
    let missing = match &mut db_conn {
        Some(conn) => missing_grants(t, conn, &in_db).await?,
        None => vec!["everything (database not created yet)".into()],
    };
    items.push(Item {
        resource: "grants and default privileges".into(),
        current: if missing.is_empty() { "in place".into() } else { format!("missing: {}", missing.join("; ")) },
        desired: format!(
            "{}: DML on tables, sequences; {}read-only; future tables of {} included",
            c.app_role,
            c.readonly_role.as_ref().map(|r| format!("{r}: ")).unwrap_or_default(),
            c.owner_role
        ),
        action: if missing.is_empty() {
            Action::None
        } else if db_exists {
            Action::Update
        } else {
            Action::Create
        },
        op: Op::Grants,
    });
    Ok(items)
}

/// Attributes opsbook never grants a role it manages (see `Op::Role`), in pg_roles column order
/// after rolcanlogin.
const PRIVILEGED: [&str; 5] = ["SUPERUSER", "CREATEROLE", "CREATEDB", "REPLICATION", "BYPASSRLS"];

/// An existing role becomes managed: its password is rotated into the env file and the app logs
/// in with it. A privileged role, or the admin connection's own user, must not be taken over.
fn refuse_privileged(
    kind: RoleKind,
    role: &str,
    row: &sqlx::postgres::PgRow,
    admin_user: &str,
) -> Result<(), StepError> {
    let key = kind.config_key();
    if role == admin_user {
        return Err(StepError::usage(format!(
            "provision.{key} `{role}` is the admin connection's own user: managing it would replace the admin \
             password and hand the admin login to the application; choose another role name for provision.{key}"
        )));
    }
    let held: Vec<&str> =
        PRIVILEGED.iter().enumerate().filter(|(i, _)| row.get::<bool, _>(i + 1)).map(|(_, a)| *a).collect();
    if !held.is_empty() {
        return Err(StepError::usage(format!(
            "provision.{key} `{role}` is an existing role with {}: managing it would rotate its password and put \
             a login with {} into {}; choose another role name for provision.{key} (opsbook creates it with \
             LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE)",
            held.join(", "),
            if held.len() == 1 { "that attribute" } else { "those attributes" },
            kind.env_key()
        )));
    }
    Ok(())
}

/// What the grants check finds missing (empty when everything is in place).
async fn missing_grants(t: &Target, conn: &mut PgConnection, url: &DbUrl) -> Result<Vec<String>, StepError> {
    let c = &t.config;
    let mut missing = Vec::new();
    let existing: Vec<String> = sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)")
        .bind(c.roles().iter().map(|(_, r)| r.to_string()).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| q("read pg_roles", url, e))?;
    let mut checks: Vec<(String, String)> = Vec::new();
    let app = &c.app_role;
    if !existing.contains(app) || !existing.contains(&c.owner_role) {
        return Ok(vec!["roles not created yet".into()]);
    }
    checks.push((
        format!("{app} USAGE on schema public"),
        format!("has_schema_privilege({}, 'public', 'USAGE')", quote_literal(app)),
    ));
    checks.push((
        format!("{app} DML on existing tables"),
        format!(
            "NOT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'public' AND NOT has_table_privilege({}, format('%I.%I', schemaname, tablename), 'SELECT,INSERT,UPDATE,DELETE'))",
            quote_literal(app)
        ),
    ));
    let default_acl = |grantee: &str, objtype: char, privilege: &str| {
        format!(
            "EXISTS (SELECT 1 FROM pg_default_acl d, aclexplode(d.defaclacl) a \
             WHERE d.defaclrole = {owner}::regrole AND d.defaclobjtype = '{objtype}' \
               AND d.defaclnamespace = 'public'::regnamespace \
               AND a.grantee = {grantee}::regrole AND a.privilege_type = '{privilege}')",
            owner = quote_literal(&quote_ident(&c.owner_role)),
            grantee = quote_literal(&quote_ident(grantee)),
        )
    };
    checks.push((format!("default INSERT on future tables for {app}"), default_acl(app, 'r', "INSERT")));
    checks.push((format!("default USAGE on future sequences for {app}"), default_acl(app, 'S', "USAGE")));
    if let Some(ro) = c.readonly_role.as_ref().filter(|r| existing.contains(r)) {
        checks.push((
            format!("{ro} USAGE on schema public"),
            format!("has_schema_privilege({}, 'public', 'USAGE')", quote_literal(ro)),
        ));
        checks.push((format!("default SELECT on future tables for {ro}"), default_acl(ro, 'r', "SELECT")));
    }
    for (what, sql) in checks {
        let ok: bool = sqlx::query_scalar(&format!("SELECT {sql}"))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| q("check grants", url, e))?;
        if !ok {
            missing.push(what);
        }
    }
    Ok(missing)
}

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

/// Migrations and seeds; `db_exists` comes from [`plan`], which already looked.
pub(super) async fn plan_data(t: &Target, db_exists: bool) -> Result<Vec<Item>, StepError> {
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

/// The URL stored for a role, which apply wrote before it is needed.
fn stored_url(t: &Target, kind: RoleKind) -> Result<DbUrl, StepError> {
    let raw = t.env.get(kind.env_key()).ok_or_else(|| {
        StepError::failed(format!("{} is not in {}; run apply again to set it", kind.env_key(), t.env.describe()))
    })?;
    crate::redact::register_urls_in(&raw);
    Ok(DbUrl::parse(&raw)?)
}

pub(super) async fn apply(t: &mut Target, op: &Op) -> Result<(), StepError> {
    let c = t.config.clone();
    let admin = t.admin.clone();
    let in_db = admin.with_database(&c.database);
    match op {
        Op::Role(kind) => {
            let role = c.role(*kind).expect("planned roles exist");
            let mut conn = pg::connect(&admin).await?;
            let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(role)
                .fetch_one(&mut conn)
                .await
                .map_err(|e| q("read pg_roles", &admin, e))?;
            // An existing role only gains LOGIN: its other attributes are someone's decision.
            let sql = if exists {
                format!("ALTER ROLE {} LOGIN", quote_ident(role))
            } else {
                format!("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE", quote_ident(role))
            };
            exec(&mut conn, &admin, &sql, &format!("create or alter role {role}")).await
        }
        Op::RoleSettings(kind) => {
            let role = c.role(*kind).expect("planned roles exist");
            let mut conn = pg::connect(&admin).await?;
            for (k, v) in desired_settings(t, *kind) {
                let sql = format!("ALTER ROLE {} SET {k} = {}", quote_ident(role), quote_literal(&v));
                exec(&mut conn, &admin, &sql, &format!("set {k} for {role}")).await?;
            }
            Ok(())
        }
        Op::Password(kind) => {
            let role = c.role(*kind).expect("planned roles exist");
            let password = crate::secrets::password(32);
            let verifier = crate::secrets::scram_verifier(&password);
            let mut conn = pg::connect(&admin).await?;
            let sql = format!("ALTER ROLE {} PASSWORD {}", quote_ident(role), quote_literal(&verifier));
            exec(&mut conn, &admin, &sql, &format!("set the password of {role}")).await?;
            // Saved at once: a password that only the server knows would be lost.
            t.env.set(kind.env_key(), url_for(t, role, &password).expose());
            t.env.save()?;
            Ok(())
        }
        Op::Database => {
            let mut conn = pg::connect(&admin).await?;
            let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&c.database)
                .fetch_one(&mut conn)
                .await
                .map_err(|e| q("read pg_database", &admin, e))?;
            let db = quote_ident(&c.database);
            let limit = c.connection_limit.unwrap_or(-1);
            if exists {
                exec(
                    &mut conn,
                    &admin,
                    &format!("ALTER DATABASE {db} OWNER TO {}", quote_ident(&c.owner_role)),
                    "set the owner",
                )
                .await?;
                exec(
                    &mut conn,
                    &admin,
                    &format!("ALTER DATABASE {db} CONNECTION LIMIT {limit}"),
                    "set the connection limit",
                )
                .await
            } else {
                let encoding = c.encoding.clone().unwrap_or_else(|| "UTF8".into());
                let sql = format!(
                    "CREATE DATABASE {db} OWNER {} ENCODING {} TEMPLATE template0 CONNECTION LIMIT {limit}",
                    quote_ident(&c.owner_role),
                    quote_literal(&encoding)
                );
                exec(&mut conn, &admin, &sql, &format!("create database {}", c.database)).await
            }
        }
        Op::Extension(name) => {
            let mut conn = pg::connect(&in_db).await?;
            exec(
                &mut conn,
                &in_db,
                &format!("CREATE EXTENSION IF NOT EXISTS {}", quote_ident(name)),
                &format!("create extension {name}"),
            )
            .await
        }
        Op::PublicSchema => {
            let mut conn = pg::connect(&in_db).await?;
            exec(&mut conn, &in_db, "REVOKE CREATE ON SCHEMA public FROM PUBLIC", "revoke CREATE on schema public")
                .await
        }
        Op::Grants => {
            let mut conn = pg::connect(&in_db).await?;
            let owner = quote_ident(&c.owner_role);
            let app = quote_ident(&c.app_role);
            let db = quote_ident(&c.database);
            let mut sql = vec![
                format!("REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC"),
                format!("GRANT CONNECT ON DATABASE {db} TO {owner}, {app}"),
                format!("GRANT USAGE ON SCHEMA public TO {app}"),
                format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app}"),
                format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app}"),
                format!("ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}"),
                format!("ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {app}"),
            ];
            if let Some(ro) = &c.readonly_role {
                let ro = quote_ident(ro);
                sql.extend([
                    format!("GRANT CONNECT ON DATABASE {db} TO {ro}"),
                    format!("GRANT USAGE ON SCHEMA public TO {ro}"),
                    format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {ro}"),
                    format!(
                        "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT ON TABLES TO {ro}"
                    ),
                ]);
            }
            exec(&mut conn, &in_db, &format!("BEGIN; {}; COMMIT", sql.join("; ")), "grant privileges").await
        }
        Op::Migrations => {
            let dir = migrations_dir(t).expect("planned with a migrations directory");
            let owner_url = stored_url(t, RoleKind::Owner)?;
            let given = crate::migrate::spec::MigrateSpec { migrations: Some(dir), ..Default::default() };
            let settings = crate::settings::migrate::settings_for(&t.migrate_config, owner_url, &given);
            // A new environment has no traffic to protect: lint findings are recorded, not enforced.
            let opts = crate::migrate::engine::UpOptions { target: None, allow_unsafe: true, ignore_missing: false };
            crate::migrate::up(&settings, opts, &crate::report::Silent).await?;
            Ok(())
        }
        Op::Seeds => {
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
        other => unreachable!("not a PostgreSQL step: {other:?}"),
    }
}

/// Logs in with the app's DATABASE_URL and checks who it is.
pub(super) async fn login_test(t: &Target) -> Result<String, StepError> {
    let url = stored_url(t, RoleKind::App)?;
    let mut conn = pg::connect(&url).await?;
    let (user, db): (String, String) = sqlx::query_as("SELECT current_user::text, current_database()::text")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| q("login test", &url, e))?;
    Ok(format!("logged in as {user} to {db} with DATABASE_URL"))
}
