//! Bucket configuration through the S3 API (used by `provision`): existence, versioning,
//! lifecycle rules, CORS and public-access blocking. Providers that lack an API (R2 has no
//! public-access-block) answer `Support::Unsupported` rather than an error.

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketVersioningStatus, CorsConfiguration, CorsRule,
    ExpirationStatus, LifecycleRule, LifecycleRuleFilter, NoncurrentVersionExpiration, PublicAccessBlockConfiguration,
    VersioningConfiguration,
};

use super::s3::{sdk_error, S3Store};
use super::StoreError;

/// Lifecycle rule ids opsbook owns; other rules on the bucket are kept as they are.
pub const RULE_ABORT_MULTIPART: &str = "opsbook-abort-incomplete-multipart";
pub const RULE_EXPIRE_NONCURRENT: &str = "opsbook-expire-noncurrent-versions";

/// Whether the provider implements an API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support<T> {
    Supported(T),
    /// The provider answered NotImplemented (or similar); the message says so.
    Unsupported(String),
}

/// "Nothing configured": S3 answers a missing lifecycle, CORS or public-access-block
/// configuration with 404 and a `NoSuch…Configuration` code.
fn absent(e: &StoreError) -> bool {
    match e {
        StoreError::NotFound { .. } => true,
        StoreError::S3 { code, status, .. } => {
            code.as_deref().is_some_and(|c| c.starts_with("NoSuch") && c.ends_with("Configuration"))
                || (*status == Some(404) && code.as_deref() != Some("NoSuchBucket"))
        }
        _ => false,
    }
}

/// Lifecycle settings opsbook manages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lifecycle {
    pub abort_incomplete_multipart_days: Option<i32>,
    pub noncurrent_version_expiry_days: Option<i32>,
}

impl S3Store {
    fn bucket_resource(&self) -> String {
        format!("s3://{}", self.bucket())
    }

