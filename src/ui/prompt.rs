//! Prompts on the terminal (dialoguer): confirmations default to "no" and are never shown
//! without a terminal; --yes is handled by the callers before they ask.

use crate::error::{ClassifiedError, ErrorClass};
use crate::runbook::actions::Interaction;
use crate::ui::Printer;

/// The one confirmation of a command's destructive step: `--yes` goes ahead; without a terminal
/// the command stops with exit 5 and `refusal` (which says how to confirm); on a terminal the
/// question defaults to "no", and a "no" stops it with exit 5, nothing changed.
pub fn confirm(printer: &Printer, yes: bool, question: &str, refusal: &str) -> Result<(), ClassifiedError> {
    if yes {
        return Ok(());
    }
    let interaction = TerminalInteraction::new(printer);
    if !interaction.can_prompt() {
        return Err(ClassifiedError::new(ErrorClass::ConfirmationRequired, refusal));
    }
    if !tokio::task::block_in_place(|| interaction.confirm(question)) {
        return Err(ClassifiedError::new(ErrorClass::ConfirmationRequired, "declined; nothing was changed"));
    }
    Ok(())
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

impl Interaction for TerminalInteraction {
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
