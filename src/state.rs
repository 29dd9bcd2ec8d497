//! The state directory: what outlives a run on this machine (run journals, the audit log,
//! locks, rotation state, object-copy journals).

use std::path::PathBuf;

/// The directory for state that outlives a run: `$OPSBOOK_STATE_DIR`, `$XDG_STATE_HOME/opsbook`,
/// or `~/.local/state/opsbook`.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OPSBOOK_STATE_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("opsbook");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".local/state/opsbook")
}
