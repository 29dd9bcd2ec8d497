//! Where dead letters live: a Postgres table (claimed row by row with `FOR UPDATE SKIP LOCKED`,
//! removed only in the transaction that records the 2xx) or the service's own HTTP API
//! (`GET …/dlq`, `POST …/dlq/:id/replay`).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};

use super::{Columns, DeadLetter, DlqError, Filter, Stats, DEFAULT_TABLE};
use crate::pg::DbUrl;

/// A DLQ source.
#[derive(Debug)]
pub enum Source {
    Postgres(Box<PgSource>),
    Http(HttpSource),
}

impl Source {
    /// What the source is, for messages (no secrets).
    pub fn describe(&self) -> String {
        match self {
            Source::Postgres(s) => format!("table {} on {}", s.table, s.url.redacted()),
            Source::Http(s) => format!("API {}", s.base),
        }
    }

    pub async fn list(&self, filter: &Filter, with_payload: bool) -> Result<Vec<DeadLetter>, DlqError> {
        match self {
            Source::Postgres(s) => s.list(filter, with_payload).await,
            Source::Http(s) => {
                // The API scopes by the tenant header; items need not carry a tenant field.
                let filter = Filter { tenant: None, ..filter.clone() };
                let mut items: Vec<DeadLetter> = s.list().await?.into_iter().filter(|d| filter.matches(d)).collect();
                if let Some(n) = filter.limit {
                    items.truncate(n as usize);
                }
                Ok(items)
            }
        }
    }

    pub async fn stats(&self, filter: &Filter) -> Result<Stats, DlqError> {
        match self {
            Source::Postgres(s) => s.stats(filter).await,
            Source::Http(_) => Ok(super::tally(&self.list(filter, false).await?, Utc::now())),
        }
    }
}

/// The table's SQL names, validated and quoted.
#[derive(Debug, Clone)]
struct Sql {
    table: String,
    id: String,
    target_url: String,
    method: Option<String>,
    headers: Option<String>,
    payload: String,
    event_type: Option<String>,
    tenant: Option<String>,
    attempts: Option<String>,
    last_error: Option<String>,
    failed_at: Option<String>,
    event_id: Option<String>,
}

/// A quoted identifier (`name` or `schema.name`), or an error naming the setting.
fn ident(value: &str, key: &str) -> Result<String, DlqError> {
    let parts: Vec<&str> = value.split('.').collect();
    let ok = !parts.is_empty()
        && parts.len() <= 2
        && parts.iter().all(|p| {
            let mut c = p.chars();
            c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
                && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        });
    if !ok {
        return Err(DlqError::Identifier { key: key.to_string(), value: value.to_string() });
    }
    Ok(parts.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join("."))
}

/// A mapped column: the default name when unset, absent when set to "".
fn column(value: &Option<String>, default: &str, key: &str) -> Result<Option<String>, DlqError> {
    match value.as_deref() {
        None => ident(default, key).map(Some),
        Some("") => Ok(None),
        Some(v) => ident(v, &format!("columns.{key}")).map(Some),
    }
}

fn required(value: &Option<String>, default: &str, key: &'static str) -> Result<String, DlqError> {
    column(value, default, key)?.ok_or(DlqError::RequiredColumn { key })
}

