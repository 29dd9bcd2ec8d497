//! A real HTTP proxy on 127.0.0.1 in front of a test server: forwards every request unchanged
//! (Host header included, so SigV4 signatures still verify), records what passed, and answers
//! `503 Service Unavailable` instead of forwarding when its failure mode says so.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};

/// Which requests the proxy fails with 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    Never,
    /// Every Nth request (N, 2N, …).
    EveryNth(usize),
    /// Every request after the first N.
    AfterFirst(usize),
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub failed: bool,
    /// The `x-amz-content-sha256` header: a body hash, or `UNSIGNED-PAYLOAD`.
    pub content_sha256: Option<String>,
}

#[derive(Clone)]
struct State {
    upstream: String,
    fail: Arc<Mutex<Fail>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    client: reqwest::Client,
}

pub struct FaultyProxy {
    pub addr: SocketAddr,
    state: State,
}

impl FaultyProxy {
    /// Starts a proxy forwarding to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str, fail: Fail) -> FaultyProxy {
        let state = State {
            upstream: upstream.trim_end_matches('/').to_string(),
            fail: Arc::new(Mutex::new(fail)),
            seen: Arc::default(),
            client: reqwest::Client::builder().no_proxy().build().expect("HTTP client"),
        };
        let server_state = state.clone();
        let addr = super::server::spawn(None, move |req| forward(server_state.clone(), req));
        FaultyProxy { addr, state }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_fail(&self, fail: Fail) {
        *self.state.fail.lock().unwrap() = fail;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

async fn forward(state: State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let target = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_else(|| "/".into());
    let content_sha256 = req.headers().get("x-amz-content-sha256").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let fail = {
        let mut seen = state.seen.lock().unwrap();
        let n = seen.len() + 1;
        let fail = match *state.fail.lock().unwrap() {
            Fail::Never => false,
            Fail::EveryNth(every) => n.is_multiple_of(every),
            Fail::AfterFirst(first) => n > first,
        };
        seen.push(Seen { method: method.to_string(), target: target.clone(), failed: fail, content_sha256 });
        fail
    };
    let headers = req.headers().clone();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if fail {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>ServiceUnavailable</Code>\
                   <Message>injected by the test proxy</Message></Error>";
        return Response::builder().status(503).body(Full::new(Bytes::from(xml))).unwrap();
    }
    let mut upstream = state.client.request(method, format!("{}{target}", state.upstream));
    for (name, value) in &headers {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            upstream = upstream.header(name, value);
        }
    }
    let answer = match upstream.body(body).send().await {
        Ok(answer) => answer,
        Err(e) => return Response::builder().status(502).body(Full::new(Bytes::from(e.to_string()))).unwrap(),
    };
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            response = response.header(name.as_str(), value.as_bytes());
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    response.body(Full::new(bytes)).unwrap()
}
