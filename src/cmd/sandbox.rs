//! `opsbook sandbox up | down | status`: a throwaway local Postgres with the example shop
//! database and a local directory store. While it exists, commands that are given no database
//! or store use it.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{Ctx, Result};
use crate::exit::ExitStatus;
use crate::sandbox::{self, SandboxInfo};

/// Where the sandbox lives unless --dir says otherwise.
pub const DEFAULT_DIR: &str = ".opsbook/sandbox";

#[derive(Debug, Args)]
pub struct SandboxArgs {
    #[command(subcommand)]
    pub command: SandboxCommand,
    /// Sandbox directory.
    #[arg(long, global = true, value_name = "DIR", env = "OPSBOOK_SANDBOX_DIR", default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Create (or restart) the sandbox and print the environment to export.
    Up,
    /// Stop the sandbox and delete its cluster, store and env file.
    Down,
    /// Show whether the sandbox exists and runs.
    Status,
}

impl SandboxCommand {
    pub fn name(&self) -> &'static str {
        match self {
            SandboxCommand::Up => "up",
            SandboxCommand::Down => "down",
            SandboxCommand::Status => "status",
        }
    }
}

pub async fn run(ctx: &Ctx<'_>, args: SandboxArgs) -> Result<ExitStatus> {
    let p = ctx.printer;
    match args.command {
        SandboxCommand::Up => {
            p.note(format!("starting the sandbox in {} …", args.dir.display()));
            let info = sandbox::up(&args.dir).await?;
            if p.is_json() {
                p.report(ExitStatus::Success, &info)?;
            } else {
                print_env(ctx, &info)?;
                p.note(format!(
                    "sandbox running on 127.0.0.1:{} (database shop, store {}); commands use it when no \
                     --database-url/--store is given; `opsbook sandbox down` removes it",
                    info.port, info.store
                ));
            }
            Ok(ExitStatus::Success)
        }
        SandboxCommand::Down => {
            let found = sandbox::down(&args.dir).await?;
            if p.is_json() {
                p.report(ExitStatus::Success, &serde_json::json!({ "removed": found, "dir": args.dir }))?;
            } else if found {
                p.line(format!("sandbox in {} stopped and removed", args.dir.display()))?;
            } else {
                p.line(format!("no sandbox in {}", args.dir.display()))?;
            }
            Ok(ExitStatus::Success)
        }
        SandboxCommand::Status => {
            let info = sandbox::status(&args.dir).await?;
            let status = match &info {
                Some(i) if i.running => ExitStatus::Success,
                _ => ExitStatus::Failure,
            };
            if p.is_json() {
                p.report(status, &serde_json::json!({ "exists": info.is_some(), "sandbox": info }))?;
            } else {
                match &info {
                    Some(i) => {
                        p.line(format!(
                            "sandbox in {}: {} on 127.0.0.1:{}",
                            args.dir.display(),
                            if i.running { "running" } else { "stopped" },
                            i.port
                        ))?;
                        print_env(ctx, i)?;
                    }
                    None => p.line(format!("no sandbox in {}", args.dir.display()))?,
                }
            }
            Ok(status)
        }
    }
}

/// `export` lines on stdout, so `eval "$(opsbook sandbox up)"` works.
fn print_env(ctx: &Ctx<'_>, info: &SandboxInfo) -> Result<()> {
    ctx.printer.line(format!("export DATABASE_URL='{}'", info.database_url))?;
    ctx.printer.line(format!("export OPSBOOK_STORE='{}'", info.store))?;
    Ok(())
}
