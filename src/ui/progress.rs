//! Progress bars (indicatif) behind the library's `Reporter` trait.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::{Reporter, Silent};
use crate::ui::Printer;

/// A reporter drawing one bar (or spinner when the total is unknown) per phase on stderr,
/// counting bytes or items.
pub struct BarReporter {
    prefix: String,
    items: bool,
    bar: Mutex<Option<ProgressBar>>,
}

fn bars(printer: &Printer, prefix: &str, items: bool) -> Box<dyn Reporter> {
    if printer.show_progress() {
        Box::new(BarReporter { prefix: prefix.to_string(), items, bar: Mutex::new(None) })
    } else {
        Box::new(Silent)
    }
}

/// The reporter fit for this invocation: byte bars on a terminal, nothing otherwise.
pub fn reporter(printer: &Printer, prefix: &str) -> Box<dyn Reporter> {
    bars(printer, prefix, false)
}

/// The same counting items (dead letters, requests) rather than bytes.
pub fn items(printer: &Printer, prefix: &str) -> Box<dyn Reporter> {
    bars(printer, prefix, true)
}

impl Reporter for BarReporter {
    fn phase(&self, name: &str, total: Option<u64>) {
        let bar = match total {
            Some(t) if self.items => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template("{prefix} {msg:8} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            ),
            Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template(
                    "{prefix} {msg:10} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template(if self.items {
                    "{prefix} {spinner} {msg:8} {pos} {per_sec} {elapsed}"
                } else {
                    "{prefix} {spinner} {msg:10} {bytes} {binary_bytes_per_sec} {elapsed}"
                })
                .expect("valid template"),
            ),
        };
        bar.set_prefix(self.prefix.clone());
        bar.set_message(name.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Some(old) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).replace(bar) {
            old.finish_and_clear();
        }
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            bar.inc(n);
        }
    }

    fn note(&self, message: &str) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            bar.set_message(message.to_string());
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}

/// A spinner that shows the library's latest note ("applying 2026… add tags") with the elapsed
/// time; for step-wise work where bytes mean nothing.
pub struct StepReporter {
    bar: ProgressBar,
}

/// The step reporter fit for this invocation: a spinner on a terminal, nothing otherwise.
pub fn steps(printer: &Printer, prefix: &str) -> Box<dyn Reporter> {
    if !printer.show_progress() {
        return Box::new(Silent);
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        .with_style(ProgressStyle::with_template("{prefix} {spinner} {msg} {elapsed}").expect("valid template"));
    bar.set_prefix(prefix.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    Box::new(StepReporter { bar })
}

impl Reporter for StepReporter {
    fn note(&self, message: &str) {
        self.bar.set_message(message.to_string());
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for StepReporter {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
