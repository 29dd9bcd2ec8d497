//! S3 and R2 stores: client settings (AWS chain + R2 fallbacks), object calls, multipart uploads.
//!
//! `settings` opens the client from options and the environment, `objects` holds the object
//! calls, `multipart` the part uploads, and `error` turns SDK failures into `StoreError`s.

mod error;
mod multipart;
mod objects;
mod settings;

use aws_sdk_s3::Client;
use chrono::{DateTime, Utc};

use super::key::{check_key, check_prefix, join};
use super::{StoreError, StoreUrl};

pub(crate) use self::error::sdk_error;
pub(crate) use self::multipart::S3Upload;
pub use self::multipart::{S3_MAX_PART_SIZE, S3_MIN_PART_SIZE};
pub use self::settings::{foreign_client, ForeignClient};

/// A bucket and key prefix on S3 or an S3-compatible service (R2, MinIO, …).
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    url: StoreUrl,
    /// Whether request bodies are covered by the SigV4 signature (see `needs_payload_signing`).
    sign_payload: bool,
}

impl S3Store {
    /// The bucket, after `R2_BUCKET` filled in an empty one.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix every object of this store lives under (no leading or trailing '/').
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn url(&self) -> &StoreUrl {
        &self.url
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    fn full_key(&self, key: &str) -> Result<String, StoreError> {
        check_key(key)?;
        Ok(join(&self.prefix, key))
    }

    fn resource(&self, full_key: &str) -> String {
        format!("s3://{}/{}", self.bucket, full_key)
    }

    /// The store-relative key of a full bucket key, if it lies under the store prefix.
    fn relative<'a>(&self, full_key: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() {
            return Some(full_key);
        }
        full_key.strip_prefix(self.prefix.as_str())?.strip_prefix('/')
    }

    /// The bucket-level prefix for a store-relative listing prefix.
    fn full_prefix(&self, prefix: &str) -> Result<Option<String>, StoreError> {
        check_prefix(prefix)?;
        let full = if self.prefix.is_empty() { prefix.to_owned() } else { join(&self.prefix, prefix) };
        Ok((!full.is_empty()).then_some(full))
    }
}

fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}
