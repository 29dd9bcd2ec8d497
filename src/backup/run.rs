//! `backup run`: dump a database inside an exported snapshot, stream it through zstd (and age)
//! into the store in equal-size parts, count rows in the same snapshot, write the manifest last.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use sqlx::{Connection, Executor, PgConnection};
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::mpsc;

use super::codec::{self, Codec, Encoded, PartSink};
use super::layout::{self, BackupId};
use super::manifest::{self, Manifest, ObjectRole, RowCountMethod, RowCounts, StoredObject};
use super::BackupError;
use crate::pg::{self, DbUrl, PgTools};
use crate::report::Reporter;
use crate::store::{Store, StoreError, Upload, UploadConfig};

/// How `pg_dumpall --globals-only` is included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Globals {
    Off,
    /// Roles, tablespaces and settings without role passwords (works without superuser).
    WithoutPasswords,
    WithPasswords,
}

/// What `backup run` was asked to do, fully resolved.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    pub set: String,
    pub database_url: DbUrl,
    pub codec: Codec,
    /// age recipients (`age1…`); empty for no encryption.
    pub recipients: Vec<String>,
    pub globals: Globals,
    pub row_counts: Option<RowCountMethod>,
    /// Multipart part size in bytes; `None` picks one from the database size.
    pub part_size: Option<usize>,
    /// Parts uploaded at once.
    pub in_flight: usize,
}

/// The smallest automatic part size: small enough to keep memory flat, large enough for S3.
pub const MIN_AUTO_PART_SIZE: usize = 8 << 20;

/// S3 and R2 allow 10,000 parts per upload. The compressed dump is rarely larger than the
/// database, so sizing parts for the database with room to spare keeps huge databases under the
/// limit while small ones keep small parts.
pub fn auto_part_size(database_bytes: u64) -> usize {
    const TARGET_PARTS: u64 = 8_000;
    const MIB: u64 = 1 << 20;
    let wanted = database_bytes.div_ceil(TARGET_PARTS).div_ceil(MIB) * MIB;
    (wanted as usize).max(MIN_AUTO_PART_SIZE)
}

/// The server a backup reads, as the manifest records it, with the client tools that match it.
struct Server {
    conn: PgConnection,
    server_version: String,
    tools: PgTools,
    database: String,
    /// The request's part size, or one sized for the database.
    part_size: usize,
}

async fn inspect(req: &BackupRequest) -> Result<Server, BackupError> {
    let mut conn = pg::connect(&req.database_url).await?;
    let server_major = pg::server_major(&mut conn).await?;
    let server_version: String = query_one(&mut conn, "SHOW server_version").await?;
    let tools = pg::discover(server_major)?;
    let database: String = query_one(&mut conn, "SELECT current_database()").await?;
    let part_size = match req.part_size {
        Some(size) => size,
        None => {
            let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                .fetch_one(&mut conn)
                .await
                .map_err(query_err("pg_database_size"))?;
            auto_part_size(bytes.max(0) as u64)
        }
    };
    Ok(Server { conn, server_version, tools, database, part_size })
}

