//! Test harness: real Postgres clusters, an in-process S3 server, real HTTP peers, and the
//! opsbook binary.
#![allow(dead_code)]
// Harness code is test code: it may print like the tests it serves.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod cmd;
pub mod env;
pub mod http;
pub mod moto;
pub mod pg;
pub mod proxy;
pub mod receiver;
pub mod s3;
pub mod server;
pub mod tls;
pub mod tools;
pub mod vault;

/// Deterministic bytes, different per seed, that do not repeat with any period a part boundary
/// could hide.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}
