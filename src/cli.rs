//! The top-level command line: global flags, the command enum, and argument groups shared by
//! several commands (declared once, flattened where needed).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cmd;

/// Operations runbooks for PostgreSQL + S3/R2 web applications.
///
/// Exit codes: 0 success; 1 failed or a check found problems; 2 usage, configuration or input
/// error; 3 a dependency is unavailable; 4 busy (another run holds the lock); 5 confirmation
/// required but no terminal; 130 interrupted.
#[derive(Debug, Parser)]
#[command(name = "opsbook", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Streaming database backups to S3/R2 or a local directory: run, list, verify, prune.
    Backup(Box<cmd::backup::BackupArgs>),
    /// Schema migrations (sqlx-compatible history): up, status, check, validate, dry-run, lint,
    /// new, baseline.
    Migrate(cmd::migrate::MigrateArgs),
    /// Point-in-time recovery through pgBackRest: setup, backup, status, check, expire.
    Pitr(cmd::pitr::PitrArgs),
    /// Restore a dump backup into a new database: pick it (id, latest, --before TIME), verify it,
    /// create the database, restore, compare row counts; a failed restore drops it again.
    Restore(Box<cmd::restore::RestoreArgs>),
    /// Prove a backup restores: download and check it, restore into a scratch database or a
    /// throwaway cluster, compare row counts, run checks and migrations, sample the media bucket,
    /// measure RTO/RPO, clean up.
    RestoreDrill(Box<cmd::restore_drill::RestoreDrillArgs>),
    /// Plan and apply a new environment from the profile's [provision] table: database, roles,
    /// grants, extensions, bucket, secrets in the .env file, migrations, seeds.
    Provision(cmd::provision::ProvisionArgs),
    /// Rotate secrets with a journaled create → set → test → finish → revoke protocol:
    /// PostgreSQL passwords (single or alternating logins), random keys, password hashes, S3
    /// access keys (IAM), gateway credentials (HTTP); stores: .env, AWS Secrets Manager, Vault.
    RotateSecrets(cmd::rotate_secrets::RotateSecretsArgs),
    /// The promotion checklist: secrets, database TLS, CSP, HSTS, CORS, headers, telemetry,
    /// rate limits, backups, migrations, health and metrics — concurrently, with waivers.
    PromoteCheck(Box<cmd::promote_check::PromoteCheckArgs>),
    /// Dead-letter queue: list, stats (alert threshold), replay with rate limits, retries,
    /// signing and claim-once guarantees, purge with an archive.
    DlqReplay(cmd::dlq_replay::DlqReplayArgs),
    /// Run a runbook: declarative TOML steps with a journal, resumable after a failure.
    Run(cmd::run::RunArgs),
    /// List, show, validate runbooks, or print the format's JSON Schema.
    Runbook(cmd::runbook::RunbookArgs),
    /// A throwaway local Postgres cluster with an example database, plus a local store.
    Sandbox(cmd::sandbox::SandboxArgs),
    /// Print crontab entries, systemd units or Kubernetes CronJobs that run runbooks on their schedule.
    Schedule(cmd::schedule::ScheduleArgs),
    /// Print a shell completion script.
    Completions(cmd::completions::CompletionsArgs),
    /// Write man pages (one per command) to a directory.
    Man(cmd::completions::ManArgs),
}

impl Command {
    /// The command path for logs and reports, e.g. "backup run".
    pub fn name(&self) -> String {
        match self {
            Command::Backup(b) => format!("backup {}", b.command.name()),
            Command::Migrate(m) => format!("migrate {}", m.command.name()),
            Command::Pitr(p) => format!("pitr {}", p.command.name()),
            Command::Restore(_) => "restore".into(),
            Command::RestoreDrill(_) => "restore-drill".into(),
            Command::Provision(p) => format!("provision {}", p.command.name()),
            Command::RotateSecrets(r) => format!("rotate-secrets {}", r.command.name()),
            Command::PromoteCheck(_) => "promote-check".into(),
            Command::DlqReplay(d) => format!("dlq-replay {}", d.command.name()),
            Command::Sandbox(s) => format!("sandbox {}", s.command.name()),
            Command::Schedule(s) => format!("schedule {}", s.command.name()),
            Command::Run(_) => "run".into(),
            Command::Runbook(r) => format!("runbook {}", r.command.name()),
            Command::Completions(_) => "completions".into(),
            Command::Man(_) => "man".into(),
        }
    }
}

/// Flags accepted before or after any subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Configuration file [default: ./opsbook.toml when present].
    #[arg(long, global = true, env = "OPSBOOK_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Profile of the configuration file to use ([profiles.NAME]) [default: "default"].
    #[arg(long, global = true, env = "OPSBOOK_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,

    /// Output format of stdout: human tables and lines, or exactly one JSON document.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,

    /// Answer yes to confirmation prompts (required for destructive steps without a terminal).
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,

    /// Never prompt; fail with exit 5 when a confirmation would be needed.
    #[arg(long, global = true)]
    pub no_input: bool,

    /// When to use colour on stderr.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// Log line format on stderr: text for people, JSON lines for log shippers.
    #[arg(long, global = true, value_enum, env = "OPSBOOK_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less output: no progress, only errors on stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The application database connection.
#[derive(Debug, Clone, Default, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL of the application database (postgres://user:pass@host:5432/db?sslmode=...).
    /// The password is passed to child tools through the environment, never their arguments.
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

/// The migrations directory, for the commands that read migration files.
#[derive(Debug, Clone, Default, Args)]
pub struct MigrationsArg {
    /// Migrations directory [default: profile's migrate.dir, else ./migrations].
    #[arg(long, value_name = "DIR")]
    pub migrations: Option<std::path::PathBuf>,
}

/// How a scheduled job is watched; flattened by every command that can run from cron.
#[derive(Debug, Clone, Default, Args)]
pub struct MonitorArgs {
    /// Healthchecks-style ping URL: URL/start, URL on success, URL/fail with the error.
    #[arg(long, value_name = "URL", env = "OPSBOOK_NOTIFY_URL")]
    pub notify_url: Option<String>,
    /// Prometheus textfile to update (last run, success, duration and the job's figures).
    #[arg(long, value_name = "PATH", env = "OPSBOOK_METRICS_FILE")]
    pub metrics_file: Option<std::path::PathBuf>,
}

impl MonitorArgs {
    pub fn spec(&self) -> crate::spec::MonitorSpec {
        crate::spec::MonitorSpec { notify_url: self.notify_url.clone(), metrics_file: self.metrics_file.clone() }
    }
}

/// The backup store.
#[derive(Debug, Clone, Default, Args)]
pub struct StoreArgs {
    /// Where backups live: s3://bucket/prefix (S3, R2 and compatible; endpoint and credentials
    /// from the AWS chain or R2_* variables), file:///abs/path, or a plain directory path.
    #[arg(long, env = "OPSBOOK_STORE", value_name = "URL")]
    pub store: Option<String>,
}
