//! Object stores: S3/R2 and local directories behind one interface.
//!
//! A store is a bucket + prefix or a directory; keys are '/'-separated and relative to it.
//! Small objects (manifests) go through `put_bytes`/`get_bytes`; large ones are written with
//! `begin_upload` in equal parts and read back with `get_stream` or `get_range`.

pub mod bucket;
mod error;
mod key;
mod local;
mod s3;
mod upload;
mod url;

use bytes::Bytes;
use chrono::{DateTime, Utc};

pub use self::error::StoreError;
pub use self::local::LocalStore;
pub use self::s3::{foreign_client, ForeignClient, S3Store, S3_MAX_PART_SIZE, S3_MIN_PART_SIZE};
pub use self::upload::{Upload, UploadConfig, MAX_PARTS};
pub use self::url::StoreUrl;

use self::upload::Target;

/// Overrides for opening a store; `None` leaves a setting to the environment (see DESIGN.md
/// "Store URLs"). Only S3 stores use them.
#[derive(Clone, Default)]
pub struct StoreOptions {
    /// Force path-style (`true`) or virtual-hosted (`false`) addressing.
    pub path_style: Option<bool>,
    /// S3 endpoint URL, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Static credentials, given together. Never printed.
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// Sign request bodies (SigV4 payload hash) even over HTTPS or loopback (`true`), or never
    /// (`false`); unset signs only plain HTTP to another host.
    pub sign_payload: Option<bool>,
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("StoreOptions")
            .field("path_style", &self.path_style)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &redacted(&self.access_key))
            .field("secret_key", &redacted(&self.secret_key))
            .field("sign_payload", &self.sign_payload)
            .finish()
    }
}

/// An object as listed: key relative to the store, size, and what the backend knows besides.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
    /// The S3 ETag without quotes; `None` for local stores.
    pub etag: Option<String>,
}

/// An upload that was started and neither completed nor aborted: an S3 multipart upload, or a
/// local partial file (`upload_id` is then the partial file's suffix).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PendingUpload {
    /// The key the upload was writing, relative to the store.
    pub key: String,
    pub upload_id: Option<String>,
    pub initiated: Option<DateTime<Utc>>,
}

/// An opened store. Opening does no I/O on the network: a wrong bucket or credentials show up
/// on the first call. Clones share the S3 client (its connection pool).
#[derive(Debug, Clone)]
pub enum Store {
    Local(LocalStore),
    S3(S3Store),
}

impl Store {
    pub async fn open(url: &StoreUrl, opts: &StoreOptions) -> Result<Store, StoreError> {
        match url {
            StoreUrl::Local { root } => Ok(Store::Local(LocalStore::open(root.clone(), url.clone())?)),
            StoreUrl::S3 { bucket, prefix } => Ok(Store::S3(S3Store::open(bucket, prefix, opts).await?)),
        }
    }

    /// Parses `url` (see [`StoreUrl::parse`]) and opens the store it names.
    pub async fn open_url(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        Store::open(&StoreUrl::parse(url)?, options).await
    }

    /// The store's URL, with the bucket filled in from `R2_BUCKET` when the URL had none.
    pub fn url(&self) -> &StoreUrl {
        match self {
            Store::Local(store) => store.url(),
            Store::S3(store) => store.url(),
        }
    }

    /// Writes a small object in one request; on a local store atomically (partial file, fsync,
    /// rename).
    pub async fn put_bytes(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        match self {
            Store::Local(store) => store.put_bytes(key, body).await,
            Store::S3(store) => store.put_bytes(key, body).await,
        }
    }

    /// Reads a small object whole. A missing object is `StoreError::NotFound`.
    pub async fn get_bytes(&self, key: &str) -> Result<Bytes, StoreError> {
        match self {
            Store::Local(store) => store.get_bytes(key).await,
            Store::S3(store) => store.get_bytes(key).await,
        }
    }

    /// Streams an object without holding it in memory.
    pub async fn get_stream(&self, key: &str) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>, StoreError> {
        match self {
            Store::Local(store) => Ok(Box::new(store.get_stream(key).await?)),
            Store::S3(store) => Ok(store.get_stream(key).await?.0),
        }
    }

