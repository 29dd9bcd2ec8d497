//! Files replaced whole: the one atomic writer (temp file beside the target, fsync, rename, fsync
//! of the directory) behind journals, reports, metrics files, `.env` files and secret files.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes`: temp file in the same directory, fsync, rename, fsync of the
/// directory.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    replace_via_temp(path, mode.unwrap_or(0o666), |file| file.write_all(bytes))
}

/// Writes `bytes` to the new file `tmp` (which must not exist), fsyncs it, renames it over `path`
/// and fsyncs the directory; `tmp` is removed on any failure. For callers that name their own
/// temp files (the local store lists and sweeps its partial files by name).
pub fn write_via(tmp: &Path, path: &Path, mode: u32, bytes: &[u8]) -> std::io::Result<()> {
    fill_and_rename(tmp, path, mode, |file| file.write_all(bytes))
}

/// Replaces a file of secrets atomically, as an edit in place would: through a symlink (the link
/// stays, its target gets the new bytes), keeping its owner, group and mode — less any access
/// for others, since it holds secrets. A new file gets `new_mode`.
pub fn replace_secret_file(path: &Path, bytes: &[u8], new_mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path)?,
        _ => path.to_path_buf(),
    };
    let existing = match std::fs::metadata(&target) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    // Written while only we can read it; owner and mode are set before it takes the name.
    replace_via_temp(&target, 0o600, |file| {
        file.write_all(bytes)?;
        if let Some(m) = &existing {
            if (m.uid(), m.gid()) != (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw()) {
                std::os::unix::fs::fchown(&*file, Some(m.uid()), Some(m.gid())).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!(
                            "cannot give the new file the owner and group of the old one (uid {}, gid {}): {e}; run \
                             as the file's owner or as root, so the app keeps access",
                            m.uid(),
                            m.gid()
                        ),
                    )
                })?;
            }
        }
        let mode = existing.as_ref().map_or(new_mode, |m| m.mode() & 0o7770);
        file.set_permissions(std::fs::Permissions::from_mode(mode))
    })
}

/// Creates a temp file beside `path` (with `mode`, less the umask), lets `fill` write it, then
/// replaces `path` with it (see [`fill_and_rename`]).
fn replace_via_temp(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    fill_and_rename(&tmp, path, mode, fill)
}

/// Creates `tmp` (new, with `mode` less the umask), lets `fill` write it, fsyncs it, renames it
/// over `path` and fsyncs the directory, so a reader (or a crash) sees the old file or the whole
/// new one; `tmp` is removed on any failure.
fn fill_and_rename(
    tmp: &Path,
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let result = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(tmp)?;
        fill(&mut file)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// Makes a rename or a new name in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