impl Sql {
    fn new(table: &str, c: &Columns) -> Result<Sql, DlqError> {
        Ok(Sql {
            table: ident(table, "table")?,
            id: required(&c.id, "id", "id")?,
            target_url: required(&c.target_url, "target_url", "target_url")?,
            method: column(&c.method, "method", "method")?,
            headers: column(&c.headers, "headers", "headers")?,
            payload: required(&c.payload, "payload", "payload")?,
            event_type: column(&c.event_type, "event_type", "event_type")?,
            tenant: column(&c.tenant, "tenant", "tenant")?,
            attempts: column(&c.attempts, "attempts", "attempts")?,
            last_error: column(&c.last_error, "last_error", "last_error")?,
            failed_at: column(&c.failed_at, "failed_at", "failed_at")?,
            // No event id column unless mapped: webhook-id is then derived from the row id.
            event_id: c
                .event_id
                .as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| ident(v, "columns.event_id"))
                .transpose()?,
        })
    }

    /// The select list with fixed aliases; absent columns are NULL.
    fn select(&self, with_payload: bool) -> String {
        let or_null =
            |c: &Option<String>, cast: &str| c.as_ref().map_or(format!("NULL::{cast}"), |c| format!("{c}::{cast}"));
        format!(
            "{id}::bigint AS id, {url}::text AS target_url, COALESCE({method}, 'POST') AS method, \
             COALESCE({headers}, '{{}}'::jsonb) AS headers, {payload} AS payload, {event} AS event_type, \
             {tenant} AS tenant, COALESCE({attempts}, 0) AS attempts, {error} AS last_error, \
             {failed} AS failed_at, {event_id} AS event_id",
            id = self.id,
            url = self.target_url,
            method = or_null(&self.method, "text"),
            headers = or_null(&self.headers, "jsonb"),
            payload = if with_payload { format!("{}::text", self.payload) } else { "NULL::text".into() },
            event = or_null(&self.event_type, "text"),
            tenant = or_null(&self.tenant, "text"),
            attempts = or_null(&self.attempts, "int4"),
            error = or_null(&self.last_error, "text"),
            failed = or_null(&self.failed_at, "timestamptz"),
            event_id = or_null(&self.event_id, "text"),
        )
    }

    /// ` WHERE …` for a filter (binds pushed onto `q`).
    fn push_filter(&self, q: &mut QueryBuilder<'_, Postgres>, f: &Filter) -> Result<(), DlqError> {
        q.push(" WHERE true");
        if !f.ids.is_empty() {
            q.push(format!(" AND {}::bigint = ANY(", self.id)).push_bind(f.ids.clone()).push(")");
        }
        let time_col =
            |what: &'static str| self.failed_at.clone().ok_or(DlqError::UnmappedColumn { what, column: "failed_at" });
        if let Some(since) = f.since {
            q.push(format!(" AND {} >= ", time_col("--since")?)).push_bind(since);
        }
        if let Some(until) = f.until {
            q.push(format!(" AND {} < ", time_col("--until")?)).push_bind(until);
        }
        if let Some(pattern) = &f.endpoint {
            q.push(format!(" AND {}::text LIKE ", self.target_url)).push_bind(super::glob_to_like(pattern));
        }
        let text_col = |c: &Option<String>, what: &'static str, column: &'static str| {
            c.clone().ok_or(DlqError::UnmappedColumn { what, column })
        };
        if let Some(event) = &f.event {
            let col = text_col(&self.event_type, "--event", "event_type")?;
            q.push(format!(" AND {col}::text = ")).push_bind(event.clone());
        }
        if let Some(tenant) = &f.tenant {
            q.push(format!(" AND {}::text = ", text_col(&self.tenant, "--tenant", "tenant")?))
                .push_bind(tenant.clone());
        }
        Ok(())
    }
}

