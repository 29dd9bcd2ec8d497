//! Bucket side of provisioning: existence, versioning, lifecycle, CORS, public access.

use super::{Action, Item, Op, StepError, Target};
use crate::store::bucket::{Lifecycle, Support};
use crate::store::{S3Store, Store};

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

fn unsupported(resource: String, desired: String, why: &str, op: Op) -> Item {
    item(resource, format!("skipped: not supported by this provider ({why})"), desired, Action::Skipped, op)
}

pub(super) async fn plan(t: &Target, store: &Store) -> Result<Vec<Item>, StepError> {
    let s = s3(store)?;
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

pub(super) async fn apply(t: &Target, store: &Store, op: &Op) -> Result<(), StepError> {
    let s = s3(store)?;
    match op {
        Op::Bucket => {
            if !s.bucket_exists().await? {
                s.create_bucket().await?;
            }
        }
        Op::Versioning => s.set_versioning(t.config.bucket_versioning.unwrap_or(false)).await?,
        Op::Lifecycle => s.set_lifecycle(&desired_lifecycle(t)).await?,
        Op::Cors => s.set_cors(&t.config.bucket_cors_origins).await?,
        Op::PublicAccess => {
            if let Support::Unsupported(why) = s.block_public_access().await? {
                tracing::info!("public access block skipped: not supported by this provider ({why})");
            }
        }
        other => unreachable!("not a bucket step: {other:?}"),
    }
    Ok(())
}
