//! One file per subcommand: its arguments and a thin `run` that resolves settings, calls the
//! library and prints through `ui`.

pub mod backup;
pub mod backup_list;
pub mod backup_objects;
pub mod completions;
pub mod dlq_replay;
pub mod migrate;
pub mod pitr;
pub mod promote_check;
pub mod provision;
#[cfg(test)]
mod redaction_tests;
pub mod restore;
pub mod restore_drill;
pub mod rotate_secrets;
pub mod run;
pub mod runbook;
pub mod sandbox;
pub mod schedule;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::config::Config;
use crate::error::Failure;
use crate::exit::ExitStatus;
use crate::ui::Printer;

/// A command's result: its outcome, or the error it stopped on with that error's class.
pub type Result<T, E = Failure> = std::result::Result<T, E>;

/// What every command gets: the printer, the global flags and the loaded configuration.
pub struct Ctx<'a> {
    pub printer: &'a Printer,
    pub global: &'a GlobalArgs,
    pub config: Config,
}

pub async fn dispatch(cli: Cli, printer: &Printer) -> Result<ExitStatus> {
    // Completions and man pages need no configuration; everything else loads it first so a bad
    // file fails before any work.
    match cli.command {
        Command::Completions(args) => return completions::run_completions(args, printer),
        Command::Man(args) => return completions::run_man(args, printer),
        _ => {}
    }
    let config = Config::load(cli.global.config.as_deref(), cli.global.profile.as_deref())?;
    tracing::debug!(
        version = env!("CARGO_PKG_VERSION"),
        config = %config.path.as_ref().map_or_else(|| "none".into(), |p| p.display().to_string()),
        profile = %config.profile_name,
        "starting"
    );
    let ctx = Ctx { printer, global: &cli.global, config };
    match cli.command {
        Command::Backup(args) => backup::run(&ctx, *args).await,
        Command::Migrate(args) => migrate::run(&ctx, args).await,
        Command::Pitr(args) => pitr::run(&ctx, args).await,
        Command::Restore(args) => restore::run(&ctx, *args).await,
        Command::RestoreDrill(args) => restore_drill::run(&ctx, *args).await,
        Command::Provision(args) => provision::run(&ctx, args).await,
        Command::RotateSecrets(args) => rotate_secrets::run(&ctx, args).await,
        Command::PromoteCheck(args) => promote_check::run(&ctx, *args).await,
        Command::DlqReplay(args) => dlq_replay::run(&ctx, args).await,
        Command::Sandbox(args) => sandbox::run(&ctx, args).await,
        Command::Schedule(args) => schedule::run(&ctx, args).await,
        Command::Run(args) => run::run(&ctx, args).await,
        Command::Runbook(args) => runbook::run(&ctx, args).await,
        Command::Completions(_) | Command::Man(_) => unreachable!("handled above"),
    }
}
