//! Confirmation prompts: default "no", never shown without a terminal, skipped by --yes.

use anyhow::Result;

use crate::error::{ClassifiedError, ErrorClass};
use crate::ui::Printer;

/// Asks the person to confirm `question`. `--yes` confirms; no terminal or `--no-input` is a
/// confirmation-required error (exit 5); declining is the same error.
pub async fn confirm(printer: &Printer, question: &str) -> Result<()> {
    if printer.yes {
        return Ok(());
    }
    if !printer.can_prompt() {
        return Err(ClassifiedError::new(
            ErrorClass::ConfirmationRequired,
            format!("{question} — confirmation required but there is no terminal; pass --yes to confirm"),
        )
        .into());
    }
    let prompt = question.to_string();
    // dialoguer blocks; keep it off the async workers.
    let answer =
        tokio::task::spawn_blocking(move || dialoguer::Confirm::new().with_prompt(prompt).default(false).interact())
            .await??;
    if answer {
        Ok(())
    } else {
        Err(ClassifiedError::new(ErrorClass::ConfirmationRequired, "declined at the prompt").into())
    }
}
