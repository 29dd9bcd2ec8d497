//! The process exit codes (DESIGN.md "Exit codes") and how errors map onto them.

use crate::error::{Classify, ErrorClass};

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

/// Picks the exit status for an error by looking through its cause chain for the first error
/// that knows its class. Errors nobody classified are failures of the operation (exit 1).
pub fn classify(err: &anyhow::Error) -> ExitStatus {
    for cause in err.chain() {
        if let Some(class) = class_of(cause) {
            return class.into();
        }
    }
    ExitStatus::Failure
}

fn class_of(cause: &(dyn std::error::Error + 'static)) -> Option<ErrorClass> {
    macro_rules! try_classes {
        ($($ty:ty),* $(,)?) => {
            $(if let Some(e) = cause.downcast_ref::<$ty>() { return Some(e.class()); })*
        };
    }
    try_classes!(
        crate::error::ClassifiedError,
        crate::store::StoreError,
        crate::pg::PgError,
        crate::backup::BackupError,
        crate::backup::objects::ObjectsError,
        crate::backup::retention::RetentionError,
        crate::config::ConfigError,
        crate::runbook::RunbookError,
        crate::runbook::actions::ActionError,
        crate::lock::LockError,
        crate::migrate::MigrateError,
        crate::drill::DrillError,
        crate::secrets::SecretsError,
        crate::provision::ProvisionError,
        crate::secrets::rotate::RotateError,
        crate::promote::PromoteError,
        crate::dlq::DlqError,
        crate::schedule::ScheduleError,
        crate::pitr::PitrError,
    );
    if let Some(e) = cause.downcast_ref::<clap::Error>() {
        return Some(if e.use_stderr() { ErrorClass::Usage } else { ErrorClass::Failed });
    }
    None
}

/// True when the error is a closed stdout (e.g. `opsbook backup list | head`), which is not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

#[cfg(test)]
mod tests {
    /// Every library error that knows its class is in `class_of`'s list: one left out would
    /// silently exit 1 whatever its class.
    #[test]
    fn every_classified_error_type_is_looked_up() {
        let this = include_str!("exit.rs");
        let list = &this[this.find("try_classes!(").expect("the list")..];
        let list = &list[..list.find(");").expect("its end")];
        let re = regex_lite::Regex::new(r"impl Classify for (\w+)").expect("pattern");
        let mut missing = Vec::new();
        let mut stack = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).expect("src").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("source");
                    for caps in re.captures_iter(&text) {
                        if !list.contains(&format!("::{},", &caps[1])) {
                            missing.push(format!("{} ({})", &caps[1], path.display()));
                        }
                    }
                }
            }
        }
        assert!(missing.is_empty(), "add to class_of's list: {missing:?}");
    }
}
