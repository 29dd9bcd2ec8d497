//! Real HTTP(S) servers on 127.0.0.1 for the test peers: [`spawn`] runs an async handler per
//! request (plain or TLS; [`read`] turns it into a [`Req`]), [`serve`] a closure answering status and JSON body — for small stateful
//! peers (a Vault KV v2 server, a gateway issuing credentials) written in a few lines per test.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A request as the handlers see it.
pub struct Req {
    /// When it arrived (before its body was read).
    pub at: Instant,
    pub method: String,
    pub path: String,
    /// Names lowercase, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

pub type Resp = Response<Full<Bytes>>;

/// Reads a request (its whole body) into a [`Req`].
pub async fn read(req: Request<Incoming>) -> Req {
    let at = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    Req { at, method, path, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

/// Serves `handler` on a free loopback port (over TLS with `tls`) until the test process ends.
pub fn spawn<H, F>(tls: Option<tokio_rustls::TlsAcceptor>, handler: H) -> SocketAddr
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    let handler = Arc::new(handler);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (handler, tls) = (handler.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        // A client that rejects the certificate ends the handshake: nothing to serve.
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                connection(handler, stream).await;
                            }
                        }
                        None => connection(handler, stream).await,
                    }
                });
            }
        });
    });
    rx.recv().unwrap()
}

async fn connection<S, H, F>(handler: Arc<H>, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler(req).await) }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Serves a closure answering status and JSON body; returns the address.
pub fn serve(handler: impl Fn(Req) -> (u16, String) + Send + Sync + 'static) -> SocketAddr {
    let handler = Arc::new(handler);
    spawn(None, move |req| {
        let handler = handler.clone();
        async move {
            let (status, body) = handler(read(req).await);
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap()
        }
    })
}
