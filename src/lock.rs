//! One run at a time (per backup set, per runbook) on this machine: an exclusive lock on a file in the state
//! directory. The kernel drops the lock when the holder dies, so a crashed run never blocks the
//! next one; the file names the holder so a refused run can say who it is.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Who holds a lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub since: chrono::DateTime<chrono::Utc>,
    pub what: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (pid {} on {}, since {})",
            self.what,
            self.pid,
            self.host,
            self.since.format("%Y-%m-%d %H:%M:%SZ")
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{resource} is locked by {holder}; wait for it to finish")]
    Busy { resource: String, holder: String },
    #[error("cannot use lock file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl crate::error::Classify for LockError {
    fn class(&self) -> crate::error::ErrorClass {
        match self {
            LockError::Busy { .. } => crate::error::ErrorClass::Busy,
            LockError::Io { .. } => crate::error::ErrorClass::Failed,
        }
    }
}

/// Held while the value lives.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
    path: PathBuf,
}

impl LockGuard {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

pub fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "unknown-host".into())
}

/// Takes the lock for `resource` (e.g. "backup set shop at s3://b/p") without waiting.
pub fn try_lock(kind: &str, resource: &str, what: &str) -> Result<LockGuard, LockError> {
    let digest = hex::encode(&Sha256::digest(resource.as_bytes())[..8]);
    let dir = crate::state::state_dir().join("locks");
    let path = dir.join(format!("{kind}-{digest}.lock"));
    let io = |source| LockError::Io { path: path.clone(), source };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = serde_json::from_str::<Holder>(&text)
                .map(|h| h.to_string())
                .unwrap_or_else(|_| "another opsbook process".into());
            return Err(LockError::Busy { resource: resource.into(), holder });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    let holder = Holder { pid: std::process::id(), host: hostname(), since: chrono::Utc::now(), what: what.into() };
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    file.write_all(&serde_json::to_vec(&holder).expect("holder serializes")).map_err(io)?;
    Ok(LockGuard { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_busy_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("OPSBOOK_STATE_DIR", dir.path());
        let first = try_lock("test", "set shop", "backup run shop").unwrap();
        // A second open file description of the same file conflicts, as another process would.
        match try_lock("test", "set shop", "backup run shop") {
            Err(LockError::Busy { holder, .. }) => assert!(holder.contains("backup run shop"), "{holder}"),
            other => panic!("expected busy, got {other:?}"),
        }
        drop(first);
        try_lock("test", "set shop", "again").unwrap();
    }
}
