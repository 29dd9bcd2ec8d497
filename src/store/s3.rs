//! S3 and R2 stores: client settings (AWS chain + R2 fallbacks), object calls, multipart uploads.

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::put_object::{PutObjectError, PutObjectOutput};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::task::JoinSet;

use super::key::{check_key, check_prefix, join};
use super::{ObjectMeta, PendingUpload, StoreError, StoreOptions, StoreUrl, UploadConfig};
use crate::error::ErrorClass;

/// S3 refuses parts smaller than this, except the last.
pub const S3_MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// S3 refuses parts larger than this.
pub const S3_MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;

const DEFAULT_REGION: &str = "us-east-1";
const R2_REGION: &str = "auto";

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

/// The environment variables that shape the client, read once so resolution is testable.
#[derive(Debug, Default, Clone)]
pub(crate) struct S3Env {
    aws_endpoint_url: Option<String>,
    aws_access_key_id: Option<String>,
    r2_endpoint: Option<String>,
    r2_access_key_id: Option<String>,
    r2_secret_access_key: Option<String>,
    r2_bucket: Option<String>,
    path_style: Option<String>,
    sign_payload: Option<String>,
}

impl S3Env {
    fn from_process() -> S3Env {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        S3Env {
            aws_endpoint_url: var("AWS_ENDPOINT_URL").or_else(|| var("AWS_ENDPOINT_URL_S3")),
            aws_access_key_id: var("AWS_ACCESS_KEY_ID"),
            r2_endpoint: var("R2_ENDPOINT"),
            r2_access_key_id: var("R2_ACCESS_KEY_ID"),
            r2_secret_access_key: var("R2_SECRET_ACCESS_KEY"),
            r2_bucket: var("R2_BUCKET"),
            path_style: var("OPSBOOK_S3_PATH_STYLE"),
            sign_payload: var("OPSBOOK_S3_SIGN_PAYLOAD"),
        }
    }
}

/// What options and environment decide before the AWS chain is consulted; `None` leaves a
/// setting to the chain.
#[derive(PartialEq, Eq)]
struct Settings {
    bucket: String,
    endpoint: Option<String>,
    region: Option<String>,
    credentials: Option<(String, String)>,
    path_style: Option<bool>,
    sign_payload: Option<bool>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("credentials", &self.credentials.as_ref().map(|(id, _)| id))
            .field("path_style", &self.path_style)
            .field("sign_payload", &self.sign_payload)
            .finish()
    }
}

fn with_scheme(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("https://{endpoint}")
    }
}

/// Options win over the environment. R2 variables are fallbacks: `R2_ENDPOINT` applies only
/// without an AWS endpoint (and then implies region "auto"); the R2 key pair applies when the R2
/// endpoint is in use or no `AWS_ACCESS_KEY_ID` is set; `R2_BUCKET` fills an empty URL bucket.
fn resolve(url: &str, bucket: &str, opts: &StoreOptions, env: &S3Env) -> Result<Settings, StoreError> {
    let config_error = |reason: String| StoreError::InvalidConfig { url: url.to_owned(), reason };

    let bucket = match (bucket, &env.r2_bucket) {
        ("", Some(r2)) => r2.clone(),
        ("", None) => {
            return Err(StoreError::InvalidUrl {
                url: url.to_owned(),
                reason: "the URL names no bucket and R2_BUCKET is not set".to_owned(),
            })
        }
        (bucket, _) => bucket.to_owned(),
    };

    let r2_endpoint = match (&opts.endpoint, &env.aws_endpoint_url) {
        (None, None) => env.r2_endpoint.as_deref(),
        _ => None,
    };
    let endpoint = opts.endpoint.as_deref().or(r2_endpoint).map(with_scheme);
    let region = opts.region.clone().or_else(|| r2_endpoint.map(|_| R2_REGION.to_owned()));

    let credentials = match (&opts.access_key, &opts.secret_key) {
        (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
        (None, None) => match (&env.r2_access_key_id, &env.r2_secret_access_key) {
            (Some(id), Some(secret)) if r2_endpoint.is_some() || env.aws_access_key_id.is_none() => {
                Some((id.clone(), secret.clone()))
            }
            _ => None,
        },
        _ => return Err(config_error("an access key needs its secret key, and back".to_owned())),
    };

    // An option wins over its environment variable.
    let flag = |forced: Option<bool>, var: &str, value: Option<&str>| match (forced, value) {
        (Some(forced), _) => Ok(Some(forced)),
        (None, None) => Ok(None),
        (None, Some(value)) => parse_flag(value)
            .map(Some)
            .ok_or_else(|| config_error(format!("{var}={value:?} is not 1, 0, true or false"))),
    };
    let path_style = flag(opts.path_style, "OPSBOOK_S3_PATH_STYLE", env.path_style.as_deref())?;
    let sign_payload = flag(opts.sign_payload, "OPSBOOK_S3_SIGN_PAYLOAD", env.sign_payload.as_deref())?;

    Ok(Settings { bucket, endpoint, region, credentials, path_style, sign_payload })
}

fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// `localhost` and its subdomains (RFC 6761): names of this host.
fn is_localhost(host: &str) -> bool {
    host == "localhost" || host.ends_with(".localhost")
}

/// Virtual-hosted addressing needs DNS names per bucket, which IPs and localhost do not have.
fn wants_path_style(endpoint: &str) -> bool {
    match url::Url::parse(endpoint).ok().and_then(|u| u.host().map(|h| h.to_owned())) {
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => true,
        Some(url::Host::Domain(host)) => is_localhost(&host),
        None => false,
    }
}

/// SigV4 can sign a request's body (one more SHA-256 pass over every uploaded byte, on this side
/// and on the server) or leave it UNSIGNED-PAYLOAD. The signature protects a body crossing a
/// network nothing else protects: over HTTPS, TLS already guards it, and a loopback endpoint
/// never leaves the host. So by default only plain HTTP to another host is signed (the AWS CLI
/// also leaves HTTPS uploads unsigned); `sign_payload` / `OPSBOOK_S3_SIGN_PAYLOAD` decide
/// otherwise, e.g. for a bucket policy that refuses unsigned bodies. The manifest's SHA-256,
/// checked by `backup verify`, covers the stored bytes either way.
fn needs_payload_signing(endpoint: &str) -> bool {
    let Ok(url) = url::Url::parse(endpoint) else { return true };
    if url.scheme() != "http" {
        return false;
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) => !ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => !ip.is_loopback(),
        Some(url::Host::Domain(host)) => !is_localhost(host),
        None => true,
    }
}

fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

/// How an SDK failure is classified before the service's code is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The service answered with an error.
    Service,
    /// No usable answer: connection refused, DNS, TLS, timeouts, credentials not found.
    Unreachable,
    /// The request could not be built.
    Local,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    NotFound,
    Class(ErrorClass),
}

/// Codes that mean the store cannot be used as configured: wrong or expired credentials, no
/// permission, no bucket, or the service itself failing.
const UNAVAILABLE_CODES: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "AllAccessDisabled",
    "AccountProblem",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "RequestTimeTooSkewed",
    "Unauthorized",
    "NoSuchBucket",
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
];

fn classify(failure: Failure, code: Option<&str>, status: Option<u16>) -> Outcome {
    match failure {
        Failure::Unreachable => return Outcome::Class(ErrorClass::Unavailable),
        Failure::Local => return Outcome::Class(ErrorClass::Failed),
        Failure::Service => {}
    }
    match (code, status) {
        (Some("NoSuchKey" | "NotFound"), _) => Outcome::NotFound,
        (Some("InvalidBucketName"), _) => Outcome::Class(ErrorClass::Usage),
        (Some(code), _) if UNAVAILABLE_CODES.contains(&code) => Outcome::Class(ErrorClass::Unavailable),
        (None, Some(404)) => Outcome::NotFound,
        (_, Some(401 | 403 | 429 | 500..=599)) => Outcome::Class(ErrorClass::Unavailable),
        _ => Outcome::Class(ErrorClass::Failed),
    }
}

/// What to do about the service errors people meet most.
fn next_step(code: &str) -> Option<&'static str> {
    Some(match code {
        "SignatureDoesNotMatch" => "check the secret key: AWS_SECRET_ACCESS_KEY or R2_SECRET_ACCESS_KEY",
        "InvalidAccessKeyId" => "check the access key id: AWS_ACCESS_KEY_ID or R2_ACCESS_KEY_ID",
        "AccessDenied" => "the credentials lack permission for this operation on the bucket",
        "NoSuchBucket" => "create the bucket (opsbook provision) or fix the bucket name in the store URL",
        "InvalidBucketName" => "bucket names are 3-63 lowercase letters, digits, '-' and '.'",
        "RequestTimeTooSkewed" => "this machine's clock is off: sync it (NTP)",
        _ => return None,
    })
}

