//! Resolves a rotation spec with the profile into a rotation `Context`: the profile's
//! `[[profiles.NAME.secrets]]` entries (checked, their relative files anchored at the config
//! file) and the admin connection (given > ADMIN_DATABASE_URL > the profile's
//! admin_database_url; none is fine unless a postgres-password secret needs it).

use std::path::Path;

use crate::config::Config;
use crate::pg::DbUrl;
use crate::secrets::rotate::{Context, RotateError, RotateSpec};

/// The secrets of the profile and the admin connection, checked.
pub fn resolve(config: &Config, spec: &RotateSpec) -> Result<Context, RotateError> {
    // The profile's value is optional here: when its `env:`/`file:` source is missing, secrets
    // that need an admin connection say so when they are checked.
    let admin = super::admin_url_given(spec.admin_database_url.as_deref()).or_else(|| {
        config.profile.admin_database_url.as_deref().and_then(|raw| config.resolve("admin_database_url", raw).ok())
    });
    let admin = match admin {
        Some(raw) => {
            crate::redact::register_urls_in(&raw);
            Some(DbUrl::parse_named("admin database URL", &raw).map_err(RotateError::AdminUrl)?)
        }
        None => None,
    };
    let mut context = Context::new(config.profile_name.clone(), config.profile.secrets.clone(), admin)?;
    let base = config.path.as_deref().and_then(Path::parent).filter(|b| !b.as_os_str().is_empty());
    if let Some(base) = base {
        for secret in &mut context.specs {
            secret.store = anchored_store(base, &secret.store);
            if let Some(file) = &secret.plaintext_file {
                secret.plaintext_file = Some(base.join(file));
            }
        }
    }
    Ok(context)
}

/// A relative `dotenv:PATH` (like a relative plaintext_file) is relative to the config file, as
/// `file:` values are, not to the working directory: run from elsewhere, it names the same file.
fn anchored_store(base: &Path, store: &str) -> String {
    match store.strip_prefix("dotenv:") {
        Some(path) if Path::new(path).is_relative() => format!("dotenv:{}", base.join(path).display()),
        _ => store.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Classify, ErrorClass};

    #[test]
    fn a_given_admin_url_wins_and_relative_files_follow_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opsbook.toml");
        std::fs::write(
            &path,
            "[profiles.prod]\nadmin_database_url = \"postgres://admin@profile/postgres\"\n\
             [[profiles.prod.secrets]]\nname = \"JWT_SECRET\"\nkind = \"random\"\nstore = \"dotenv:.env\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), Some("prod")).unwrap();
        let given =
            RotateSpec { admin_database_url: Some("postgres://admin@given/postgres".into()), ..Default::default() };
        let context = resolve(&config, &given).unwrap();
        assert_eq!(context.admin.and_then(|a| a.host()).as_deref(), Some("given"));
        assert_eq!(context.specs[0].store, format!("dotenv:{}", dir.path().join(".env").display()));
        let bad = RotateSpec { admin_database_url: Some("mysql://admin@db/x".into()), ..Default::default() };
        let err = resolve(&config, &bad).err().unwrap();
        assert_eq!(err.class(), ErrorClass::Usage, "{err}");
        assert!(err.to_string().contains("admin database URL"), "{err}");
    }
}
