//! The `.env` file secret store: `KEY=value` lines, edited in place. Lines not edited are kept as
//! they were, with order and comments; the file as it was before the run's first save of it is
//! copied to `<file>.bak`; the new one replaces it atomically (see `files::replace_secret_file`),
//! so a crash never leaves a truncated file.

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
    /// `raw`: the line as read, written back as it was while the value is unchanged (quoting
    /// and spacing kept); `comment`: its inline `# …` comment, kept when the value changes.
    Entry {
        export: bool,
        key: String,
        value: String,
        raw: Option<String>,
        comment: Option<String>,
    },
    Other(String),
}

/// A staged edit, replayed onto the file as it is on disk when saving: another writer's
/// changes to other keys in the meantime are kept.
#[derive(Debug, Clone)]
enum Change {
    Set(String, String),
    Remove(String),
}

#[derive(Debug, Clone)]
pub struct EnvFile {
    path: PathBuf,
    lines: Vec<Line>,
    changes: Vec<Change>,
}

/// A value as dotenv readers take it, and the inline comment after it: `'single'` (literal),
/// `"double"` (backslash escapes), or bare (a ` #` starts a comment).
fn parse_value(raw: &str) -> (String, Option<String>) {
    let v = raw.trim();
    let comment_after = |rest: &str| {
        let rest = rest.trim();
        rest.starts_with('#').then(|| rest.to_string())
    };
    if let Some(inner) = v.strip_prefix('\'') {
        if let Some(end) = inner.find('\'') {
            if inner[end + 1..].trim().is_empty() || inner[end + 1..].trim_start().starts_with('#') {
                return (inner[..end].to_string(), comment_after(&inner[end + 1..]));
            }
        }
    }
    if let Some(inner) = v.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = inner.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, other)) => out.push(other),
                    None => out.push('\\'),
                },
                '"' => {
                    let rest = &inner[i + 1..];
                    if rest.trim().is_empty() || rest.trim_start().starts_with('#') {
                        return (out, comment_after(rest));
                    }
                    break;
                }
                _ => out.push(c),
            }
        }
    }
    // Unquoted (or a quote that does not close): a ` #` starts a comment.
    match v.find(" #") {
        Some(i) => (v[..i].trim_end().to_string(), Some(v[i..].trim().to_string())),
        None => (v.to_string(), None),
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
            let (value, comment) = parse_value(value);
            lines.push(Line::Entry { export, key: key.to_string(), value, raw: Some(raw.to_string()), comment });
        }
        Ok(EnvFile { path: path.to_path_buf(), lines, changes: Vec::new() })
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
                Line::Entry { raw: Some(raw), .. } => out.push_str(raw),
                Line::Entry { export, key, value, raw: None, comment } => {
                    if *export {
                        out.push_str("export ");
                    }
                    out.push_str(&format!("{key}={}", quote(value)));
                    if let Some(c) = comment {
                        out.push(' ');
                        out.push_str(c);
                    }
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
        self.changes.push(Change::Set(key.to_string(), value.to_string()));
        self.apply(self.changes.len() - 1);
    }

    fn remove(&mut self, key: &str) {
        if self.get(key).is_some() {
            self.changes.push(Change::Remove(key.to_string()));
            self.apply(self.changes.len() - 1);
        }
    }

    fn save(&mut self) -> Result<bool, SecretsError> {
        if self.changes.is_empty() {
            return Ok(false);
        }
        let io = |op: &str, source| SecretsError::Io { op: op.into(), path: self.path.clone(), source };
        // Writers of the same file take turns (a sidecar lock, held until the rename is done),
        // and each replays its edits onto the file as the others left it.
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
        let mut current = EnvFile::load(&self.path)?;
        current.changes = self.changes.clone();
        for index in 0..current.changes.len() {
            current.apply(index);
        }
        // `.bak` is the file as it was before this run: written by the run's first save of it,
        // whichever `EnvFile` (a run may load the same file several times).
        if first_save_this_run(&self.path) && self.path.exists() {
            let backup = PathBuf::from(format!("{}.bak", self.path.display()));
            let previous = std::fs::read(&self.path).map_err(|e| io("read", e))?;
            crate::files::write_atomic(&backup, &previous, Some(0o600)).map_err(|e| io("back up", e))?;
        }
        // In place of the file (through a symlink, keeping its owner and mode): the app reads it.
        // On failure the staged changes stay, so a later save still writes them.
        crate::files::replace_secret_file(&self.path, current.render().as_bytes(), 0o600)
            .map_err(|e| io("write", e))?;
        self.lines = current.lines;
        self.changes.clear();
        Ok(true)
    }
}

/// True the first time this process saves `path` (one process is one run).
fn first_save_this_run(path: &Path) -> bool {
    static SEEN: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    // By its directory (which exists by now) and name: the file itself may not exist yet.
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let key =
        std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()).join(path.file_name().unwrap_or_default());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen.contains(&key) {
        return false;
    }
    seen.push(key);
    true
}

