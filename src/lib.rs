//! opsbook: operations runbooks for PostgreSQL + S3/R2 web applications.
//!
//! `main` parses the command line, runs one command and maps its outcome onto the exit-code
//! table; commands live in `cmd`, terminal output in `ui`, the work in the library modules.
// Library and command code never unwraps: a failure is a typed error with its resource
// (`#[cfg(test)]` code may, see clippy.toml). The other lints are in Cargo.toml's [lints].
#![deny(clippy::unwrap_used)]

pub mod backup;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod dlq;
pub mod drill;
pub mod error;
pub mod exit;
pub mod files;
pub mod lock;
pub mod migrate;
pub mod notify;
pub mod pg;
pub mod pitr;
pub mod promote;
pub mod provision;
pub mod redact;
pub mod report;
pub mod restore;
pub mod runbook;
pub mod sandbox;
pub mod schedule;
pub mod secrets;
pub mod settings;
pub mod signal;
pub mod spec;
pub mod state;
pub mod store;
pub mod text;
pub mod ui;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::cli::Cli;
use crate::exit::ExitStatus;
use crate::ui::Printer;

/// How long a command gets to clean up after Ctrl-C before the process exits anyway.
const INTERRUPT_GRACE: Duration = Duration::from_secs(30);

pub fn main() -> ExitCode {
    register_given_secrets();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if err.use_stderr() => {
            // A usage error can quote the flag's value: masked like every other output.
            let _ =
                std::io::Write::write_all(&mut std::io::stderr(), redact::redact(&err.render().to_string()).as_bytes());
            return ExitCode::from(ExitStatus::Usage.code());
        }
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(0);
        }
    };
    let printer = Printer::from_args(&cli.global);
    ui::logging::init(&cli.global, printer.color());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            printer.error(&error::Failure::from(err).context("cannot start the async runtime"));
            return ExitCode::from(ExitStatus::Failure.code());
        }
    };
    let run_id = format!("{:08x}", rand::random::<u32>());
    // At ERROR level so the span is on whatever -v/-q allow: every line carries command and run id.
    let span = tracing::error_span!("opsbook", command = %cli.command.name(), run_id = %run_id);
    let status = runtime.block_on(async {
        signal::listen();
        let run = tracing::Instrument::instrument(cmd::dispatch(cli, &printer), span.clone());
        tokio::pin!(run);
        let result = tokio::select! {
            result = &mut run => result,
            message = tracing::Instrument::instrument(async {
                signal::interrupted().await;
                tracing::warn!(
                    "interrupted: stopping cleanly (at most {}s); interrupt again to stop at once",
                    INTERRUPT_GRACE.as_secs()
                );
                tokio::select! {
                    _ = tokio::time::sleep(INTERRUPT_GRACE) => "interrupted; the clean stop took too long",
                    _ = signal::interrupted_again() => "interrupted twice; stopped at once, without cleaning up",
                }
            }, span.clone()) => {
                Err(error::Failure::new(error::ErrorClass::Interrupted, message))
            }
        };
        span.in_scope(|| finish(&printer, result))
    });
    // Do not wait for stray blocking tasks (a pg_dump reader) after the outcome is known.
    runtime.shutdown_timeout(Duration::from_secs(2));
    ExitCode::from(status.code())
}

/// Registers the password of every URL on the command line and in the environment before the
/// first byte of output, whichever command, step or error later prints it.
fn register_given_secrets() {
    std::env::args_os().skip(1).for_each(|arg| redact::register_urls_in(&arg.to_string_lossy()));
    std::env::vars_os().for_each(|(_, value)| redact::register_urls_in(&value.to_string_lossy()));
}

fn finish(printer: &Printer, result: Result<ExitStatus, error::Failure>) -> ExitStatus {
    match result {
        Ok(status) => status,
        Err(err) if exit::is_broken_pipe(&err) => ExitStatus::Success,
        Err(err) => {
            let status = if signal::is_interrupted() { ExitStatus::Interrupted } else { exit::classify(&err) };
            printer.error(&err);
            if printer.is_json() {
                printer.error_report(status, &err);
            }
            status
        }
    }
}
