//! `backup verify`: every object present with the manifest's size and SHA-256; `--deep` also
//! decrypts, decompresses and reads the archive's table of contents with `pg_restore --list`.

use std::io::{self, Write};
use std::process::Stdio;

use bytes::Bytes;
use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::catalog::{self, BackupEntry};
use super::codec::{self, ChannelReader};
use super::manifest::{ObjectRole, StoredObject, VerifyCheck, VerifyRecord};
use super::BackupError;
use crate::report::Reporter;
use crate::store::Store;

pub struct VerifyOptions {
    pub deep: bool,
    /// age identities, needed by `--deep` for encrypted backups.
    pub identities: Vec<age::x25519::Identity>,
}

/// Verifies one backup, stores the record beside its manifest and returns it.
pub async fn verify(
    store: &Store,
    entry: &BackupEntry,
    opts: &VerifyOptions,
    reporter: &dyn Reporter,
) -> Result<VerifyRecord, BackupError> {
    let manifest = &entry.manifest;
    if opts.deep && manifest.encryption.is_some() && opts.identities.is_empty() {
        return Err(BackupError::DeepNeedsIdentity { id: entry.id.clone() });
    }
    let tools = if opts.deep {
        let major = manifest.pg_dump_version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
        Some(crate::pg::discover(major)?)
    } else {
        None
    };
    let mut checks = Vec::new();
    for object in &manifest.objects {
        reporter.phase(&format!("verify {}", role_name(object.role)), Some(object.size));
        let result = check_object(store, object, opts, tools.as_ref(), reporter, &mut checks).await;
        reporter.finish();
        if let Err(e) = result {
            if matches!(&e, BackupError::Store(s) if s.is_not_found()) {
                checks.push(fail(object, "present", e.to_string()));
                continue;
            }
            return Err(e);
        }
    }
    let record = VerifyRecord {
        tool: super::run::tool_name(),
        backup_id: entry.id.clone(),
        time: Utc::now(),
        deep: opts.deep,
        ok: checks.iter().all(|c| c.ok),
        checks,
    };
    catalog::put_record(store, &entry.dir, "verify", record.time, &record).await?;
    Ok(record)
}

fn role_name(role: ObjectRole) -> &'static str {
    match role {
        ObjectRole::Data => "data",
        ObjectRole::Globals => "globals",
    }
}

fn pass(object: &StoredObject, check: &str, detail: String) -> VerifyCheck {
    VerifyCheck { object: object.key.clone(), check: check.into(), ok: true, detail }
}

fn fail(object: &StoredObject, check: &str, detail: String) -> VerifyCheck {
    VerifyCheck { object: object.key.clone(), check: check.into(), ok: false, detail }
}

async fn check_object(
    store: &Store,
    object: &StoredObject,
    opts: &VerifyOptions,
    tools: Option<&crate::pg::PgTools>,
    reporter: &dyn Reporter,
    checks: &mut Vec<VerifyCheck>,
) -> Result<(), BackupError> {
    let Some(meta) = store.head(&object.key).await? else {
        checks.push(fail(object, "present", "object is missing".into()));
        return Ok(());
    };
    if meta.size != object.size {
        checks.push(fail(object, "size", format!("stored {} bytes, manifest says {}", meta.size, object.size)));
        return Ok(());
    }
    checks.push(pass(object, "size", format!("{} bytes", meta.size)));

    // One download: hash every byte, and with --deep feed the same bytes to the decoder.
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    let decoder = opts.deep.then(|| {
        let identities = opts.identities.clone();
        let role = object.role;
        let pg_restore = tools.map(|t| t.pg_restore());
        tokio::task::spawn_blocking(move || deep_check(ChannelReader::new(rx), &identities, role, pg_restore))
    });
    let mut stream = store.get_stream(&object.key).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut decoder_gone = false;
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|source| BackupError::Io { op: format!("reading {}", object.key), source })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        reporter.advance(n as u64);
        if decoder.is_some() && !decoder_gone && tx.send(Ok(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
            decoder_gone = true;
        }
    }
    drop(tx);
    let sha256 = hex::encode(hasher.finalize());
    let intact = sha256 == object.sha256;
    if intact {
        checks.push(pass(object, "sha256", sha256));
    } else {
        checks.push(fail(object, "sha256", format!("stored bytes hash to {sha256}, manifest says {}", object.sha256)));
    }
    if let Some(decoder) = decoder {
        let outcome = decoder
            .await
            .map_err(|e| BackupError::Io { op: "deep verification".into(), source: io::Error::other(e) })?;
        match outcome {
            Ok(detail) => checks.push(pass(object, "decode", detail)),
            // Intact bytes that the given key cannot open: the key is wrong, not the backup, so
            // nothing is recorded against it.
            Err(DeepFailure::WrongIdentity) if intact => {
                return Err(BackupError::WrongIdentity { key: object.key.clone() })
            }
            Err(DeepFailure::WrongIdentity) => checks.push(fail(
                object,
                "decode",
                "cannot decrypt: no identity matches (the bytes are damaged)".into(),
            )),
            Err(DeepFailure::Failed(detail)) => checks.push(fail(object, "decode", detail)),
        }
    }
    Ok(())
}

