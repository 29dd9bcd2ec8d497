//! Local directory stores: keys are files under a root, written atomically through partial files.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::key::{check_key, check_prefix, PARTIAL_MARKER};
use super::{ObjectMeta, PendingUpload, StoreError, StoreUrl};

/// A store rooted at a local directory. The root is created on the first write.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    url: StoreUrl,
}

fn is_missing(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

fn resource(path: &Path) -> String {
    path.display().to_string()
}

fn random_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// `<path>.partial-<id>`: where an object is written before the rename makes it visible.
fn partial_path(dest: &Path, id: &str) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(PARTIAL_MARKER);
    name.push(id);
    PathBuf::from(name)
}

async fn blocking<T: Send + 'static>(
    op: &'static str,
    what: String,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| StoreError::io(op, what, e)),
        Err(join) => Err(StoreError::io(op, what, io::Error::other(join.to_string()))),
    }
}

/// Writes `body` to a partial file beside `dest` and renames it over `dest` (see
/// [`crate::files::write_via`]), so readers see either the old object or the whole new one.
fn write_atomically(dest: &Path, body: &[u8]) -> io::Result<()> {
    crate::files::write_via(&partial_path(dest, &random_id()), dest, 0o666, body)
}

/// The key of `path` relative to `root`, '/'-separated; `None` for names that are not UTF-8.
fn relative_key(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

/// Every regular file under `root` whose relative path starts with `prefix`, partial files
/// included, with its metadata. Files that vanish during the walk are skipped.
fn walk(root: &Path, prefix: &str) -> io::Result<Vec<(String, fs::Metadata)>> {
    let start = match prefix.rfind('/') {
        Some(i) => root.join(&prefix[..i]),
        None => root.to_path_buf(),
    };
    let mut found = Vec::new();
    let mut dirs = vec![start];
    while let Some(dir) = dirs.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if is_missing(&e) => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            let Some(key) = relative_key(root, &path) else {
                continue;
            };
            let meta = match fs::metadata(&path) {
                Ok(meta) => meta,
                Err(e) if is_missing(&e) => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                let dir_key = format!("{key}/");
                if dir_key.starts_with(prefix) || prefix.starts_with(&dir_key) {
                    dirs.push(path);
                }
            } else if meta.is_file() && key.starts_with(prefix) {
                found.push((key, meta));
            }
        }
    }
    Ok(found)
}

fn modified(meta: &fs::Metadata) -> Option<DateTime<Utc>> {
    meta.modified().ok().map(DateTime::<Utc>::from)
}

impl LocalStore {
    pub(crate) fn open(root: PathBuf, url: StoreUrl) -> Result<LocalStore, StoreError> {
        match fs::metadata(&root) {
            Ok(meta) if !meta.is_dir() => Err(StoreError::InvalidUrl {
                url: url.to_string(),
                reason: format!("{} exists and is not a directory", root.display()),
            }),
            _ => Ok(LocalStore { root, url }),
        }
    }

