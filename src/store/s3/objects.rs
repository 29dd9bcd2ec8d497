//! Object calls on an S3 store: put (whole or streamed), get (whole, streamed, ranged), head,
//! list, delete, and presigned GET URLs.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::put_object::{PutObjectError, PutObjectOutput};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use bytes::Bytes;

use super::error::{body_error, sdk_error};
use super::{to_chrono, unquote, S3Store};
use crate::store::{ObjectMeta, StoreError};

impl S3Store {
    pub(crate) async fn put_bytes(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        let full = self.full_key(key)?;
        put_object(&self.client, &self.bucket, &full, body, self.sign_payload)
            .await
            .map_err(|e| sdk_error("PutObject", self.resource(&full), key, e))?;
        Ok(())
    }

    async fn get_object(
        &self,
        op: &'static str,
        key: &str,
        range: Option<String>,
    ) -> Result<(ByteStream, String), StoreError> {
        let full = self.full_key(key)?;
        let resource = self.resource(&full);
        let response = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .set_range(range)
            .send()
            .await
            .map_err(|e| sdk_error(op, resource.clone(), key, e))?;
        Ok((response.body, resource))
    }

    pub(crate) async fn get_bytes(&self, key: &str) -> Result<Bytes, StoreError> {
        let (body, resource) = self.get_object("GetObject", key, None).await?;
        let data = body.collect().await.map_err(|e| body_error("GetObject", resource, e))?;
        Ok(data.into_bytes())
    }

    pub(crate) async fn get_stream(
        &self,
        key: &str,
    ) -> Result<(Box<dyn tokio::io::AsyncRead + Send + Unpin>, Option<u64>), StoreError> {
        let (body, _) = self.get_object("GetObject", key, None).await?;
        let len = body.size_hint().1;
        Ok((Box::new(Box::pin(body.into_async_read())), len))
    }

    /// Whether `put_stream` can send a body of unknown content: only unsigned bodies can go out
    /// before the whole body has been hashed.
    pub(crate) fn streams_puts(&self) -> bool {
        !self.sign_payload
    }

    /// One PutObject of exactly `size` bytes taken from `body` as they arrive.
    pub(crate) async fn put_stream(
        &self,
        key: &str,
        size: u64,
        body: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    ) -> Result<(), StoreError> {
        let full = self.full_key(key)?;
        let body = ChannelBody { rx: body, remaining: size };
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .content_length(i64::try_from(size).unwrap_or(i64::MAX))
            .body(ByteStream::new(aws_smithy_types::body::SdkBody::from_body_1_x(body)))
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| sdk_error("PutObject", self.resource(&full), key, e))?;
        Ok(())
    }

    /// A presigned GET URL for `key`, valid for `expires`.
    pub(crate) async fn presign_get(&self, key: &str, expires: std::time::Duration) -> Result<String, StoreError> {
        let full = self.full_key(key)?;
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires)
            .map_err(|e| StoreError::InvalidConfig { url: self.resource(&full), reason: format!("presigning: {e}") })?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .presigned(config)
            .await
            .map_err(|e| sdk_error("PresignGetObject", self.resource(&full), key, e))?;
        Ok(request.uri().to_string())
    }

    pub(crate) async fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Bytes, StoreError> {
        if len == 0 {
            // S3 has no empty range; still report a missing object as missing.
            return match self.head(key).await? {
                Some(_) => Ok(Bytes::new()),
                None => Err(StoreError::NotFound {
                    op: "GetObject",
                    resource: self.resource(&self.full_key(key)?),
                    key: key.to_owned(),
                }),
            };
        }
        let end = start.saturating_add(len - 1);
        let range = format!("bytes={start}-{end}");
        let (body, resource) = self.get_object("GetObject", key, Some(range)).await?;
        let data = body.collect().await.map_err(|e| body_error("GetObject", resource, e))?;
        Ok(data.into_bytes())
    }

    pub(crate) async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let full = self.full_key(key)?;
        let result = self.client.head_object().bucket(&self.bucket).key(&full).send().await;
        match result.map_err(|e| sdk_error("HeadObject", self.resource(&full), key, e)) {
            Ok(head) => Ok(Some(ObjectMeta {
                key: key.to_owned(),
                size: head.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                last_modified: head.last_modified().and_then(to_chrono),
                etag: head.e_tag().map(unquote),
            })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let full_prefix = self.full_prefix(prefix)?;
        let resource = self.resource(full_prefix.as_deref().unwrap_or_default());
        let mut pages =
            self.client.list_objects_v2().bucket(&self.bucket).set_prefix(full_prefix).into_paginator().send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error("ListObjectsV2", resource.clone(), prefix, e))?;
            for object in page.contents() {
                let Some(key) = object.key().and_then(|k| self.relative(k)) else {
                    continue;
                };
                objects.push(ObjectMeta {
                    key: key.to_owned(),
                    size: object.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    last_modified: object.last_modified().and_then(to_chrono),
                    etag: object.e_tag().map(unquote),
                });
            }
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let full = self.full_key(key)?;
        let result = self.client.delete_object().bucket(&self.bucket).key(&full).send().await;
        match result.map_err(|e| sdk_error("DeleteObject", self.resource(&full), key, e)) {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }
}

/// A PutObject of a body held in memory.
pub(super) async fn put_object(
    client: &Client,
    bucket: &str,
    full_key: &str,
    body: Bytes,
    sign_payload: bool,
) -> Result<PutObjectOutput, SdkError<PutObjectError, HttpResponse>> {
    let op = client.put_object().bucket(bucket).key(full_key).body(ByteStream::from(body)).customize();
    let op = if sign_payload { op } else { op.disable_payload_signing() };
    op.send().await
}

/// A request body fed by a channel: chunks go out as they arrive, so an object streams from its
/// source into a single PutObject without being held in memory. An `Err` in the channel aborts
/// the request.
struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    remaining: u64,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx).map(|chunk| {
            chunk.map(|chunk| {
                let chunk = chunk?;
                self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
                Ok(http_body::Frame::data(chunk))
            })
        })
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}
