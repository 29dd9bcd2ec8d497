//! Copying one object between stores: streamed in equal parts (multipart above one part), hashed
//! on the way, retried with backoff when the failure is transient.

use std::time::Duration;

use bytes::BytesMut;
use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::inventory::InventoryEntry;
use crate::error::{Classify, ErrorClass};
use crate::store::{ObjectMeta, Store, StoreError, UploadConfig};

/// How copies are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: u32,
    /// Delay before the first retry; doubled each time, at most `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    fn delay(&self, attempt: u32) -> Duration {
        let doubled = self.base_delay.saturating_mul(1 << attempt.min(16));
        let capped = doubled.min(self.max_delay);
        // Up to 25% jitter so parallel copies that failed together do not retry together.
        let jitter = capped.mul_f64(rand::random::<f64>() * 0.25);
        capped + jitter
    }
}

/// A copy that failed, with how many attempts were made.
#[derive(Debug)]
pub struct CopyFailure {
    pub error: StoreError,
    pub attempts: u32,
}

/// Transient: the service failed (5xx, throttling), timed out, or could not be reached, or the
/// body broke off mid-stream. Credentials, missing buckets and refused requests are not.
fn transient(error: &StoreError) -> bool {
    match error {
        StoreError::S3 { status: Some(status), .. } => *status >= 500 || *status == 429,
        StoreError::S3 { status: None, class, .. } => *class == ErrorClass::Unavailable,
        StoreError::Io { op: "read body of", .. } => true,
        _ => false,
    }
}

/// How one object travels: streamed in a single PutObject up to `stream_up_to` bytes (`None`
/// when the destination cannot take a streamed body), otherwise buffered part by part.
#[derive(Debug, Clone, Copy)]
pub struct CopyShape {
    pub upload: UploadConfig,
    pub stream_up_to: Option<u64>,
}

/// Copies `source` from one store to the other and returns its inventory entry. Rewriting the
/// same key with the same bytes is idempotent, so a failed attempt is safe to repeat whole.
pub async fn copy_with_retries(
    from: &Store,
    to: &Store,
    source: &ObjectMeta,
    shape: CopyShape,
    retry: RetryPolicy,
) -> Result<InventoryEntry, CopyFailure> {
    let mut attempt = 0;
    loop {
        let copied = if shape.stream_up_to.is_some_and(|max| source.size <= max) {
            copy_streamed(from, to, source).await
        } else {
            copy_object(from, to, source, shape.upload).await
        };
        match copied {
            Ok(entry) => return Ok(entry),
            Err(error) if attempt < retry.retries && transient(&error) && !crate::signal::is_interrupted() => {
                let delay = retry.delay(attempt);
                tracing::warn!(key = %source.key, "copy failed ({error}); retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(error) => return Err(CopyFailure { error, attempts: attempt + 1 }),
        }
    }
}

/// One attempt: stream the source into an upload part by part, hashing as it goes. Memory is
/// bounded by the part size and the upload's parts in flight, never by the object.
async fn copy_object(
    from: &Store,
    to: &Store,
    source: &ObjectMeta,
    cfg: UploadConfig,
) -> Result<InventoryEntry, StoreError> {
    let mut reader = from.get_stream(&source.key).await?;
    let mut upload = to.begin_upload(&source.key, cfg).await?;
    let mut hasher = Sha256::new();
    let resource = format!("{}/{}", from.url(), source.key);
    let outcome = async {
        loop {
            // Read the next part only once it can start uploading, so no part waits in memory.
            upload.ready().await?;
            let part = read_part(&mut reader, cfg.part_size, source.size).await.map_err(|e| StoreError::Io {
                op: "read body of",
                resource: resource.clone(),
                error: e,
            })?;
            let last = part.len() < cfg.part_size;
            hasher.update(&part);
            upload.put_part(part.freeze()).await?;
            if last {
                return Ok(());
            }
        }
    }
    .await;
    if let Err(e) = outcome {
        let _ = upload.abort().await;
        return Err(e);
    }
    let size = upload.complete().await?;
    Ok(entry(source, size, hasher))
}

fn entry(source: &ObjectMeta, size: u64, hasher: Sha256) -> InventoryEntry {
    InventoryEntry {
        key: source.key.clone(),
        size,
        sha256: Some(hex::encode(hasher.finalize())),
        source_etag: source.etag.clone(),
        source_modified: source.last_modified,
        copied_at: Utc::now(),
        deleted_at: None,
    }
}

/// Bytes per chunk handed from the source to a streamed PutObject; a few are in flight.
const STREAM_CHUNK: usize = 256 * 1024;

/// One attempt as a single streamed PutObject: the source body flows through the hasher into
/// the request as it arrives, at most a few chunks in memory. A body that ends early or runs
/// long (the object changed since the listing) fails the request, so no short object is left.
async fn copy_streamed(from: &Store, to: &Store, source: &ObjectMeta) -> Result<InventoryEntry, StoreError> {
    let (mut reader, len) = from.get_stream_sized(&source.key).await?;
    // The object as it is now: it may have been rewritten since the listing.
    let expected = len.unwrap_or(source.size);
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    let read = async move {
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        loop {
            let chunk = match read_part(&mut reader, STREAM_CHUNK, expected.saturating_sub(total)).await {
                Ok(chunk) => chunk,
                Err(e) => return Err(fail_body(&tx, e).await),
            };
            let last = chunk.len() < STREAM_CHUNK;
            total += chunk.len() as u64;
            if total > expected || (last && total < expected) {
                let more = if total > expected { "at least " } else { "" };
                let e = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "{more}{total} bytes came where {expected} were announced; the object changed during the copy"
                    ),
                );
                return Err(fail_body(&tx, e).await);
            }
            hasher.update(&chunk);
            if !chunk.is_empty() && tx.send(Ok(chunk.freeze())).await.is_err() {
                // The request ended early; its own error says why.
                return Ok(None);
            }
            if last {
                return Ok(Some(hasher));
            }
        }
    };
    let resource = format!("{}/{}", from.url(), source.key);
    let (read, put) = tokio::join!(read, to.put_stream(&source.key, expected, rx));
    let hasher = read.map_err(|error| StoreError::Io { op: "read body of", resource: resource.clone(), error })?;
    put?;
    let hasher = hasher.ok_or_else(|| StoreError::Upload {
        resource,
        reason: "the upload finished before the whole body was sent".into(),
    })?;
    Ok(entry(source, expected, hasher))
}

