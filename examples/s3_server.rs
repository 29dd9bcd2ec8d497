//! A local S3 protocol server for benchmarks (bench/backup.sh): s3s-fs behind SigV4 auth.
//!
//! ```text
//! cargo build --release --example s3_server
//! target/release/examples/s3_server --root DIR --addr 127.0.0.1:9000 \
//!     --access-key KEY --secret-key SECRET
//! ```
//!
//! Objects live under `DIR/<bucket>/<key>`; a bucket is simply a subdirectory of `DIR` (this
//! server creates nothing by itself: make the bucket directory before uploading). Path-style
//! addressing only. Requests must be signed with the given key pair (SigV4). The listening
//! address is printed on stdout as `listening on http://ADDR` once the socket is bound, so a
//! script can wait for that line (or poll the port). Stops on SIGINT/SIGTERM.
// A benchmark fixture, not opsbook: it talks to the bench scripts through stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

const USAGE: &str = "usage: s3_server --root DIR --addr 127.0.0.1:PORT --access-key KEY --secret-key SECRET";

struct Args {
    root: PathBuf,
    addr: SocketAddr,
    access_key: String,
    secret_key: String,
}

fn parse_args() -> Result<Args, String> {
    let mut root = None;
    let mut addr = None;
    let mut access_key = None;
    let mut secret_key = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let mut value = || inline.clone().or_else(|| it.next()).ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--root" => root = Some(PathBuf::from(value()?)),
            "--addr" => {
                let v = value()?;
                addr = Some(v.parse::<SocketAddr>().map_err(|e| format!("--addr {v:?}: {e}"))?);
            }
            "--access-key" => access_key = Some(value()?),
            "--secret-key" => secret_key = Some(value()?),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let missing = |name: &str| format!("{name} is required\n{USAGE}");
    let root = root.ok_or_else(|| missing("--root"))?;
    if !root.is_dir() {
        return Err(format!("--root {}: not a directory", root.display()));
    }
    Ok(Args {
        root,
        addr: addr.ok_or_else(|| missing("--addr"))?,
        access_key: access_key.ok_or_else(|| missing("--access-key"))?,
        secret_key: secret_key.ok_or_else(|| missing("--secret-key"))?,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("s3_server: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("s3_server: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("s3_server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let fs = s3s_fs::FileSystem::new(&args.root).map_err(|e| format!("s3s-fs at {}: {e:?}", args.root.display()))?;
    let service = {
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(args.access_key, args.secret_key));
        b.build()
    };

    let listener = TcpListener::bind(args.addr).await.map_err(|e| format!("bind {}: {e}", args.addr))?;
    let local = listener.local_addr()?;
    println!("listening on http://{local}");

    let http = ConnBuilder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    loop {
        let socket = tokio::select! {
            res = listener.accept() => match res {
                Ok((socket, _)) => socket,
                Err(e) => {
                    eprintln!("s3_server: accept: {e}");
                    continue;
                }
            },
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        };
        let _ = socket.set_nodelay(true);
        let conn = http.serve_connection(TokioIo::new(socket), service.clone());
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                eprintln!("s3_server: connection: {e}");
            }
        });
    }

    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
    }
    Ok(())
}
