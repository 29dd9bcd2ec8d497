//! The one layer that resolves an operation's spec, as given by flags or a runbook step, with
//! the profile, the environment and the sandbox into the typed request its library runs. Domain
//! modules take that request and never see `Config`. Precedence everywhere: flags (and the
//! variables clap reads for them) > environment > opsbook.toml profile > sandbox > defaults.

pub mod backup;
pub mod drill;
pub mod migrate;
pub mod objects;
pub mod provision;
pub mod rotate;

/// The admin connection (provision, rotate-secrets) as given, else ADMIN_DATABASE_URL. Commands
/// get the variable through clap; runbook steps read it here.
fn admin_url_given(given: Option<&str>) -> Option<String> {
    given.map(String::from).or_else(|| std::env::var("ADMIN_DATABASE_URL").ok().filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use crate::backup::retention::RetentionPolicy;
    use crate::backup::spec::{BackupSpec, RowCounts};
    use crate::drill::DrillSpec;
    use crate::runbook::actions;
    use crate::spec::{field_names, MonitorSpec};

    fn inputs(action: &str) -> Vec<String> {
        actions::fields(action).unwrap_or_else(|| panic!("no action {action}")).0
    }

    fn assert_all_in(what: &str, fields: Vec<String>, inputs: &[String]) {
        let missing: Vec<_> = fields.iter().filter(|f| !inputs.contains(f)).collect();
        assert!(missing.is_empty(), "{what} cannot be given: {missing:?}");
    }

    /// Adding an input is one field on a spec: every spec field is a runbook input of the action
    /// that runs the spec, and (for specs with a config section) an opsbook.toml key.
    #[test]
    fn every_spec_field_is_reachable_from_runbooks_and_config() {
        assert_all_in("backup spec in `backup` steps", field_names::<BackupSpec>(), &inputs("backup"));
        assert_all_in("retention in `backup-prune` steps", field_names::<RetentionPolicy>(), &inputs("backup-prune"));
        assert_all_in("drill spec in `restore-drill` steps", field_names::<DrillSpec>(), &inputs("restore-drill"));
        assert_all_in(
            "migrate spec in `migrate` steps",
            field_names::<crate::migrate::spec::MigrateSpec>(),
            &inputs("migrate"),
        );
        assert_all_in(
            "object copy spec in `backup-objects` steps",
            field_names::<crate::backup::objects::spec::ObjectsSpec>(),
            &inputs("backup-objects"),
        );
        assert_all_in(
            "provision spec in `provision` steps",
            field_names::<crate::provision::ProvisionSpec>(),
            &inputs("provision"),
        );
        assert_all_in(
            "rotation spec in `rotate-secrets` steps",
            field_names::<crate::secrets::rotate::RotateSpec>(),
            &inputs("rotate-secrets"),
        );
        for action in ["backup", "restore-drill", "backup-objects"] {
            assert_all_in(&format!("monitoring in `{action}` steps"), field_names::<MonitorSpec>(), &inputs(action));
        }

        // Every field of a set's spec, written into opsbook.toml, reads back as written.
        let full = BackupSpec {
            database_url: Some("postgres://app@db/shop".into()),
            store: Some("s3://backups/prod".into()),
            compression: Some("zstd:3".into()),
            encrypt_to: vec!["age1example".into()],
            globals: Some(true),
            globals_with_passwords: Some(false),
            row_counts: Some(RowCounts::Estimate),
            part_size: Some(16 << 20),
            upload_concurrency: Some(4),
            monitor: MonitorSpec {
                notify_url: Some("https://hc-ping.com/x".into()),
                metrics_file: Some("/var/lib/node_exporter/opsbook.prom".into()),
            },
            retention: RetentionPolicy {
                keep_last: Some(1),
                keep_hourly: Some(2),
                keep_daily: Some(3),
                keep_weekly: Some(4),
                keep_monthly: Some(5),
                keep_yearly: Some(6),
                keep_within: Some(std::time::Duration::from_secs(86_400)),
                min_keep: 7,
            },
        };
        let serialized = serde_json::to_value(&full).unwrap();
        assert_eq!(
            serialized.as_object().unwrap().keys().cloned().collect::<std::collections::BTreeSet<_>>(),
            field_names::<BackupSpec>().into_iter().collect(),
            "the example sets every field"
        );
        let table: toml::Table = serde_json::from_value(serialized).unwrap();
        let text = format!("[profiles.prod.sets.shop]\n{}", toml::to_string(&table).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opsbook.toml");
        std::fs::write(&path, &text).unwrap();
        let config = crate::config::Config::load(Some(&path), Some("prod")).unwrap();
        assert_eq!(config.set("shop"), Some(&full), "{text}");
        // Every field of the migrate spec is a `[migrate]` key (`dir` is the older spelling).
        let migrate = "[profiles.prod.migrate]\nmigrations = \"db/migrations\"\nlock_wait = \"10s\"\nlock_timeout = \"2s\"\n\
                       statement_timeout = \"1m\"\nretries = 5\n[profiles.prod.migrate.lint]\nexclude = [\"ban-drop-column\"]\n";
        assert_eq!(
            crate::spec::field_names::<crate::migrate::spec::MigrateSpec>().len(),
            migrate
                .lines()
                .filter(|l| (l.contains(" = ") && !l.starts_with("exclude")) || l.ends_with(".lint]"))
                .count(),
            "the example sets every migrate field"
        );
        std::fs::write(&path, migrate).unwrap();
        let config = crate::config::Config::load(Some(&path), Some("prod")).unwrap();
        let settings = super::migrate::settings_for(
            &config.profile.migrate,
            crate::pg::DbUrl::parse("postgres://localhost/x").unwrap(),
            &Default::default(),
        );
        assert_eq!(settings.dir, std::path::PathBuf::from("db/migrations"));
        assert_eq!((settings.lock_wait.as_secs(), settings.lock_timeout.as_secs(), settings.retries), (10, 2, 5));
        assert_eq!(settings.statement_timeout, Some(std::time::Duration::from_secs(60)));
        assert_eq!(settings.lint.exclude, ["ban-drop-column"]);
        std::fs::write(&path, "[profiles.prod.migrate]\ndir = \"old/spelling\"\n").unwrap();
        let config = crate::config::Config::load(Some(&path), Some("prod")).unwrap();
        assert_eq!(config.profile.migrate.migrations, Some("old/spelling".into()));

        // A misspelt key is refused, as it was before the spec flattened its groups.
        std::fs::write(&path, "[profiles.prod.sets.shop]\nkeep_dialy = 3\n").unwrap();
        let err = crate::config::Config::load(Some(&path), Some("prod")).unwrap_err().to_string();
        assert!(err.contains("keep_dialy"), "{err}");
    }
}
