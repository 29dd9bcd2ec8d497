//! Kind postgres-password: a database URL whose password (single) or login (alternating between
//! ROLE_a and ROLE_b, members of the group role) is replaced through the admin connection, as a
//! SCRAM verifier so the plaintext never travels in SQL.

use std::time::Duration;

use sqlx::Executor;

use super::{Context, RotateError, Rotator, SecretSpec, StepError, StepFuture, Strategy};
use crate::error::Classify;
use crate::pg::{self, quote_ident, quote_literal, DbUrl};
use crate::secrets::store::{Fields, Slots};

pub(super) struct PostgresPassword;

impl Rotator for PostgresPassword {
    fn validate(&self, spec: &SecretSpec, admin: bool) -> Result<(), RotateError> {
        let Some(role) = &spec.role else { return Err(spec.needs("role")) };
        crate::provision::check_identifier("role", role, false)
            .map_err(|error| RotateError::Role { name: spec.name.clone(), error })?;
        if !admin {
            return Err(spec.needs("admin_database_url in the profile (or ADMIN_DATABASE_URL)"));
        }
        Ok(())
    }

    /// The current URL with the next login (alternating) and a new password: its host and
    /// database are reused, so the value must exist already.
    fn create<'a>(
        &'a self,
        spec: &'a SecretSpec,
        current: Option<&'a Fields>,
        _store: &'a Slots,
    ) -> StepFuture<'a, (Fields, Option<String>)> {
        Box::pin(async move {
            let current = current.map(|c| spec.primary(c)).ok_or_else(|| {
                StepError::failed(format!(
                    "{} has no current value in {}: provision it first (the URL's host and database are reused)",
                    spec.name, spec.store
                ))
            })?;
            let url = DbUrl::parse(current).map_err(|e| StepError::classified(&e).context(&spec.name))?;
            let role = spec.role.as_deref().expect("validated");
            let user = match spec.strategy {
                Strategy::Single => role.to_string(),
                Strategy::Alternating => {
                    let (a, b) = alternate_logins(role);
                    let active = url.username().unwrap_or_default();
                    if active == a {
                        b
                    } else {
                        a
                    }
                }
            };
            let password = crate::secrets::password(32);
            let value = url.with_credentials(&user, &password).expose().to_string();
            Ok((Fields::from([(spec.name.clone(), value)]), None))
        })
    }

    fn set<'a>(&'a self, ctx: &'a Context, spec: &'a SecretSpec, pending: &'a Fields) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let url = DbUrl::parse(spec.primary(pending)).map_err(|e| StepError::failed(e.to_string()))?;
            let user = url.username().unwrap_or_default();
            let password = url.password().unwrap_or_default();
            let verifier = crate::secrets::scram_verifier(&password);
            let group = spec.role.as_deref().expect("validated");
            let mut sql = String::new();
            if spec.strategy == Strategy::Alternating {
                // The logins exist as members of the group, acting as it, so objects stay owned by it.
                sql.push_str(&format!(
                    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {lit}) THEN \
                       CREATE ROLE {id} LOGIN IN ROLE {grp}; END IF; END $$; \
                     ALTER ROLE {id} SET role = {grp_lit}; ",
                    lit = quote_literal(&user),
                    id = quote_ident(&user),
                    grp = quote_ident(group),
                    grp_lit = quote_literal(group),
                ));
            }
            sql.push_str(&format!("ALTER ROLE {} LOGIN PASSWORD {}", quote_ident(&user), quote_literal(&verifier)));
            admin_exec(ctx, &sql).await
        })
    }

    fn test<'a>(
        &'a self,
        spec: &'a SecretSpec,
        pending: &'a Fields,
        _current: Option<&'a Fields>,
    ) -> StepFuture<'a, ()> {
        Box::pin(login_works(spec.primary(pending)))
    }

    /// Alternating: the new login is disabled again. Single: the old password is set back.
    fn roll_back<'a>(
        &'a self,
        ctx: &'a Context,
        spec: &'a SecretSpec,
        pending: &'a Fields,
        current: Option<&'a Fields>,
    ) -> StepFuture<'a, ()> {
        Box::pin(async move {
            match spec.strategy {
                Strategy::Alternating => {
                    let user = user_of(spec, pending).unwrap_or_default();
                    admin_exec(ctx, &format!("ALTER ROLE {} NOLOGIN", quote_ident(&user))).await
                }
                Strategy::Single => {
                    let old = current
                        .and_then(|c| DbUrl::parse(spec.primary(c)).ok())
                        .and_then(|u| u.password())
                        .ok_or_else(|| StepError::failed("no old password"))?;
                    let role = spec.role.as_deref().expect("validated");
                    let verifier = crate::secrets::scram_verifier(&old);
                    admin_exec(ctx, &format!("ALTER ROLE {} PASSWORD {}", quote_ident(role), quote_literal(&verifier)))
                        .await
                }
            }
        })
    }

    /// A single-user password's old value is dead once set: nothing to keep.
    fn irreversible(&self, spec: &SecretSpec) -> Option<&'static str> {
        (spec.strategy == Strategy::Single).then_some("single-user password")
    }

    /// The outgoing login (alternating), unless the incoming value uses the same one.
    fn revocation(&self, spec: &SecretSpec, old: &Fields, new: &Fields) -> Option<String> {
        if spec.strategy == Strategy::Single {
            return None;
        }
        // Never the login just put in (both values may name the same user).
        user_of(spec, old).filter(|u| user_of(spec, new).as_ref() != Some(u)).map(|u| format!("login {u}"))
    }

    fn revoke<'a>(
        &'a self,
        ctx: &'a Context,
        _spec: &'a SecretSpec,
        what: &'a str,
        _store: &'a Slots,
    ) -> StepFuture<'a, ()> {
        Box::pin(async move {
            if let Some(login) = what.strip_prefix("login ") {
                admin_exec(ctx, &format!("ALTER ROLE {} NOLOGIN", quote_ident(login)))
                    .await
                    .map_err(|e| e.context("revoke"))?;
            }
            Ok(())
        })
    }

    /// The previous login is enabled again, and must log in before the store is switched back.
    fn restore<'a>(
        &'a self,
        ctx: &'a Context,
        spec: &'a SecretSpec,
        previous: &'a Fields,
    ) -> StepFuture<'a, (), RotateError> {
        Box::pin(async move {
            let user = user_of(spec, previous).unwrap_or_default();
            admin_exec(ctx, &format!("ALTER ROLE {} LOGIN", quote_ident(&user)))
                .await
                .map_err(|e| RotateError::Target { name: spec.name.clone(), error: e.context("rollback") })?;
            login_works(spec.primary(previous))
                .await
                .map_err(|e| RotateError::PreviousLogin { name: spec.name.clone(), message: e.message })
        })
    }
}

