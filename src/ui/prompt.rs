//! Prompts on the terminal (dialoguer): confirmations default to "no" and are never shown
//! without a terminal; --yes is handled by the callers before they ask.

use crate::ui::Printer;

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
