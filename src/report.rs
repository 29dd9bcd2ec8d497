//! The progress reporter trait library modules use instead of touching the terminal.

/// Receives progress from long-running library operations. The command layer implements it with
/// progress bars; library code never prints.
pub trait Reporter: Send + Sync {
    /// A new phase of work starts (e.g. "dump", "upload", "verify"); `total` in bytes when known.
    fn phase(&self, _name: &str, _total: Option<u64>) {}
    /// `n` more bytes of the current phase are done.
    fn advance(&self, _n: u64) {}
    /// A short human note about what is happening.
    fn note(&self, _message: &str) {}
    /// The current phase is over.
    fn finish(&self) {}
}

/// A reporter that ignores everything (non-interactive runs, tests).
pub struct Silent;

impl Reporter for Silent {}
