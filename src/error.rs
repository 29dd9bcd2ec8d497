//! Error classes: how a failure maps onto the exit-code table in DESIGN.md.

/// The class of a failure, which decides the process exit code. Journals record it by these
/// names (`failed`, `usage`, `unavailable`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The operation ran and failed (exit 1).
    Failed,
    /// Usage, configuration or input error (exit 2).
    Usage,
    /// A dependency is unavailable: Postgres, S3, an HTTP target, a missing tool (exit 3).
    Unavailable,
    /// Another run holds the lock (exit 4).
    Busy,
    /// Confirmation required but there is no terminal, or it was declined (exit 5).
    ConfirmationRequired,
    /// Interrupted by a signal (exit 130).
    Interrupted,
}

/// Implemented by every library error so the command layer can pick the exit code.
pub trait Classify {
    fn class(&self) -> ErrorClass;
}

/// An error raised directly with a class, for input problems found outside a library module.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ClassifiedError {
    pub class: ErrorClass,
    pub message: String,
}

impl ClassifiedError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self { class, message: message.into() }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Usage, message)
    }
}

impl Classify for ClassifiedError {
    fn class(&self) -> ErrorClass {
        self.class
    }
}