    /// The directory holding the objects.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn url(&self) -> &StoreUrl {
        &self.url
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key)?;
        let name = key.rsplit('/').next().unwrap_or(key);
        if name.contains(PARTIAL_MARKER) {
            return Err(StoreError::InvalidKey {
                key: key.to_owned(),
                reason: format!("names containing {PARTIAL_MARKER:?} are reserved for partial files"),
            });
        }
        Ok(self.root.join(key))
    }

    fn not_found(op: &'static str, key: &str, path: &Path) -> StoreError {
        StoreError::NotFound { op, resource: resource(path), key: key.to_owned() }
    }

    pub(crate) async fn put_bytes(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let what = resource(&path);
        blocking("write", what, move || write_atomically(&path, &body)).await
    }

    pub(crate) async fn get_bytes(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if is_missing(&e) => Err(Self::not_found("read", key, &path)),
            Err(e) => Err(StoreError::io("read", resource(&path), e)),
        }
    }

    async fn open_file(&self, op: &'static str, key: &str) -> Result<tokio::fs::File, StoreError> {
        let path = self.path(key)?;
        match tokio::fs::File::open(&path).await {
            Ok(file) => Ok(file),
            Err(e) if is_missing(&e) => Err(Self::not_found(op, key, &path)),
            Err(e) => Err(StoreError::io(op, resource(&path), e)),
        }
    }

    pub(crate) async fn get_stream(&self, key: &str) -> Result<tokio::fs::File, StoreError> {
        self.open_file("read", key).await
    }

    pub(crate) async fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Bytes, StoreError> {
        let mut file = self.open_file("read range of", key).await?;
        let what = || resource(&self.root.join(key));
        let io_err = |e| StoreError::io("read range of", what(), e);
        let size = file.metadata().await.map_err(io_err)?.len();
        if len == 0 {
            return Ok(Bytes::new());
        }
        if start >= size {
            let message = format!("the range starts at byte {start} but the object has {size} bytes");
            return Err(io_err(io::Error::new(io::ErrorKind::UnexpectedEof, message)));
        }
        let want = len.min(size - start);
        file.seek(io::SeekFrom::Start(start)).await.map_err(io_err)?;
        let mut buf = vec![0; usize::try_from(want).map_err(io::Error::other).map_err(io_err)?];
        file.read_exact(&mut buf).await.map_err(io_err)?;
        Ok(Bytes::from(buf))
    }

    pub(crate) async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_file() => Ok(Some(ObjectMeta {
                key: key.to_owned(),
                size: meta.len(),
                last_modified: modified(&meta),
                etag: None,
            })),
            Ok(_) => Ok(None),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(StoreError::io("stat", resource(&path), e)),
        }
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        check_prefix(prefix)?;
        let (root, owned_prefix) = (self.root.clone(), prefix.to_owned());
        let files = blocking("list", resource(&self.root.join(prefix)), move || walk(&root, &owned_prefix)).await?;
        let mut objects: Vec<ObjectMeta> = files
            .into_iter()
            .filter(|(key, _)| !key.rsplit('/').next().unwrap_or(key).contains(PARTIAL_MARKER))
            .map(|(key, meta)| ObjectMeta { key, size: meta.len(), last_modified: modified(&meta), etag: None })
            .collect();
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Err(e) if !is_missing(&e) => return Err(StoreError::io("delete", resource(&path), e)),
            _ => {}
        }
        // Directories left empty go too (a pruned backup's id, month and year directories), as
        // they would with object keys; the first one still in use stops the climb.
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != self.root && d.starts_with(&self.root)) {
            if tokio::fs::remove_dir(d).await.is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    pub(crate) async fn begin_upload(&self, key: &str) -> Result<LocalUpload, StoreError> {
        let dest = self.path(key)?;
        let partial = partial_path(&dest, &random_id());
        let what = resource(&partial);
        if let Some(dir) = dest.parent() {
            let create = tokio::fs::create_dir_all(dir).await;
            create.map_err(|e| StoreError::io("create directory for", what.clone(), e))?;
        }
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .await
            .map_err(|e| StoreError::io("create", what, e))?;
        Ok(LocalUpload { file: Some(file), partial, dest, finished: false })
    }

    /// Partial files (from interrupted uploads or writes) last modified before `older_than`.
    pub(crate) async fn stale_uploads(
        &self,
        prefix: &str,
        older_than: DateTime<Utc>,
    ) -> Result<Vec<PendingUpload>, StoreError> {
        check_prefix(prefix)?;
        let (root, owned_prefix) = (self.root.clone(), prefix.to_owned());
        let files = blocking("list", resource(&self.root.join(prefix)), move || walk(&root, &owned_prefix)).await?;
        let mut pending: Vec<PendingUpload> = files
            .into_iter()
            .filter_map(|(name, meta)| {
                let (key, id) = name.rsplit_once(PARTIAL_MARKER)?;
                let initiated = modified(&meta)?;
                (initiated < older_than && !id.contains('/')).then(|| PendingUpload {
                    key: key.to_owned(),
                    upload_id: Some(id.to_owned()),
                    initiated: Some(initiated),
                })
            })
            .collect();
        pending.sort_by(|a, b| a.key.cmp(&b.key).then(a.initiated.cmp(&b.initiated)));
        Ok(pending)
    }

    pub(crate) async fn abort_pending(&self, pending: &PendingUpload) -> Result<(), StoreError> {
        let dest = self.path(&pending.key)?;
        let id = pending.upload_id.as_deref().unwrap_or_default();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(StoreError::InvalidKey {
                key: pending.key.clone(),
                reason: format!("{id:?} is not the id of a local partial file"),
            });
        }
        let partial = partial_path(&dest, id);
        match tokio::fs::remove_file(&partial).await {
            Err(e) if !is_missing(&e) => Err(StoreError::io("delete", resource(&partial), e)),
            _ => Ok(()),
        }
    }
}

/// A local object being written: parts go to the partial file in order; `complete` renames it.
#[derive(Debug)]
pub(crate) struct LocalUpload {
    file: Option<tokio::fs::File>,
    partial: PathBuf,
    dest: PathBuf,
    finished: bool,
}

impl LocalUpload {
    pub(crate) fn resource(&self) -> String {
        resource(&self.dest)
    }

    fn file(&mut self) -> Result<&mut tokio::fs::File, StoreError> {
        let what = resource(&self.partial);
        self.file
            .as_mut()
            .ok_or_else(|| StoreError::Upload { resource: what, reason: "the upload is already finished".to_owned() })
    }

    pub(crate) async fn write(&mut self, part: Bytes) -> Result<(), StoreError> {
        let what = resource(&self.partial);
        let file = self.file()?;
        file.write_all(&part).await.map_err(|e| StoreError::io("write", what, e))
    }

    pub(crate) async fn complete(&mut self) -> Result<(), StoreError> {
        let what = resource(&self.partial);
        let mut file = self.file.take().ok_or_else(|| StoreError::Upload {
            resource: what.clone(),
            reason: "the upload is already finished".to_owned(),
        })?;
        let flushed = async {
            file.flush().await?;
            file.sync_all().await
        };
        flushed.await.map_err(|e| StoreError::io("write", what.clone(), e))?;
        drop(file);
        let (partial, dest) = (self.partial.clone(), self.dest.clone());
        blocking("rename", what, move || {
            fs::rename(&partial, &dest)?;
            crate::files::sync_dir(dest.parent().unwrap_or(Path::new("/")))
        })
        .await?;
        self.finished = true;
        Ok(())
    }

    pub(crate) async fn abort(&mut self) -> Result<(), StoreError> {
        self.file = None;
        self.finished = true;
        match tokio::fs::remove_file(&self.partial).await {
            Err(e) if !is_missing(&e) => Err(StoreError::io("delete", resource(&self.partial), e)),
            _ => Ok(()),
        }
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        if !self.finished {
            let _ = fs::remove_file(&self.partial);
        }
    }
}