/// Runs one backup and returns its manifest once the manifest is stored (the backup exists).
// Long by design: the snapshot's connection and the keys written span dump, manifest and a failed backup's cleanup.
pub async fn run(store: &Store, req: &BackupRequest, reporter: &dyn Reporter) -> Result<Manifest, BackupError> {
    let recipients = codec::parse_recipients(&req.recipients).map_err(BackupError::EncryptTo)?;
    let started = Utc::now();
    let id = BackupId::new(started);
    let dir = layout::backup_dir(&req.set, &id);

    let Server { mut conn, server_version, tools, database, part_size } = inspect(req).await?;
    let pg_dump_version = tools.version.clone();
    let encoding = Encoding {
        codec: req.codec,
        upload: UploadConfig { part_size, in_flight: req.in_flight },
        recipients: &recipients,
    };

    // The snapshot the dump and the row counts share: both describe the same instant.
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(query_err("BEGIN"))?;
    let (snapshot, snapshot_time): (String, DateTime<Utc>) = sqlx::query_as("SELECT pg_export_snapshot(), now()")
        .fetch_one(&mut conn)
        .await
        .map_err(query_err("pg_export_snapshot()"))?;

    let suffix = if recipients.is_empty() { "" } else { ".age" };
    let data_key = format!("{dir}data.pgdump.zst{suffix}");
    let dump_cmd = pg_dump_command(&tools, &req.database_url, &snapshot);
    reporter.phase("dump", None);
    let dump = dump_object(store, &data_key, dump_cmd, "pg_dump", &encoding, reporter);
    let counts = count_rows(&mut conn, req.row_counts);
    let (dump, counts) = tokio::join!(dump, counts);
    reporter.finish();
    let mut written = Vec::new();
    let result = async {
        let data = dump?;
        written.push(data_key.clone());
        let row_counts = counts?;
        let migration_head = migration_head(&mut conn).await;
        let _ = conn.execute("COMMIT").await;
        let _ = conn.close().await;

        let mut objects = vec![stored(ObjectRole::Data, &data_key, &data)];
        if req.globals != Globals::Off {
            let key = format!("{dir}globals.sql.zst{suffix}");
            reporter.phase("globals", None);
            let cmd = pg_dumpall_command(&tools, &req.database_url, req.globals);
            let globals = dump_object(store, &key, cmd, "pg_dumpall", &encoding, reporter).await;
            reporter.finish();
            written.push(key.clone());
            objects.push(stored(ObjectRole::Globals, &key, &globals?));
        }
        let manifest = Manifest {
            format_version: manifest::FORMAT_VERSION,
            tool: tool_name(),
            id: id.to_string(),
            set: req.set.clone(),
            snapshot_time,
            started,
            finished: Utc::now(),
            database,
            server_version,
            pg_dump_version,
            compression: manifest::Compression { algorithm: "zstd".into(), level: req.codec.level },
            encryption: (!req.recipients.is_empty())
                .then(|| manifest::Encryption { scheme: "age".into(), recipients: req.recipients.clone() }),
            part_size: part_size as u64,
            objects,
            row_counts,
            migration_head,
        };
        if crate::signal::is_interrupted() {
            return Err(BackupError::Interrupted);
        }
        // Written last: from this moment on the backup exists.
        store.put_bytes(&layout::manifest_key(&req.set, &id), Bytes::from(manifest.to_json())).await?;
        Ok(manifest)
    }
    .await;
    if result.is_err() {
        // No manifest was written, so these objects are not a backup; remove them now rather
        // than leaving them for prune's orphan sweep.
        for key in &written {
            if let Err(e) = store.delete(key).await {
                tracing::warn!("could not remove {key} after a failed backup: {e}");
            }
        }
    }
    result
}

pub fn tool_name() -> String {
    format!("opsbook {}", env!("CARGO_PKG_VERSION"))
}

fn stored(role: ObjectRole, key: &str, e: &Encoded) -> StoredObject {
    StoredObject { role, key: key.to_string(), size: e.size, sha256: e.sha256.clone(), raw_size: e.raw_size }
}

fn query_err(op: &'static str) -> impl Fn(sqlx::Error) -> BackupError {
    move |error| BackupError::Query { op: op.to_string(), error }
}

async fn query_one(conn: &mut PgConnection, sql: &'static str) -> Result<String, BackupError> {
    sqlx::query_scalar(sql).fetch_one(conn).await.map_err(query_err(sql))
}

fn pg_dump_command(tools: &PgTools, url: &DbUrl, snapshot: &str) -> Command {
    let mut cmd = url.libpq_command(tools.pg_dump(), "backup");
    cmd.args(["--format=custom", "--compress=0"]).arg(format!("--snapshot={snapshot}"));
    cmd
}

