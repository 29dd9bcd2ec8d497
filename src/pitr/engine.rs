//! Runs pgBackRest: found on PATH, always with the stanza's configuration file, and as the OS
//! user that owns the data directory (pgBackRest must read the cluster's files and write the
//! repository as the same user that runs `archive_command`). Secrets live in the configuration
//! file (0600), never in pgBackRest's arguments.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::{Pitr, PitrError};
use crate::error::ErrorClass;

/// The OS user pgBackRest runs as when it is not us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    pub home: PathBuf,
}

/// A pgBackRest installation bound to one stanza and its configuration file.
#[derive(Debug, Clone)]
pub struct Engine {
    pub bin: PathBuf,
    pub conf: PathBuf,
    pub stanza: String,
    /// Who runs pgBackRest, when that is not the current user (we are root).
    pub owner: Option<Owner>,
}

/// `pgbackrest` on PATH.
pub fn find_binary() -> Result<PathBuf, PitrError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join("pgbackrest")).find(|p| p.is_file()).ok_or(PitrError::NotInstalled)
}

/// The user pgBackRest must run as: the owner of the data directory. Root runs it as that user;
/// anyone else must be that user.
pub fn owner_of(pg_path: &Path) -> Result<Option<Owner>, PitrError> {
    let meta = std::fs::metadata(pg_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => PitrError::setting(
            "pg_path",
            format!(
                "{} does not exist: give the cluster's data directory (SHOW data_directory), on the host where \
                 PostgreSQL runs",
                pg_path.display()
            ),
        ),
        _ => PitrError::io("inspect", pg_path, e),
    })?;
    let me = nix::unistd::geteuid();
    if meta.uid() == me.as_raw() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid())).ok().flatten().ok_or_else(|| {
        PitrError::setting(
            "pg_path",
            format!("{} is owned by uid {}, which has no user", pg_path.display(), meta.uid()),
        )
    })?;
    if !me.is_root() {
        return Err(PitrError::setting(
            "pg_path",
            format!(
                "{} belongs to {}: pgBackRest must run as the data directory's owner; run opsbook as {} \
                 (sudo -u {} opsbook ...) or as root",
                pg_path.display(),
                user.name,
                user.name,
                user.name
            ),
        ));
    }
    Ok(Some(Owner { uid: user.uid.as_raw(), gid: user.gid.as_raw(), name: user.name, home: user.dir }))
}

impl Engine {
    pub fn new(p: &Pitr) -> Result<Engine, PitrError> {
        Ok(Engine { bin: find_binary()?, conf: p.conf_path(), stanza: p.stanza.clone(), owner: owner_of(&p.pg_path)? })
    }

    /// The `archive_command` PostgreSQL runs for each finished WAL segment.
    pub fn archive_command(&self) -> String {
        format!("{} --config={} --stanza={} archive-push %p", self.bin.display(), self.conf.display(), self.stanza)
    }

    /// A `pgbackrest` command line for `command` with the stanza's configuration and `args`.
    pub fn command(&self, command: &str, args: &[String]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bin);
        if !args.iter().any(|a| a.starts_with("--log-level-console")) {
            cmd.arg("--log-level-console=off");
        }
        cmd.arg(format!("--config={}", self.conf.display()))
            .arg(format!("--stanza={}", self.stanza))
            .arg("--log-level-stderr=warn")
            .args(args)
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(o) = &self.owner {
            cmd.uid(o.uid).gid(o.gid).env("HOME", &o.home).env("USER", &o.name).env("LOGNAME", &o.name);
            cmd.current_dir("/");
        }
        cmd
    }

    /// Runs `pgbackrest command args…` and returns its stdout; a failure carries the tail of
    /// what it printed, classified (3 when the database or repository could not be reached).
    pub async fn run(&self, command: &str, args: &[String]) -> Result<String, PitrError> {
        tracing::debug!(command, ?args, stanza = %self.stanza, "running pgbackrest");
        let out = self.command(command, args).output().await.map_err(|e| PitrError::io("run", &self.bin, e))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let text = if stderr.trim().is_empty() { stdout } else { stderr };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut detail = lines[lines.len().saturating_sub(6)..].join("\n");
        if detail.is_empty() {
            detail = format!("exited with {}", out.status);
        }
        Err(PitrError::Engine {
            command: command.to_string(),
            stanza: self.stanza.clone(),
            class: classify(&detail),
            detail: crate::redact::redact(&detail).into_owned(),
        })
    }
}

/// What pgBackRest prints when the database or the repository could not be reached.
fn classify(detail: &str) -> ErrorClass {
    const UNREACHABLE: [&str; 5] = [
        "unable to connect",
        "unable to find primary cluster",
        "unable to get address",
        "Connection refused",
        "timeout after",
    ];
    if UNREACHABLE.iter().any(|m| detail.contains(m)) {
        ErrorClass::Unavailable
    } else {
        ErrorClass::Failed
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn connection_failures_are_unavailable() {
        assert_eq!(
            super::classify("ERROR: [056]: unable to find primary cluster - cannot proceed"),
            crate::error::ErrorClass::Unavailable
        );
        assert_eq!(super::classify("ERROR: [082]: WAL segment was not archived"), crate::error::ErrorClass::Failed);
    }
}
