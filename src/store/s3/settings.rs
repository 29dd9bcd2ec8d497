//! Client settings: store options and the environment (AWS chain, R2 fallbacks) resolved into
//! an S3 client, with the addressing style and payload signing that suit the endpoint.

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::Client;

use super::S3Store;
use crate::store::{StoreError, StoreOptions, StoreUrl};

const DEFAULT_REGION: &str = "us-east-1";
const R2_REGION: &str = "auto";

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
}

/// What a client other than ours (pgBackRest) needs to reach an S3 store: the options and the
/// environment resolved as for our own client, then the plain AWS variables our SDK would read
/// itself. The other client has no AWS chain, so credentials must be explicit.
#[derive(Clone, PartialEq, Eq)]
pub struct ForeignClient {
    pub bucket: String,
    /// `https://host[:port]`, or None for AWS's regional endpoint.
    pub endpoint: Option<String>,
    pub region: String,
    pub credentials: Option<(String, String)>,
    pub path_style: bool,
}

impl std::fmt::Debug for ForeignClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForeignClient")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("credentials", &self.credentials.as_ref().map(|(id, _)| id))
            .field("path_style", &self.path_style)
            .finish()
    }
}

/// [`ForeignClient`] settings for `s3://bucket/...` given as `url`.
pub fn foreign_client(url: &str, bucket: &str, opts: &StoreOptions) -> Result<ForeignClient, StoreError> {
    let env = S3Env::from_process();
    let s = resolve(url, bucket, opts, &env)?;
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let endpoint = s.endpoint.or_else(|| env.aws_endpoint_url.as_deref().map(with_scheme));
    let region =
        s.region.or_else(|| var("AWS_REGION")).or_else(|| var("AWS_DEFAULT_REGION")).unwrap_or(DEFAULT_REGION.into());
    let credentials = s.credentials.or_else(|| Some((env.aws_access_key_id.clone()?, var("AWS_SECRET_ACCESS_KEY")?)));
    let path_style = s.path_style.unwrap_or_else(|| endpoint.as_deref().is_some_and(wants_path_style));
    Ok(ForeignClient { bucket: s.bucket, endpoint, region, credentials, path_style })
}
