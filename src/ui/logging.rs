//! Logs through `tracing` to stderr: text for people, JSON lines (timestamp, level, command,
//! run id) for log shippers; every line passes through secret redaction.

use std::io::Write;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::cli::{GlobalArgs, LogFormat};

/// Writes log lines to stderr after masking registered secrets.
pub struct RedactingStderr;

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().lock().write_all(crate::redact::redact(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingStderr
    }
}

/// Installs the global subscriber. `OPSBOOK_LOG` (EnvFilter syntax) overrides -v/-q.
pub fn init(args: &GlobalArgs, color: bool) {
    let level = match (args.quiet, args.verbose) {
        (q, _) if q > 0 => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter =
        EnvFilter::try_from_env("OPSBOOK_LOG").unwrap_or_else(|_| EnvFilter::new(format!("warn,opsbook={level}")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(RedactingStderr);
    let _ = match args.log_format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Text => builder.with_ansi(color).with_target(false).try_init(),
    };
}
