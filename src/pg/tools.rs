//! Discovery of PostgreSQL programs: client tools (pg_dump, pg_restore, pg_dumpall, psql) of a
//! sufficient major version, and server binaries (initdb, pg_ctl, postgres) for local clusters.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::PgError;

/// Environment variable naming a directory that holds the PostgreSQL binaries to use.
pub const PG_BIN_ENV: &str = "PG_BIN";

/// Client tools from one installation directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTools {
    pub bin_dir: PathBuf,
    /// Major version reported by `pg_dump --version`.
    pub major: u32,
    /// The version it reported, e.g. "15.18".
    pub version: String,
}

impl PgTools {
    pub fn pg_dump(&self) -> PathBuf {
        self.bin_dir.join("pg_dump")
    }
    pub fn pg_restore(&self) -> PathBuf {
        self.bin_dir.join("pg_restore")
    }
    pub fn pg_dumpall(&self) -> PathBuf {
        self.bin_dir.join("pg_dumpall")
    }
    pub fn psql(&self) -> PathBuf {
        self.bin_dir.join("psql")
    }
}

/// Server binaries from one installation directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerBins {
    pub bin_dir: PathBuf,
    pub major: u32,
    pub initdb: PathBuf,
    pub pg_ctl: PathBuf,
    pub postgres: PathBuf,
}

/// One directory that holds the program looked for, and what it reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub dir: PathBuf,
    /// `None` when `--version` could not be run or parsed.
    pub major: Option<u32>,
    pub version: String,
    /// Came from `PG_BIN`.
    pub explicit: bool,
    /// A dispatcher such as Debian's pg_wrapper rather than the real program.
    pub wrapper: bool,
}

impl Candidate {
    /// `DIR (VERSION)`, as an error lists what was found.
    fn describe(&self) -> String {
        format!("{} ({})", self.dir.display(), self.version)
    }
}

/// Finds pg_dump & co. with major version ≥ `min_major`. Candidates: `$PG_BIN`, every `PATH`
/// directory containing pg_dump, `/usr/lib/postgresql/*/bin`. `PG_BIN` wins when it qualifies
/// (an explicit choice); otherwise the highest major wins. None → class Unavailable, naming
/// what was found and how to fix it.
pub fn discover(min_major: u32) -> Result<PgTools, PgError> {
    let candidates = probe_all("pg_dump", min_major, |_| true);
    match choose(&candidates, min_major) {
        Some(c) => {
            Ok(PgTools { bin_dir: c.dir.clone(), major: c.major.unwrap_or_default(), version: c.version.clone() })
        }
        None => Err(PgError::ToolMissing {
            what: "pg_dump",
            min_major,
            found: candidates.iter().map(Candidate::describe).collect(),
            install: if min_major > 0 {
                format!("apt-get install -y postgresql-client-{min_major}")
            } else {
                "apt-get install -y postgresql-client".to_string()
            },
        }),
    }
}

/// Finds initdb, pg_ctl and postgres (same directory), highest major version first; `PG_BIN`
/// wins when it holds them. None → class Unavailable with the install hint.
pub fn discover_server() -> Result<ServerBins, PgError> {
    discover_server_min(0)
}

/// [`discover_server`] requiring a major version ≥ `min_major` (e.g. an existing data dir's).
pub fn discover_server_min(min_major: u32) -> Result<ServerBins, PgError> {
    let candidates =
        probe_all("initdb", min_major, |dir| dir.join("pg_ctl").is_file() && dir.join("postgres").is_file());
    match choose(&candidates, min_major) {
        Some(c) => Ok(server_bins(&c.dir, c.major.unwrap_or_default())),
        None => Err(PgError::ToolMissing {
            what: "PostgreSQL server binaries (initdb, pg_ctl, postgres)",
            min_major,
            found: candidates.iter().map(Candidate::describe).collect(),
            install: "apt-get install -y postgresql".to_string(),
        }),
    }
}

/// Server binaries of a given directory (e.g. remembered by a cluster's state file), if present.
pub fn server_bins_in(dir: &Path) -> Option<ServerBins> {
    let c = probe_dir(dir, "initdb", false)?;
    if !dir.join("pg_ctl").is_file() || !dir.join("postgres").is_file() {
        return None;
    }
    Some(server_bins(&c.dir, c.major?))
}