fn pg_dumpall_command(tools: &PgTools, url: &DbUrl, globals: Globals) -> Command {
    let mut cmd = url.libpq_command(tools.pg_dumpall(), "backup");
    cmd.arg("--globals-only");
    if globals == Globals::WithoutPasswords {
        cmd.arg("--no-role-passwords");
    }
    cmd
}

/// How a dump's bytes are encoded and uploaded.
#[derive(Clone, Copy)]
struct Encoding<'a> {
    codec: Codec,
    upload: UploadConfig,
    recipients: &'a [age::x25519::Recipient],
}

/// Why a dump that ran to the end is not a backup: interrupted, the tool failed, encoding
/// failed, or the tool wrote nothing.
fn dump_failure(
    tool: &str,
    status: std::process::ExitStatus,
    stderr: &str,
    produced: &io::Result<Encoded>,
) -> Option<BackupError> {
    if crate::signal::is_interrupted() {
        Some(BackupError::Interrupted)
    } else if !status.success() {
        Some(BackupError::Dump { tool: tool.into(), status: status.to_string(), stderr: stderr.trim().to_string() })
    } else {
        match produced {
            Err(e) => Some(BackupError::Io {
                op: format!("compressing {tool} output"),
                source: io::Error::new(e.kind(), e.to_string()),
            }),
            Ok(enc) if enc.raw_size == 0 => Some(BackupError::EmptyDump { tool: tool.into() }),
            Ok(_) => None,
        }
    }
}

/// Runs a dump tool and streams its stdout through the codec into one stored object. Any
/// failure — tool error, empty output, upload error, interrupt — aborts the upload.
// Long by design: one pipeline (tool → encoder → uploader) whose tasks are started, watched and joined together.
async fn dump_object(
    store: &Store,
    key: &str,
    mut cmd: Command,
    tool: &str,
    encoding: &Encoding<'_>,
    reporter: &dyn Reporter,
) -> Result<Encoded, BackupError> {
    let Encoding { codec, upload: upload_cfg, recipients } = *encoding;
    let upload = store.begin_upload(key, upload_cfg).await?;
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(source) => {
            let _ = upload.abort().await;
            return Err(BackupError::Spawn { tool: tool.into(), source });
        }
    };
    let stdout: OwnedFd = child
        .stdout
        .take()
        .expect("piped stdout")
        .into_owned_fd()
        .map_err(|source| BackupError::Io { op: format!("reading {tool} output"), source })?;
    let stderr = child.stderr.take().expect("piped stderr");
    let stderr_tail = tokio::spawn(read_tail(stderr));

    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let uploader = tokio::spawn(upload_parts(upload, rx));
    let counter = Arc::new(AtomicU64::new(0));
    let (codec, part_size, recipients, seen) = (codec, upload_cfg.part_size, recipients.to_vec(), counter.clone());
    let mut producer = tokio::task::spawn_blocking(move || {
        let input = BatchedPipe::new(stdout);
        codec::encode(input, codec, &recipients, PartSink::new(tx, part_size), &|n| {
            seen.fetch_add(n, Ordering::Relaxed);
        })
    });

    let mut reported = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut killed = false;
    let produced = loop {
        tokio::select! {
            r = &mut producer => break r,
            _ = tick.tick() => {
                let now = counter.load(Ordering::Relaxed);
                reporter.advance(now - reported);
                reported = now;
            }
            _ = crate::signal::interrupted(), if !killed => {
                let _ = child.start_kill();
                killed = true;
            }
        }
    };
    let produced =
        produced.map_err(|e| BackupError::Io { op: format!("encoding {tool} output"), source: io::Error::other(e) })?;
    if produced.is_err() {
        // The tool may still be writing into a pipe nobody reads.
        let _ = child.start_kill();
    }
    let uploaded =
        uploader.await.map_err(|e| BackupError::Io { op: "uploading".into(), source: io::Error::other(e) })?;
    let status = child.wait().await.map_err(|source| BackupError::Io { op: format!("waiting for {tool}"), source })?;
    let stderr = stderr_tail.await.unwrap_or_default();

    let upload = match uploaded {
        Ok(upload) => upload,
        Err(e) => return Err(e),
    };
    if let Some(err) = dump_failure(tool, status, &stderr, &produced) {
        if let Err(e) = upload.abort().await {
            tracing::warn!("could not abort the upload of {key}: {e}");
        }
        return Err(err);
    }
    let encoded = produced.expect("checked above");
    let size = upload.complete().await?;
    debug_assert_eq!(size, encoded.size);
    if !stderr.trim().is_empty() {
        tracing::info!("{tool}: {}", stderr.trim());
    }
    Ok(encoded)
}

