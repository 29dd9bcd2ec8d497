//! `opsbook completions SHELL` and `opsbook man [DIR]`, generated from the same clap definition
//! as `--help`.

use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Result;
use crate::cli::Cli;
use crate::error::Context;
use crate::exit::ExitStatus;
use crate::ui::Printer;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing).
    #[arg(default_value = "man")]
    pub dir: PathBuf,
}

pub fn run_completions(args: CompletionsArgs, printer: &Printer) -> Result<ExitStatus> {
    // Generated into memory first: clap_complete panics when its writer fails, and a closed
    // pipe (`opsbook completions bash | head`) is not an error.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "opsbook", &mut script);
    if printer.is_json() {
        let script = String::from_utf8_lossy(&script);
        printer
            .report(ExitStatus::Success, &serde_json::json!({ "shell": args.shell.to_string(), "script": script }))?;
    } else {
        std::io::Write::write_all(&mut std::io::stdout().lock(), &script).context("writing the completion script")?;
    }
    Ok(ExitStatus::Success)
}

pub fn run_man(args: ManArgs, printer: &Printer) -> Result<ExitStatus> {
    let written = write_man_pages(&args.dir)?;
    if printer.is_json() {
        printer.report(ExitStatus::Success, &serde_json::json!({ "dir": args.dir, "pages": written }))?;
    } else {
        printer.line(format!("wrote {written} man pages to {}", args.dir.display()))?;
    }
    Ok(ExitStatus::Success)
}

/// Writes `opsbook.1` and one page per subcommand (`opsbook-backup-run.1`, …); returns the count.
pub fn write_man_pages(dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut count = 0;
    write_page(&cmd, dir, "opsbook", &mut count)?;
    Ok(count)
}

fn write_page(cmd: &clap::Command, dir: &Path, name: &str, count: &mut usize) -> Result<()> {
    let page = cmd.clone().name(name.to_string());
    let mut buf = Vec::new();
    clap_mangen::Man::new(page).render(&mut buf)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
    *count += 1;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_page(sub, dir, &format!("{name}-{}", sub.get_name()), count)?;
    }
    Ok(())
}