fn server_bins(dir: &Path, major: u32) -> ServerBins {
    ServerBins {
        bin_dir: dir.to_path_buf(),
        major,
        initdb: dir.join("initdb"),
        pg_ctl: dir.join("pg_ctl"),
        postgres: dir.join("postgres"),
    }
}

/// The message of [`PgError::ToolMissing`]: what is needed, what was found (`DIR (VERSION)`
/// each) and how to fix it.
pub(crate) fn missing_message(what: &str, min_major: u32, found: &[String], fix: &str) -> String {
    let need = if min_major > 0 { format!("{what} version {min_major} or newer") } else { what.to_string() };
    let found = if found.is_empty() {
        "none found on PATH, in $PG_BIN or in /usr/lib/postgresql/*/bin".to_string()
    } else {
        format!("found only {}", found.join(", "))
    };
    format!(
        "{need} is required but {found}; install it with `{fix}` or set {PG_BIN_ENV} to the directory that holds it"
    )
}

/// Picks the candidate to use: an explicit `PG_BIN` that qualifies, else the highest major
/// (real binaries before wrappers, then discovery order).
pub(crate) fn choose(candidates: &[Candidate], min_major: u32) -> Option<&Candidate> {
    let ok = |c: &&Candidate| c.major.is_some_and(|m| m >= min_major);
    if let Some(c) = candidates.iter().filter(|c| c.explicit).find(ok) {
        return Some(c);
    }
    let mut best: Option<&Candidate> = None;
    for c in candidates.iter().filter(ok) {
        best = match best {
            None => Some(c),
            Some(b) => {
                let better = (c.major, !c.wrapper) > (b.major, !b.wrapper);
                Some(if better { c } else { b })
            }
        };
    }
    best
}

fn candidate_dirs() -> Vec<(PathBuf, bool)> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os(PG_BIN_ENV).filter(|d| !d.is_empty()) {
        dirs.push((PathBuf::from(d), true));
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path).map(|d| (d, false)));
    }
    if let Ok(rd) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versioned: Vec<PathBuf> =
            rd.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|p| p.is_dir()).collect();
        versioned.sort();
        dirs.extend(versioned.into_iter().map(|d| (d, false)));
    }
    dirs
}

/// Every installation of `program` in the candidate directories that `usable` accepts, with the
/// versions needed to choose among them for `min_major`. Asking Debian's pg_wrapper (a Perl
/// script) for its version costs about 50 ms per directory, so wrappers are asked only when no
/// real binary and no `PG_BIN` qualifies: they dispatch to the /usr/lib/postgresql/*/bin
/// directories that are probed anyway.
fn probe_all(program: &str, min_major: u32, usable: impl Fn(&Path) -> bool) -> Vec<Candidate> {
    let mut seen = HashSet::new();
    let mut found: Vec<Candidate> = Vec::new();
    for (dir, explicit) in candidate_dirs() {
        let Some(c) = locate(&dir, program, explicit) else { continue };
        if !usable(&c.dir) {
            continue;
        }
        if seen.insert(c.dir.clone()) {
            found.push(c);
        } else if explicit {
            // Keep the explicit flag on the copy already seen.
            if let Some(prev) = found.iter_mut().find(|p| p.dir == c.dir) {
                prev.explicit = true;
            }
        }
    }
    let first_pass = |c: &Candidate| c.explicit || !c.wrapper;
    for c in found.iter_mut().filter(|c| first_pass(c)) {
        c.ask_version(program);
    }
    if choose(&found, min_major).is_some() {
        found.retain(first_pass);
    } else {
        for c in found.iter_mut().filter(|c| !first_pass(c)) {
            c.ask_version(program);
        }
    }
    found
}