/// Turns an SDK error into a `StoreError` that names the operation and the object, with the
/// service's code and message (never the request, so never credentials).
pub(crate) fn sdk_error<E>(op: &'static str, resource: String, key: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let (failure, code, message) = match &err {
        SdkError::ServiceError(service) => {
            let (code, text) = (service.err().code(), service.err().message());
            let mut message = match (code, text) {
                (Some(code), Some(text)) => format!("{code}: {text}"),
                (Some(code), None) => code.to_owned(),
                (None, Some(text)) => text.to_owned(),
                (None, None) => format!("HTTP status {}", status.unwrap_or_default()),
            };
            if let Some(hint) = code.and_then(next_step) {
                message = format!("{message} ({hint})");
            }
            (Failure::Service, code.map(str::to_owned), message)
        }
        SdkError::TimeoutError(_) => (Failure::Unreachable, None, format!("timed out{}", causes(&err))),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            (Failure::Unreachable, None, format!("cannot reach the S3 endpoint{}", causes(&err)))
        }
        _ => (Failure::Local, None, format!("{err}{}", causes(&err))),
    };
    match classify(failure, code.as_deref(), status) {
        Outcome::NotFound => StoreError::NotFound { op, resource, key: key.to_owned() },
        Outcome::Class(class) => StoreError::S3 { op, resource, code, status, message, class },
    }
}