fn alternate_logins(group: &str) -> (String, String) {
    (format!("{group}_a"), format!("{group}_b"))
}

/// The login a value's URL names.
fn user_of(spec: &SecretSpec, value: &Fields) -> Option<String> {
    DbUrl::parse(spec.primary(value)).ok().and_then(|u| u.username())
}

async fn admin_conn(ctx: &Context) -> Result<(sqlx::PgConnection, DbUrl), StepError> {
    let admin = ctx.admin.clone().ok_or_else(|| StepError::failed("no admin database URL"))?;
    let conn = pg::connect(&admin).await.map_err(|e| StepError::classified(&e))?;
    Ok((conn, admin))
}

async fn admin_exec(ctx: &Context, sql: &str) -> Result<(), StepError> {
    let (mut conn, _) = admin_conn(ctx).await?;
    conn.execute(sqlx::raw_sql(sql)).await.map(drop).map_err(|e| {
        let message = pg::query::describe_sql_error(&e);
        let class = pg::PgError::query("", "", e).class();
        StepError { class, message }
    })
}

async fn login_works(url: &str) -> Result<(), StepError> {
    let url = DbUrl::parse(url).map_err(|e| StepError::classified(&e))?;
    let mut conn =
        pg::conn::connect_timeout(&url, Duration::from_secs(10)).await.map_err(|e| StepError::classified(&e))?;
    sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .map(drop)
        .map_err(|e| StepError::failed(e.to_string()))
}