/// Passes a read error on to the request body (so the upload fails rather than ending short)
/// and returns it.
async fn fail_body(tx: &tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>, e: std::io::Error) -> std::io::Error {
    let _ = tx.send(Err(std::io::Error::new(e.kind(), e.to_string()))).await;
    e
}

/// Reads up to `part_size` bytes; shorter only at the end of the stream. Small objects get a
/// buffer of their own size, not a whole part.
async fn read_part<R: tokio::io::AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    part_size: usize,
    expected: u64,
) -> std::io::Result<BytesMut> {
    let first = part_size.min(usize::try_from(expected).unwrap_or(usize::MAX).saturating_add(1)).max(1);
    let mut buf = BytesMut::with_capacity(first);
    while buf.len() < part_size {
        if buf.len() == buf.capacity() {
            buf.reserve((part_size - buf.len()).min(1 << 20));
        }
        let room = part_size - buf.len();
        let mut limited = (&mut *reader).take(room as u64);
        if limited.read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    Ok(buf)
}

impl CopyFailure {
    pub fn class(&self) -> ErrorClass {
        self.error.class()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy { retries: 5, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        let d0 = p.delay(0);
        assert!(d0 >= Duration::from_millis(100) && d0 <= Duration::from_millis(125), "{d0:?}");
        let d2 = p.delay(2);
        assert!(d2 >= Duration::from_millis(400) && d2 <= Duration::from_millis(500), "{d2:?}");
        let d9 = p.delay(9);
        assert!(d9 >= Duration::from_secs(1) && d9 <= Duration::from_millis(1250), "{d9:?}");
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let s3 = |status, class| StoreError::S3 {
            op: "PutObject",
            resource: "r".into(),
            code: None,
            status,
            message: "m".into(),
            class,
        };
        assert!(transient(&s3(Some(503), ErrorClass::Unavailable)));
        assert!(transient(&s3(Some(500), ErrorClass::Unavailable)));
        assert!(transient(&s3(None, ErrorClass::Unavailable)), "timeouts and refused connections");
        assert!(!transient(&s3(Some(403), ErrorClass::Unavailable)), "credentials do not heal");
        assert!(!transient(&s3(Some(400), ErrorClass::Failed)));
        assert!(!transient(&StoreError::NotFound { op: "GetObject", resource: "r".into(), key: "k".into() }));
    }

    #[tokio::test]
    async fn parts_are_full_until_the_end() {
        let data = vec![7u8; 10];
        let mut reader: &[u8] = &data;
        let a = read_part(&mut reader, 4, 10).await.unwrap();
        let b = read_part(&mut reader, 4, 10).await.unwrap();
        let c = read_part(&mut reader, 4, 10).await.unwrap();
        assert_eq!((a.len(), b.len(), c.len()), (4, 4, 2));
        assert_eq!(read_part(&mut reader, 4, 10).await.unwrap().len(), 0);
    }
}
