//! Migration files on disk: naming rules, checksums and new files.
//!
//! Three naming styles are understood:
//! - sqlx: `<VERSION>_<description>.sql`, or a reversible pair `.up.sql` / `.down.sql`;
//! - Flyway: `V<VERSION>__<description>.sql`;
//! - repeatable: `R__<description>.sql`, re-run whenever its checksum changes, after the
//!   versioned ones.
//!
//! A `.sql` file that matches none of these is an error naming the file: a typo must never make
//! a migration silently disappear. The checksum is SHA-384 of the file's bytes and the
//! description is derived exactly as sqlx does, so `_sqlx_migrations` rows written by either
//! tool are interchangeable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha384};

use super::MigrateError;

/// How a migration file is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    Sqlx,
    Flyway,
    Repeatable,
}

/// One migration file, read and checksummed.
#[derive(Debug, Clone)]
pub struct MigrationFile {
    /// None for repeatable migrations.
    pub version: Option<i64>,
    pub description: String,
    pub style: Style,
    pub path: PathBuf,
    pub file_name: String,
    pub sql: String,
    /// SHA-384 of the file's bytes (what sqlx stores).
    pub checksum: Vec<u8>,
    /// The file starts with `-- no-transaction`: it runs outside a transaction.
    pub no_tx: bool,
    /// The `.down.sql` file of a reversible sqlx pair.
    pub down: Option<PathBuf>,
}

impl MigrationFile {
    /// `20260101120000 add tags`, or `R add tags` for a repeatable one.
    pub fn label(&self) -> String {
        match self.version {
            Some(v) => format!("{v} {}", self.description),
            None => format!("R {}", self.description),
        }
    }
}

/// The migrations directory, parsed.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub dir: PathBuf,
    /// Versioned migrations in version order.
    pub versioned: Vec<MigrationFile>,
    /// Repeatable migrations in description order.
    pub repeatable: Vec<MigrationFile>,
}

impl Source {
    pub fn find(&self, version: i64) -> Option<&MigrationFile> {
        self.versioned.iter().find(|m| m.version == Some(version))
    }

    pub fn all(&self) -> impl Iterator<Item = &MigrationFile> {
        self.versioned.iter().chain(self.repeatable.iter())
    }

    /// Whether the directory uses Flyway names (decides the style of `new`).
    pub fn style(&self) -> Style {
        if self.versioned.iter().any(|m| m.style == Style::Flyway) {
            Style::Flyway
        } else {
            Style::Sqlx
        }
    }
}

const NAMING_HELP: &str = "name it <VERSION>_<description>.sql (optionally .up.sql/.down.sql), \
                           V<VERSION>__<description>.sql or R__<description>.sql, with an integer VERSION";

/// What a file name says, before the file is read.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Versioned { version: i64, description: String, style: Style },
    Down { version: i64 },
    Repeatable { description: String },
}

/// Why a file name does not name a migration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum NameError {
    #[error("not a .sql file")]
    NotSql,
    #[error("a repeatable migration needs a description after R__")]
    RepeatableWithoutDescription,
    #[error("a Flyway-style name needs `__` between version and description")]
    FlywayWithoutSeparator,
    #[error("the description after `__` is empty")]
    FlywayWithoutDescription,
    #[error("no `_` between version and description")]
    NoSeparator,
    #[error("the description is empty")]
    NoDescription,
    #[error("version `{version}` is not an integer")]
    NotAnInteger { version: String },
    #[error("version `{version}` does not fit in a 64-bit integer")]
    TooLarge { version: String },
}

