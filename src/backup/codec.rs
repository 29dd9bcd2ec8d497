//! The byte pipeline between a dump tool and the store: zstd (multithreaded) then optional age
//! encryption on the way out, cut into equal-size parts while hashing; and the reverse on the
//! way back in. Runs on blocking threads; parts cross to the async uploader through a channel
//! of one, so memory is bounded by part size × (parts in flight + 1).

use std::io::{self, Read, Write};

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// Why a `--compression` value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("unknown compression '{algo}': use zstd or zstd:LEVEL (1-19)")]
    Algorithm { algo: String },
    #[error("invalid zstd level '{level}': use 1-19")]
    Level { level: String },
}

/// Compression settings: `zstd` or `zstd:LEVEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    pub level: i32,
    pub threads: u32,
}

impl Codec {
    /// Level 1: a backup shares the database host's CPU with pg_dump and the server, and on
    /// dump data level 1 compresses about twice as fast as level 3 for a few percent more
    /// bytes (bench/RESULTS.md). `zstd:LEVEL` trades CPU for size.
    pub const DEFAULT_LEVEL: i32 = 1;

    /// Parses the `--compression` value.
    pub fn parse(spec: &str) -> Result<Codec, CodecError> {
        let (algo, level) = match spec.split_once(':') {
            Some((a, l)) => (a, Some(l)),
            None => (spec, None),
        };
        if algo != "zstd" {
            return Err(CodecError::Algorithm { algo: algo.to_string() });
        }
        let level = match level {
            None => Self::DEFAULT_LEVEL,
            Some(l) => match l.parse::<i32>() {
                Ok(n) if (1..=19).contains(&n) => n,
                _ => return Err(CodecError::Level { level: l.to_string() }),
            },
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        Ok(Codec { level, threads })
    }
}

/// Bytes of input each zstd worker compresses at a time. zstd's input ring holds about five
/// jobs, so the job size sets most of its memory. At level 1 (a 512 KiB window) zstd would pick
/// 2 MiB; 1 MiB saves ~6 MiB of peak RSS (see [`zstd_overlap_log`] for the ratio). From level 2
/// the window is 1 MiB or more and a job smaller than 2 MiB costs ratio: at level 3, 1 MiB jobs
/// stored 0.2% more than `zstd -3 -T0`, 2 MiB jobs 0.1% less (bench/RESULTS.md).
fn zstd_job_size(level: i32) -> u32 {
    if level <= 1 {
        1 << 20
    } else {
        2 << 20
    }
}

/// How much of the window each job re-reads from the one before it, as zstd's overlap log
/// (9 = the whole window, 8 = half). With 1 MiB jobs at level 1, zstd's default (an eighth of
/// the window) stored 0.02% more than `zstd -1 -T0`; half the window stores 0.4% less than it,
/// for the same CPU and ~2 MiB more peak RSS (bench/RESULTS.md). Other levels keep the default.
fn zstd_overlap_log(level: i32) -> Option<u32> {
    (level <= 1).then_some(8)
}

/// What came out of an encode: raw input size, stored size and the stored bytes' SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub raw_size: u64,
    pub size: u64,
    pub sha256: String,
}

/// Cuts the stored byte stream into equal-size parts, hashing as it goes, and hands each full
/// part to the uploader. A closed channel (the uploader failed) surfaces as a broken pipe.
///
/// Part buffers are reused: the sink keeps a handle on every part it lent, and once the
/// uploader has dropped its last reference to one, that buffer is filled again. The same few
/// buffers serve the whole dump, so memory stays at the bound without allocator churn and
/// without the kernel zeroing fresh pages for every part.
pub struct PartSink {
    tx: mpsc::Sender<Bytes>,
    part_size: usize,
    buf: BytesMut,
    /// Parts handed to the uploader, possibly still in use there.
    lent: Vec<Bytes>,
    /// Part buffers allocated so far.
    allocated: usize,
    hasher: Sha256,
    size: u64,
}

impl PartSink {
    pub fn new(tx: mpsc::Sender<Bytes>, part_size: usize) -> Self {
        Self { tx, part_size, buf: BytesMut::new(), lent: Vec::new(), allocated: 0, hasher: Sha256::new(), size: 0 }
    }

