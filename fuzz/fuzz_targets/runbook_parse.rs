#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use opsbook::runbook::{parse, RunbookError};

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let lines = source.lines().count();
    if let Err(RunbookError::Invalid { diagnostics, .. }) = parse(Path::new("fuzz.toml"), source.to_owned()) {
        for d in &diagnostics {
            assert!(
                d.line >= 1 && d.column >= 1 && d.line <= lines + 1,
                "diagnostic out of range (lines = {lines}): {d:?}"
            );
        }
    }
});
