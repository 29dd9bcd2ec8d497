//! `StoreError`: every store failure, carrying the operation and the resource it touched.

use crate::error::{Classify, ErrorClass};

/// The accepted store URL forms, named in every URL error.
pub(crate) const ACCEPTED_FORMS: &str = "s3://bucket/prefix, file:///absolute/path, or a plain directory path";

/// A failure of a store operation. Messages are self-contained sentences (the cause is part of
/// the text, not a separate `source`) and never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unknown store URL scheme in {url:?}; accepted forms: {}", ACCEPTED_FORMS)]
    UnknownScheme { url: String },

    #[error("invalid store URL {url:?}: {reason}; accepted forms: {}", ACCEPTED_FORMS)]
    InvalidUrl { url: String, reason: String },

    #[error("store configuration for {url}: {reason}")]
    InvalidConfig { url: String, reason: String },

    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },

    #[error("{op} {resource}: no such object")]
    NotFound { op: &'static str, resource: String, key: String },

    #[error("{op} {resource}: {error}")]
    Io { op: &'static str, resource: String, error: std::io::Error },

    /// An S3 request failed. `code` is the service's error code when it answered at all.
    #[error("{op} {resource}: {message}")]
    S3 {
        op: &'static str,
        resource: String,
        code: Option<String>,
        status: Option<u16>,
        message: String,
        class: ErrorClass,
    },

    /// The caller broke the upload protocol (unequal parts, a part after the short last part,
    /// too many parts) or the upload already failed.
    #[error("upload to {resource}: {reason}")]
    Upload { resource: String, reason: String },
}

impl StoreError {
    /// True when the object (not the bucket or the store) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// The provider's message when it does not implement the API (NotImplemented and the like).
    pub fn unsupported(&self) -> Option<String> {
        match self {
            StoreError::S3 { code, status, message, .. }
                if *status == Some(501)
                    || matches!(code.as_deref(), Some("NotImplemented" | "NotSupported" | "UnsupportedOperation")) =>
            {
                Some(message.clone())
            }
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, resource: impl Into<String>, error: std::io::Error) -> Self {
        StoreError::Io { op, resource: resource.into(), error }
    }
}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::UnknownScheme { .. }
            | StoreError::InvalidUrl { .. }
            | StoreError::InvalidConfig { .. }
            | StoreError::InvalidKey { .. } => ErrorClass::Usage,
            StoreError::S3 { class, .. } => *class,
            StoreError::NotFound { .. } | StoreError::Io { .. } | StoreError::Upload { .. } => ErrorClass::Failed,
        }
    }
}
