//! Streaming uploads: the equal-part protocol shared by both backends, and the `Upload` handle.

use bytes::Bytes;

use super::local::LocalUpload;
use super::s3::S3Upload;
use super::StoreError;

/// S3 and R2 refuse multipart uploads with more parts than this.
pub const MAX_PARTS: usize = 10_000;

/// How an upload is cut into parts and how many part uploads run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadConfig {
    /// Bytes per part; every part but the last must be exactly this size (R2 requires it).
    pub part_size: usize,
    /// Part uploads running concurrently; memory use is bounded by `part_size × in_flight`.
    pub in_flight: usize,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig { part_size: 8 * 1024 * 1024, in_flight: 4 }
    }
}

impl UploadConfig {
    pub(crate) fn check(&self, url: &str) -> Result<(), StoreError> {
        let reason = if self.part_size == 0 {
            "the part size must be at least 1 byte"
        } else if self.in_flight == 0 {
            "at least one part upload must be allowed in flight"
        } else {
            return Ok(());
        };
        Err(StoreError::InvalidConfig { url: url.to_owned(), reason: reason.to_owned() })
    }
}

/// How a part breaks the equal-part rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PartRule {
    #[error(
        "a part of {len} bytes follows a short part of {short} bytes; only the last part may be shorter than the \
         part size of {part_size} bytes"
    )]
    AfterShort { len: usize, short: usize, part_size: usize },
    #[error("a part of {len} bytes is larger than the part size of {part_size} bytes; parts must be of equal size")]
    TooLarge { len: usize, part_size: usize },
    #[error("more than {MAX_PARTS} parts; use a part size larger than {part_size} bytes")]
    TooMany { part_size: usize },
}

/// The equal-part rule: parts of exactly `part_size` bytes, then at most one shorter part.
#[derive(Debug)]
pub(crate) struct PartSizing {
    part_size: usize,
    parts: usize,
    bytes: u64,
    short_part: Option<usize>,
}

impl PartSizing {
    pub(crate) fn new(part_size: usize) -> Self {
        PartSizing { part_size, parts: 0, bytes: 0, short_part: None }
    }