/// `: cause: deeper cause` for the sources of `err`, skipping repeats (the SDK's wrappers often
/// repeat their source's text).
fn causes(err: &dyn std::error::Error) -> String {
    let mut text = String::new();
    let mut source = err.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !line.is_empty() && !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

fn body_error(op: &'static str, resource: String, err: impl std::error::Error) -> StoreError {
    StoreError::S3 {
        op,
        resource,
        code: None,
        status: None,
        message: format!("reading the response body: {err}{}", causes(&err)),
        class: ErrorClass::Unavailable,
    }
}

impl S3Store {
    pub(crate) async fn open(bucket: &str, prefix: &str, opts: &StoreOptions) -> Result<S3Store, StoreError> {
        let requested = StoreUrl::S3 { bucket: bucket.to_owned(), prefix: prefix.to_owned() };
        let settings = resolve(&requested.to_string(), bucket, opts, &S3Env::from_process())?;

        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some((id, secret)) = &settings.credentials {
            loader = loader.credentials_provider(Credentials::new(id, secret, None, None, "opsbook"));
        }
        let sdk = loader.load().await;

        let endpoint = settings.endpoint.as_deref().or(sdk.endpoint_url());
        let path_style = settings.path_style.unwrap_or_else(|| endpoint.is_some_and(wants_path_style));
        let mut config = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(path_style)
            // R2 and other S3-compatible services reject the SDK's default flexible checksums.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if sdk.region().is_none() {
            config = config.region(Region::new(DEFAULT_REGION));
        }
        Ok(S3Store {
            client: Client::from_conf(config.build()),
            url: StoreUrl::S3 { bucket: settings.bucket.clone(), prefix: prefix.to_owned() },
            bucket: settings.bucket,
            prefix: prefix.to_owned(),
            sign_payload: settings.sign_payload.unwrap_or_else(|| endpoint.is_some_and(needs_payload_signing)),
        })
    }

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

/// A PutObject of a body held in memory.
async fn put_object(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> StoreOptions {
        StoreOptions::default()
    }

    #[test]
    fn bucket_from_url_or_r2_bucket() {
        let env = S3Env { r2_bucket: Some("r2b".into()), ..S3Env::default() };
        assert_eq!(resolve("u", "b", &opts(), &env).unwrap().bucket, "b");
        assert_eq!(resolve("u", "", &opts(), &env).unwrap().bucket, "r2b");
        let err = resolve("s3:///p", "", &opts(), &S3Env::default()).unwrap_err();
        assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err:?}");
    }

    #[test]
    fn r2_endpoint_is_a_fallback_with_region_auto() {
        let env = S3Env { r2_endpoint: Some("acct.r2.cloudflarestorage.com".into()), ..S3Env::default() };
        let s = resolve("u", "b", &opts(), &env).unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("https://acct.r2.cloudflarestorage.com"));
        assert_eq!(s.region.as_deref(), Some("auto"));

        let env = S3Env { aws_endpoint_url: Some("http://minio:9000".into()), ..env };
        let s = resolve("u", "b", &opts(), &env).unwrap();
        assert_eq!(s.endpoint, None, "AWS_ENDPOINT_URL is left to the AWS chain");
        assert_eq!(s.region, None);
    }

    #[test]
    fn options_win() {
        let env = S3Env { r2_endpoint: Some("https://r2".into()), ..S3Env::default() };
        let o = StoreOptions {
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: Some("eu-west-1".into()),
            access_key: Some("AK".into()),
            secret_key: Some("SK".into()),
            path_style: Some(false),
            sign_payload: None,
        };
        let s = resolve("u", "b", &o, &env).unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.credentials, Some(("AK".into(), "SK".into())));
        assert_eq!(s.path_style, Some(false));
    }

    #[test]
    fn r2_keys() {
        let r2 =
            S3Env { r2_access_key_id: Some("rk".into()), r2_secret_access_key: Some("rs".into()), ..S3Env::default() };
        assert_eq!(resolve("u", "b", &opts(), &r2).unwrap().credentials, Some(("rk".into(), "rs".into())));
        let with_aws = S3Env { aws_access_key_id: Some("ak".into()), ..r2.clone() };
        assert_eq!(resolve("u", "b", &opts(), &with_aws).unwrap().credentials, None);
        let with_r2_endpoint = S3Env { r2_endpoint: Some("https://r2".into()), ..with_aws };
        assert!(resolve("u", "b", &opts(), &with_r2_endpoint).unwrap().credentials.is_some());
    }

    #[test]
    fn half_a_key_pair_is_a_usage_error() {
        let o = StoreOptions { access_key: Some("AK".into()), ..StoreOptions::default() };
        let err = resolve("u", "b", &o, &S3Env::default()).unwrap_err();
        assert!(matches!(err, StoreError::InvalidConfig { .. }));
        assert!(!err.to_string().contains("AK"));
    }

    #[test]
    fn path_style_from_env() {
        for (value, expected) in [("1", true), ("0", false), ("true", true), ("FALSE", false)] {
            let env = S3Env { path_style: Some(value.into()), ..S3Env::default() };
            assert_eq!(resolve("u", "b", &opts(), &env).unwrap().path_style, Some(expected));
        }
        let env = S3Env { path_style: Some("maybe".into()), ..S3Env::default() };
        assert!(resolve("u", "b", &opts(), &env).is_err());
    }

    #[test]
    fn payload_signing_only_for_plain_http_to_another_host() {
        assert!(needs_payload_signing("http://10.0.0.5:9000"));
        assert!(needs_payload_signing("http://minio.internal:9000"));
        assert!(!needs_payload_signing("https://acct.r2.cloudflarestorage.com"));
        assert!(!needs_payload_signing("https://10.0.0.5:9000"));
        assert!(!needs_payload_signing("http://127.0.0.1:9000"));
        assert!(!needs_payload_signing("http://127.0.0.2:9000"));
        assert!(!needs_payload_signing("http://[::1]:9000"));
        assert!(!needs_payload_signing("http://localhost:9000"));
        assert!(needs_payload_signing("not a url"), "when in doubt, sign");
        let forced = StoreOptions { sign_payload: Some(true), ..opts() };
        assert_eq!(resolve("u", "b", &forced, &S3Env::default()).unwrap().sign_payload, Some(true));
        let env = S3Env { sign_payload: Some("0".into()), ..S3Env::default() };
        assert_eq!(resolve("u", "b", &opts(), &env).unwrap().sign_payload, Some(false));
        let env = S3Env { sign_payload: Some("sometimes".into()), ..S3Env::default() };
        let err = resolve("u", "b", &opts(), &env).unwrap_err().to_string();
        assert!(err.contains("OPSBOOK_S3_SIGN_PAYLOAD"), "{err}");
    }

    #[test]
    fn path_style_for_ips_and_localhost() {
        assert!(wants_path_style("http://127.0.0.1:9000"));
        assert!(wants_path_style("http://[::1]:9000"));
        assert!(wants_path_style("http://localhost:9000"));
        assert!(!wants_path_style("https://s3.eu-west-1.amazonaws.com"));
        assert!(!wants_path_style("https://acct.r2.cloudflarestorage.com"));
    }

    #[test]
    fn classification() {
        use ErrorClass::*;
        let service = |code, status| classify(Failure::Service, code, status);
        assert_eq!(service(Some("NoSuchKey"), Some(404)), Outcome::NotFound);
        assert_eq!(service(None, Some(404)), Outcome::NotFound);
        assert_eq!(service(Some("NoSuchBucket"), Some(404)), Outcome::Class(Unavailable));
        assert_eq!(service(Some("SignatureDoesNotMatch"), Some(403)), Outcome::Class(Unavailable));
        assert_eq!(service(Some("InvalidAccessKeyId"), Some(403)), Outcome::Class(Unavailable));
        assert_eq!(service(None, Some(403)), Outcome::Class(Unavailable));
        assert_eq!(service(Some("SlowDown"), Some(503)), Outcome::Class(Unavailable));
        assert_eq!(service(Some("InvalidPart"), Some(400)), Outcome::Class(Failed));
        assert_eq!(service(Some("EntityTooSmall"), Some(400)), Outcome::Class(Failed));
        assert_eq!(classify(Failure::Unreachable, None, None), Outcome::Class(Unavailable));
        assert_eq!(classify(Failure::Local, None, None), Outcome::Class(Failed));
    }
}
