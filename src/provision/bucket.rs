//! Bucket side of provisioning: existence, versioning, lifecycle, CORS, public access.

use super::{Action, Item, Op, StepError, Target};
use crate::error::{Classify, ErrorClass};
use crate::store::bucket::{Lifecycle, Support};
use crate::store::{S3Store, Store, StoreError};

fn s3(store: &Store) -> Result<&S3Store, StepError> {
    match store {
        Store::S3(s) => Ok(s),
        Store::Local(_) => Err(StepError::failed("provision.bucket needs an S3/R2 bucket")),
    }
}

fn item(resource: String, current: String, desired: String, action: Action, op: Op) -> Item {
    Item { resource, current, desired, action, op }
}

fn desired_lifecycle(t: &Target) -> Lifecycle {
    Lifecycle {
        abort_incomplete_multipart_days: t.config.abort_incomplete_multipart_days,
        noncurrent_version_expiry_days: t.config.noncurrent_version_expiry_days,
    }
}

fn show_lifecycle(l: &Lifecycle) -> String {
    let mut parts = Vec::new();
    if let Some(d) = l.abort_incomplete_multipart_days {
        parts.push(format!("abort incomplete multipart uploads after {d}d"));
    }
    if let Some(d) = l.noncurrent_version_expiry_days {
        parts.push(format!("expire noncurrent versions after {d}d"));
    }
    if parts.is_empty() {
        "no opsbook rules".into()
    } else {
        parts.join(", ")
    }
}

/// The `current` of an item the provider has no API for.
pub(super) fn unsupported_note(why: &str) -> String {
    format!("skipped: not supported by this provider ({why})")
}

fn unsupported(resource: String, desired: String, why: &str, op: Op) -> Item {
    item(resource, unsupported_note(why), desired, Action::Skipped, op)
}

/// No answer from the provider (connection refused, DNS, timeout) or the service itself failing
/// (5xx, throttling). Refused credentials or permissions (401/403) are not: they are a
/// configuration error that every bucket step would meet.
fn provider_down(e: &StoreError) -> bool {
    matches!(e, StoreError::S3 { class: ErrorClass::Unavailable, status: None | Some(429 | 500..=599), .. })
}

/// A HEAD answer has no body, so a refused HeadBucket says only "HTTP status 403". Another
/// request on the bucket (GetBucketVersioning) gets the provider's error code, and with it the
/// hint other commands give (SignatureDoesNotMatch: check the secret key, …).
async fn explain_refusal(s: &S3Store, e: StoreError) -> StepError {
    let codeless = matches!(&e, StoreError::S3 { code: None, status: Some(401 | 403), .. });
    if !codeless {
        return e.into();
    }
    match s.versioning().await {
        Err(StoreError::S3 { code: Some(_), status: Some(401 | 403), message, class, .. }) => {
            StepError { message: format!("{e}: {message}"), class }
        }
        _ => StepError {
            message: format!(
                "{e} (the provider refused the credentials: check the access key id and secret key \
                 (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or R2_ACCESS_KEY_ID/R2_SECRET_ACCESS_KEY) and that they \
                 may use this bucket)"
            ),
            class: e.class(),
        },
    }
}

pub(super) async fn plan(t: &Target, store: &Store) -> Result<Vec<Item>, StepError> {
    let s = s3(store)?;
    match plan_items(t, s).await {
        Ok(items) => Ok(items),
        // A provider that is down does not hide the rest of the plan: the bucket shows as unknown,
        // and apply fails there after doing everything before it.
        Err(e) if provider_down(&e) => Ok(vec![item(
            format!("bucket {}", s.bucket()),
            format!("unknown: {e}"),
            "exists, configured".into(),
            Action::Update,
            Op::Bucket,
        )]),
        Err(e) => Err(explain_refusal(s, e).await),
    }
}