    /// `get_stream`, with the length of what the read yields when the backend tells (the
    /// object as it is now, which may differ from an earlier listing).
    pub async fn get_stream_sized(
        &self,
        key: &str,
    ) -> Result<(Box<dyn tokio::io::AsyncRead + Send + Unpin>, Option<u64>), StoreError> {
        match self {
            Store::Local(store) => {
                let file = store.get_stream(key).await?;
                let len = file.metadata().await.ok().map(|m| m.len());
                Ok((Box::new(file), len))
            }
            Store::S3(store) => store.get_stream(key).await,
        }
    }

    /// Whether `put_stream` is available: S3 destinations that take unsigned bodies (HTTPS or
    /// loopback endpoints, unless `sign_payload` is set).
    pub fn streams_puts(&self) -> bool {
        match self {
            Store::Local(_) => false,
            Store::S3(store) => store.streams_puts(),
        }
    }

    /// Writes `key` in one request from chunks arriving on `body`, `size` bytes in all; an `Err`
    /// chunk or a short body fails the write and leaves no object. Only where `streams_puts`.
    pub async fn put_stream(
        &self,
        key: &str,
        size: u64,
        body: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Local(store) => Err(StoreError::Upload {
                resource: store.url().to_string(),
                reason: "a local store takes uploads in parts, not as one stream".into(),
            }),
            Store::S3(store) => store.put_stream(key, size, body).await,
        }
    }

    /// Reads up to `len` bytes from `start`; shorter when the object ends first. A start at or
    /// past the end is an error.
    pub async fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Bytes, StoreError> {
        match self {
            Store::Local(store) => store.get_range(key, start, len).await,
            Store::S3(store) => store.get_range(key, start, len).await,
        }
    }

    /// The object's metadata, or `None` when it does not exist.
    /// A presigned GET URL (S3/R2 only; a local store has none).
    pub async fn presign_get(&self, key: &str, expires: std::time::Duration) -> Result<String, StoreError> {
        match self {
            Store::Local(_) => Err(StoreError::InvalidConfig {
                url: self.url().to_string(),
                reason: "presigned URLs exist only for S3/R2 stores".into(),
            }),
            Store::S3(s) => s.presign_get(key, expires).await,
        }
    }

    pub async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        match self {
            Store::Local(store) => store.head(key).await,
            Store::S3(store) => store.head(key).await,
        }
    }

    /// Every object whose key starts with `prefix` (a string prefix, not only a directory),
    /// across all pages, sorted by key. Local partial files are not objects and are left out.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        match self {
            Store::Local(store) => store.list(prefix).await,
            Store::S3(store) => store.list(prefix).await,
        }
    }

    /// Deletes an object; deleting a missing object succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Store::Local(store) => store.delete(key).await,
            Store::S3(store) => store.delete(key).await,
        }
    }

    /// Starts writing `key` in parts. On S3 the part size must be within the S3 limits (5 MiB to
    /// 5 GiB).
    pub async fn begin_upload(&self, key: &str, cfg: UploadConfig) -> Result<Upload, StoreError> {
        cfg.check(&self.url().to_string())?;
        let (target, resource) = match self {
            Store::Local(store) => {
                let upload = store.begin_upload(key).await?;
                let resource = upload.resource();
                (Target::Local(upload), resource)
            }
            Store::S3(store) => {
                let upload = store.begin_upload(key, cfg)?;
                let resource = upload.resource();
                (Target::S3(upload), resource)
            }
        };
        Ok(Upload::new(key, resource, cfg, target))
    }

    /// Uploads under `prefix` begun before `older_than` and never finished: S3 multipart uploads
    /// (ListMultipartUploads) or local partial files.
    pub async fn stale_uploads(
        &self,
        prefix: &str,
        older_than: DateTime<Utc>,
    ) -> Result<Vec<PendingUpload>, StoreError> {
        match self {
            Store::Local(store) => store.stale_uploads(prefix, older_than).await,
            Store::S3(store) => store.stale_uploads(prefix, older_than).await,
        }
    }

    /// Discards a pending upload found by `stale_uploads`; one already gone counts as done.
    pub async fn abort_pending(&self, pending: &PendingUpload) -> Result<(), StoreError> {
        match self {
            Store::Local(store) => store.abort_pending(pending).await,
            Store::S3(store) => store.abort_pending(pending).await,
        }
    }
}
