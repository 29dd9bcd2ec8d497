//! The `.env` file secret store: `KEY=value` lines, edited in place. Unrelated keys, comments,
//! blank lines and order are kept; the file as it was before the first save of this `EnvFile`
//! (one load, one run) is copied to `<file>.bak`; the new one replaces it atomically with mode
//! 0600, so a crash never leaves a truncated file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::SecretsError;

/// A key-value file of secrets, edited in place (provision writes through it; rotation sees
/// stores as current / pending / previous slots, see [`super::store::Slots`]).
pub trait SecretStore {
    /// A human name for messages (`.env.staging`).
    fn describe(&self) -> String;
    fn get(&self, key: &str) -> Option<String>;
    /// Stages a value; nothing is written before [`SecretStore::save`].
    fn set(&mut self, key: &str, value: &str);
    /// Stages a removal.
    fn remove(&mut self, key: &str);
    /// Writes the staged values. Returns false when nothing changed.
    fn save(&mut self) -> Result<bool, SecretsError>;
}

#[derive(Debug, Clone)]
enum Line {
    Entry { export: bool, key: String, value: String },
    Other(String),
}

#[derive(Debug, Clone)]
pub struct EnvFile {
    path: PathBuf,
    lines: Vec<Line>,
    dirty: bool,
    /// The first save has dealt with `.bak`: later saves of the same run keep the copy of the
    /// file as it was before the run instead of replacing it with this run's own output.
    backed_up: bool,
}

fn unquote(raw: &str) -> String {
    let v = raw.trim();
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return v[1..v.len() - 1].to_string();
    }
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        let inner = &v[1..v.len() - 1];
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some(other) => out.push(other),
                    None => out.push('\\'),
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    // Unquoted: a ` #` starts a comment.
    match v.find(" #") {
        Some(i) => v[..i].trim_end().to_string(),
        None => v.to_string(),
    }
}

/// Writes a value so dotenv readers get it back verbatim: bare when it is plain, single-quoted
/// (no `$` interpolation) otherwise.
fn quote(value: &str) -> String {
    let plain = !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c));
    if plain {
        value.to_string()
    } else if !value.contains('\'') && !value.contains('\n') {
        format!("'{value}'")
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
    }
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit())
}

impl EnvFile {
    /// Reads the file; a missing file is an empty store.
    pub fn load(path: &Path) -> Result<EnvFile, SecretsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(SecretsError::Io { op: "read".into(), path: path.to_path_buf(), source }),
        };
        let mut lines = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                lines.push(Line::Other(raw.to_string()));
                continue;
            }
            let (export, rest) = match trimmed.strip_prefix("export ") {
                Some(r) => (true, r.trim_start()),
                None => (false, trimmed),
            };
            let Some((key, value)) = rest.split_once('=') else {
                return Err(SecretsError::Parse {
                    path: path.to_path_buf(),
                    line: n + 1,
                    message: "expected KEY=value (or a # comment); fix or remove the line".into(),
                });
            };
            let key = key.trim();
            if !valid_key(key) {
                return Err(SecretsError::Parse {
                    path: path.to_path_buf(),
                    line: n + 1,
                    message: format!("`{key}` is not a valid variable name"),
                });
            }
            let value = unquote(value);
            lines.push(Line::Entry { export, key: key.to_string(), value });
        }
        Ok(EnvFile { path: path.to_path_buf(), lines, dirty: false, backed_up: false })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every key and value (for diffing).
    pub fn entries(&self) -> BTreeMap<String, String> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Entry { key, value, .. } => Some((key.clone(), value.clone())),
                Line::Other(_) => None,
            })
            .collect()
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Other(text) => out.push_str(text),
                Line::Entry { export, key, value } => {
                    if *export {
                        out.push_str("export ");
                    }
                    out.push_str(&format!("{key}={}", quote(value)));
                }
            }
            out.push('\n');
        }
        out
    }
}

impl SecretStore for EnvFile {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn get(&self, key: &str) -> Option<String> {
        self.lines.iter().rev().find_map(|l| match l {
            Line::Entry { key: k, value, .. } if k == key => Some(value.clone()),
            _ => None,
        })
    }

    fn set(&mut self, key: &str, value: &str) {
        if self.get(key).as_deref() == Some(value) {
            return;
        }
        self.dirty = true;
        for line in self.lines.iter_mut().rev() {
            if let Line::Entry { key: k, value: v, .. } = line {
                if k == key {
                    *v = value.to_string();
                    return;
                }
            }
        }
        self.lines.push(Line::Entry { export: false, key: key.to_string(), value: value.to_string() });
    }

