//! `opsbook schedule crontab | systemd | k8s`: print what a scheduler needs to run runbooks on
//! their `schedule`. The scheduler runs `opsbook run`; opsbook has no scheduler of its own.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::{Ctx, Result};
use crate::error::Failure;
use crate::exit::ExitStatus;
use crate::runbook;
use crate::schedule::{self, Host, Job, Plan};

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    #[command(subcommand)]
    pub command: ScheduleCommand,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Crontab entries: one commented line per scheduled runbook, logging to --log-dir.
    Crontab(CrontabArgs),
    /// systemd units: a oneshot opsbook-NAME.service and an opsbook-NAME.timer per runbook.
    Systemd(SystemdArgs),
    /// Kubernetes manifests: a ConfigMap with the runbooks and a batch/v1 CronJob per runbook.
    K8s(K8sArgs),
}

impl ScheduleCommand {
    pub fn name(&self) -> &'static str {
        match self {
            ScheduleCommand::Crontab(_) => "crontab",
            ScheduleCommand::Systemd(_) => "systemd",
            ScheduleCommand::K8s(_) => "k8s",
        }
    }
}

/// The runbooks to schedule.
#[derive(Debug, Args)]
pub struct RunbookList {
    /// Runbook files or shipped names [default: every *.toml in ./runbooks]; runbooks without a
    /// `schedule` are listed as skipped.
    #[arg(value_name = "RUNBOOK")]
    pub runbooks: Vec<PathBuf>,
}

/// How the host runs opsbook.
#[derive(Debug, Args)]
pub struct HostArgs {
    /// Directory the runs start in; runbook paths inside it are written relative to it
    /// [default: the current directory].
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// The opsbook executable to run [default: the absolute path of this executable].
    #[arg(long, value_name = "PATH")]
    pub bin: Option<PathBuf>,
    /// KEY=VALUE file with the runs' settings and secrets (DATABASE_URL, OPSBOOK_STORE, ...),
    /// loaded at every run; its values are never copied into the schedule.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CrontabArgs {
    #[command(flatten)]
    pub runbooks: RunbookList,
    #[command(flatten)]
    pub host: HostArgs,
    /// Directory of the runs' logs, one NAME.log per runbook.
    #[arg(long, value_name = "DIR", default_value = "/var/log/opsbook")]
    pub log_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct SystemdArgs {
    #[command(flatten)]
    pub runbooks: RunbookList,
    #[command(flatten)]
    pub host: HostArgs,
    /// Write the unit files into this directory (created when missing) instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct K8sArgs {
    #[command(flatten)]
    pub runbooks: RunbookList,
    /// Container image with the opsbook binary.
    #[arg(long, value_name = "IMAGE", default_value = "opsbook:latest")]
    pub image: String,
    /// Secret whose keys become the container's environment (DATABASE_URL, OPSBOOK_STORE, ...).
    #[arg(long, value_name = "NAME", default_value = "opsbook-env")]
    pub secret: String,
}

pub async fn run(ctx: &Ctx<'_>, args: ScheduleArgs) -> Result<ExitStatus> {
    let p = ctx.printer;
    let cwd = std::env::current_dir()?;
    let (mut plan, out) = match args.command {
        ScheduleCommand::Crontab(a) => {
            let host = host(&a.host, &cwd)?;
            let jobs = jobs(&a.runbooks, &host.workdir)?;
            (schedule::crontab(&jobs, &host, &std::path::absolute(&a.log_dir)?)?, None)
        }
        ScheduleCommand::Systemd(a) => {
            let host = host(&a.host, &cwd)?;
            let jobs = jobs(&a.runbooks, &host.workdir)?;
            (schedule::systemd(&jobs, &host)?, a.out)
        }
        ScheduleCommand::K8s(a) => {
            let jobs = jobs(&a.runbooks, &cwd)?;
            let settings = schedule::K8s { image: a.image, secret: a.secret };
            (schedule::k8s(&jobs, &settings)?, None)
        }
    };
    if let Some(dir) = &out {
        schedule::write_files(&mut plan, dir)?;
    }
    if p.is_json() {
        p.report(ExitStatus::Success, &plan)?;
    } else if out.is_some() {
        for file in plan.files() {
            p.line(file.path.as_deref().unwrap_or(Path::new(&file.name)).display().to_string())?;
        }
    } else {
        p.line(plan.text.trim_end())?;
    }
    notes(ctx, &plan);
    Ok(ExitStatus::Success)
}

fn notes(ctx: &Ctx<'_>, plan: &Plan) {
    for r in plan.runbooks.iter().filter(|r| r.skipped.is_some()) {
        ctx.printer.note(format!("skipped {} ({}): no schedule", r.name, r.path.display()));
    }
    if plan.target == "systemd" {
        let timers: Vec<&str> = plan.files().map(|f| f.name.as_str()).filter(|n| n.ends_with(".timer")).collect();
        ctx.printer
            .note(format!("enable with: systemctl daemon-reload && systemctl enable --now {}", timers.join(" ")));
    }
}

fn host(args: &HostArgs, cwd: &Path) -> Result<Host> {
    let workdir = match &args.workdir {
        Some(dir) => std::path::absolute(dir)?,
        None => cwd.to_path_buf(),
    };
    let bin = match &args.bin {
        // A bare name is looked up in the scheduler's PATH; a path is made absolute.
        Some(bin) if bin.components().count() == 1 && !bin.is_absolute() => bin.clone(),
        Some(bin) => std::path::absolute(bin)?,
        None => std::env::current_exe()?,
    };
    let env_file = args.env_file.as_deref().map(std::path::absolute).transpose()?;
    Ok(Host { workdir, bin, env_file })
}

/// Loads the given runbooks (every *.toml in ./runbooks when none are given); fails when a
/// runbook is invalid or none declares a schedule.
fn jobs(list: &RunbookList, workdir: &Path) -> Result<Vec<Job>> {
    let paths = if list.runbooks.is_empty() {
        shipped_runbooks()?
    } else {
        list.runbooks.iter().map(|r| super::run::locate(r)).collect()
    };
    let mut jobs = Vec::new();
    for path in paths {
        let rb = runbook::load(&path)?;
        let absolute = std::path::absolute(&path)?;
        let run_path = absolute.strip_prefix(workdir).map_or_else(|_| absolute.clone(), Path::to_path_buf);
        jobs.push(Job::new(&rb, run_path));
    }
    schedule::require_scheduled(&jobs)?;
    Ok(jobs)
}

fn shipped_runbooks() -> Result<Vec<PathBuf>> {
    let dir = Path::new("runbooks");
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Failure::usage(format!("no RUNBOOK given and cannot list ./runbooks ({e}); name the runbook files"))
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(Failure::usage("no RUNBOOK given and ./runbooks has no *.toml files"));
    }
    Ok(paths)
}