fn parse_name(name: &str) -> Result<Parsed, NameError> {
    let stem = name.strip_suffix(".sql").ok_or(NameError::NotSql)?;
    if let Some(desc) = stem.strip_prefix("R__") {
        if desc.trim_matches('_').is_empty() {
            return Err(NameError::RepeatableWithoutDescription);
        }
        return Ok(Parsed::Repeatable { description: desc.replace('_', " ") });
    }
    if let Some(rest) = stem.strip_prefix('V').filter(|r| r.starts_with(|c: char| c.is_ascii_digit())) {
        let (version, desc) = rest.split_once("__").ok_or(NameError::FlywayWithoutSeparator)?;
        let version = parse_version(version)?;
        if desc.trim_matches('_').is_empty() {
            return Err(NameError::FlywayWithoutDescription);
        }
        return Ok(Parsed::Versioned { version, description: desc.replace('_', " "), style: Style::Flyway });
    }
    // sqlx: everything before the first `_` is the version.
    let (version, rest) = name.split_once('_').ok_or(NameError::NoSeparator)?;
    let version = parse_version(version)?;
    if let Some(_desc) = rest.strip_suffix(".down.sql") {
        return Ok(Parsed::Down { version });
    }
    let desc = rest.strip_suffix(".up.sql").or_else(|| rest.strip_suffix(".sql")).unwrap_or(rest);
    if desc.is_empty() {
        return Err(NameError::NoDescription);
    }
    Ok(Parsed::Versioned { version, description: desc.replace('_', " "), style: Style::Sqlx })
}

fn parse_version(text: &str) -> Result<i64, NameError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::NotAnInteger { version: text.to_string() });
    }
    text.parse::<i64>().map_err(|_| NameError::TooLarge { version: text.to_string() })
}

/// SHA-384 of a migration's bytes, as sqlx computes it.
pub fn checksum(sql: &str) -> Vec<u8> {
    Sha384::digest(sql.as_bytes()).to_vec()
}

/// Whether a migration opts out of the transaction (sqlx's rule: the text starts with the marker).
pub fn is_no_tx(sql: &str) -> bool {
    sql.starts_with("-- no-transaction")
}

/// Reads and checks a migrations directory. A missing directory is an error that says how to
/// create one.
// Long by design: one pass that reads, parses and pairs the files, refusing each clash where it appears.
pub fn load(dir: &Path) -> Result<Source, MigrateError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            " (pass --migrations DIR, or create it with `opsbook migrate new NAME`)"
        } else {
            ""
        };
        MigrateError::Source {
            path: dir.to_path_buf(),
            message: format!("cannot read the migrations directory: {e}{hint}"),
        }
    })?;
    let mut versioned: BTreeMap<i64, MigrationFile> = BTreeMap::new();
    let mut downs: BTreeMap<i64, PathBuf> = BTreeMap::new();
    let mut repeatable: BTreeMap<String, MigrationFile> = BTreeMap::new();
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| MigrateError::io("read directory", dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".sql") {
            continue;
        }
        let meta = std::fs::metadata(&path).map_err(|e| MigrateError::io("stat", &path, e))?;
        if meta.is_file() {
            names.push((name, path));
        }
    }
    names.sort();
    for (name, path) in names {
        let parsed = parse_name(&name).map_err(|why| MigrateError::Source {
            path: path.clone(),
            message: format!("does not parse as a migration: {why}; {NAMING_HELP}"),
        })?;
        match parsed {
            Parsed::Down { version } => {
                downs.insert(version, path);
            }
            Parsed::Versioned { version, description, style } => {
                let file = read_file(&path, &name, Some(version), description, style)?;
                if let Some(other) = versioned.get(&version) {
                    return Err(MigrateError::Source {
                        path,
                        message: format!(
                            "version {version} is also used by {}; versions must be unique",
                            other.file_name
                        ),
                    });
                }
                versioned.insert(version, file);
            }
            Parsed::Repeatable { description } => {
                let file = read_file(&path, &name, None, description.clone(), Style::Repeatable)?;
                if let Some(other) = repeatable.get(&description) {
                    return Err(MigrateError::Source {
                        path,
                        message: format!(
                            "its description '{description}' is also that of {}; repeatable migrations must \
                             have unique descriptions",
                            other.file_name
                        ),
                    });
                }
                repeatable.insert(description, file);
            }
        }
    }
    for (version, path) in downs {
        match versioned.get_mut(&version) {
            Some(up) if up.file_name.ends_with(".up.sql") => up.down = Some(path),
            _ => {
                return Err(MigrateError::Source {
                    path,
                    message: format!("down migration without a matching {version}_<description>.up.sql"),
                })
            }
        }
    }
    Ok(Source {
        dir: dir.to_path_buf(),
        versioned: versioned.into_values().collect(),
        repeatable: repeatable.into_values().collect(),
    })
}

