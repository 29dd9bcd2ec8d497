//! A real HTTP server on 127.0.0.1 that records what it receives and can be slowed down, for
//! heartbeat pings and other webhook-style peers. Answers are `200 OK` with body `OK` unless a
//! path is given its own answer with [`HttpPeer::respond`]. [`HttpPeer::start_tls`] serves the
//! same over HTTPS with the test CA's certificate.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::Response;

use super::server::{Req, Resp};

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
        let server_state = state.clone();
        let addr = super::server::spawn(tls, move |req| {
            let state = server_state.clone();
            async move { handle(state, super::server::read(req).await).await }
        });
        HttpPeer { addr, scheme, state }
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

async fn handle(state: State, req: Req) -> Resp {
    let origin = req.header("origin").map(String::from);
    let Req { method, path, headers, body, .. } = req;
    let seen = {
        let mut received = state.received.lock().unwrap();
        received.push(Received { method, path: path.clone(), body, headers });
        received.iter().filter(|r| r.path == path).count()
    };
    let limit = state.limits.lock().unwrap().get(&path).copied();
    if limit.is_some_and(|n| seen > n) {
        let response = Response::builder().status(429).header("retry-after", "1");
        return response.body(Full::new(Bytes::from_static(b"slow down"))).unwrap();
    }
    let delay = state.delay.lock().unwrap().clone();
    if let Some((suffix, by)) = delay {
        if path.ends_with(&suffix) {
            tokio::time::sleep(by).await;
        }
    }
    let answer = state.answers.lock().unwrap().get(&path).cloned();
    let Some(answer) = answer else {
        return Response::new(Full::new(Bytes::from_static(b"OK")));
    };
    let mut response = Response::builder().status(answer.status);
    for (k, v) in &answer.headers {
        let v = if v == "$ORIGIN" { origin.clone().unwrap_or_default() } else { v.clone() };
        response = response.header(k.as_str(), v.as_str());
    }
    response.body(Full::new(Bytes::from(answer.body))).unwrap()
}
