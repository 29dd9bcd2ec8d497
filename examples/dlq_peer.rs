//! The peers of the dead-letter benchmark (bench/dlq.sh), in one process:
//!
//! - a **webhook receiver** on `--receiver ADDR`: answers `200 ok` to any POST, counting
//!   arrivals; `GET /stats` returns `{"count": N, "first": T, "last": T}` (seconds since the
//!   receiver started, of the first and last arrival), `POST /reset` clears them;
//! - the **service's replay endpoint** on `--service ADDR` (the seeds' manual way):
//!   `POST /v1/webhooks/dlq/:id/replay` locks the row of `opsbook_dead_letters` in a transaction,
//!   POSTs its payload to its target with a pooled HTTP client, deletes it on a 2xx and commits —
//!   what `opsbook dlq-replay replay` does per row, behind one HTTP call per id.
//!
//! ```text
//! cargo build --release --example dlq_peer
//! target/release/examples/dlq_peer --receiver 127.0.0.1:9100 --service 127.0.0.1:9101 --database-url URL
//! ```
//! Prints `ready` once both sockets are bound. Stops on SIGINT/SIGTERM.
// A benchmark fixture, not opsbook: it talks to the bench scripts through stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};
use tokio::net::TcpListener;

const USAGE: &str = "usage: dlq_peer --receiver ADDR --service ADDR --database-url URL";

#[derive(Default)]
struct Arrivals {
    count: u64,
    first: Option<f64>,
    last: Option<f64>,
}

struct Receiver {
    started: Instant,
    arrivals: Mutex<Arrivals>,
}

struct Service {
    pool: PgPool,
    client: reqwest::Client,
}

type Answer = Result<Response<Full<Bytes>>, Infallible>;

fn answer(status: u16, body: String) -> Answer {
    Ok(Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap())
}

async fn receive(rx: Arc<Receiver>, req: Request<Incoming>) -> Answer {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let _ = req.into_body().collect().await;
    let mut a = rx.arrivals.lock().unwrap();
    match (method.as_str(), path.as_str()) {
        ("GET", "/stats") => {
            answer(200, serde_json::json!({ "count": a.count, "first": a.first, "last": a.last }).to_string())
        }
        ("POST", "/reset") => {
            *a = Arrivals::default();
            answer(200, "reset".into())
        }
        _ => {
            let t = rx.started.elapsed().as_secs_f64();
            a.count += 1;
            a.first.get_or_insert(t);
            a.last = Some(t);
            answer(200, "ok".into())
        }
    }
}

async fn replay(svc: Arc<Service>, req: Request<Incoming>) -> Answer {
    let path = req.uri().path().to_string();
    let id = path
        .strip_prefix("/v1/webhooks/dlq/")
        .and_then(|rest| rest.strip_suffix("/replay"))
        .and_then(|id| id.parse::<i64>().ok());
    let Some(id) = id else { return answer(404, "not found".into()) };
    match replay_one(&svc, id).await {
        Ok(Some(status)) => answer(if (200..300).contains(&status) { 200 } else { 502 }, status.to_string()),
        Ok(None) => answer(404, "no such dead letter".into()),
        Err(e) => answer(500, e),
    }
}

async fn replay_one(svc: &Service, id: i64) -> Result<Option<u16>, String> {
    let mut tx = svc.pool.begin().await.map_err(|e| e.to_string())?;
    let row = sqlx::query("SELECT target_url, payload FROM opsbook_dead_letters WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    let Some(row) = row else { return Ok(None) };
    let (url, payload): (String, String) = (row.get(0), row.get(1));
    let resp = svc
        .client
        .post(url)
        .header("content-type", "application/json")
        .body(payload)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        sqlx::query("DELETE FROM opsbook_dead_letters WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
    }
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(Some(status))
}

async fn serve<S, F>(listener: TcpListener, state: Arc<S>, handler: fn(Arc<S>, Request<Incoming>) -> F)
where
    S: Send + Sync + 'static,
    F: std::future::Future<Output = Answer> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handler(state.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |flag: &str| {
        args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| {
            eprintln!("{USAGE}");
            std::process::exit(2)
        })
    };
    let (receiver_addr, service_addr, url) = (get("--receiver"), get("--service"), get("--database-url"));
    let pool = PgPoolOptions::new().max_connections(8).connect(&url).await.expect("connect to the database");
    let receiver = Arc::new(Receiver { started: Instant::now(), arrivals: Mutex::new(Arrivals::default()) });
    let service = Arc::new(Service { pool, client: reqwest::Client::new() });
    let rl = TcpListener::bind(&receiver_addr).await.expect("bind the receiver");
    let sl = TcpListener::bind(&service_addr).await.expect("bind the service");
    println!("ready");
    tokio::spawn(serve(rl, receiver, receive));
    tokio::spawn(serve(sl, service, replay));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