impl EnvFile {
    /// Applies staged change `index` to the lines.
    fn apply(&mut self, index: usize) {
        match self.changes[index].clone() {
            Change::Set(key, value) => {
                for line in self.lines.iter_mut().rev() {
                    if let Line::Entry { key: k, value: v, raw, .. } = line {
                        if *k == key {
                            if *v != value {
                                *v = value;
                                *raw = None;
                            }
                            return;
                        }
                    }
                }
                self.lines.push(Line::Entry { export: false, key, value, raw: None, comment: None });
            }
            Change::Remove(key) => self.lines.retain(|l| !matches!(l, Line::Entry { key: k, .. } if *k == key)),
        }
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
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut env = EnvFile::load(&path).unwrap();
        assert_eq!(env.get("NAME").as_deref(), Some("shop app"));
        assert_eq!(env.get("DATABASE_URL").as_deref(), Some("old"));
        env.set("DATABASE_URL", "postgres://a:b@h/db");
        env.set("ADMIN_PASSWORD_HASH", "$argon2id$v=19$m=1,t=2,p=1$abc$def");
        assert!(env.save().unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "# app settings\nexport PORT=8080\nNAME=\"shop app\"\n\nDATABASE_URL=postgres://a:b@h/db # old one\nADMIN_PASSWORD_HASH='$argon2id$v=19$m=1,t=2,p=1$abc$def'\n"
        );
        let again = EnvFile::load(&path).unwrap();
        assert_eq!(again.get("ADMIN_PASSWORD_HASH").as_deref(), Some("$argon2id$v=19$m=1,t=2,p=1$abc$def"));
        assert!(dir.join(".env.bak").exists());
        // Group access kept (an app group may read it), access for others removed.
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
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

        // The same file loaded again in the same run (rotate-secrets loads it once per secret)
        // keeps the run's first backup too.
        let mut again = EnvFile::load(&dir.join(".").join(".env")).unwrap();
        again.set("JWT_SECRET", "def");
        again.save().unwrap();
        again.remove("JWT_SECRET");
        again.save().unwrap();
        assert_eq!(std::fs::read_to_string(&bak).unwrap(), original);

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
    fn quoted_values_with_comments_and_untouched_lines_survive_an_edit() {
        let dir = tempfile_dir();
        let path = dir.join(".env");
        let original = "# app\nPORT=8080 # http port\nAPP_NAME=\"shop app\" # shown in titles\n\
                        GREETING='hello world' # inline\nESCAPED=\"a \\\"b\\\" c\"\nJWT_SECRET=old # rotated\n";
        std::fs::write(&path, original).unwrap();
        let mut env = EnvFile::load(&path).unwrap();
        assert_eq!(env.get("PORT").as_deref(), Some("8080"));
        assert_eq!(env.get("APP_NAME").as_deref(), Some("shop app"));
        assert_eq!(env.get("GREETING").as_deref(), Some("hello world"));
        assert_eq!(env.get("ESCAPED").as_deref(), Some("a \"b\" c"));
        env.set("JWT_SECRET", "new value");
        assert!(env.save().unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        let expected = original.replace("JWT_SECRET=old # rotated", "JWT_SECRET='new value' # rotated");
        assert_eq!(text, expected, "only the edited line changes");
        assert_eq!(std::fs::read_to_string(dir.join(".env.bak")).unwrap(), original);
    }

    #[test]
    fn a_writer_keeps_what_another_wrote_since_it_loaded() {
        let dir = tempfile_dir();
        let path = dir.join(".env");
        std::fs::write(&path, "A=1\nB=1\n").unwrap();
        let mut first = EnvFile::load(&path).unwrap();
        let mut second = EnvFile::load(&path).unwrap();
        second.set("B", "2");
        second.set("C", "3");
        second.save().unwrap();
        first.set("A", "2");
        first.save().unwrap();
        let env = EnvFile::load(&path).unwrap();
        assert_eq!((env.get("A"), env.get("B"), env.get("C")), (Some("2".into()), Some("2".into()), Some("3".into())));
        assert_eq!(first.get("C").as_deref(), Some("3"), "the saved view is the file's");
    }

    #[test]
    fn a_symlinked_file_is_edited_through_the_link_keeping_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile_dir();
        let real = dir.join("real.env");
        std::fs::write(&real, "A=1\n").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        // As root, the file may belong to the app's user: it must stay theirs.
        let root = nix::unistd::geteuid().is_root();
        if root {
            std::os::unix::fs::chown(&real, Some(65534), Some(65534)).unwrap();
        }
        let link = dir.join(".env");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut env = EnvFile::load(&link).unwrap();
        env.set("A", "2");
        env.save().unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link stays a link");
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "A=2\n", "the file the app reads has the value");
        assert_eq!(std::fs::metadata(&real).unwrap().permissions().mode() & 0o777, 0o640, "mode kept");
        if root {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(&real).unwrap();
            assert_eq!((m.uid(), m.gid()), (65534, 65534), "owner and group kept");
        }
        // A new file is private.
        let mut fresh = EnvFile::load(&dir.join(".env.new")).unwrap();
        fresh.set("A", "1");
        fresh.save().unwrap();
        assert_eq!(std::fs::metadata(dir.join(".env.new")).unwrap().permissions().mode() & 0o777, 0o600);
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
