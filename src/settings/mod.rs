//! The one layer that resolves an operation's spec, as given by flags or a runbook step, with
//! the profile, the environment and the sandbox into the typed request its library runs. Domain
//! modules take that request and never see `Config`. Precedence everywhere: flags (and the
//! variables clap reads for them) > environment > opsbook.toml profile > sandbox > defaults.

pub mod backup;
pub mod dlq;
pub mod drill;
pub mod migrate;
pub mod objects;
pub mod pitr;
pub mod promote;
pub mod provision;
pub mod restore;
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
            "restore spec in `restore` steps",
            field_names::<crate::restore::RestoreSpec>(),
            &inputs("restore"),
        );
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
            "promote-check spec in `promote-check` steps",
            field_names::<crate::promote::PromoteSpec>(),
            &inputs("promote-check"),
        );
        assert_all_in(
            "dlq spec in `dlq-replay` steps",
            field_names::<crate::dlq::spec::DlqSpec>(),
            &inputs("dlq-replay"),
        );
        // The config sections are groups of those specs: each key is also a step's input.
        assert_all_in(
            "[promote] keys in the promote-check spec",
            field_names::<crate::promote::ChecklistSpec>(),
            &field_names::<crate::promote::PromoteSpec>(),
        );
        assert_all_in(
            "[dlq] keys in the dlq spec",
            field_names::<crate::dlq::spec::QueueSpec>(),
            &field_names::<crate::dlq::spec::DlqSpec>(),
        );
        for action in ["pitr-setup", "pitr-backup", "pitr-status"] {
            assert_all_in(
                &format!("PITR spec in `{action}` steps"),
                field_names::<crate::pitr::PitrSpec>(),
                &inputs(action),
            );
        }
        for field in ["pitr", "target_time", "stanza"] {
            assert!(inputs("restore-drill").contains(&field.to_string()), "restore-drill steps take `{field}`");
        }
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

        // Every [promote] and [dlq] key reads back as written.
        let sections = "[profiles.prod.promote]\nenvironment = \"production\"\napp_url = \"https://api.example\"\n\
                        web_url = \"https://www.example\"\nenv_file = \".env\"\ncompare_env_file = \"staging.env\"\n\
                        health_path = \"/up\"\nhealth_body = \"ok\"\nmetrics_path = \"/m\"\n\
                        cors_allowlist = [\"https://www.example\"]\nrequired_env = [\"SMTP_URL\"]\n\
                        rpo_target = \"2h\"\ndrill_interval = \"1w\"\nrate_limit_path = \"/login\"\n\
                        rate_limit_burst = 20\notel_endpoint = \"http://otel:4318\"\n\
                        waivers = [{ check = \"csp\", reason = \"legacy\", expires = \"2099-01-01\" }]\n\
                        [profiles.prod.dlq]\ntable = \"hooks.dead\"\nhistory_table = \"hooks.sent\"\n\
                        source_url = \"https://api.example/v1/webhooks\"\ntoken_env = \"API_TOKEN\"\n\
                        tenant_header = \"X-Org\"\nsigning_secret_env = \"HOOK_SECRET\"\nmax = 7\nrate = 2.5\n\
                        endpoint_rate = 1\nconcurrency = 3\n[profiles.prod.dlq.columns]\nid = \"dead_id\"\n";
        let keys = |header: &str| {
            let rest = &sections[sections.find(header).unwrap() + header.len()..];
            rest[..rest.find("\n[profiles").unwrap_or(rest.len())].lines().filter(|l| l.contains(" = ")).count()
        };
        assert_eq!(keys("[profiles.prod.promote]"), field_names::<crate::promote::ChecklistSpec>().len());
        // `columns` is a table of its own.
        assert_eq!(keys("[profiles.prod.dlq]") + 1, field_names::<crate::dlq::spec::QueueSpec>().len());
        std::fs::write(&path, sections).unwrap();
        let config = crate::config::Config::load(Some(&path), Some("prod")).unwrap();
        let (promote, dlq) = (&config.profile.promote, &config.profile.dlq);
        assert_eq!(promote.environment.as_deref(), Some("production"));
        assert_eq!((promote.rpo_target.as_deref(), promote.rate_limit_burst), (Some("2h"), Some(20)));
        assert_eq!((promote.waivers.len(), promote.required_env.as_slice()), (1, &["SMTP_URL".to_string()][..]));
        assert_eq!(promote.otel_endpoint.as_deref(), Some("http://otel:4318"));
        assert_eq!((dlq.table.as_deref(), dlq.history_table.as_deref()), (Some("hooks.dead"), Some("hooks.sent")));
        assert_eq!((dlq.max, dlq.rate, dlq.endpoint_rate, dlq.concurrency), (Some(7), Some(2.5), Some(1.0), Some(3)));
        assert_eq!(
            (dlq.columns.id.as_deref(), dlq.signing_secret_env.as_deref()),
            (Some("dead_id"), Some("HOOK_SECRET"))
        );

        // A misspelt key is refused, as it was before the spec flattened its groups.
        for (section, key) in [("sets.shop", "keep_dialy"), ("promote", "app_ulr"), ("dlq", "tabel")] {
            std::fs::write(&path, format!("[profiles.prod.{section}]\n{key} = 3\n")).unwrap();
            let err = crate::config::Config::load(Some(&path), Some("prod")).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }
}