fn read_file(
    path: &Path,
    name: &str,
    version: Option<i64>,
    description: String,
    style: Style,
) -> Result<MigrationFile, MigrateError> {
    let bytes = std::fs::read(path).map_err(|e| MigrateError::io("read migration", path, e))?;
    let sql = String::from_utf8(bytes).map_err(|e| MigrateError::Source {
        path: path.to_path_buf(),
        message: format!("is not valid UTF-8 (byte {}); save it as UTF-8", e.utf8_error().valid_up_to()),
    })?;
    Ok(MigrationFile {
        version,
        description,
        style,
        path: path.to_path_buf(),
        file_name: name.to_string(),
        checksum: checksum(&sql),
        no_tx: is_no_tx(&sql),
        sql,
        down: None,
    })
}

/// Turns a free-form name into a file-name-safe description: `Add product tags!` →
/// `add_product_tags`.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

/// Creates the next migration file(s) in `dir` (created if missing) and returns their paths.
/// The version is the current UTC time as `YYYYMMDDHHMMSS`, or one more than the newest
/// existing version when the clock is behind it.
pub fn create(
    dir: &Path,
    name: &str,
    reversible: bool,
    style: Option<Style>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<PathBuf>, MigrateError> {
    let slug = slug(name);
    if slug.is_empty() {
        return Err(MigrateError::NameWithoutWords { name: name.to_string() });
    }
    std::fs::create_dir_all(dir).map_err(|e| MigrateError::io("create directory", dir, e))?;
    let source = load(dir)?;
    let style = style.unwrap_or_else(|| source.style());
    if reversible && style == Style::Flyway {
        return Err(MigrateError::ReversibleFlyway);
    }
    let stamp: i64 = now.format("%Y%m%d%H%M%S").to_string().parse().expect("timestamp digits");
    let newest = source.versioned.last().and_then(|m| m.version).unwrap_or(0);
    let version = stamp.max(newest + 1);
    let names: Vec<String> = match (style, reversible) {
        (Style::Flyway, _) => vec![format!("V{version}__{slug}.sql")],
        (_, true) => vec![format!("{version}_{slug}.up.sql"), format!("{version}_{slug}.down.sql")],
        (_, false) => vec![format!("{version}_{slug}.sql")],
    };
    let mut created = Vec::new();
    for file in names {
        let path = dir.join(&file);
        let header = if file.ends_with(".down.sql") {
            format!("-- Revert: {}\n", name.trim())
        } else {
            format!("-- {}\n", name.trim())
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| MigrateError::io("create migration", &path, e))?;
        std::io::Write::write_all(&mut f, header.as_bytes()).map_err(|e| MigrateError::io("write", &path, e))?;
        created.push(path);
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_styles() {
        assert_eq!(
            parse_name("20260101120000_add_tags.sql").unwrap(),
            Parsed::Versioned { version: 20260101120000, description: "add tags".into(), style: Style::Sqlx }
        );
        assert_eq!(
            parse_name("1_init.up.sql").unwrap(),
            Parsed::Versioned { version: 1, description: "init".into(), style: Style::Sqlx }
        );
        assert_eq!(parse_name("1_init.down.sql").unwrap(), Parsed::Down { version: 1 });
        assert_eq!(
            parse_name("V3__add_index.sql").unwrap(),
            Parsed::Versioned { version: 3, description: "add index".into(), style: Style::Flyway }
        );
        assert_eq!(parse_name("R__views.sql").unwrap(), Parsed::Repeatable { description: "views".into() });
    }

    #[test]
    fn rejects_near_misses() {
        for bad in ["V1_add.sql", "V1.1__add.sql", "abc_add.sql", "R__.sql", "add.sql", "1_.sql", "V2__.sql"] {
            assert!(parse_name(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("Add product tags!"), "add_product_tags");
        assert_eq!(slug("  --x  y-- "), "x_y");
        assert_eq!(slug("!!"), "");
    }
}