/// Looks for `program` in `dir` without running it. A symlink to the real program (e.g.
/// /usr/local/bin/initdb → /usr/lib/postgresql/15/bin/initdb) resolves to the real directory, so
/// sibling tools come from the same installation; a dispatcher such as Debian's pg_wrapper keeps
/// the original directory (with its own symlinks resolved, so /bin and /usr/bin count once).
fn locate(dir: &Path, program: &str, explicit: bool) -> Option<Candidate> {
    let path = dir.join(program);
    if !path.is_file() {
        return None;
    }
    let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
    let wrapper = canonical.file_name().and_then(|n| n.to_str()) != Some(program);
    let dir = if wrapper {
        std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
    } else {
        canonical.parent().map(Path::to_path_buf).unwrap_or_else(|| dir.to_path_buf())
    };
    Some(Candidate { dir, major: None, version: String::new(), explicit, wrapper })
}

/// [`locate`] and ask for the version.
fn probe_dir(dir: &Path, program: &str, explicit: bool) -> Option<Candidate> {
    let mut c = locate(dir, program, explicit)?;
    c.ask_version(program);
    Some(c)
}

impl Candidate {
    /// Runs `program --version` from this directory and records what it said.
    fn ask_version(&mut self, program: &str) {
        let out = Command::new(self.dir.join(program)).arg("--version").stdin(Stdio::null()).output();
        (self.major, self.version) = match out {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout).trim().to_string();
                match parse_version_output(&text) {
                    Some((m, v)) => (Some(m), v),
                    None => (None, format!("unrecognised version `{text}`")),
                }
            }
            Ok(o) => (None, format!("`{program} --version` failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
            Err(e) => (None, format!("cannot run: {e}")),
        };
    }
}

/// Parses `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` into (15, "15.18").
/// Handles `9.6.24` (major 9), `17beta1`, `16devel`.
pub(crate) fn parse_version_output(text: &str) -> Option<(u32, String)> {
    let line = text.lines().next()?;
    let after = match line.find(')') {
        Some(i) if line.contains("(PostgreSQL)") => &line[i + 1..],
        _ => line,
    };
    let token = after.split_whitespace().find(|t| t.starts_with(|c: char| c.is_ascii_digit()))?;
    let digits: String = token.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major = digits.parse().ok()?;
    Some((major, token.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(
            parse_version_output("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some((15, "15.18".into()))
        );
        assert_eq!(parse_version_output("initdb (PostgreSQL) 9.6.24"), Some((9, "9.6.24".into())));
        assert_eq!(parse_version_output("pg_dump (PostgreSQL) 17beta1"), Some((17, "17beta1".into())));
        assert_eq!(parse_version_output("garbage"), None);
    }

    fn cand(dir: &str, major: Option<u32>, explicit: bool, wrapper: bool) -> Candidate {
        Candidate {
            dir: dir.into(),
            major,
            version: major.map(|m| format!("{m}.1")).unwrap_or_default(),
            explicit,
            wrapper,
        }
    }

    #[test]
    fn chooses_highest_then_real_over_wrapper() {
        let cs = vec![
            cand("/usr/bin", Some(16), false, true),
            cand("/usr/lib/postgresql/15/bin", Some(15), false, false),
            cand("/usr/lib/postgresql/16/bin", Some(16), false, false),
            cand("/broken", None, false, false),
        ];
        assert_eq!(choose(&cs, 15).unwrap().dir, PathBuf::from("/usr/lib/postgresql/16/bin"));
        assert!(choose(&cs, 17).is_none());
    }

    #[test]
    fn explicit_pg_bin_wins_when_new_enough() {
        let cs = vec![
            cand("/opt/pg15/bin", Some(15), true, false),
            cand("/usr/lib/postgresql/16/bin", Some(16), false, false),
        ];
        assert_eq!(choose(&cs, 14).unwrap().dir, PathBuf::from("/opt/pg15/bin"));
        assert_eq!(choose(&cs, 16).unwrap().dir, PathBuf::from("/usr/lib/postgresql/16/bin"));
    }

    #[test]
    fn missing_message_names_fix() {
        let found = [cand("/usr/lib/postgresql/13/bin", Some(13), false, false).describe()];
        let m = missing_message("pg_dump", 16, &found, "apt-get install -y postgresql-client-16");
        assert!(m.contains("13.1"), "{m}");
        assert!(m.contains("postgresql-client-16"), "{m}");
        assert!(m.contains("PG_BIN"), "{m}");
    }
}