    fn remove(&mut self, key: &str) {
        let before = self.lines.len();
        self.lines.retain(|l| !matches!(l, Line::Entry { key: k, .. } if k == key));
        self.dirty |= self.lines.len() != before;
    }

    fn save(&mut self) -> Result<bool, SecretsError> {
        if !self.dirty {
            return Ok(false);
        }
        let io = |op: &str, source| SecretsError::Io { op: op.into(), path: self.path.clone(), source };
        // Writers of the same file take turns (a sidecar lock, held until the rename is done).
        let lock_path = PathBuf::from(format!("{}.lock", self.path.display()));
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| io("create the directory of", e))?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("open the lock file of", e))?;
        lock.lock().map_err(|e| io("lock", e))?;
        if !self.backed_up && self.path.exists() {
            let backup = PathBuf::from(format!("{}.bak", self.path.display()));
            let previous = std::fs::read(&self.path).map_err(|e| io("read", e))?;
            crate::notify::write_atomic(&backup, &previous, Some(0o600)).map_err(|e| io("back up", e))?;
        }
        crate::notify::write_atomic(&self.path, self.render().as_bytes(), Some(0o600)).map_err(|e| io("write", e))?;
        self.backed_up = true;
        self.dirty = false;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_comments_order_and_unrelated_keys() {
        let dir = tempfile_dir();
        let path = dir.join(".env");
        std::fs::write(&path, "# app settings\nexport PORT=8080\nNAME=\"shop app\"\n\nDATABASE_URL=old # old one\n")
            .unwrap();
        let mut env = EnvFile::load(&path).unwrap();
        assert_eq!(env.get("NAME").as_deref(), Some("shop app"));
        assert_eq!(env.get("DATABASE_URL").as_deref(), Some("old"));
        env.set("DATABASE_URL", "postgres://a:b@h/db");
        env.set("ADMIN_PASSWORD_HASH", "$argon2id$v=19$m=1,t=2,p=1$abc$def");
        assert!(env.save().unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "# app settings\nexport PORT=8080\nNAME='shop app'\n\nDATABASE_URL=postgres://a:b@h/db\nADMIN_PASSWORD_HASH='$argon2id$v=19$m=1,t=2,p=1$abc$def'\n"
        );
        let again = EnvFile::load(&path).unwrap();
        assert_eq!(again.get("ADMIN_PASSWORD_HASH").as_deref(), Some("$argon2id$v=19$m=1,t=2,p=1$abc$def"));
        assert!(dir.join(".env.bak").exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let mut unchanged = EnvFile::load(&path).unwrap();
        unchanged.set("PORT", "8080");
        assert!(!unchanged.save().unwrap(), "no change, no write");
    }

    #[test]
    fn bak_keeps_the_file_as_it_was_before_the_run_across_several_saves() {
        let dir = tempfile_dir();
        let path = dir.join(".env");
        let bak = dir.join(".env.bak");
        let original = "DATABASE_URL=postgres://legacy@old-host/shop\n";
        std::fs::write(&path, original).unwrap();
        let mut env = EnvFile::load(&path).unwrap();
        env.set("DATABASE_URL", "postgres://app@new-host/shop");
        assert!(env.save().unwrap());
        env.set("JWT_SECRET", "abc");
        assert!(env.save().unwrap());
        assert_eq!(std::fs::read_to_string(&bak).unwrap(), original, "later saves of a run keep the first backup");

        // The next run backs up what the previous run left.
        let after_first_run = std::fs::read_to_string(&path).unwrap();
        let mut next = EnvFile::load(&path).unwrap();
        next.set("JWT_SECRET", "def");
        next.save().unwrap();
        next.set("S3_BUCKET", "media");
        next.save().unwrap();
        assert_eq!(std::fs::read_to_string(&bak).unwrap(), after_first_run);

        // A file this run created has no previous version: later saves do not invent one.
        let fresh = dir.join(".env.new");
        let mut created = EnvFile::load(&fresh).unwrap();
        created.set("A", "1");
        created.save().unwrap();
        created.set("B", "2");
        created.save().unwrap();
        assert!(!dir.join(".env.new.bak").exists());
    }

    #[test]
    fn rejects_garbage_lines_with_the_line_number() {
        let dir = tempfile_dir();
        let path = dir.join(".env");
        std::fs::write(&path, "A=1\nthis is not an assignment\n").unwrap();
        let e = EnvFile::load(&path).unwrap_err().to_string();
        assert!(e.contains(":2:"), "{e}");
    }

    fn tempfile_dir() -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("opsbook-envfile-{}-{}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
