//! Object-storage access keys: created and deleted through the provider's API, tested by using
//! them. AWS IAM is the provider built in; R2, MinIO or Garage adapters implement
//! [`KeyProvider`] the same way.

use std::time::Duration;

use bytes::Bytes;

use crate::store::{Store, StoreError, StoreOptions, StoreUrl};

/// A key provider's call that failed, or a key that does not work on its bucket. Secrets never
/// appear: only the user, the key's id, the bucket and the probe object's key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `detail` is the SDK's error with its causes.
    #[error("IAM {op} for user {user}: {detail}")]
    Iam { op: String, user: String, detail: String },
    #[error("IAM CreateAccessKey for user {user}: no key in the answer")]
    NoKeyInAnswer { user: String },
    #[error("bucket `{bucket}` is not an s3:// URL")]
    NotS3 { bucket: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("HeadBucket {bucket}: the bucket does not exist")]
    NoBucket { bucket: String },
    #[error("HeadBucket {bucket}: {source}")]
    HeadBucket {
        bucket: String,
        #[source]
        source: StoreError,
    },
    /// Putting, reading or deleting the probe object failed.
    #[error("{op} probe object: {source}")]
    Probe {
        op: &'static str,
        #[source]
        source: StoreError,
    },
    #[error("the probe object read back from bucket {bucket} differs from what was written")]
    ProbeDiffers { bucket: String },
}

/// A new access key: its public id and its secret.
pub struct AccessKey {
    pub id: String,
    pub secret: String,
}

/// The calls a rotation needs from a provider. Errors name the call and the user.
#[allow(async_fn_in_trait)]
pub trait KeyProvider {
    fn describe(&self) -> String;
    /// The ids of the keys that exist for the user.
    async fn list(&self) -> Result<Vec<String>, KeyError>;
    async fn create(&self) -> Result<AccessKey, KeyError>;
    async fn delete(&self, id: &str) -> Result<(), KeyError>;
}

/// AWS IAM access keys of one IAM user (`AWS_ENDPOINT_URL_IAM` or `AWS_ENDPOINT_URL` point it
/// elsewhere, as the AWS SDKs do).
pub struct AwsIam {
    client: aws_sdk_iam::Client,
    user: String,
}

impl AwsIam {
    pub async fn new(user: &str) -> AwsIam {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        // IAM is global; a region is still needed to sign.
        if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
            loader = loader.region(aws_config::Region::new("us-east-1"));
        }
        let sdk = loader.load().await;
        AwsIam { client: aws_sdk_iam::Client::new(&sdk), user: user.to_string() }
    }

    fn fail<E: std::error::Error + 'static, R: std::fmt::Debug>(
        &self,
        op: &str,
        e: aws_sdk_iam::error::SdkError<E, R>,
    ) -> KeyError {
        KeyError::Iam {
            op: op.to_string(),
            user: self.user.clone(),
            detail: aws_sdk_iam::error::DisplayErrorContext(&e).to_string(),
        }
    }
}

impl KeyProvider for AwsIam {
    fn describe(&self) -> String {
        format!("IAM user {}", self.user)
    }

    async fn list(&self) -> Result<Vec<String>, KeyError> {
        let out = self
            .client
            .list_access_keys()
            .user_name(&self.user)
            .send()
            .await
            .map_err(|e| self.fail("ListAccessKeys", e))?;
        Ok(out.access_key_metadata().iter().filter_map(|k| k.access_key_id().map(String::from)).collect())
    }

    async fn create(&self) -> Result<AccessKey, KeyError> {
        let out = self
            .client
            .create_access_key()
            .user_name(&self.user)
            .send()
            .await
            .map_err(|e| self.fail("CreateAccessKey", e))?;
        let key = out.access_key().ok_or_else(|| KeyError::NoKeyInAnswer { user: self.user.clone() })?;
        crate::redact::register(key.secret_access_key());
        Ok(AccessKey { id: key.access_key_id().to_string(), secret: key.secret_access_key().to_string() })
    }

    async fn delete(&self, id: &str) -> Result<(), KeyError> {
        self.client
            .delete_access_key()
            .user_name(&self.user)
            .access_key_id(id)
            .send()
            .await
            .map(drop)
            .map_err(|e| self.fail(&format!("DeleteAccessKey {id}"), e))
    }
}

/// Proves a key works on the bucket: HeadBucket, then put, get and delete of a probe object.
/// New IAM keys take a few seconds to become usable, so each attempt is retried for up to
/// `settle`.
pub async fn probe(
    bucket_url: &str,
    endpoint: Option<&str>,
    key: &AccessKey,
    settle: Duration,
) -> Result<(), KeyError> {
    let url = StoreUrl::parse(bucket_url)?;
    let StoreUrl::S3 { .. } = &url else {
        return Err(KeyError::NotS3 { bucket: bucket_url.to_string() });
    };
    let opts = StoreOptions {
        access_key: Some(key.id.clone()),
        secret_key: Some(key.secret.clone()),
        endpoint: endpoint.map(String::from),
        ..StoreOptions::default()
    };
    let deadline = tokio::time::Instant::now() + settle;
    loop {
        match probe_once(&url, &opts).await {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}

async fn probe_once(url: &StoreUrl, opts: &StoreOptions) -> Result<(), KeyError> {
    let store = Store::open(url, opts).await?;
    let Store::S3(s3) = &store else { unreachable!("checked") };
    let bucket = s3.bucket().to_string();
    match s3.bucket_exists().await {
        Ok(true) => {}
        Ok(false) => return Err(KeyError::NoBucket { bucket }),
        Err(source) => return Err(KeyError::HeadBucket { bucket, source }),
    }
    let key = format!(".opsbook-key-probe-{}", super::hex_key(6));
    let body = Bytes::from(format!("opsbook access key probe {}\n", chrono::Utc::now().to_rfc3339()));
    store.put_bytes(&key, body.clone()).await.map_err(|source| KeyError::Probe { op: "put", source })?;
    let got = store.get_bytes(&key).await.map_err(|source| KeyError::Probe { op: "get", source });
    let deleted = store.delete(&key).await.map_err(|source| KeyError::Probe { op: "delete", source });
    if got? != body {
        return Err(KeyError::ProbeDiffers { bucket });
    }
    deleted
}