    /// Hands a full part over and waits until the uploader has taken it off the channel, so
    /// at most one part waits (in the channel, or here being filled) beside those uploading.
    fn send(&mut self) -> io::Result<()> {
        let stopped = || io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped");
        let part = std::mem::take(&mut self.buf).freeze();
        self.lent.push(part.clone());
        self.tx.blocking_send(part).map_err(|_| stopped())?;
        // A free slot means the part was taken (the permit is released at once).
        futures::executor::block_on(self.tx.reserve()).map_err(|_| stopped())?;
        Ok(())
    }

    /// An empty buffer from a part the uploader is done with. Other finished parts are freed
    /// rather than kept, so nothing beyond the parts in use stays allocated.
    fn reclaim(&mut self) -> Option<BytesMut> {
        let free = self.lent.iter().position(Bytes::is_unique)?;
        let part = self.lent.swap_remove(free);
        self.lent.retain(|p| !p.is_unique());
        // Only this sink holds `part` now, so it cannot stop being unique.
        let mut buf = part.try_into_mut().ok()?;
        buf.clear();
        Some(buf)
    }

    /// Sends the last (short) part and returns the size and hash of everything written.
    pub fn finish(mut self) -> io::Result<(u64, String)> {
        if !self.buf.is_empty() || self.size == 0 {
            self.send()?;
        }
        Ok((self.size, hex::encode(self.hasher.finalize())))
    }
}

impl Write for PartSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if self.buf.capacity() == 0 {
            // Only now: a dump that ends on a part boundary needs no further buffer.
            self.buf = self.reclaim().unwrap_or_else(|| {
                self.allocated += 1;
                BytesMut::with_capacity(self.part_size)
            });
        }
        let room = self.part_size - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        self.hasher.update(&data[..n]);
        self.size += n as u64;
        if self.buf.len() == self.part_size {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The optional encryption layer.
enum Sealed<W: Write> {
    Plain(W),
    Age(age::stream::StreamWriter<W>),
}

impl<W: Write> Write for Sealed<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Sealed::Plain(w) => w.write(data),
            Sealed::Age(w) => w.write(data),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sealed::Plain(w) => w.flush(),
            Sealed::Age(w) => w.flush(),
        }
    }
}

impl<W: Write> Sealed<W> {
    fn finish(self) -> io::Result<W> {
        match self {
            Sealed::Plain(w) => Ok(w),
            Sealed::Age(w) => w.finish(),
        }
    }
}

/// An age recipient that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid age recipient '{recipient}': {reason} (expected an X25519 public key starting with age1)")]
pub struct RecipientError {
    pub recipient: String,
    /// age's reason.
    pub reason: &'static str,
}

/// Why an identity file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read identity file {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    /// `reason` is age's.
    #[error("invalid age identity in {}: {reason}", path.display())]
    Invalid { path: std::path::PathBuf, reason: &'static str },
    #[error("no age identity (AGE-SECRET-KEY-1…) in {}", path.display())]
    Empty { path: std::path::PathBuf },
}

/// Parses age recipients (`age1…`), naming the bad one.
pub fn parse_recipients(specs: &[String]) -> Result<Vec<age::x25519::Recipient>, RecipientError> {
    specs
        .iter()
        .map(|s| {
            s.trim().parse::<age::x25519::Recipient>().map_err(|reason| RecipientError { recipient: s.clone(), reason })
        })
        .collect()
}

/// Reads age identities (`AGE-SECRET-KEY-1…` lines) from a file.
pub fn read_identities(path: &std::path::Path) -> Result<Vec<age::x25519::Identity>, IdentityError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| IdentityError::Read { path: path.to_path_buf(), source })?;
    let ids: Vec<age::x25519::Identity> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.parse::<age::x25519::Identity>())
        .collect::<Result<_, _>>()
        .map_err(|reason| IdentityError::Invalid { path: path.to_path_buf(), reason })?;
    if ids.is_empty() {
        return Err(IdentityError::Empty { path: path.to_path_buf() });
    }
    for id in &ids {
        use age::secrecy::ExposeSecret;
        crate::redact::register(id.to_string().expose_secret());
    }
    Ok(ids)
}

