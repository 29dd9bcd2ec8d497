//! Download (size + SHA-256 against the manifest), decrypt, decompress and `pg_restore`.
//!
//! With one job the decoded archive streams straight into `pg_restore` (no disk, download and
//! restore overlap). With more, it is spooled to a local file first, because parallel restore
//! needs a seekable archive; the checksum is then known before anything is restored.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use super::DrillError;
use crate::backup::codec::{self, ChannelReader};
use crate::backup::manifest::StoredObject;
use crate::pg::DbUrl;
use crate::report::Reporter;
use crate::store::Store;

/// How a phase went: passed, with a detail, or failed with the reason.
#[derive(Debug, Clone)]
pub struct Phase {
    pub ok: bool,
    pub seconds: f64,
    pub detail: String,
}

/// The download (with checksum) and the restore, reported separately.
#[derive(Debug, Clone)]
pub struct Restored {
    pub download: Phase,
    /// Skipped (reported as not ok, with the reason) when the download step failed.
    pub restore: Phase,
    pub mode: String,
    pub raw_bytes: u64,
}

pub struct RestoreJob<'a> {
    pub store: &'a Store,
    pub object: &'a StoredObject,
    pub pg_restore: PathBuf,
    pub target: &'a DbUrl,
    pub jobs: usize,
    pub spool_dir: PathBuf,
    pub drill_id: &'a str,
    pub identities: &'a [age::x25519::Identity],
    /// Restore owners and privileges (only when the roles exist, i.e. globals were restored).
    pub keep_owners: bool,
    /// The command pg_restore's connection names as its application (`restore-drill`, `restore`).
    pub application: &'a str,
}

fn io_err(op: &str) -> impl FnOnce(io::Error) -> DrillError + '_ {
    move |source| DrillError::Io { op: op.to_string(), source }
}

fn pg_restore_command(job: &RestoreJob<'_>) -> tokio::process::Command {
    let mut cmd = job.target.libpq_command(&job.pg_restore, job.application);
    cmd.arg("--exit-on-error");
    if !job.keep_owners {
        cmd.args(["--no-owner", "--no-privileges"]);
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    cmd
}

/// Reads the object, hashing every byte and feeding the decoder; returns (bytes, sha256).
async fn pump(
    mut stream: Box<dyn AsyncRead + Send + Unpin>,
    tx: mpsc::Sender<io::Result<Bytes>>,
    key: &str,
    reporter: &dyn Reporter,
) -> Result<(u64, String), DrillError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let mut decoder_gone = false;
    loop {
        let n =
            stream.read(&mut buf).await.map_err(|source| DrillError::Io { op: format!("reading {key}"), source })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
        reporter.advance(n as u64);
        if !decoder_gone && tx.send(Ok(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
            decoder_gone = true;
        }
    }
    Ok((total, hex::encode(hasher.finalize())))
}

/// Bytes read that are not the object the manifest describes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SumMismatch {
    #[error("size mismatch: read {read} bytes, manifest says {expected}")]
    Size { read: u64, expected: u64 },
    #[error("checksum mismatch: the stored bytes hash to {actual}, manifest says {expected}")]
    Sha256 { actual: String, expected: String },
}

/// Why the globals were not applied: a failed step of the drill, not an error.
#[derive(Debug, thiserror::Error)]
pub enum GlobalsFailure {
    #[error("globals: {mismatch}")]
    Sums { mismatch: SumMismatch },
    #[error("globals: cannot decode: {error}")]
    Decode { error: io::Error },
    /// psql's ERROR lines (other than about roles that already exist).
    #[error("globals: {}", errors.join(" | "))]
    Psql { errors: Vec<String> },
}

/// The size and checksum for the download step's detail, or how they differ from the manifest's.
fn check_sums(object: &StoredObject, size: u64, sha256: &str) -> Result<String, SumMismatch> {
    if size != object.size {
        return Err(SumMismatch::Size { read: size, expected: object.size });
    }
    if sha256 != object.sha256 {
        return Err(SumMismatch::Sha256 { actual: sha256.to_string(), expected: object.sha256.clone() });
    }
    Ok(format!("{size} bytes, sha256 {}…", &sha256[..12]))
}

