//! Test harness: real Postgres clusters, an in-process S3 server, real HTTP peers, and the
//! opsbook binary.
#![allow(dead_code)]

pub mod cmd;
pub mod http;
pub mod moto;
pub mod pg;
pub mod proxy;
pub mod receiver;
pub mod s3;
pub mod server;
pub mod tls;
pub mod vault;
