//! Resolves a provision spec with the profile into a `Target`: the profile's desired state
//! (checked), the admin connection (given > ADMIN_DATABASE_URL > the profile's
//! admin_database_url), the env file, the bucket, the profile's `[migrate]` table, and the S3
//! endpoint and region the application is told about (from the environment).

use crate::config::Config;
use crate::pg::DbUrl;
use crate::provision::{ProvisionError, ProvisionSpec, Target};
use crate::secrets::EnvFile;
use crate::store::{Store, StoreOptions};

/// Resolves the profile's provision table, the admin connection, the env file and the bucket.
pub async fn resolve(config: &Config, spec: &ProvisionSpec) -> Result<Target, ProvisionError> {
    let desired = config.profile.provision.clone().ok_or_else(|| ProvisionError::NoDesiredState {
        profile: config.profile_name.clone(),
        file: config.path.as_ref().map_or("opsbook.toml".into(), |p| p.display().to_string()),
    })?;
    desired.validate()?;
    let given = super::admin_url_given(spec.admin_database_url.as_deref());
    let admin_raw = config
        .pick(
            given.as_deref(),
            config.profile.admin_database_url.as_deref(),
            "admin database URL",
            "pass --admin-database-url, set ADMIN_DATABASE_URL, or set admin_database_url in the profile",
        )
        .map_err(|e| ProvisionError::Profile(Box::new(e)))?;
    let admin = DbUrl::parse_named("admin database URL", &admin_raw).map_err(ProvisionError::AdminUrl)?;
    let env = EnvFile::load(&desired.env_file).map_err(ProvisionError::EnvFile)?;
    let store = match &desired.bucket {
        None => None,
        Some(bucket) => {
            let url = format!("s3://{bucket}");
            Some(
                Store::open_url(&url, &StoreOptions::default())
                    .await
                    .map_err(|source| ProvisionError::Bucket { bucket: bucket.clone(), source })?,
            )
        }
    };
    let s3_endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "R2_ENDPOINT"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
    let s3_region =
        ["AWS_REGION", "AWS_DEFAULT_REGION"].iter().find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
    Ok(Target {
        profile: config.profile_name.clone(),
        config: desired,
        admin,
        env,
        store,
        migrate_config: config.profile.migrate.clone(),
        s3_endpoint,
        s3_region,
    })
}