/// Why nothing restored counts once the download step failed: the checksum, or else decoding.
fn not_restored(sums: &Result<String, SumMismatch>) -> String {
    match sums {
        Err(_) => "not trusted: the archive failed its checksum".into(),
        Ok(_) => "not restored: the archive could not be decoded (see the download step)".into(),
    }
}

fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

pub async fn run(job: &RestoreJob<'_>, reporter: &dyn Reporter) -> Result<Restored, DrillError> {
    if job.jobs > 1 {
        spooled(job, reporter).await
    } else {
        streamed(job, reporter).await
    }
}

async fn streamed(job: &RestoreJob<'_>, reporter: &dyn Reporter) -> Result<Restored, DrillError> {
    let start = Instant::now();
    let mut child = pg_restore_command(job).stdin(Stdio::piped()).spawn().map_err(io_err("start pg_restore"))?;
    let stdin: OwnedFd =
        child.stdin.take().expect("piped stdin").into_owned_fd().map_err(io_err("take pg_restore's stdin"))?;
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    let identities = job.identities.to_vec();
    let decoder = tokio::task::spawn_blocking(move || {
        let out = std::fs::File::from(stdin);
        codec::decode(ChannelReader::new(rx), &identities, io::BufWriter::with_capacity(1 << 20, out))
    });
    reporter.phase("download + restore", Some(job.object.size));
    let stream = job.store.get_stream(&job.object.key).await?;
    let pumped = pump(stream, tx, &job.object.key, reporter).await;
    let download_seconds = start.elapsed().as_secs_f64();
    let decoded = decoder.await.map_err(|e| DrillError::Io { op: "decode".into(), source: io::Error::other(e) })?;
    let output = child.wait_with_output().await.map_err(io_err("wait for pg_restore"))?;
    reporter.finish();
    let (size, sha) = pumped?;
    let sums = check_sums(job.object, size, &sha);
    let raw_bytes = *decoded.as_ref().unwrap_or(&0);
    let download = match (&sums, &decoded) {
        (Err(e), _) => Phase { ok: false, seconds: download_seconds, detail: e.to_string() },
        // A broken pipe is pg_restore having stopped reading (its failure is the restore's);
        // any other decoder error (wrong age identity, corrupt zstd) is the archive's, and
        // pg_restore's "input file is too short" only follows from it.
        (Ok(_), Err(e)) if output.status.success() || e.kind() != io::ErrorKind::BrokenPipe => {
            Phase { ok: false, seconds: download_seconds, detail: format!("cannot decode: {e}") }
        }
        (Ok(s), _) => Phase {
            ok: true,
            seconds: download_seconds,
            detail: format!("{s}; streamed, so read at pg_restore's pace (the restore step includes it)"),
        },
    };
    let restore = if !download.ok {
        Phase { ok: false, seconds: start.elapsed().as_secs_f64(), detail: not_restored(&sums) }
    } else if !output.status.success() {
        Phase {
            ok: false,
            seconds: start.elapsed().as_secs_f64(),
            detail: format!("pg_restore failed ({}): {}", output.status, tail(&output.stderr)),
        }
    } else {
        Phase { ok: true, seconds: start.elapsed().as_secs_f64(), detail: format!("{raw_bytes} bytes restored") }
    };
    Ok(Restored { download, restore, mode: "stream".into(), raw_bytes })
}

/// Removes the spool file however the drill ends.
struct SpoolFile(PathBuf);

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Creates the spool file readable by its owner only: it holds the decrypted database.
fn create_spool_file(path: &Path) -> Result<std::fs::File, DrillError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| DrillError::Io { op: format!("create {}", path.display()), source })
}

