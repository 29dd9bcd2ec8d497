//! A real HTTP server on 127.0.0.1 that records what it receives and can be slowed down, for
//! heartbeat pings and other webhook-style peers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub body: String,
}

#[derive(Clone, Default)]
struct State {
    received: Arc<Mutex<Vec<Received>>>,
    /// Requests whose path ends with this suffix are answered only after the delay.
    delay: Arc<Mutex<Option<(String, Duration)>>>,
}

pub struct HttpPeer {
    pub addr: SocketAddr,
    state: State,
}

impl HttpPeer {
    pub fn start() -> HttpPeer {
        let state = State::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let server_state = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let state = server_state.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        HttpPeer { addr: rx.recv().unwrap(), state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Delays answers to requests whose path ends with `suffix`.
    pub fn delay(&self, suffix: &str, by: Duration) {
        *self.state.delay.lock().unwrap() = Some((suffix.to_string(), by));
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }
}

async fn handle(state: State, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    state.received.lock().unwrap().push(Received {
        method,
        path: path.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let delay = state.delay.lock().unwrap().clone();
    if let Some((suffix, by)) = delay {
        if path.ends_with(&suffix) {
            tokio::time::sleep(by).await;
        }
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"OK"))))
}
