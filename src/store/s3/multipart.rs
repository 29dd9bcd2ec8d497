//! Multipart uploads on an S3 store: create, upload parts, complete, abort, and the listing of
//! stale uploads that were never finished.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::task::JoinSet;

use super::error::sdk_error;
use super::objects::put_object;
use super::{to_chrono, S3Store};
use crate::store::{PendingUpload, StoreError, UploadConfig};

/// S3 refuses parts smaller than this, except the last.
pub const S3_MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// S3 refuses parts larger than this.
pub const S3_MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;

impl S3Store {
    pub(crate) fn begin_upload(&self, key: &str, cfg: UploadConfig) -> Result<S3Upload, StoreError> {
        let full_key = self.full_key(key)?;
        if !(S3_MIN_PART_SIZE..=S3_MAX_PART_SIZE).contains(&cfg.part_size) {
            return Err(StoreError::InvalidConfig {
                url: self.url.to_string(),
                reason: format!(
                    "part size {} bytes is outside the S3 limits of {S3_MIN_PART_SIZE} to \
                     {S3_MAX_PART_SIZE} bytes",
                    cfg.part_size
                ),
            });
        }
        Ok(S3Upload {
            client: self.client.clone(),
            sign_payload: self.sign_payload,
            bucket: self.bucket.clone(),
            resource: self.resource(&full_key),
            key: key.to_owned(),
            full_key,
            in_flight: cfg.in_flight,
            first: None,
            upload_id: None,
            creating: None,
            next_part: 0,
            tasks: JoinSet::new(),
            done: Vec::new(),
            finished: false,
        })
    }

    /// Multipart uploads under `prefix` started before `older_than` and never completed.
    pub(crate) async fn stale_uploads(
        &self,
        prefix: &str,
        older_than: DateTime<Utc>,
    ) -> Result<Vec<PendingUpload>, StoreError> {
        let full_prefix = self.full_prefix(prefix)?;
        let resource = self.resource(full_prefix.as_deref().unwrap_or_default());
        let mut markers: (Option<String>, Option<String>) = (None, None);
        let mut pending = Vec::new();
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .set_prefix(full_prefix.clone())
                .set_key_marker(markers.0.clone())
                .set_upload_id_marker(markers.1.clone())
                .send()
                .await
                .map_err(|e| sdk_error("ListMultipartUploads", resource.clone(), prefix, e))?;
            for upload in page.uploads() {
                let Some(key) = upload.key().and_then(|k| self.relative(k)) else {
                    continue;
                };
                let initiated = upload.initiated().and_then(to_chrono);
                if initiated.is_some_and(|t| t < older_than) {
                    pending.push(PendingUpload {
                        key: key.to_owned(),
                        upload_id: upload.upload_id().map(str::to_owned),
                        initiated,
                    });
                }
            }
            let next = (page.next_key_marker().map(str::to_owned), page.next_upload_id_marker().map(str::to_owned));
            // A service that claims more pages but does not move the markers would loop forever.
            if page.is_truncated() != Some(true) || next == markers || next == (None, None) {
                break;
            }
            markers = next;
        }
        pending.sort_by(|a, b| a.key.cmp(&b.key).then(a.initiated.cmp(&b.initiated)));
        Ok(pending)
    }

    pub(crate) async fn abort_pending(&self, pending: &PendingUpload) -> Result<(), StoreError> {
        let full = self.full_key(&pending.key)?;
        let Some(upload_id) = pending.upload_id.as_deref() else {
            return Err(StoreError::InvalidKey {
                key: pending.key.clone(),
                reason: "an S3 pending upload needs its upload id".to_owned(),
            });
        };
        abort_multipart(&self.client, &self.bucket, &full, upload_id, &pending.key).await
    }
}

