//! A real HTTP server on 127.0.0.1 that records what it receives and can be slowed down, for
//! heartbeat pings and other webhook-style peers. Answers are `200 OK` with body `OK` unless a
//! path is given its own answer with [`HttpPeer::respond`]. [`HttpPeer::start_tls`] serves the
//! same over HTTPS with the test CA's certificate.

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
    /// Request headers, names lowercase, in the order received.
    pub headers: Vec<(String, String)>,
}

impl Received {
    /// The first value of a request header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

/// A canned answer for [`HttpPeer::respond`].
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Clone, Default)]
struct State {
    received: Arc<Mutex<Vec<Received>>>,
    /// Requests whose path ends with this suffix are answered only after the delay.
    delay: Arc<Mutex<Option<(String, Duration)>>>,
    /// Requests whose path equals the key get that answer.
    answers: Arc<Mutex<std::collections::HashMap<String, Answer>>>,
    /// Requests for the key beyond this many get 429 with Retry-After.
    limits: Arc<Mutex<std::collections::HashMap<String, usize>>>,
}

pub struct HttpPeer {
    pub addr: SocketAddr,
    scheme: &'static str,
    state: State,
}

impl HttpPeer {
    pub fn start() -> HttpPeer {
        HttpPeer::serve(None)
    }

    /// The same peer over HTTPS, presenting the certificate of [`super::tls::TestCa::shared`]
    /// (for `127.0.0.1` and `localhost`); clients trust it through the CA's `ca_file()`.
    pub fn start_tls() -> HttpPeer {
        HttpPeer::serve(Some(tokio_rustls::TlsAcceptor::from(super::tls::TestCa::shared().server_config())))
    }

    fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> HttpPeer {
        let scheme = if tls.is_some() { "https" } else { "http" };
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
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        match tls {
                            // A client that rejects the certificate ends the handshake: nothing to serve.
                            Some(acceptor) => {
                                if let Ok(stream) = acceptor.accept(stream).await {
                                    serve_connection(state, stream).await;
                                }
                            }
                            None => serve_connection(state, stream).await,
                        }
                    });
                }
            });
        });
        HttpPeer { addr: rx.recv().unwrap(), scheme, state }
    }

    /// `http://127.0.0.1:PORT{path}` (`https://` for [`HttpPeer::start_tls`]).
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// Delays answers to requests whose path ends with `suffix`.
    pub fn delay(&self, suffix: &str, by: Duration) {
        *self.state.delay.lock().unwrap() = Some((suffix.to_string(), by));
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Requests received for exactly `path`.
    pub fn received_at(&self, path: &str) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.path == path).collect()
    }

    /// Answers `429 Too Many Requests` with `Retry-After: 1` to requests for `path` beyond the
    /// first `n`.
    pub fn rate_limit(&self, path: &str, n: usize) {
        self.state.limits.lock().unwrap().insert(path.to_string(), n);
    }

    /// Answers requests for exactly `path` with this status, headers and body (replacing any
    /// earlier answer for it; may be changed while a client is polling). A header value
    /// `$ORIGIN` is replaced by the request's Origin header (a server that reflects origins).
    pub fn respond(&self, path: &str, status: u16, headers: &[(&str, &str)], body: &str) {
        let answer = Answer {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.to_string(),
        };
        self.state.answers.lock().unwrap().insert(path.to_string(), answer);
    }
}

async fn serve_connection<S>(state: State, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn handle(state: State, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let origin = req.headers().get("origin").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let seen = {
        let mut received = state.received.lock().unwrap();
        received.push(Received {
            method,
            path: path.clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
            headers,
        });
        received.iter().filter(|r| r.path == path).count()
    };
    let limit = state.limits.lock().unwrap().get(&path).copied();
    if limit.is_some_and(|n| seen > n) {
        let response = Response::builder().status(429).header("retry-after", "1");
        return Ok(response.body(Full::new(Bytes::from_static(b"slow down"))).unwrap());
    }
    let delay = state.delay.lock().unwrap().clone();
    if let Some((suffix, by)) = delay {
        if path.ends_with(&suffix) {
            tokio::time::sleep(by).await;
        }
    }
    let answer = state.answers.lock().unwrap().get(&path).cloned();
    let Some(answer) = answer else {
        return Ok(Response::new(Full::new(Bytes::from_static(b"OK"))));
    };
    let mut response = Response::builder().status(answer.status);
    for (k, v) in &answer.headers {
        let v = if v == "$ORIGIN" { origin.clone().unwrap_or_default() } else { v.clone() };
        response = response.header(k.as_str(), v.as_str());
    }
    Ok(response.body(Full::new(Bytes::from(answer.body))).unwrap())
}