async fn spooled(job: &RestoreJob<'_>, reporter: &dyn Reporter) -> Result<Restored, DrillError> {
    let start = Instant::now();
    std::fs::create_dir_all(&job.spool_dir).map_err(io_err("create the spool directory"))?;
    let spool = SpoolFile(job.spool_dir.join(format!("opsbook-drill-{}.dump", job.drill_id)));
    let file = create_spool_file(&spool.0)?;
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    let identities = job.identities.to_vec();
    let decoder = tokio::task::spawn_blocking(move || {
        codec::decode(ChannelReader::new(rx), &identities, io::BufWriter::with_capacity(1 << 20, file))
    });
    reporter.phase("download", Some(job.object.size));
    let stream = job.store.get_stream(&job.object.key).await?;
    let pumped = pump(stream, tx, &job.object.key, reporter).await;
    let decoded = decoder.await.map_err(|e| DrillError::Io { op: "decode".into(), source: io::Error::other(e) })?;
    reporter.finish();
    let (size, sha) = pumped?;
    let seconds = start.elapsed().as_secs_f64();
    let sums = check_sums(job.object, size, &sha);
    let download = match (&sums, &decoded) {
        (Err(e), _) => Phase { ok: false, seconds, detail: e.to_string() },
        (Ok(_), Err(e)) => Phase { ok: false, seconds, detail: format!("cannot decode: {e}") },
        (Ok(s), Ok(raw)) => Phase { ok: true, seconds, detail: format!("{s}; {raw} bytes spooled") },
    };
    let raw_bytes = *decoded.as_ref().unwrap_or(&0);
    let mode = format!("spool -j {}", job.jobs);
    if !download.ok {
        let restore = Phase { ok: false, seconds: 0.0, detail: not_restored(&sums) };
        return Ok(Restored { download, restore, mode, raw_bytes: 0 });
    }
    reporter.phase("restore", None);
    let restore_start = Instant::now();
    let output = pg_restore_command(job)
        .arg("--jobs")
        .arg(job.jobs.to_string())
        .arg(&spool.0)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(io_err("run pg_restore"))?;
    reporter.finish();
    let seconds = restore_start.elapsed().as_secs_f64();
    let restore = if output.status.success() {
        Phase { ok: true, seconds, detail: format!("{raw_bytes} bytes restored with {} jobs", job.jobs) }
    } else {
        Phase { ok: false, seconds, detail: format!("pg_restore failed ({}): {}", output.status, tail(&output.stderr)) }
    };
    Ok(Restored { download, restore, mode, raw_bytes })
}

/// Restores the globals object (roles, tablespaces) with psql; errors about roles that already
/// exist are expected on a fresh cluster (the bootstrap superuser) and do not fail the drill.
pub async fn restore_globals(
    store: &Store,
    object: &StoredObject,
    psql: &Path,
    target: &DbUrl,
    identities: &[age::x25519::Identity],
) -> Result<Result<String, GlobalsFailure>, DrillError> {
    let stored = store.get_bytes(&object.key).await?;
    let sha = hex::encode(Sha256::digest(&stored));
    if let Err(mismatch) = check_sums(object, stored.len() as u64, &sha) {
        return Ok(Err(GlobalsFailure::Sums { mismatch }));
    }
    let mut script = Vec::new();
    if let Err(error) = codec::decode(&stored[..], identities, &mut script) {
        return Ok(Err(GlobalsFailure::Decode { error }));
    }
    let mut child = target
        .libpq_command(psql, "restore-drill")
        .args(["--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io_err("start psql"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    tokio::io::AsyncWriteExt::write_all(&mut stdin, &script).await.map_err(io_err("feed psql"))?;
    drop(stdin);
    let output = child.wait_with_output().await.map_err(io_err("wait for psql"))?;
    let errors: Vec<String> = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.contains("ERROR") && !l.contains("already exists"))
        .map(str::to_string)
        .collect();
    if errors.is_empty() {
        Ok(Ok(format!("{} bytes of globals applied", script.len())))
    } else {
        Ok(Err(GlobalsFailure::Psql { errors }))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_spool_file_is_readable_by_its_owner_only() {
        // The usual umask: without an explicit mode the file would be 0644, world-readable.
        // SAFETY: umask only swaps the process's file-mode mask; it cannot fail.
        #[allow(unsafe_code)]
        unsafe {
            libc::umask(0o022)
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opsbook-drill-x.dump");
        let file = super::create_spool_file(&path).unwrap();
        drop(file);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
        assert!(super::create_spool_file(&path).is_err(), "never reuses a file someone else created");
    }
}
