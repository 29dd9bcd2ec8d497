//! Error classes, and `Failure`, the classified error every command returns: how a failure maps
//! onto the exit-code table in DESIGN.md.

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

/// An error with an explicit class and a message, where no typed error fits (a declined prompt,
/// an HTTP call's answer). Commands raise their own with [`Failure::new`]/[`Failure::usage`].
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

/// A command's error: what went wrong, with its causes for printing, and the class picked where
/// it entered the command layer. Commands return it; `main` maps its class to the exit code.
///
/// A library error becomes one through `?` (every error that implements [`Classify`] converts,
/// keeping its class); the few errors that have no class (writing to stdout, serializing a
/// report) are failures of the operation. There is deliberately no conversion from an untyped
/// error, so no library error can reach the exit code without its class.
#[derive(Debug)]
pub struct Failure {
    class: ErrorClass,
    error: anyhow::Error,
}

impl Failure {
    /// An error found by the command itself, with its class.
    pub fn new(class: ErrorClass, message: impl std::fmt::Display) -> Self {
        Self { class, error: anyhow::Error::msg(message.to_string()) }
    }

    /// A usage, configuration or input error found by the command itself (exit 2).
    pub fn usage(message: impl std::fmt::Display) -> Self {
        Self::new(ErrorClass::Usage, message)
    }

    /// A failure of the operation with no error type of its own (exit 1).
    fn unclassified(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self { class: ErrorClass::Failed, error: anyhow::Error::new(error) }
    }

    /// The same error under a message saying what the command was doing; the class is kept and
    /// the old message becomes the first cause.
    pub fn context(self, context: impl std::fmt::Display + Send + Sync + 'static) -> Self {
        Self { class: self.class, error: self.error.context(context) }
    }

    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// The message, then each cause in turn.
    pub fn chain(&self) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
        self.error.chain()
    }
}

impl std::fmt::Display for Failure {
    /// The message; `{:#}` adds the causes, separated by `: `.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.error, f)
    }
}

impl<E: Classify + std::error::Error + Send + Sync + 'static> From<E> for Failure {
    fn from(error: E) -> Self {
        Self { class: error.class(), error: anyhow::Error::new(error) }
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Self {
        Self::unclassified(error)
    }
}

impl From<serde_json::Error> for Failure {
    fn from(error: serde_json::Error) -> Self {
        Self::unclassified(error)
    }
}

/// `.context(…)` and `.with_context(|| …)` on any result whose error converts into a
/// [`Failure`]: the error is classified first, then given the context.
pub trait Context<T> {
    fn context(self, context: impl std::fmt::Display + Send + Sync + 'static) -> Result<T, Failure>;
    fn with_context<C: std::fmt::Display + Send + Sync + 'static>(
        self,
        context: impl FnOnce() -> C,
    ) -> Result<T, Failure>;
}

impl<T, E: Into<Failure>> Context<T> for Result<T, E> {
    fn context(self, context: impl std::fmt::Display + Send + Sync + 'static) -> Result<T, Failure> {
        self.map_err(|e| e.into().context(context))
    }
    fn with_context<C: std::fmt::Display + Send + Sync + 'static>(
        self,
        context: impl FnOnce() -> C,
    ) -> Result<T, Failure> {
        self.map_err(|e| e.into().context(context()))
    }
}
