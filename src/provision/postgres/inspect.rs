//! Provision's plan on the PostgreSQL side: what exists (roles and their attributes, settings and
//! logins, the database, extensions, schema privileges, grants) against the desired state.

use std::collections::BTreeMap;

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::{desired_settings, q};
use crate::pg::{self, quote_ident, quote_literal, DbUrl};
use crate::provision::{Action, Item, Op, ProvisionConfig, RoleKind, StepError, Target};
use crate::secrets::SecretStore;

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

/// Roles, the database, and what is inside it, compared with the desired state.
pub(crate) async fn plan(t: &Target) -> Result<Vec<Item>, StepError> {
    let c = &t.config;
    let admin_db = &t.admin;
    let mut conn = pg::connect(admin_db).await?;
    let db_row = sqlx::query(
        "SELECT pg_get_userbyid(datdba)::text, pg_encoding_to_char(encoding)::text, datconnlimit \
         FROM pg_database WHERE datname = $1",
    )
    .bind(&c.database)
    .fetch_optional(&mut conn)
    .await
    .map_err(|e| q("read pg_database", admin_db, e))?;
    let db_exists = db_row.is_some();
    let mut items = plan_roles(t, &mut conn, db_exists).await?;
    items.push(database_item(c, db_row.as_ref())?);
    items.extend(plan_in_database(t, db_exists).await?);
    Ok(items)
}

/// Each role: the role itself, its settings, and its password (a URL in the env file).
async fn plan_roles(t: &Target, conn: &mut PgConnection, db_exists: bool) -> Result<Vec<Item>, StepError> {
    let c = &t.config;
    let admin_db = &t.admin;
    let mut items = Vec::new();
    let admin_user: String = sqlx::query_scalar("SELECT session_user::text")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| q("read the admin connection's user", admin_db, e))?;
    for (kind, role) in c.roles() {
        let row = sqlx::query(
            "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls \
             FROM pg_roles WHERE rolname = $1",
        )
        .bind(role)
        .fetch_optional(&mut *conn)
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
            op: Op::Role(kind),
        });
        let want = desired_settings(t, kind);
        let have = if exists.is_some() { role_settings(&mut *conn, admin_db, role).await? } else { BTreeMap::new() };
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
    Ok(items)
}

/// The database: its owner, encoding and connection limit.
fn database_item(c: &ProvisionConfig, db_row: Option<&PgRow>) -> Result<Item, StepError> {
    let encoding = c.encoding.clone().unwrap_or_else(|| "UTF8".into());
    let limit = c.connection_limit.unwrap_or(-1);
    let desired_db = format!("owner {}, encoding {encoding}, connection limit {limit}", c.owner_role);
    Ok(match db_row {
        None => Item {
            resource: format!("database {}", c.database),
            current: "absent".into(),
            desired: desired_db,
            action: Action::Create,
            op: Op::Database,
        },
        Some(row) => {
            let (owner, enc, conns): (String, String, i32) = (row.get(0), row.get(1), row.get(2));
            let current = format!("owner {owner}, encoding {enc}, connection limit {conns}");
            if !enc.eq_ignore_ascii_case(&encoding) {
                return Err(StepError::failed(format!(
                    "database {} exists with encoding {enc}, not {encoding}; the encoding cannot be changed in place",
                    c.database
                )));
            }
            Item {
                resource: format!("database {}", c.database),
                action: if owner == c.owner_role && conns == limit { Action::None } else { Action::Update },
                current,
                desired: desired_db,
                op: Op::Database,
            }
        }
    })
}

/// Inside the application database (when it exists): extensions, the public schema, grants.
async fn plan_in_database(t: &Target, db_exists: bool) -> Result<Vec<Item>, StepError> {
    let c = &t.config;
    let admin_db = &t.admin;
    let mut items = Vec::new();
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
