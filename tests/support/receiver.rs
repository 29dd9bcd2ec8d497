//! A webhook receiver on 127.0.0.1 for replay tests: records every arrival with its time and
//! headers, and can fail on demand per path — the first N requests with a status (and
//! Retry-After), every request with a status (410, 400, 500…), or answer after a delay.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::Response;

use super::server::{Req, Resp};

#[derive(Debug, Clone)]
pub struct Arrival {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub body: String,
    /// Header names lowercase.
    pub headers: Vec<(String, String)>,
    /// The status answered.
    pub status: u16,
}

impl Arrival {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
struct Rule {
    status: u16,
    retry_after: Option<String>,
    body: String,
    /// Applies to this many requests, then the path answers 200 (None: forever).
    remaining: Option<usize>,
}

#[derive(Default)]
struct State {
    arrivals: Mutex<Vec<Arrival>>,
    rules: Mutex<HashMap<String, Rule>>,
    delay: Mutex<Duration>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let state = Arc::new(State::default());
        let server_state = state.clone();
        let addr = super::server::spawn(None, move |req| {
            let state = server_state.clone();
            async move { handle(state, super::server::read(req).await).await }
        });
        Receiver { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The first `n` requests for `path` get `status` (with Retry-After when given), then 200.
    pub fn fail_first(&self, path: &str, n: usize, status: u16, retry_after: Option<&str>) {
        self.rule(path, status, retry_after, "temporarily failing", Some(n));
    }

    /// Every request for `path` gets `status` with `body`.
    pub fn always(&self, path: &str, status: u16, body: &str) {
        self.rule(path, status, None, body, None);
    }

    fn rule(&self, path: &str, status: u16, retry_after: Option<&str>, body: &str, remaining: Option<usize>) {
        let rule = Rule { status, retry_after: retry_after.map(String::from), body: body.to_string(), remaining };
        self.state.rules.lock().unwrap().insert(path.to_string(), rule);
    }

    /// Every answer comes after `by`.
    pub fn delay(&self, by: Duration) {
        *self.state.delay.lock().unwrap() = by;
    }

    pub fn arrivals(&self) -> Vec<Arrival> {
        self.state.arrivals.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.state.arrivals.lock().unwrap().len()
    }

    /// Arrivals answered 2xx.
    pub fn delivered(&self) -> Vec<Arrival> {
        self.arrivals().into_iter().filter(|a| (200..300).contains(&a.status)).collect()
    }
}

async fn handle(state: Arc<State>, req: Req) -> Resp {
    let Req { at, method, path, headers, body } = req;
    let rule = {
        let mut rules = state.rules.lock().unwrap();
        match rules.get_mut(&path) {
            Some(rule) if rule.remaining != Some(0) => {
                if let Some(n) = rule.remaining.as_mut() {
                    *n -= 1;
                }
                Some(rule.clone())
            }
            _ => None,
        }
    };
    let delay = *state.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = rule.as_ref().map_or(200, |r| r.status);
    // Record once the answer is decided (after the delay), so "delivered" means answered 2xx.
    state.arrivals.lock().unwrap().push(Arrival { at, method, path, body, headers, status });
    let mut response = Response::builder().status(status);
    if let Some(ra) = rule.as_ref().and_then(|r| r.retry_after.clone()) {
        response = response.header("retry-after", ra);
    }
    let body = rule.map_or_else(|| "ok".to_string(), |r| r.body);
    response.body(Full::new(Bytes::from(body))).unwrap()
}