async fn plan_items(t: &Target, s: &S3Store) -> Result<Vec<Item>, StoreError> {
    let name = s.bucket().to_string();
    let c = &t.config;
    let mut items = Vec::new();
    let exists = s.bucket_exists().await?;
    items.push(item(
        format!("bucket {name}"),
        if exists { "exists" } else { "absent" }.into(),
        "exists".into(),
        if exists { Action::None } else { Action::Create },
        Op::Bucket,
    ));
    let new = |desired: String, resource: String, op: Op| {
        item(resource, "bucket not created yet".into(), desired, Action::Create, op)
    };

    if let Some(want) = c.bucket_versioning {
        let desired = if want { "Enabled" } else { "Suspended" }.to_string();
        let resource = format!("versioning of {name}");
        items.push(if !exists {
            new(desired, resource, Op::Versioning)
        } else {
            match s.versioning().await? {
                Support::Unsupported(why) => unsupported(resource, desired, &why, Op::Versioning),
                Support::Supported(have) => {
                    let current = have.clone().unwrap_or_else(|| "never enabled".into());
                    let ok = have.as_deref() == Some(desired.as_str()) || (!want && have.is_none());
                    item(resource, current, desired, if ok { Action::None } else { Action::Update }, Op::Versioning)
                }
            }
        });
    }
    let want = desired_lifecycle(t);
    if want != Lifecycle::default() {
        let resource = format!("lifecycle of {name}");
        let desired = show_lifecycle(&want);
        items.push(if !exists {
            new(desired, resource, Op::Lifecycle)
        } else {
            match s.lifecycle().await? {
                Support::Unsupported(why) => unsupported(resource, desired, &why, Op::Lifecycle),
                Support::Supported(have) => {
                    let action = if have == want { Action::None } else { Action::Update };
                    item(resource, show_lifecycle(&have), desired, action, Op::Lifecycle)
                }
            }
        });
    }
    if !c.bucket_cors_origins.is_empty() {
        let mut want: Vec<String> = c.bucket_cors_origins.clone();
        want.sort();
        want.dedup();
        let resource = format!("CORS of {name}");
        let desired = format!("GET/HEAD/PUT from {}", want.join(", "));
        items.push(if !exists {
            new(desired, resource, Op::Cors)
        } else {
            match s.cors_origins().await? {
                Support::Unsupported(why) => unsupported(resource, desired, &why, Op::Cors),
                Support::Supported(have) => {
                    let current =
                        if have.is_empty() { "no CORS rules".into() } else { format!("from {}", have.join(", ")) };
                    item(resource, current, desired, if have == want { Action::None } else { Action::Update }, Op::Cors)
                }
            }
        });
    }
    if c.block_public_access.unwrap_or(true) {
        let resource = format!("public access block of {name}");
        let desired = "all public access blocked".to_string();
        items.push(if !exists {
            new(desired, resource, Op::PublicAccess)
        } else {
            match s.public_access_blocked().await? {
                Support::Unsupported(why) => unsupported(resource, desired, &why, Op::PublicAccess),
                Support::Supported(true) => item(resource, "blocked".into(), desired, Action::None, Op::PublicAccess),
                Support::Supported(false) => {
                    item(resource, "not blocked".into(), desired, Action::Update, Op::PublicAccess)
                }
            }
        });
    }
    Ok(items)
}

/// Applies one bucket item: `Some(why)` when the provider lacks the API (skipped, not failed).
pub(super) async fn apply(t: &Target, store: &Store, op: &Op) -> Result<Option<String>, StepError> {
    let s = s3(store)?;
    let result = match op {
        Op::Bucket => {
            if !s.bucket_exists().await? {
                s.create_bucket().await?;
            }
            Ok(())
        }
        Op::Versioning => s.set_versioning(t.config.bucket_versioning.unwrap_or(false)).await,
        Op::Lifecycle => s.set_lifecycle(&desired_lifecycle(t)).await,
        Op::Cors => s.set_cors(&t.config.bucket_cors_origins).await,
        Op::PublicAccess => match s.block_public_access().await? {
            Support::Unsupported(why) => return Ok(Some(why)),
            Support::Supported(()) => Ok(()),
        },
        other => unreachable!("not a bucket step: {other:?}"),
    };
    match result {
        Ok(()) => Ok(None),
        Err(e) => e.unsupported().map(Some).ok_or_else(|| e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3_error(code: Option<&str>, status: Option<u16>, class: ErrorClass) -> StoreError {
        StoreError::S3 {
            op: "HeadBucket",
            resource: "s3://media".into(),
            code: code.map(str::to_string),
            status,
            message: "m".into(),
            class,
        }
    }

    #[test]
    fn only_a_provider_that_is_down_leaves_the_bucket_unknown() {
        use ErrorClass::{Failed, Unavailable};
        assert!(provider_down(&s3_error(None, None, Unavailable)), "connection refused, timeout");
        assert!(provider_down(&s3_error(Some("ServiceUnavailable"), Some(503), Unavailable)));
        assert!(provider_down(&s3_error(Some("SlowDown"), Some(429), Unavailable)));
        assert!(!provider_down(&s3_error(None, Some(403), Unavailable)), "HeadBucket with wrong credentials");
        assert!(!provider_down(&s3_error(Some("SignatureDoesNotMatch"), Some(403), Unavailable)));
        assert!(!provider_down(&s3_error(Some("InvalidAccessKeyId"), Some(403), Unavailable)));
        assert!(!provider_down(&s3_error(Some("Unauthorized"), Some(401), Unavailable)));
        assert!(!provider_down(&s3_error(None, None, Failed)), "a request that could not be built");
    }
}