fn dead_letter(row: &PgRow) -> Result<DeadLetter, sqlx::Error> {
    let headers: Value = row.try_get("headers")?;
    Ok(DeadLetter {
        id: row.try_get("id")?,
        target_url: row.try_get("target_url")?,
        method: row.try_get("method")?,
        headers: match headers {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        payload: row.try_get("payload")?,
        event_type: row.try_get("event_type")?,
        tenant: row.try_get("tenant")?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        failed_at: row.try_get("failed_at")?,
        event_id: row.try_get("event_id")?,
    })
}

/// The Postgres dead-letter table.
#[derive(Debug, Clone)]
pub struct PgSource {
    pub url: DbUrl,
    /// The table as configured (for messages).
    pub table: String,
    sql: Sql,
    /// Quoted history table: delivered rows move there.
    history: Option<String>,
}

impl PgSource {
    pub fn new(
        url: DbUrl,
        table: Option<&str>,
        columns: &Columns,
        history: Option<&str>,
    ) -> Result<PgSource, DlqError> {
        let table = table.unwrap_or(DEFAULT_TABLE).to_string();
        let sql = Sql::new(&table, columns)?;
        let history = history.filter(|h| !h.is_empty()).map(|h| ident(h, "history_table")).transpose()?;
        Ok(PgSource { url, table, sql, history })
    }

    /// Creates the history table, when one is configured and missing: the DLQ table's columns
    /// and `delivered_at`.
    async fn init_history(&self, conn: &mut PgConnection) -> Result<bool, DlqError> {
        let Some(h) = &self.history else { return Ok(false) };
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(h.replace('"', ""))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| DlqError::query("look up", h, e))?;
        if exists.is_some() {
            return Ok(false);
        }
        let ddl =
            format!("CREATE TABLE {h} (LIKE {t}, delivered_at timestamptz NOT NULL DEFAULT now())", t = self.sql.table);
        sqlx::raw_sql(&ddl).execute(&mut *conn).await.map_err(|e| DlqError::query("create", h, e))?;
        Ok(true)
    }

    pub async fn connect(&self) -> Result<PgConnection, DlqError> {
        Ok(crate::pg::connect(&self.url).await?)
    }

    /// Creates the default table (and its index on failed_at) and the configured history table
    /// where missing; returns the tables it created.
    pub async fn init(&self) -> Result<Vec<String>, DlqError> {
        let mut conn = self.connect().await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(&self.table)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| DlqError::query("look up", &self.table, e))?;
        let mut created = Vec::new();
        if exists.is_none() {
            self.create_table(&mut conn).await?;
            created.push(self.table.clone());
        }
        if self.init_history(&mut conn).await? {
            created.push(self.history.clone().unwrap_or_default().replace('"', ""));
        }
        Ok(created)
    }

    async fn create_table(&self, conn: &mut PgConnection) -> Result<(), DlqError> {
        let t = &self.sql.table;
        let index =
            ident(&format!("{}_failed_at_idx", self.table.rsplit('.').next().unwrap_or(DEFAULT_TABLE)), "table")?;
        let ddl = format!(
            "CREATE TABLE {t} (\n  id bigserial PRIMARY KEY,\n  target_url text NOT NULL,\n  method text NOT NULL DEFAULT 'POST',\n  \
             headers jsonb NOT NULL DEFAULT '{{}}',\n  payload text NOT NULL,\n  event_type text,\n  tenant text,\n  \
             attempts int NOT NULL DEFAULT 0,\n  last_error text,\n  failed_at timestamptz NOT NULL DEFAULT now()\n);\n\
             CREATE INDEX {index} ON {t} (failed_at);"
        );
        sqlx::raw_sql(&ddl).execute(conn).await.map_err(|e| DlqError::query("create", &self.table, e))?;
        Ok(())
    }

    /// Dead letters matching `filter`, oldest first (payloads only when asked).
    pub async fn list(&self, filter: &Filter, with_payload: bool) -> Result<Vec<DeadLetter>, DlqError> {
        let mut conn = self.connect().await?;
        let mut q = QueryBuilder::new(format!("SELECT {} FROM {}", self.sql.select(with_payload), self.sql.table));
        self.sql.push_filter(&mut q, filter)?;
        q.push(format!(" ORDER BY {} ", self.sql.id));
        if let Some(n) = filter.limit {
            q.push(" LIMIT ").push_bind(n as i64);
        }
        let rows = q.build().fetch_all(&mut conn).await.map_err(|e| DlqError::query("list", &self.table, e))?;
        rows.iter().map(dead_letter).collect::<Result<_, _>>().map_err(|e| DlqError::query("read", &self.table, e))
    }

    /// Counts by endpoint (scheme://host[:port]), event type and age bucket.
    pub async fn stats(&self, filter: &Filter) -> Result<Stats, DlqError> {
        let mut conn = self.connect().await?;
        let failed = self.sql.failed_at.clone().unwrap_or_else(|| "now()".into());
        let event = self.sql.event_type.clone().unwrap_or_else(|| "NULL::text".into());
        let key_sql = [
            format!("coalesce(substring({}::text from '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]+'), {}::text)", self.sql.target_url, self.sql.target_url),
            format!("coalesce({event}::text, '(none)')"),
            format!(
                "CASE WHEN {failed} > now() - interval '1 hour' THEN '<1h' WHEN {failed} > now() - interval '1 day' THEN '1h-24h' \
                 WHEN {failed} > now() - interval '7 days' THEN '1d-7d' ELSE '>7d' END"
            ),
        ];
        let mut groups = Vec::new();
        for key in &key_sql {
            let mut q = QueryBuilder::new(format!("SELECT {key} AS k, count(*) AS n FROM {}", self.sql.table));
            self.sql.push_filter(&mut q, filter)?;
            q.push(" GROUP BY 1");
            let rows = q.build().fetch_all(&mut conn).await.map_err(|e| DlqError::query("count", &self.table, e))?;
            let mut counts = Vec::new();
            for row in rows {
                let k: String = row.try_get("k").map_err(|e| DlqError::query("count", &self.table, e))?;
                let n: i64 = row.try_get("n").map_err(|e| DlqError::query("count", &self.table, e))?;
                counts.push((k, n as u64));
            }
            groups.push(counts);
        }
        let mut q = QueryBuilder::new(format!("SELECT count(*) AS n, min({failed}) AS oldest FROM {}", self.sql.table));
        self.sql.push_filter(&mut q, filter)?;
        let row = q.build().fetch_one(&mut conn).await.map_err(|e| DlqError::query("count", &self.table, e))?;
        let total: i64 = row.try_get("n").map_err(|e| DlqError::query("count", &self.table, e))?;
        let oldest: Option<DateTime<Utc>> = if self.sql.failed_at.is_some() {
            row.try_get("oldest").map_err(|e| DlqError::query("count", &self.table, e))?
        } else {
            None
        };
        let by_age = groups.pop().unwrap_or_default();
        let by_age = super::AGE_BUCKETS
            .iter()
            .filter_map(|(label, _)| by_age.iter().find(|(k, _)| k == label).cloned())
            .collect();
        let by_event_type = super::sorted(groups.pop().unwrap_or_default());
        let by_endpoint = super::sorted(groups.pop().unwrap_or_default());
        Ok(Stats { total: total as u64, oldest, by_endpoint, by_event_type, by_age })
    }

    /// Locks one row for delivery inside the caller's transaction; None when another replay holds
    /// it (SKIP LOCKED) or it is gone.
    /// The transaction waits on the delivery (backoff included), so the server's
    /// idle_in_transaction_session_timeout (common on managed Postgres) is lifted for it.
    pub async fn claim(&self, tx: &mut PgConnection, id: i64) -> Result<Option<DeadLetter>, DlqError> {
        sqlx::Executor::execute(&mut *tx, "SET LOCAL idle_in_transaction_session_timeout = 0")
            .await
            .map_err(|e| DlqError::query("claim", &self.table, e))?;
        // No cast on the id column: `id = $1` uses its index.
        let sql = format!(
            "SELECT {} FROM {} WHERE {} = $1 FOR UPDATE SKIP LOCKED",
            self.sql.select(true),
            self.sql.table,
            self.sql.id
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(tx)
            .await
            .map_err(|e| DlqError::query("claim", &self.table, e))?;
        row.as_ref().map(dead_letter).transpose().map_err(|e| DlqError::query("read", &self.table, e))
    }

    /// Removes a delivered row, or moves it to the history table (in the transaction that
    /// claimed it).
    pub async fn remove(&self, tx: &mut PgConnection, id: i64) -> Result<(), DlqError> {
        let delete = format!("DELETE FROM {} WHERE {} = $1", self.sql.table, self.sql.id);
        let sql = match &self.history {
            // The history table starts with the DLQ table's columns in order; delivered_at
            // takes its default.
            Some(h) => format!("WITH d AS ({delete} RETURNING *) INSERT INTO {h} SELECT * FROM d"),
            None => delete,
        };
        sqlx::query(&sql)
            .bind(id)
            .execute(tx)
            .await
            .map_err(|e| DlqError::query("remove delivered row", &self.table, e))?;
        Ok(())
    }

    /// Counts a failed replay on the row: attempts + 1 and the error (when those columns exist).
    /// `keep_key`: the failure was ambiguous (the target may have processed the request), so the
    /// Idempotency-Key used is kept in the headers for the next replay; otherwise a kept key is
    /// dropped and the next replay gets a fresh one.
    pub async fn record_failure(
        &self,
        tx: &mut PgConnection,
        d: &DeadLetter,
        error: &str,
        keep_key: bool,
    ) -> Result<(), DlqError> {
        let mut sets = Vec::new();
        if let Some(a) = &self.sql.attempts {
            sets.push(format!("{a} = COALESCE({a}, 0) + 1"));
        }
        if let Some(e) = &self.sql.last_error {
            sets.push(format!("{e} = $2"));
        }
        let error = self.sql.last_error.as_ref().map(|_| error);
        let mut headers = d.headers.clone();
        let key = super::deliver::idempotency_key(d);
        headers.retain(|k, _| !k.eq_ignore_ascii_case("idempotency-key"));
        if keep_key {
            headers.insert("idempotency-key".into(), Value::String(key));
        }
        let new_headers = match &self.sql.headers {
            Some(h) if headers != d.headers => {
                sets.push(format!("{h} = ${}", if error.is_some() { 3 } else { 2 }));
                Some(Value::Object(headers))
            }
            _ => None,
        };
        if sets.is_empty() {
            return Ok(());
        }
        let sql = format!("UPDATE {} SET {} WHERE {} = $1", self.sql.table, sets.join(", "), self.sql.id);
        let mut q = sqlx::query(&sql).bind(d.id);
        if let Some(error) = error {
            q = q.bind(error);
        }
        if let Some(h) = new_headers {
            q = q.bind(h);
        }
        q.execute(tx).await.map_err(|e| DlqError::query("record failure", &self.table, e))?;
        Ok(())
    }

    /// How many rows failed before `cutoff`.
    pub async fn count_older(&self, cutoff: DateTime<Utc>) -> Result<u64, DlqError> {
        let filter = Filter { until: Some(cutoff), ..Default::default() };
        self.stats_total(&filter).await
    }

    async fn stats_total(&self, filter: &Filter) -> Result<u64, DlqError> {
        let mut conn = self.connect().await?;
        let mut q = QueryBuilder::new(format!("SELECT count(*) FROM {}", self.sql.table));
        self.sql.push_filter(&mut q, filter)?;
        let n: i64 =
            q.build_query_scalar().fetch_one(&mut conn).await.map_err(|e| DlqError::query("count", &self.table, e))?;
        Ok(n as u64)
    }

    /// Deletes rows that failed before `cutoff`, writing them first as JSON Lines to `key` in the
    /// store: the delete commits only after the archive is stored.
    pub async fn purge(&self, cutoff: DateTime<Utc>, store: &crate::store::Store, key: &str) -> Result<u64, DlqError> {
        let mut conn = self.connect().await?;
        let mut tx = sqlx::Connection::begin(&mut conn).await.map_err(|e| DlqError::query("begin", &self.table, e))?;
        let failed = self
            .sql
            .failed_at
            .clone()
            .ok_or(DlqError::UnmappedColumn { what: "purge --older-than", column: "failed_at" })?;
        let sql = format!(
            "WITH gone AS (DELETE FROM {t} WHERE {failed} < $1 RETURNING *) SELECT {sel} FROM gone ORDER BY {id}",
            t = self.sql.table,
            id = self.sql.id,
            sel = self.sql.select(true),
        );
        let rows = sqlx::query(&sql)
            .bind(cutoff)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| DlqError::query("purge", &self.table, e))?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut lines = String::new();
        for row in &rows {
            let d = dead_letter(row).map_err(|e| DlqError::query("read", &self.table, e))?;
            lines.push_str(&d.archive_line());
            lines.push('\n');
        }
        store.put_bytes(key, bytes::Bytes::from(lines)).await?;
        tx.commit().await.map_err(|e| DlqError::query("commit purge", &self.table, e))?;
        Ok(rows.len() as u64)
    }
}

