//! Object-storage access keys: created and deleted through the provider's API, tested by using
//! them. AWS IAM is the provider built in; R2, MinIO or Garage adapters implement
//! [`KeyProvider`] the same way.

use std::time::Duration;

use bytes::Bytes;

use crate::store::{Store, StoreOptions, StoreUrl};

/// A new access key: its public id and its secret.
pub struct AccessKey {
    pub id: String,
    pub secret: String,
}

/// The calls a rotation needs from a provider. Errors are messages naming the call and the user.
#[allow(async_fn_in_trait)]
pub trait KeyProvider {
    fn describe(&self) -> String;
    /// The ids of the keys that exist for the user.
    async fn list(&self) -> Result<Vec<String>, String>;
    async fn create(&self) -> Result<AccessKey, String>;
    async fn delete(&self, id: &str) -> Result<(), String>;
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
    ) -> String {
        format!("IAM {op} for user {}: {}", self.user, aws_sdk_iam::error::DisplayErrorContext(&e))
    }
}

impl KeyProvider for AwsIam {
    fn describe(&self) -> String {
        format!("IAM user {}", self.user)
    }

    async fn list(&self) -> Result<Vec<String>, String> {
        let out = self
            .client
            .list_access_keys()
            .user_name(&self.user)
            .send()
            .await
            .map_err(|e| self.fail("ListAccessKeys", e))?;
        Ok(out.access_key_metadata().iter().filter_map(|k| k.access_key_id().map(String::from)).collect())
    }

    async fn create(&self) -> Result<AccessKey, String> {
        let out = self
            .client
            .create_access_key()
            .user_name(&self.user)
            .send()
            .await
            .map_err(|e| self.fail("CreateAccessKey", e))?;
        let key = out
            .access_key()
            .ok_or_else(|| format!("IAM CreateAccessKey for user {}: no key in the answer", self.user))?;
        crate::redact::register(key.secret_access_key());
        Ok(AccessKey { id: key.access_key_id().to_string(), secret: key.secret_access_key().to_string() })
    }

    async fn delete(&self, id: &str) -> Result<(), String> {
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
pub async fn probe(bucket_url: &str, endpoint: Option<&str>, key: &AccessKey, settle: Duration) -> Result<(), String> {
    let url = StoreUrl::parse(bucket_url).map_err(|e| e.to_string())?;
    let StoreUrl::S3 { .. } = &url else {
        return Err(format!("bucket `{bucket_url}` is not an s3:// URL"));
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

async fn probe_once(url: &StoreUrl, opts: &StoreOptions) -> Result<(), String> {
    let store = Store::open(url, opts).await.map_err(|e| e.to_string())?;
    let Store::S3(s3) = &store else { unreachable!("checked") };
    match s3.bucket_exists().await {
        Ok(true) => {}
        Ok(false) => return Err(format!("HeadBucket {}: the bucket does not exist", s3.bucket())),
        Err(e) => return Err(format!("HeadBucket {}: {e}", s3.bucket())),
    }
    let key = format!(".opsbook-key-probe-{}", super::hex_key(6));
    let body = Bytes::from(format!("opsbook access key probe {}\n", chrono::Utc::now().to_rfc3339()));
    store.put_bytes(&key, body.clone()).await.map_err(|e| format!("put probe object: {e}"))?;
    let got = store.get_bytes(&key).await.map_err(|e| format!("get probe object: {e}"));
    let deleted = store.delete(&key).await.map_err(|e| format!("delete probe object: {e}"));
    if got? != body {
        return Err("the probe object read back differs from what was written".into());
    }
    deleted
}