/// Compresses (and encrypts) everything `input` yields into `sink`. `progress` sees raw bytes.
pub fn encode(
    mut input: impl Read,
    codec: Codec,
    recipients: &[age::x25519::Recipient],
    sink: PartSink,
    progress: &dyn Fn(u64),
) -> io::Result<Encoded> {
    let sealed = if recipients.is_empty() {
        Sealed::Plain(sink)
    } else {
        let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| io::Error::other(format!("age: {e}")))?;
        Sealed::Age(encryptor.wrap_output(sink)?)
    };
    let mut zstd = zstd::stream::write::Encoder::new(sealed, codec.level)?;
    if codec.threads > 1 {
        zstd.multithread(codec.threads)?;
        // Small jobs keep zstd's buffers (part of the RSS budget) small; see zstd_job_size.
        zstd.set_parameter(zstd::stream::raw::CParameter::JobSize(zstd_job_size(codec.level)))?;
        if let Some(log) = zstd_overlap_log(codec.level) {
            zstd.set_parameter(zstd::stream::raw::CParameter::OverlapSizeLog(log))?;
        }
    }
    let mut buf = vec![0u8; 256 * 1024];
    let mut raw_size = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        zstd.write_all(&buf[..n])?;
        raw_size += n as u64;
        progress(n as u64);
    }
    let sink = zstd.finish()?.finish()?;
    let (size, sha256) = sink.finish()?;
    Ok(Encoded { raw_size, size, sha256 })
}

/// A blocking `Read` over chunks arriving from an async task (a store download).
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        Self { rx, current: Bytes::new() }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// The identities given match none of the recipients an object was encrypted to: the key is
/// wrong, which says nothing about the object itself.
#[derive(Debug, thiserror::Error)]
#[error("age: none of the identities given matches a recipient this object was encrypted to")]
pub struct NoMatchingIdentity;

/// True when `e` is [`NoMatchingIdentity`].
pub fn is_no_matching_identity(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<NoMatchingIdentity>())
}