/// The service's own DLQ API.
#[derive(Debug, Clone)]
pub struct HttpSource {
    /// Base URL, e.g. https://api.example.com/v1/webhooks (no trailing slash).
    pub base: String,
    token: Option<String>,
    tenant: Option<(String, String)>,
    client: reqwest::Client,
}

impl HttpSource {
    pub fn new(
        base: &str,
        token: Option<String>,
        tenant: Option<(String, String)>,
        timeout: std::time::Duration,
        connect_timeout: std::time::Duration,
    ) -> Result<HttpSource, DlqError> {
        let parsed = url::Url::parse(base).map_err(|source| DlqError::SourceUrl { url: base.to_string(), source })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(DlqError::SourceScheme { url: base.to_string() });
        }
        if let Some(t) = &token {
            crate::redact::register(t);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .user_agent(concat!("opsbook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(DlqError::HttpClient)?;
        Ok(HttpSource { base: base.trim_end_matches('/').to_string(), token, tenant, client })
    }

    /// A request to the API with the bearer token and tenant header.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        if let Some((name, value)) = &self.tenant {
            rb = rb.header(name.as_str(), value.as_str());
        }
        rb
    }

    /// `GET {base}/dlq`: a JSON array of items, or an object with `items` or `data`.
    pub async fn list(&self) -> Result<Vec<DeadLetter>, DlqError> {
        let url = format!("{}/dlq", self.base);
        let resp = self.request(reqwest::Method::GET, "/dlq").send().await.map_err(|e| DlqError::Unavailable {
            op: "list dead letters".into(),
            target: url.clone(),
            cause: super::deliver::describe_reqwest(&e),
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(DlqError::Api { op: "GET".into(), url, status, body: super::deliver::snippet(&text) });
        }
        let doc: Value = serde_json::from_str(&text).map_err(|source| DlqError::NotJson {
            url: url.clone(),
            source,
            body: super::deliver::snippet(&text),
        })?;
        let items = match &doc {
            Value::Array(a) => a.clone(),
            Value::Object(o) => {
                o.get("items").or_else(|| o.get("data")).and_then(|v| v.as_array()).cloned().unwrap_or_default()
            }
            _ => Vec::new(),
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                from_json(v).ok_or_else(|| DlqError::NotADeadLetter {
                    url: url.clone(),
                    index: i + 1,
                    item: super::deliver::snippet(&v.to_string()),
                })
            })
            .collect()
    }
}

fn from_json(v: &Value) -> Option<DeadLetter> {
    let s = |keys: &[&str]| keys.iter().find_map(|k| v.get(*k).and_then(|x| x.as_str()).map(String::from));
    let id = v.get("id").and_then(|x| x.as_i64().or_else(|| x.as_str().and_then(|s| s.parse().ok())))?;
    Some(DeadLetter {
        id,
        target_url: s(&["target_url", "url", "endpoint"])?,
        method: s(&["method"]).unwrap_or_else(|| "POST".into()),
        headers: Map::new(),
        payload: None,
        event_type: s(&["event_type", "event"]),
        tenant: s(&["tenant", "tenant_id"]),
        attempts: v.get("attempts").and_then(|x| x.as_i64()).unwrap_or(0) as i32,
        last_error: s(&["last_error", "error"]),
        failed_at: s(&["failed_at", "created_at"])
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc)),
        event_id: s(&["event_id"]),
    })
}
