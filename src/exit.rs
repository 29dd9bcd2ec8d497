//! The process exit codes (DESIGN.md "Exit codes") and how errors map onto them.

use crate::error::{ErrorClass, Failure};

/// The outcome of a command, mapped onto the documented exit codes. A failed check is a result
/// (`Failure`), not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    Success,
    Failure,
    Usage,
    Unavailable,
    Busy,
    ConfirmationRequired,
    Interrupted,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Unavailable => 3,
            ExitStatus::Busy => 4,
            ExitStatus::ConfirmationRequired => 5,
            ExitStatus::Interrupted => 130,
        }
    }

    /// The status word used in JSON reports.
    pub fn word(self) -> &'static str {
        match self {
            ExitStatus::Success => "ok",
            ExitStatus::Failure => "failed",
            ExitStatus::Usage => "usage_error",
            ExitStatus::Unavailable => "unavailable",
            ExitStatus::Busy => "busy",
            ExitStatus::ConfirmationRequired => "confirmation_required",
            ExitStatus::Interrupted => "interrupted",
        }
    }

    /// The worse of two outcomes, for commands that run several units of work.
    pub fn worst(self, other: ExitStatus) -> ExitStatus {
        fn rank(s: ExitStatus) -> u8 {
            match s {
                ExitStatus::Success => 0,
                ExitStatus::Failure => 1,
                ExitStatus::Unavailable => 2,
                ExitStatus::Busy => 3,
                ExitStatus::ConfirmationRequired => 4,
                ExitStatus::Usage => 5,
                ExitStatus::Interrupted => 6,
            }
        }
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

impl From<ErrorClass> for ExitStatus {
    fn from(class: ErrorClass) -> Self {
        match class {
            ErrorClass::Failed => ExitStatus::Failure,
            ErrorClass::Usage => ExitStatus::Usage,
            ErrorClass::Unavailable => ExitStatus::Unavailable,
            ErrorClass::Busy => ExitStatus::Busy,
            ErrorClass::ConfirmationRequired => ExitStatus::ConfirmationRequired,
            ErrorClass::Interrupted => ExitStatus::Interrupted,
        }
    }
}

/// The exit status for a command's error: its class, picked where the error entered the command
/// layer (see [`Failure`]).
pub fn classify(err: &Failure) -> ExitStatus {
    err.class().into()
}

/// True when the error is a closed stdout (e.g. `opsbook backup list | head`), which is not a failure.
pub fn is_broken_pipe(err: &Failure) -> bool {
    err.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Context;

    /// A command's `?` on a library error: the conversion every command error goes through.
    fn command<E>(error: E) -> crate::cmd::Result<ExitStatus>
    where
        Failure: From<E>,
    {
        Err(error)?
    }

    /// The same with the context a command adds (`.context(…)`/`.with_context(…)`).
    fn command_with_context<E: Into<Failure>>(error: E) -> crate::cmd::Result<ExitStatus> {
        Err(error).with_context(|| "doing the work")
    }

    fn status(result: crate::cmd::Result<ExitStatus>) -> ExitStatus {
        classify(&result.expect_err("the command failed"))
    }

    fn io(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::new(kind, "io trouble")
    }

    /// A library error of each class exits with that class's code once it has passed through
    /// the command layer, with or without context; errors with no class are failures (exit 1).
    #[test]
    fn a_library_error_exits_with_its_class_through_a_command() {
        let lock_io =
            || crate::lock::LockError::Io { path: "/run/x.lock".into(), source: io(std::io::ErrorKind::Other) };
        let usage = || crate::config::ConfigError::Missing { what: "database URL".into(), fix: "set it".into() };
        let unavailable = || crate::pg::PgError::Connect { url: "postgres://db".into(), cause: "refused".into() };
        let busy = || crate::lock::LockError::Busy { resource: "set 'app'".into(), holder: "pid 1".into() };
        let declined = || crate::runbook::actions::ActionError::NotConfirmed { step: "drop".into() };
        let interrupted = || crate::drill::DrillError::Interrupted;

        assert_eq!(status(command(lock_io())).code(), 1);
        assert_eq!(status(command(usage())).code(), 2);
        assert_eq!(status(command(unavailable())).code(), 3);
        assert_eq!(status(command(busy())).code(), 4);
        assert_eq!(status(command(declined())).code(), 5);
        assert_eq!(status(command(interrupted())).code(), 130);

        assert_eq!(status(command_with_context(lock_io())).code(), 1);
        assert_eq!(status(command_with_context(usage())).code(), 2);
        assert_eq!(status(command_with_context(unavailable())).code(), 3);
        assert_eq!(status(command_with_context(busy())).code(), 4);
        assert_eq!(status(command_with_context(declined())).code(), 5);
        assert_eq!(status(command_with_context(interrupted())).code(), 130);

        // An error raised in the command layer itself, and the errors that have no class.
        assert_eq!(status(Err(Failure::usage("bad flag"))).code(), 2);
        assert_eq!(status(command(io(std::io::ErrorKind::PermissionDenied))).code(), 1);
        assert_eq!(status(command(serde_json::from_str::<u8>("x").expect_err("not JSON"))).code(), 1);
    }

    /// Context keeps the error's own message and causes beneath it, as `caused by:` lines print them.
    #[test]
    fn context_keeps_the_cause_chain() {
        let err = command_with_context(crate::lock::LockError::Io {
            path: "/run/x.lock".into(),
            source: io(std::io::ErrorKind::Other),
        })
        .expect_err("failed");
        let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
        assert_eq!(chain, ["doing the work", "cannot use lock file /run/x.lock: io trouble", "io trouble"]);
        assert_eq!(err.to_string(), "doing the work");
        assert_eq!(format!("{err:#}"), "doing the work: cannot use lock file /run/x.lock: io trouble: io trouble");
    }

    /// A closed stdout is found under any context; other io errors are not it.
    #[test]
    fn broken_pipe_is_found_under_context() {
        let err = command_with_context(io(std::io::ErrorKind::BrokenPipe)).expect_err("failed");
        assert!(is_broken_pipe(&err));
        let err = command_with_context(io(std::io::ErrorKind::PermissionDenied)).expect_err("failed");
        assert!(!is_broken_pipe(&err));
    }
}