/// Aborts a multipart upload; one that is already gone counts as aborted.
async fn abort_multipart(
    client: &Client,
    bucket: &str,
    full_key: &str,
    upload_id: &str,
    key: &str,
) -> Result<(), StoreError> {
    let result = client.abort_multipart_upload().bucket(bucket).key(full_key).upload_id(upload_id).send().await;
    let resource = format!("s3://{bucket}/{full_key}");
    match result.map_err(|e| sdk_error("AbortMultipartUpload", resource, key, e)) {
        Err(StoreError::S3 { code: Some(code), .. }) if code == "NoSuchUpload" => Ok(()),
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

/// One part upload, run as its own task.
struct PartJob {
    client: Client,
    sign_payload: bool,
    bucket: String,
    full_key: String,
    key: String,
    upload_id: String,
    number: i32,
    body: Bytes,
}

impl PartJob {
    async fn run(self) -> Result<CompletedPart, StoreError> {
        let op = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.full_key)
            .upload_id(&self.upload_id)
            .part_number(self.number)
            .body(ByteStream::from(self.body))
            .customize();
        let op = if self.sign_payload { op } else { op.disable_payload_signing() };
        let output = op.send().await.map_err(|e| {
            let resource = format!("s3://{}/{} (part {})", self.bucket, self.full_key, self.number);
            sdk_error("UploadPart", resource, &self.key, e)
        })?;
        Ok(CompletedPart::builder().part_number(self.number).set_e_tag(output.e_tag().map(str::to_owned)).build())
    }
}

/// An S3 object being written. The first part is held back until a second arrives, so a
/// one-part object becomes a single PutObject; from then on parts upload as spawned tasks, at
/// most `in_flight` at a time. Any failure aborts the multipart upload.
pub(crate) struct S3Upload {
    client: Client,
    sign_payload: bool,
    bucket: String,
    full_key: String,
    key: String,
    resource: String,
    in_flight: usize,
    first: Option<Bytes>,
    upload_id: Option<String>,
    /// A CreateMultipartUpload under way. It runs as its own task so that a `put` cancelled
    /// while waiting for it (an interrupt) cannot lose the upload id: `abort` waits for it and
    /// aborts the upload it made.
    creating: Option<tokio::task::JoinHandle<Result<String, StoreError>>>,
    next_part: i32,
    tasks: JoinSet<Result<CompletedPart, StoreError>>,
    done: Vec<CompletedPart>,
    finished: bool,
}

impl S3Upload {
    pub(crate) fn resource(&self) -> String {
        self.resource.clone()
    }

    pub(crate) async fn put(&mut self, part: Bytes) -> Result<(), StoreError> {
        if self.upload_id.is_none() {
            let Some(first) = self.first.take() else {
                self.first = Some(part);
                return Ok(());
            };
            self.create().await?;
            self.spawn_part(first).await?;
        }
        self.spawn_part(part).await
    }

    async fn create(&mut self) -> Result<(), StoreError> {
        if self.creating.is_none() {
            let request = self.client.create_multipart_upload().bucket(&self.bucket).key(&self.full_key);
            let (resource, key) = (self.resource.clone(), self.key.clone());
            self.creating = Some(tokio::spawn(async move {
                let output =
                    request.send().await.map_err(|e| sdk_error("CreateMultipartUpload", resource.clone(), &key, e))?;
                output.upload_id().map(str::to_owned).ok_or_else(|| StoreError::Upload {
                    resource,
                    reason: "CreateMultipartUpload returned no upload id".to_owned(),
                })
            }));
        }
        let id = self.wait_created().await?;
        self.upload_id = Some(id);
        Ok(())
    }

    /// The result of the CreateMultipartUpload under way; `creating` is cleared only once the
    /// task has finished, so waiting here is safe to cancel.
    async fn wait_created(&mut self) -> Result<String, StoreError> {
        let handle = self.creating.as_mut().expect("a create is under way");
        let joined = handle.await;
        self.creating = None;
        joined.unwrap_or_else(|e| {
            Err(StoreError::Upload { resource: self.resource.clone(), reason: format!("the create task failed: {e}") })
        })
    }

    /// Waits while `in_flight` part uploads are running.
    pub(crate) async fn ready(&mut self) -> Result<(), StoreError> {
        while self.tasks.len() >= self.in_flight {
            self.join_one().await?;
        }
        Ok(())
    }

    async fn spawn_part(&mut self, body: Bytes) -> Result<(), StoreError> {
        self.ready().await?;
        self.next_part += 1;
        let job = PartJob {
            client: self.client.clone(),
            sign_payload: self.sign_payload,
            bucket: self.bucket.clone(),
            full_key: self.full_key.clone(),
            key: self.key.clone(),
            upload_id: self.upload_id.clone().unwrap_or_default(),
            number: self.next_part,
            body,
        };
        self.tasks.spawn(job.run());
        Ok(())
    }

    async fn join_one(&mut self) -> Result<(), StoreError> {
        let Some(joined) = self.tasks.join_next().await else {
            return Ok(());
        };
        let result = joined.unwrap_or_else(|e| {
            Err(StoreError::Upload {
                resource: self.resource.clone(),
                reason: format!("a part upload task failed: {e}"),
            })
        });
        match result {
            Ok(part) => {
                self.done.push(part);
                Ok(())
            }
            Err(error) => Err(self.fail(error).await),
        }
    }

    /// Stops the other parts and aborts the multipart upload; returns the error that caused it.
    async fn fail(&mut self, error: StoreError) -> StoreError {
        self.tasks.shutdown().await;
        // Best effort: the error that made us abort is the one worth reporting.
        let _ = self.abort_multipart().await;
        self.finished = true;
        error
    }

    async fn abort_multipart(&self) -> Result<(), StoreError> {
        match &self.upload_id {
            Some(id) => abort_multipart(&self.client, &self.bucket, &self.full_key, id, &self.key).await,
            None => Ok(()),
        }
    }

    pub(crate) async fn complete(&mut self) -> Result<(), StoreError> {
        if self.upload_id.is_none() {
            let body = self.first.take().unwrap_or_default();
            put_object(&self.client, &self.bucket, &self.full_key, body, self.sign_payload)
                .await
                .map_err(|e| sdk_error("PutObject", self.resource.clone(), &self.key, e))?;
            self.finished = true;
            return Ok(());
        }
        while !self.tasks.is_empty() {
            self.join_one().await?;
        }
        let mut parts = std::mem::take(&mut self.done);
        parts.sort_by_key(|part| part.part_number());
        let result = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.full_key)
            .upload_id(self.upload_id.clone().unwrap_or_default())
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await;
        match result {
            Ok(_) => {
                self.finished = true;
                Ok(())
            }
            Err(e) => {
                let error = sdk_error("CompleteMultipartUpload", self.resource.clone(), &self.key, e);
                Err(self.fail(error).await)
            }
        }
    }

    pub(crate) async fn abort(&mut self) -> Result<(), StoreError> {
        self.first = None;
        self.tasks.shutdown().await;
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        if self.creating.is_some() {
            // Interrupted while the upload was being created: it exists (or is about to) on
            // the server, so wait for its id and abort it.
            if let Ok(id) = self.wait_created().await {
                self.upload_id = Some(id);
            }
        }
        self.abort_multipart().await
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let (upload_id, creating) = (self.upload_id.take(), self.creating.take());
        if upload_id.is_none() && creating.is_none() {
            return;
        }
        self.tasks.abort_all();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (client, bucket) = (self.client.clone(), self.bucket.clone());
            let (full_key, key) = (self.full_key.clone(), self.key.clone());
            runtime.spawn(async move {
                let upload_id = match creating {
                    Some(handle) => handle.await.ok().and_then(Result::ok),
                    None => upload_id,
                };
                if let Some(upload_id) = upload_id {
                    let _ = abort_multipart(&client, &bucket, &full_key, &upload_id, &key).await;
                }
            });
        }
    }
}
