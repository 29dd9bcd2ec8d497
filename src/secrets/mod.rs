//! Secrets: generation (passwords, signing keys), hashing (SCRAM verifiers for PostgreSQL,
//! argon2id for application passwords), and the stores they are written to.

pub mod envfile;
pub mod http;
pub mod keys;
pub mod rotate;
pub mod store;

use argon2::password_hash::{PasswordHasher, SaltString};
use rand::distr::Alphanumeric;
use rand::{Rng, RngCore};

pub use envfile::{EnvFile, SecretStore};

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Parse { path: std::path::PathBuf, line: usize, message: String },
    #[error("argon2id hash: {0}")]
    Hash(argon2::password_hash::Error),
    /// A `store = "…"` setting that names no store opsbook has (exit 2).
    #[error(transparent)]
    StoreSpec(#[from] store::StoreSpecError),
    /// A store setting read from the environment is missing (exit 2).
    #[error("store `{store}`: {var} is not set{example}")]
    MissingEnv { store: String, var: &'static str, example: &'static str },
    /// VAULT_ADDR is not a URL (exit 2).
    #[error("store `{store}`: VAULT_ADDR `{addr}` is not a URL: {source}")]
    VaultAddr {
        store: String,
        addr: String,
        #[source]
        source: url::ParseError,
    },
    /// The HTTP client for a store cannot be built (exit 2).
    #[error("store `{store}`: HTTP client: {source}")]
    HttpClient {
        store: String,
        #[source]
        source: reqwest::Error,
    },
    /// finish or rollback found no value to move into place (exit 2).
    #[error("store {store}: no {slot} value{}", if *slot == "pending" { " to finish" } else { "" })]
    NoValue { store: String, slot: &'static str },
    /// The store answered with an error.
    #[error("store {store}: {message}")]
    Store { store: String, message: String },
    /// The store could not be reached (exit 3).
    #[error("store {store} is unreachable: {message}")]
    Unreachable { store: String, message: String },
}

impl crate::error::Classify for SecretsError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            SecretsError::Parse { .. }
            | SecretsError::StoreSpec(_)
            | SecretsError::MissingEnv { .. }
            | SecretsError::VaultAddr { .. }
            | SecretsError::HttpClient { .. }
            | SecretsError::NoValue { .. } => crate::error::ErrorClass::Usage,
            SecretsError::Unreachable { .. } => crate::error::ErrorClass::Unavailable,
            _ => crate::error::ErrorClass::Failed,
        }
    }
}

/// A random alphanumeric password (62 symbols: `len` 32 ≈ 190 bits), registered for redaction.
pub fn password(len: usize) -> String {
    let p: String = rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect();
    crate::redact::register(&p);
    p
}

/// A random signing key of `bytes` bytes, hex-encoded, registered for redaction.
pub fn hex_key(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    let key = hex::encode(buf);
    crate::redact::register(&key);
    key
}

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password`, so the plaintext never travels
/// in SQL (or lands in a server log).
pub fn scram_verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

/// An argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) for an application password.
pub fn argon2id(password: &str) -> Result<String, SecretsError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(SecretsError::Hash)?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(SecretsError::Hash)
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};

    #[test]
    fn argon2id_hashes_verify() {
        let hash = super::argon2id("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(argon2::Argon2::default().verify_password(b"correct horse", &parsed).is_ok());
        assert!(argon2::Argon2::default().verify_password(b"wrong", &parsed).is_err());
    }

    #[test]
    fn scram_verifiers_have_postgres_format() {
        let v = super::scram_verifier("pw");
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
        assert!(!v.contains("pw$"));
    }

    #[test]
    fn generated_secrets_are_long_and_distinct() {
        assert_eq!(super::password(32).len(), 32);
        assert_ne!(super::password(32), super::password(32));
        assert_eq!(super::hex_key(32).len(), 64);
    }
}
