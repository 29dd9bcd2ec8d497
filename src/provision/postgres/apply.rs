//! Provision's apply on the PostgreSQL side: roles, their settings and passwords, the database,
//! extensions, the public schema, and grants with default privileges.

use super::{desired_settings, exec, q, url_for};
use crate::pg::{self, quote_ident, quote_literal, DbUrl};
use crate::provision::{Op, ProvisionConfig, StepError, Target};
use crate::secrets::SecretStore;

/// Makes one planned item so (migrations and seeds: see `data`).
pub(crate) async fn apply(t: &mut Target, op: &Op) -> Result<(), StepError> {
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
        Op::Database => database(&c, &admin).await,
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
        Op::Grants => grants(&c, &in_db).await,
        Op::Migrations => super::data::apply_migrations(t).await,
        Op::Seeds => super::data::apply_seeds(t).await,
        other => unreachable!("not a PostgreSQL step: {other:?}"),
    }
}

/// Creates the database, or sets the owner and connection limit of the existing one.
async fn database(c: &ProvisionConfig, admin: &DbUrl) -> Result<(), StepError> {
    let mut conn = pg::connect(admin).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&c.database)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| q("read pg_database", admin, e))?;
    let db = quote_ident(&c.database);
    let limit = c.connection_limit.unwrap_or(-1);
    if exists {
        exec(
            &mut conn,
            admin,
            &format!("ALTER DATABASE {db} OWNER TO {}", quote_ident(&c.owner_role)),
            "set the owner",
        )
        .await?;
        exec(&mut conn, admin, &format!("ALTER DATABASE {db} CONNECTION LIMIT {limit}"), "set the connection limit")
            .await
    } else {
        let encoding = c.encoding.clone().unwrap_or_else(|| "UTF8".into());
        let sql = format!(
            "CREATE DATABASE {db} OWNER {} ENCODING {} TEMPLATE template0 CONNECTION LIMIT {limit}",
            quote_ident(&c.owner_role),
            quote_literal(&encoding)
        );
        exec(&mut conn, admin, &sql, &format!("create database {}", c.database)).await
    }
}

/// Grants and default privileges for the app and read-only roles, in one transaction.
async fn grants(c: &ProvisionConfig, in_db: &DbUrl) -> Result<(), StepError> {
    let mut conn = pg::connect(in_db).await?;
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
            format!("ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT ON TABLES TO {ro}"),
        ]);
    }
    exec(&mut conn, in_db, &format!("BEGIN; {}; COMMIT", sql.join("; ")), "grant privileges").await
}