/// Reads a child's stdout pipe in batches.
///
/// pg_dump writes its archive in page-sized pieces. A reader that is always waiting on the pipe
/// wakes for every one of them: about 200,000 wake-ups, reads and context switches on both sides
/// for a 1 GB dump, CPU taken from the database backend the dump is waiting on. This reader
/// enlarges the pipe and, after a read that came back short, sleeps briefly before the next one,
/// so reads return hundreds of KiB at a time and pg_dump's writes seldom have a reader to wake.
/// A fast producer is never held up: a read that fills most of the buffer is followed at once by
/// the next, and the pipe holds far more than arrives during one pause.
struct BatchedPipe {
    file: std::fs::File,
    /// The pause after a short read; zero when the pipe could not be enlarged (a 64 KiB pipe
    /// would fill during the pause and stall the writer).
    pause: Duration,
    /// Reads that returned data, for tests.
    reads: u64,
}

impl BatchedPipe {
    /// About 180 KiB of pg_dump output at the ~180 MB/s one backend produces.
    const PAUSE: Duration = Duration::from_millis(1);

    fn new(fd: OwnedFd) -> Self {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let enlarged = {
            use nix::fcntl::{fcntl, FcntlArg};
            // The default limit for unprivileged processes (/proc/sys/fs/pipe-max-size).
            const PIPE_SIZE: i32 = 1 << 20;
            fcntl(&fd, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE)).is_ok_and(|size| size >= PIPE_SIZE)
        };
        // Elsewhere pipes cannot be resized: read them as they come.
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let enlarged = false;
        Self { file: std::fs::File::from(fd), pause: if enlarged { Self::PAUSE } else { Duration::ZERO }, reads: 0 }
    }
}

impl io::Read for BatchedPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.reads += u64::from(n > 0);
        if n > 0 && n < buf.len() / 2 && !self.pause.is_zero() {
            std::thread::sleep(self.pause);
        }
        Ok(n)
    }
}

/// Feeds parts to the store; stops (and aborts) on the first upload error or on an interrupt.
async fn upload_parts(mut upload: Upload, mut rx: mpsc::Receiver<Bytes>) -> Result<Upload, BackupError> {
    let feed = async {
        loop {
            // Take the next part off the channel only when it can start uploading: parts waiting
            // for a free slot stay in the bounded channel, not in one more place in memory.
            upload.ready().await?;
            match rx.recv().await {
                Some(part) => upload.put_part(part).await?,
                None => return Ok::<(), StoreError>(()),
            }
        }
    };
    let fed = tokio::select! {
        fed = feed => fed.map_err(BackupError::from),
        _ = crate::signal::interrupted() => Err(BackupError::Interrupted),
    };
    match fed {
        Ok(()) => Ok(upload),
        Err(e) => {
            let _ = upload.abort().await;
            Err(e)
        }
    }
}

/// The last few KiB a tool wrote to stderr, for error messages.
async fn read_tail(mut stderr: tokio::process::ChildStderr) -> String {
    const KEEP: usize = 8 * 1024;
    let mut tail = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stderr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 2 * KEEP {
            tail.drain(..tail.len() - KEEP);
        }
    }
    let start = tail.len().saturating_sub(KEEP);
    String::from_utf8_lossy(&tail[start..]).into_owned()
}