/// Why a deep check did not pass.
enum DeepFailure {
    /// The identities match none of the object's recipients.
    WrongIdentity,
    /// Anything else, described.
    Failed(String),
}

impl From<String> for DeepFailure {
    fn from(detail: String) -> Self {
        DeepFailure::Failed(detail)
    }
}

fn decode_failure(e: io::Error) -> DeepFailure {
    if codec::is_no_matching_identity(&e) {
        DeepFailure::WrongIdentity
    } else {
        DeepFailure::Failed(format!("cannot decode: {e}"))
    }
}

/// Decrypts and decompresses the whole object; for the data archive, `pg_restore --list` reads
/// its table of contents from the same stream. Returns a one-line summary or the failure.
fn deep_check(
    input: ChannelReader,
    identities: &[age::x25519::Identity],
    role: ObjectRole,
    pg_restore: Option<std::path::PathBuf>,
) -> Result<String, DeepFailure> {
    match (role, pg_restore) {
        (ObjectRole::Data, Some(pg_restore)) => {
            let mut child = std::process::Command::new(&pg_restore)
                .arg("--list")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", pg_restore.display()))?;
            let stdin = child.stdin.take().expect("piped stdin");
            let stdout = child.stdout.take().expect("piped stdout");
            let listing = std::thread::spawn(move || io::read_to_string(stdout).unwrap_or_default());
            let raw = codec::decode(input, identities, TocFeed { stdin: Some(stdin) }).map_err(decode_failure)?;
            let output = child.wait_with_output().map_err(|e| format!("pg_restore: {e}"))?;
            let listing = listing.join().unwrap_or_default();
            if !output.status.success() {
                return Err(DeepFailure::Failed(format!(
                    "pg_restore --list failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
            let entries = listing.lines().filter(|l| !l.trim().is_empty() && !l.starts_with(';')).count();
            let tables = listing.lines().filter(|l| l.contains(" TABLE DATA ")).count();
            Ok(format!("{raw} bytes decoded; archive lists {entries} entries, {tables} with table data"))
        }
        _ => {
            let raw = codec::decode(input, identities, io::sink()).map_err(decode_failure)?;
            Ok(format!("{raw} bytes decoded"))
        }
    }
}

/// Feeds `pg_restore --list`, which stops reading once it has the table of contents; the rest of
/// the archive is still decoded (so every byte is checked) and discarded.
struct TocFeed {
    stdin: Option<std::process::ChildStdin>,
}

impl Write for TocFeed {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Some(stdin) = &mut self.stdin {
            if let Err(e) = stdin.write_all(data) {
                if e.kind() != io::ErrorKind::BrokenPipe {
                    return Err(e);
                }
                self.stdin = None;
            }
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
