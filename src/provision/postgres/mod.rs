//! PostgreSQL side of provisioning: roles, their settings and passwords, the database,
//! extensions, the public schema, grants and default privileges (`inspect` plans them, `apply`
//! makes them so), migrations and seeds (`data`). This file holds what they share.

mod apply;
mod data;
mod inspect;

use std::collections::BTreeMap;

use sqlx::{Executor, PgConnection};

pub(super) use apply::apply;
pub(super) use data::plan_data;
pub(super) use inspect::plan;

use super::{RoleKind, StepError, Target};
use crate::pg::{self, DbUrl, PgError};
use crate::secrets::SecretStore;

pub(super) fn q(op: &str, url: &DbUrl, e: sqlx::Error) -> StepError {
    StepError::from(PgError::query(op, url.redacted(), e))
}

pub(super) async fn exec(conn: &mut PgConnection, url: &DbUrl, sql: &str, op: &str) -> Result<(), StepError> {
    conn.execute(sqlx::raw_sql(sql)).await.map_err(|e| q(op, url, e))?;
    Ok(())
}

fn duration_setting(raw: &str) -> String {
    // PostgreSQL takes ms for these settings; humantime was checked in validate().
    let d = humantime::parse_duration(raw).unwrap_or_default();
    format!("{}ms", d.as_millis())
}

/// `name=value` settings a role should have (ALTER ROLE … SET).
pub(super) fn desired_settings(t: &Target, kind: RoleKind) -> BTreeMap<String, String> {
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

pub(super) fn url_for(t: &Target, role: &str, password: &str) -> DbUrl {
    t.admin.with_credentials(role, password).with_database(&t.config.database)
}
/// The URL stored for a role, which apply wrote before it is needed.
pub(super) fn stored_url(t: &Target, kind: RoleKind) -> Result<DbUrl, StepError> {
    let raw = t.env.get(kind.env_key()).ok_or_else(|| {
        StepError::failed(format!("{} is not in {}; run apply again to set it", kind.env_key(), t.env.describe()))
    })?;
    crate::redact::register_urls_in(&raw);
    Ok(DbUrl::parse(&raw)?)
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