/// Tables pg_dump dumps data for: ordinary tables outside system schemas, not temporary, not
/// owned by an extension. `estimate` is -1 for a table never vacuumed or analyzed.
const TABLES_SQL: &str = "
    SELECT format('%I.%I', n.nspname, c.relname) AS name, c.reltuples::bigint AS estimate
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND c.relpersistence <> 't'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
    ORDER BY 1";

/// Row counts per table inside the current (snapshot) transaction.
async fn count_rows(conn: &mut PgConnection, method: Option<RowCountMethod>) -> Result<Option<RowCounts>, BackupError> {
    let Some(method) = method else { return Ok(None) };
    let tables: Vec<(String, i64)> =
        sqlx::query_as(TABLES_SQL).fetch_all(&mut *conn).await.map_err(query_err("listing tables"))?;
    let mut counts = BTreeMap::new();
    for (name, estimate) in tables {
        let rows = match method {
            RowCountMethod::Estimate if estimate >= 0 => estimate,
            // No statistics yet (never vacuumed or analyzed): 0 would be a wrong figure, so such
            // a table (usually new and small) is counted, inside the same snapshot.
            RowCountMethod::Estimate | RowCountMethod::Exact => {
                // `name` comes from format('%I.%I'), so it is already a quoted identifier.
                let sql = format!("SELECT count(*) FROM {name}");
                sqlx::query_scalar::<_, i64>(&sql)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|error| BackupError::Query { op: format!("counting rows of {name}"), error })?
            }
        };
        counts.insert(name, rows);
    }
    Ok(Some(RowCounts { method, tables: counts }))
}

/// The newest applied migration recorded by sqlx-style history, when there is one.
async fn migration_head(conn: &mut PgConnection) -> Option<String> {
    let exists: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text").fetch_one(&mut *conn).await.ok()?;
    exists?;
    sqlx::query_scalar("SELECT max(version)::text FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut *conn)
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    #[test]
    fn part_sizes_grow_with_the_database() {
        use super::{auto_part_size, MIN_AUTO_PART_SIZE};
        assert_eq!(auto_part_size(0), MIN_AUTO_PART_SIZE);
        assert_eq!(auto_part_size(10 << 30), MIN_AUTO_PART_SIZE);
        // 1 TiB: parts of at least 132 MiB keep the upload under 10,000 parts.
        let tib = 1u64 << 40;
        let part = auto_part_size(tib) as u64;
        assert!(part.is_multiple_of(1 << 20) && tib.div_ceil(part) <= 8_000, "{part}");
    }

    #[test]
    fn batched_pipe_reads_everything_in_few_reads() {
        use std::io::{Read, Write};
        use std::time::Duration;
        let (reader, mut writer) = std::io::pipe().unwrap();
        const WRITES: usize = 2_000;
        let feeder = std::thread::spawn(move || {
            // Page-sized writes like pg_dump's, spaced out so that a reader without pauses would
            // keep up and wake once per write; each chunk numbered so order is checked too.
            for i in 0..WRITES {
                writer.write_all(&[(i % 251) as u8; 4096]).unwrap();
                std::thread::sleep(Duration::from_micros(20));
            }
        });
        let mut pipe = super::BatchedPipe::new(reader.into());
        let mut got = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = pipe.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        feeder.join().unwrap();
        assert_eq!(got.len(), WRITES * 4096);
        assert!(got.chunks(4096).enumerate().all(|(i, c)| c.iter().all(|&b| b == (i % 251) as u8)));
        if !pipe.pause.is_zero() {
            // Unbatched, a reader keeping up would see about one read per write.
            assert!(pipe.reads < WRITES as u64 / 2, "{} reads for {WRITES} writes", pipe.reads);
        }
    }
}
