//! One place decides what reaches stdout and stderr, in which format, and with secrets masked.

use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::cli::{ColorChoice, GlobalArgs, OutputFormat};
use crate::error::Failure;
use crate::exit::ExitStatus;
use crate::redact::redact;

/// Decides what reaches stdout (results) and stderr (notes, warnings, progress).
#[derive(Debug, Clone)]
pub struct Printer {
    pub format: OutputFormat,
    quiet: bool,
    color: bool,
    stderr_tty: bool,
    stdin_tty: bool,
    pub yes: bool,
    pub no_input: bool,
    /// `--log-format json`: the final error goes out as a log line too, not as plain text.
    log_json: bool,
}

impl Printer {
    pub fn from_args(args: &GlobalArgs) -> Self {
        let stderr_tty = std::io::stderr().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let color = match args.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => stderr_tty && !no_color,
        };
        Self {
            format: args.output,
            quiet: args.quiet > 0,
            color,
            stderr_tty,
            stdin_tty: std::io::stdin().is_terminal(),
            yes: args.yes,
            no_input: args.no_input,
            log_json: args.log_format == crate::cli::LogFormat::Json,
        }
    }

    pub fn is_json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    pub fn color(&self) -> bool {
        self.color
    }

    /// Progress bars only for a person watching: stderr is a terminal, not quiet, not JSON,
    /// and NO_COLOR is not set (bars are drawn with colour and cursor movement).
    pub fn show_progress(&self) -> bool {
        self.stderr_tty && !self.quiet && !self.is_json() && self.color
    }

    /// Whether a prompt can be shown to a person.
    pub fn can_prompt(&self) -> bool {
        self.stderr_tty && self.stdin_tty && !self.no_input
    }

    /// A line of human output on stdout (suppressed in JSON mode, where the report carries it).
    pub fn line(&self, text: impl AsRef<str>) -> std::io::Result<()> {
        if self.is_json() {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", redact(text.as_ref()))
    }

    /// A table on stdout (suppressed in JSON mode). Its cells were masked as they were added,
    /// so the rendered text is not masked again: a weak secret must not rewrite an identifier
    /// column, and a wrapped secret was already gone before layout.
    pub fn table(&self, table: &crate::ui::table::Table) -> std::io::Result<()> {
        if self.is_json() {
            return Ok(());
        }
        writeln!(std::io::stdout().lock(), "{table}")
    }

    /// A note for the person on stderr (suppressed by -q).
    pub fn note(&self, text: impl AsRef<str>) {
        if !self.quiet {
            let _ = writeln!(std::io::stderr().lock(), "{}", redact(text.as_ref()));
        }
    }

    /// A warning on stderr (shown even with -q).
    pub fn warn(&self, text: impl AsRef<str>) {
        let prefix = if self.color { "\x1b[33mwarning:\x1b[0m" } else { "warning:" };
        let _ = writeln!(std::io::stderr().lock(), "{prefix} {}", redact(text.as_ref()));
    }

    /// The error with its cause chain, on stderr: as text, or as one JSON log line (with the
    /// command and run id of the current span) under `--log-format json`.
    pub fn error(&self, err: &Failure) {
        let causes = causes(err);
        if self.log_json {
            let message = redact(&err.to_string()).into_owned();
            if causes.is_empty() {
                tracing::error!("{message}");
            } else {
                tracing::error!(causes = %causes.join("; "), "{message}");
            }
            return;
        }
        let prefix = if self.color { "\x1b[31merror:\x1b[0m" } else { "error:" };
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{prefix} {}", redact(&err.to_string()));
        for cause in causes {
            let _ = writeln!(stderr, "  caused by: {cause}");
        }
    }

    /// Exactly one JSON document on stdout: the report with `status` and `exit_code` added.
    pub fn report<T: Serialize>(&self, status: ExitStatus, report: &T) -> Result<(), Failure> {
        let mut value = serde_json::to_value(report)?;
        if let serde_json::Value::Object(map) = &mut value {
            map.insert("status".into(), status.word().into());
            map.insert("exit_code".into(), status.code().into());
        }
        // Masked in the data, before serialization: identifiers stay exact.
        let text = crate::redact::to_json(&value, true)?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{text}")?;
        Ok(())
    }

    /// The error report in JSON mode, so scripts always get one document.
    pub fn error_report(&self, status: ExitStatus, err: &Failure) {
        let causes = causes(err);
        let doc = serde_json::json!({
            "status": status.word(),
            "exit_code": status.code(),
            "error": redact(&err.to_string()),
            "causes": causes,
        });
        let _ = writeln!(std::io::stdout().lock(), "{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    }
}

/// The causes under an error, redacted, leaving out any whose text the message above it
/// already ends with ("create directory X: Not a directory" needs no "caused by: Not a
/// directory").
fn causes(err: &Failure) -> Vec<String> {
    let mut above = err.to_string();
    let mut out = Vec::new();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !above.ends_with(&text) {
            out.push(redact(&text).into_owned());
        }
        above = text;
    }
    out
}