    /// Whether the bucket exists (and we may see it).
    pub async fn bucket_exists(&self) -> Result<bool, StoreError> {
        match self.client().head_bucket().bucket(self.bucket()).send().await {
            Ok(_) => Ok(true),
            Err(e) => match sdk_error("HeadBucket", self.bucket_resource(), "", e) {
                StoreError::NotFound { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    pub async fn create_bucket(&self) -> Result<(), StoreError> {
        let region = self.client().config().region().map(|r| r.to_string()).unwrap_or_default();
        let mut req = self.client().create_bucket().bucket(self.bucket());
        if !region.is_empty() && region != "us-east-1" && region != "auto" {
            req = req.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        req.send().await.map_err(|e| sdk_error("CreateBucket", self.bucket_resource(), "", e))?;
        Ok(())
    }

    /// "Enabled", "Suspended", or None when versioning was never configured.
    pub async fn versioning(&self) -> Result<Support<Option<String>>, StoreError> {
        match self.client().get_bucket_versioning().bucket(self.bucket()).send().await {
            Ok(out) => Ok(Support::Supported(out.status().map(|s| s.as_str().to_string()))),
            Err(e) => {
                let e = sdk_error("GetBucketVersioning", self.bucket_resource(), "", e);
                e.unsupported().map(Support::Unsupported).ok_or(e)
            }
        }
    }

    pub async fn set_versioning(&self, enabled: bool) -> Result<(), StoreError> {
        let status = if enabled { BucketVersioningStatus::Enabled } else { BucketVersioningStatus::Suspended };
        self.client()
            .put_bucket_versioning()
            .bucket(self.bucket())
            .versioning_configuration(VersioningConfiguration::builder().status(status).build())
            .send()
            .await
            .map_err(|e| sdk_error("PutBucketVersioning", self.bucket_resource(), "", e))?;
        Ok(())
    }

    async fn lifecycle_rules(&self) -> Result<Support<Vec<LifecycleRule>>, StoreError> {
        match self.client().get_bucket_lifecycle_configuration().bucket(self.bucket()).send().await {
            Ok(out) => Ok(Support::Supported(out.rules().to_vec())),
            Err(e) => match sdk_error("GetBucketLifecycleConfiguration", self.bucket_resource(), "", e) {
                e if absent(&e) => Ok(Support::Supported(Vec::new())),
                e => e.unsupported().map(Support::Unsupported).ok_or(e),
            },
        }
    }

    /// The lifecycle settings opsbook manages, as the bucket has them now.
    pub async fn lifecycle(&self) -> Result<Support<Lifecycle>, StoreError> {
        Ok(match self.lifecycle_rules().await? {
            Support::Unsupported(m) => Support::Unsupported(m),
            Support::Supported(rules) => {
                let enabled =
                    |id: &str| rules.iter().find(|r| r.id() == Some(id) && r.status() == &ExpirationStatus::Enabled);
                Support::Supported(Lifecycle {
                    abort_incomplete_multipart_days: enabled(RULE_ABORT_MULTIPART)
                        .and_then(|r| r.abort_incomplete_multipart_upload())
                        .and_then(|a| a.days_after_initiation()),
                    noncurrent_version_expiry_days: enabled(RULE_EXPIRE_NONCURRENT)
                        .and_then(|r| r.noncurrent_version_expiration())
                        .and_then(|n| n.noncurrent_days()),
                })
            }
        })
    }

    /// Replaces opsbook's lifecycle rules with `want`, keeping every other rule.
    pub async fn set_lifecycle(&self, want: &Lifecycle) -> Result<(), StoreError> {
        let mut rules: Vec<LifecycleRule> = match self.lifecycle_rules().await? {
            Support::Supported(rules) => rules,
            Support::Unsupported(_) => Vec::new(),
        };
        rules.retain(|r| !matches!(r.id(), Some(RULE_ABORT_MULTIPART | RULE_EXPIRE_NONCURRENT)));
        let build =
            |e| StoreError::InvalidConfig { url: self.bucket_resource(), reason: format!("lifecycle rule: {e}") };
        if let Some(days) = want.abort_incomplete_multipart_days {
            rules.push(
                LifecycleRule::builder()
                    .id(RULE_ABORT_MULTIPART)
                    .status(ExpirationStatus::Enabled)
                    .filter(LifecycleRuleFilter::builder().prefix("").build())
                    .abort_incomplete_multipart_upload(
                        AbortIncompleteMultipartUpload::builder().days_after_initiation(days).build(),
                    )
                    .build()
                    .map_err(build)?,
            );
        }
        if let Some(days) = want.noncurrent_version_expiry_days {
            rules.push(
                LifecycleRule::builder()
                    .id(RULE_EXPIRE_NONCURRENT)
                    .status(ExpirationStatus::Enabled)
                    .filter(LifecycleRuleFilter::builder().prefix("").build())
                    .noncurrent_version_expiration(NoncurrentVersionExpiration::builder().noncurrent_days(days).build())
                    .build()
                    .map_err(build)?,
            );
        }
        if rules.is_empty() {
            self.client()
                .delete_bucket_lifecycle()
                .bucket(self.bucket())
                .send()
                .await
                .map_err(|e| sdk_error("DeleteBucketLifecycle", self.bucket_resource(), "", e))?;
            return Ok(());
        }
        let config = BucketLifecycleConfiguration::builder().set_rules(Some(rules)).build().map_err(build)?;
        self.client()
            .put_bucket_lifecycle_configuration()
            .bucket(self.bucket())
            .lifecycle_configuration(config)
            .send()
            .await
            .map_err(|e| sdk_error("PutBucketLifecycleConfiguration", self.bucket_resource(), "", e))?;
        Ok(())
    }

    /// The allowed origins of the bucket's CORS rules (sorted, deduplicated).
    pub async fn cors_origins(&self) -> Result<Support<Vec<String>>, StoreError> {
        match self.client().get_bucket_cors().bucket(self.bucket()).send().await {
            Ok(out) => {
                let mut origins: Vec<String> =
                    out.cors_rules().iter().flat_map(|r| r.allowed_origins().iter().cloned()).collect();
                origins.sort();
                origins.dedup();
                Ok(Support::Supported(origins))
            }
            Err(e) => match sdk_error("GetBucketCors", self.bucket_resource(), "", e) {
                e if absent(&e) => Ok(Support::Supported(Vec::new())),
                e => e.unsupported().map(Support::Unsupported).ok_or(e),
            },
        }
    }

    /// One CORS rule: browsers on `origins` may GET, HEAD and PUT (direct uploads).
    pub async fn set_cors(&self, origins: &[String]) -> Result<(), StoreError> {
        let build = |e| StoreError::InvalidConfig { url: self.bucket_resource(), reason: format!("CORS rule: {e}") };
        let rule = CorsRule::builder()
            .set_allowed_origins(Some(origins.to_vec()))
            .allowed_methods("GET")
            .allowed_methods("HEAD")
            .allowed_methods("PUT")
            .allowed_headers("*")
            .expose_headers("ETag")
            .max_age_seconds(3600)
            .build()
            .map_err(build)?;
        let config = CorsConfiguration::builder().cors_rules(rule).build().map_err(build)?;
        self.client()
            .put_bucket_cors()
            .bucket(self.bucket())
            .cors_configuration(config)
            .send()
            .await
            .map_err(|e| sdk_error("PutBucketCors", self.bucket_resource(), "", e))?;
        Ok(())
    }

    /// Whether all four public-access-block settings are on.
    pub async fn public_access_blocked(&self) -> Result<Support<bool>, StoreError> {
        match self.client().get_public_access_block().bucket(self.bucket()).send().await {
            Ok(out) => Ok(Support::Supported(out.public_access_block_configuration().is_some_and(|c| {
                c.block_public_acls() == Some(true)
                    && c.ignore_public_acls() == Some(true)
                    && c.block_public_policy() == Some(true)
                    && c.restrict_public_buckets() == Some(true)
            }))),
            Err(e) => match sdk_error("GetPublicAccessBlock", self.bucket_resource(), "", e) {
                e if absent(&e) => Ok(Support::Supported(false)),
                e => e.unsupported().map(Support::Unsupported).ok_or(e),
            },
        }
    }

    pub async fn block_public_access(&self) -> Result<Support<()>, StoreError> {
        let config = PublicAccessBlockConfiguration::builder()
            .block_public_acls(true)
            .ignore_public_acls(true)
            .block_public_policy(true)
            .restrict_public_buckets(true)
            .build();
        match self
            .client()
            .put_public_access_block()
            .bucket(self.bucket())
            .public_access_block_configuration(config)
            .send()
            .await
        {
            Ok(_) => Ok(Support::Supported(())),
            Err(e) => {
                let e = sdk_error("PutPublicAccessBlock", self.bucket_resource(), "", e);
                e.unsupported().map(Support::Unsupported).ok_or(e)
            }
        }
    }
}