/// Undoes `encode`: decrypts (when identities are given) and decompresses into `out`.
/// Returns the number of raw bytes written.
pub fn decode(input: impl Read, identities: &[age::x25519::Identity], mut out: impl Write) -> io::Result<u64> {
    let plain: Box<dyn Read> = if identities.is_empty() {
        Box::new(input)
    } else {
        let decryptor = age::Decryptor::new(input).map_err(|e| io::Error::other(format!("age: {e}")))?;
        let reader = decryptor.decrypt(identities.iter().map(|i| i as &dyn age::Identity)).map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => io::Error::other(NoMatchingIdentity),
            e => io::Error::other(format!("age: cannot decrypt: {e}")),
        })?;
        Box::new(reader)
    };
    let mut zstd = zstd::stream::read::Decoder::new(plain)?;
    io::copy(&mut zstd, &mut out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(
        data: &[u8],
        part: usize,
        recipients: &[age::x25519::Recipient],
        ids: &[age::x25519::Identity],
    ) -> Vec<u8> {
        let (tx, mut rx) = mpsc::channel(1024);
        let codec = Codec::parse("zstd:3").unwrap();
        let encoded = encode(data, codec, recipients, PartSink::new(tx, part), &|_| {}).unwrap();
        let mut stored = Vec::new();
        let mut sizes = Vec::new();
        while let Ok(p) = rx.try_recv() {
            sizes.push(p.len());
            stored.extend_from_slice(&p);
        }
        assert!(sizes[..sizes.len() - 1].iter().all(|s| *s == part), "equal parts: {sizes:?}");
        assert_eq!(encoded.size, stored.len() as u64);
        assert_eq!(encoded.sha256, hex::encode(Sha256::digest(&stored)));
        assert_eq!(encoded.raw_size, data.len() as u64);
        let mut out = Vec::new();
        decode(&stored[..], ids, &mut out).unwrap();
        out
    }

    #[test]
    fn plain_and_encrypted_roundtrip_with_equal_parts() {
        let data: Vec<u8> = (0..300_000u32).flat_map(|i| (i.wrapping_mul(2654435761)).to_le_bytes()).collect();
        assert_eq!(roundtrip(&data, 64 * 1024, &[], &[]), data);
        let id = age::x25519::Identity::generate();
        assert_eq!(roundtrip(&data, 64 * 1024, &[id.to_public()], &[id]), data);
    }

    #[test]
    fn empty_input_yields_one_part() {
        assert_eq!(roundtrip(b"", 1024, &[], &[]), b"");
    }

    #[test]
    fn wrong_identity_fails() {
        let (tx, mut rx) = mpsc::channel(16);
        let right = age::x25519::Identity::generate();
        let wrong = age::x25519::Identity::generate();
        encode(
            &b"secret rows"[..],
            Codec::parse("zstd").unwrap(),
            &[right.to_public()],
            PartSink::new(tx, 1 << 20),
            &|_| {},
        )
        .unwrap();
        let stored = rx.try_recv().unwrap();
        let err = decode(&stored[..], &[wrong], std::io::sink()).unwrap_err();
        assert!(is_no_matching_identity(&err), "{err}");
    }

    #[test]
    fn part_sink_waits_until_its_part_is_taken() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let (tx, mut rx) = mpsc::channel(1);
        let written = Arc::new(AtomicUsize::new(0));
        let count = written.clone();
        let writer = std::thread::spawn(move || {
            let mut sink = PartSink::new(tx, 1024);
            for i in 0..4u8 {
                sink.write_all(&[i; 1024]).unwrap();
                count.fetch_add(1, Ordering::SeqCst);
            }
            sink.finish().unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        // The first part sits in the channel untaken: the sink must not have gone on to fill
        // (and hold) a second one.
        assert_eq!(written.load(Ordering::SeqCst), 0);
        let mut parts = Vec::new();
        while let Some(part) = rx.blocking_recv() {
            parts.push(part);
        }
        let (size, _) = writer.join().unwrap();
        assert_eq!(size, 4096);
        assert_eq!(parts.len(), 4);
        assert!(parts.iter().enumerate().all(|(i, p)| p.iter().all(|&b| b == i as u8)));
    }

    /// Writes `parts` full parts into a sink whose uploader keeps the last `held` parts it
    /// received; returns the buffers the sink allocated and checks every part's content. Each
    /// write waits until the uploader has dealt with the part before (an acknowledgement), so
    /// the count does not depend on how the two threads happen to be scheduled.
    fn write_parts(parts: u8, held: usize) -> usize {
        const PART: usize = 4096;
        let (tx, mut rx) = mpsc::channel::<Bytes>(1);
        let (ack_tx, ack_rx) = std::sync::mpsc::channel::<()>();
        let uploader = std::thread::spawn(move || {
            let mut kept = std::collections::VecDeque::new();
            let mut seen = 0u8;
            while let Some(part) = rx.blocking_recv() {
                assert!(part.iter().all(|&b| b == seen), "part {seen} arrived intact");
                kept.push_back((seen, part));
                while kept.len() > held {
                    kept.pop_front();
                }
                // Parts still held were never handed out again and overwritten.
                assert!(kept.iter().all(|(i, p)| p.iter().all(|b| b == i)), "held parts unchanged");
                seen += 1;
                let _ = ack_tx.send(());
            }
            seen
        });
        let mut sink = PartSink::new(tx, PART);
        for i in 0..parts {
            sink.write_all(&[i; PART]).unwrap();
            ack_rx.recv().unwrap();
        }
        let allocated = sink.allocated;
        sink.finish().unwrap();
        assert_eq!(uploader.join().unwrap(), parts);
        allocated
    }

    #[test]
    fn part_buffers_are_reused_once_the_uploader_drops_them() {
        // The uploader drops each part once it has it: one buffer serves all.
        assert_eq!(write_parts(20, 0), 1);
        // Parts still held by the uploader are never reused: a new buffer each time.
        assert_eq!(write_parts(8, usize::MAX), 8);
    }

    #[test]
    fn compression_spec() {
        assert_eq!(Codec::parse("zstd:7").unwrap().level, 7);
        assert!(Codec::parse("gzip").is_err());
        assert!(Codec::parse("zstd:99").is_err());
    }
}
