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

/// Runbook questions answered on the terminal (dialoguer), or refused without one.
pub struct TerminalInteraction {
    can_prompt: bool,
}

impl TerminalInteraction {
    pub fn new(printer: &Printer) -> Self {
        Self { can_prompt: printer.can_prompt() }
    }
}

impl crate::runbook::actions::Interaction for TerminalInteraction {
    fn can_prompt(&self) -> bool {
        self.can_prompt
    }

    fn confirm(&self, question: &str) -> bool {
        self.can_prompt && dialoguer::Confirm::new().with_prompt(question).default(false).interact().unwrap_or(false)
    }

    fn type_name(&self, prompt: &str, expected: &str) -> bool {
        self.can_prompt
            && dialoguer::Input::<String>::new()
                .with_prompt(prompt)
                .allow_empty(true)
                .interact_text()
                .is_ok_and(|typed| typed == expected)
    }

    fn ask(&self, prompt: &str, secret: bool) -> Option<String> {
        if !self.can_prompt {
            return None;
        }
        let answer = if secret {
            dialoguer::Password::new().with_prompt(prompt).interact().ok()
        } else {
            dialoguer::Input::<String>::new().with_prompt(prompt).allow_empty(true).interact_text().ok()
        };
        answer.filter(|a| !a.is_empty())
    }
}