    /// Records a part of `len` bytes, or says why it breaks the rule. An empty part uploads
    /// nothing but ends the sequence like any short part.
    pub(crate) fn accept(&mut self, len: usize) -> Result<(), PartRule> {
        let part_size = self.part_size;
        if let Some(short) = self.short_part {
            return Err(PartRule::AfterShort { len, short, part_size });
        }
        if len > self.part_size {
            return Err(PartRule::TooLarge { len, part_size });
        }
        if len > 0 && self.parts == MAX_PARTS {
            return Err(PartRule::TooMany { part_size });
        }
        if len < self.part_size {
            self.short_part = Some(len);
        }
        if len > 0 {
            self.parts += 1;
            self.bytes += len as u64;
        }
        Ok(())
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

pub(crate) enum Target {
    Local(LocalUpload),
    S3(S3Upload),
}

/// An object being written part by part. Dropping it without `complete` or `abort` never leaves
/// a completed object: a local partial file is removed, an S3 multipart upload is aborted in
/// the background when a tokio runtime is present.
pub struct Upload {
    key: String,
    resource: String,
    sizing: PartSizing,
    target: Target,
    /// Set when a part failed to be written: the object would be incomplete, so only `abort`
    /// is allowed from then on.
    failed: bool,
}

impl Upload {
    pub(crate) fn new(key: &str, resource: String, cfg: UploadConfig, target: Target) -> Self {
        let sizing = PartSizing::new(cfg.part_size);
        Upload { key: key.to_owned(), resource, sizing, target, failed: false }
    }

    fn refuse_after_failure(&self) -> Result<(), StoreError> {
        if self.failed {
            return Err(StoreError::Upload {
                resource: self.resource.clone(),
                reason: "an earlier part failed; the upload can only be aborted".to_owned(),
            });
        }
        Ok(())
    }

    /// The key being written, relative to the store.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Bytes accepted so far.
    pub fn bytes(&self) -> u64 {
        self.sizing.bytes()
    }

    /// Waits until a part given to [`Upload::put_part`] would start at once. A producer that
    /// takes its next part only after this keeps one part fewer in memory than one that waits
    /// inside `put_part` holding it. Fails when a finished part upload failed.
    pub async fn ready(&mut self) -> Result<(), StoreError> {
        self.refuse_after_failure()?;
        let ready = match &mut self.target {
            Target::Local(_) => Ok(()),
            Target::S3(upload) => upload.ready().await,
        };
        self.failed = ready.is_err();
        ready
    }

    /// Adds the next part: exactly `part_size` bytes, except the last, which may be shorter.
    /// Waits while `in_flight` part uploads are already running.
    pub async fn put_part(&mut self, part: Bytes) -> Result<(), StoreError> {
        self.refuse_after_failure()?;
        let resource = &self.resource;
        self.sizing
            .accept(part.len())
            .map_err(|rule| StoreError::Upload { resource: resource.clone(), reason: rule.to_string() })?;
        if part.is_empty() {
            return Ok(());
        }
        let written = match &mut self.target {
            Target::Local(upload) => upload.write(part).await,
            Target::S3(upload) => upload.put(part).await,
        };
        self.failed = written.is_err();
        written
    }

    /// Makes the object visible and returns its size. An upload with no parts writes an empty
    /// object.
    pub async fn complete(mut self) -> Result<u64, StoreError> {
        self.refuse_after_failure()?;
        match &mut self.target {
            Target::Local(upload) => upload.complete().await?,
            Target::S3(upload) => upload.complete().await?,
        }
        Ok(self.sizing.bytes())
    }

    /// Discards everything uploaded so far.
    pub async fn abort(mut self) -> Result<(), StoreError> {
        match &mut self.target {
            Target::Local(upload) => upload.abort().await,
            Target::S3(upload) => upload.abort().await,
        }
    }
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("resource", &self.resource).field("sizing", &self.sizing).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_parts_then_a_short_tail() {
        let mut sizing = PartSizing::new(4);
        for len in [4, 4, 4, 1] {
            sizing.accept(len).unwrap();
        }
        assert_eq!(sizing.bytes(), 13);
        assert!(sizing.accept(4).unwrap_err().to_string().contains("follows a short part"));
    }

    #[test]
    fn a_larger_part_is_refused() {
        let mut sizing = PartSizing::new(4);
        sizing.accept(4).unwrap();
        assert!(sizing.accept(5).unwrap_err().to_string().contains("larger than the part size"));
        assert_eq!(sizing.bytes(), 4);
    }

    #[test]
    fn a_short_part_in_the_middle_is_refused() {
        let mut sizing = PartSizing::new(4);
        sizing.accept(3).unwrap();
        assert!(sizing.accept(3).is_err());
    }

    #[test]
    fn an_empty_part_ends_the_sequence() {
        let mut sizing = PartSizing::new(4);
        sizing.accept(4).unwrap();
        sizing.accept(0).unwrap();
        assert!(sizing.accept(4).is_err());
        assert_eq!(sizing.bytes(), 4);
    }

    #[test]
    fn too_many_parts() {
        let mut sizing = PartSizing::new(1);
        for _ in 0..MAX_PARTS {
            sizing.accept(1).unwrap();
        }
        assert!(sizing.accept(1).unwrap_err().to_string().contains("more than 10000 parts"));
    }

    #[test]
    fn config_checks() {
        UploadConfig::default().check("x").unwrap();
        assert!(UploadConfig { part_size: 0, in_flight: 1 }.check("x").is_err());
        assert!(UploadConfig { part_size: 1, in_flight: 0 }.check("x").is_err());
    }
}
