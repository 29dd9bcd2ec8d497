//! A test environment for whole-output tests: a temp state dir, the real binary run through
//! [`super::cmd::opsbook`], extra environment and files, a terminal width, and the outcome of
//! each run (exit code, stdout, stderr). [`assert_outcome!`](crate::assert_outcome) snapshots an
//! outcome with insta under the filters of [`filters`], the one list of what varies run to run.

use std::path::{Path, PathBuf};

use super::cmd::opsbook;

/// Variables the parent shell may set that change what opsbook prints, beyond the ones
/// [`opsbook`] already removes: a terminal width, log settings, the audit log, the actor.
const UNSET: [&str; 7] = [
    "COLUMNS",
    "OPSBOOK_LOG",
    "OPSBOOK_LOG_FORMAT",
    "OPSBOOK_AUDIT_LOG",
    "OPSBOOK_ACTOR",
    "OPSBOOK_AGE_IDENTITY",
    "ADMIN_DATABASE_URL",
];

pub struct TestEnv {
    dir: tempfile::TempDir,
    envs: Vec<(String, String)>,
    columns: Option<u16>,
}

impl Default for TestEnv {
    fn default() -> Self {
        TestEnv::new()
    }
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::Builder::new().prefix("opsbook-snap-").tempdir().expect("create the test env's temp dir");
        TestEnv { dir, envs: Vec::new(), columns: None }
    }

    /// The state dir, also the working directory of every run.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the state dir, as a string for an argument.
    pub fn join(&self, rel: &str) -> String {
        self.path().join(rel).display().to_string()
    }

    /// Sets a variable for every later run (replacing an earlier value of it).
    pub fn env(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        let key = key.into();
        self.envs.retain(|(k, _)| *k != key);
        self.envs.push((key, value.into()));
        self
    }

    /// Sets each of these variables for every later run.
    pub fn envs(&mut self, vars: impl IntoIterator<Item = (String, String)>) -> &mut Self {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }

    /// Later runs see `COLUMNS=n`: tables are laid out for a terminal that wide. Without it,
    /// `COLUMNS` is unset and tables keep their natural width.
    pub fn columns(&mut self, n: u16) -> &mut Self {
        self.columns = Some(n);
        self
    }

    /// Writes a file under the state dir (creating its directories) and returns its path.
    pub fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("a file inside the env")).expect("create the file's directory");
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Runs `opsbook args…` in the env.
    pub fn run(&self, args: &[&str]) -> Outcome {
        let mut cmd = opsbook(self.path());
        for var in UNSET {
            cmd.env_remove(var);
        }
        // Who runs it shows in runbook journals and migration history.
        cmd.env("OPSBOOK_ACTOR", "tester").env("USER", "tester").env("LOGNAME", "tester");
        if let Some(n) = self.columns {
            cmd.env("COLUMNS", n.to_string());
        }
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v))).args(args);
        let output = cmd.output().expect("run opsbook");
        Outcome {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            paths: self.paths(),
        }
    }

    /// Runs and insists on exit code 0 (for the set-up steps of a test).
    pub fn ok(&self, args: &[&str]) -> Outcome {
        let out = self.run(args);
        assert_eq!(out.code, 0, "opsbook {} failed:\n{}", args.join(" "), out.render());
        out
    }

    /// The env's dir as the binary may print it: as created and canonicalized.
    fn paths(&self) -> Vec<String> {
        let mut paths = vec![self.path().display().to_string()];
        if let Ok(real) = self.path().canonicalize() {
            paths.push(real.display().to_string());
        }
        paths.dedup();
        paths
    }
}

/// What one run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The env's dir, replaced by `[ENV]` in snapshots.
    paths: Vec<String>,
}

impl Outcome {
    /// The outcome of a run made outside a [`TestEnv`] whose state dir is `dir`.
    pub fn of(output: &std::process::Output, dir: &Path) -> Outcome {
        let mut paths = vec![dir.display().to_string()];
        if let Ok(real) = dir.canonicalize() {
            paths.push(real.display().to_string());
        }
        paths.dedup();
        Outcome {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            paths,
        }
    }

    /// stdout as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", self.render()))
    }

    /// The whole outcome as one text: the exit code, then stdout and stderr.
    pub fn render(&self) -> String {
        format!("exit code: {}\n--- stdout\n{}--- stderr\n{}", self.code, ended(&self.stdout), ended(&self.stderr))
    }

    /// The outcome with every digit of a table row masked as `#`, except in backup and run ids
    /// (which the filters replace whole). For the layout snapshots of tables whose cells hold
    /// times, ages and sizes that a narrow terminal wraps mid-value (`2026` / `-12-` / `07`), where
    /// no filter can recognise them: the layout stays exact, the values are masked.
    pub fn masking_table_digits(mut self) -> Outcome {
        let ids = regex_lite::Regex::new(r"\d{8}T\d{6}Z?-[0-9a-f]{8}").unwrap();
        let mask = |text: &str| text.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect::<String>();
        let lines = self.stdout.split_inclusive('\n').map(|line| {
            if !line.starts_with('│') {
                return line.to_string();
            }
            let mut out = String::new();
            let mut at = 0;
            for id in ids.find_iter(line) {
                out.push_str(&mask(&line[at..id.start()]));
                out.push_str(id.as_str());
                at = id.end();
            }
            out.push_str(&mask(&line[at..]));
            out
        });
        self.stdout = lines.collect();
        self
    }

    /// The insta settings that make this outcome's text deterministic: the env's dir first, then
    /// [`filters`].
    pub fn settings(&self) -> insta::Settings {
        let mut settings = insta::Settings::clone_current();
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        // Longest first, so a canonical path that extends the given one is replaced whole.
        let mut paths = self.paths.clone();
        paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for path in paths {
            settings.add_filter(&regex_lite::escape(&path), "[ENV]");
        }
        for (pattern, replacement) in filters() {
            settings.add_filter(&pattern, replacement);
        }
        settings
    }
}

/// Text that ends with a newline (none added to empty text).
fn ended(text: &str) -> String {
    if text.is_empty() || text.ends_with('\n') {
        text.to_string()
    } else {
        format!("{text}\n[no newline at end]\n")
    }
}

/// `[SHA256......]`, as wide as the digest it stands for.
fn digest(name: &str, width: usize) -> String {
    format!("[{name}{}]", ".".repeat(width - name.len() - 2))
}

/// What varies between runs, in the order it is replaced: the one list of snapshot filters.
/// Placeholders of fixed-width values (ids, table times, digests, ports) keep the width of what
/// they replace, and sizes keep their count of digits, so a snapshot's table borders stay aligned.
pub fn filters() -> Vec<(String, String)> {
    let mut filters: Vec<(String, String)> = vec![
        // Backup ids (`20261207T185311Z-5533d35b`), run ids (`20261207T190107-9be5d837`), drill
        // ids and their scratch databases (`20261207t211844-9c42`, `opsbook_drill_20261207t211844_9c42`).
        (r"\b\d{8}T\d{6}Z-[0-9a-f]{8}\b", "YYYYMMDDTHHMMSSZ-xxxxxxxx"),
        (r"\b\d{8}T\d{6}-[0-9a-f]{8}\b", "YYYYMMDDTHHMMSS-xxxxxxxx"),
        (r"\d{8}t\d{6}([-_])[0-9a-f]{4}\b", "yyyymmddthhmmss${1}xxxx"),
        // The year/month directories of store keys, and stamps in record names (`drill-…Z.json`).
        (r"\b\d{4}/\d{2}/YYYYMMDDTHHMMSSZ", "YYYY/MM/YYYYMMDDTHHMMSSZ"),
        (r"\b\d{8}T\d{6}\.\d{3}Z\b", "YYYYMMDDTHHMMSS.sssZ"),
        // RFC 3339 timestamps, then the `YYYY-MM-DD HH:MM[:SS]` form of tables and summaries.
        (r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", "[TIMESTAMP]"),
        (r"\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", "YYYY-MM-DD HH:MM:SS"),
        (r"\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}\b", "YYYY-MM-DD HH:MM"),
        // Hex digests (sha384, sha256) and their short form (`4b6181892418…`).
        (r"\b[0-9a-f]{96}\b", &digest("SHA384", 96)),
        (r"\b[0-9a-f]{64}\b", &digest("SHA256", 64)),
        (r"\b[0-9a-f]{12}…", "xxxxxxxxxxxx…"),
        // Loopback ports of the test servers.
        (r"127\.0\.0\.1:\d{2,5}\b", "127.0.0.1:PORT"),
        // Temp paths outside the env (the test cluster's dir, other temp dirs).
        (r"/tmp/[\w.\-/]+", "[TMP]"),
        // Databases of the harness (`t_<name>_<pid>_<n>`).
        (r"\bt_([a-z0-9_]+?)_\d+_\d+\b", "t_${1}_[PID]_[N]"),
        // Durations: `0.1s`, `in 1.2s`, `1.5 ms`, `(197.8s per GiB)`, `duration_seconds=0.08…`, and
        // the JSON fields that hold them.
        (r"\b\d+(\.\d+)?s per GiB\b", "N.Ns per GiB"),
        (r"\b\d+\.\d+s\b", "N.Ns"),
        // (`12 ms` is a character shorter than `4.7 ms`: it gives back one space of its padding.)
        (r"\b\d{2} ms ", "N.N ms"),
        (r"\b\d+(\.\d+)? ms\b", "N.N ms"),
        (r"\bduration_seconds=[\d.e+-]+", "duration_seconds=[SECONDS]"),
        (
            r#""(seconds|duration_seconds|rto_seconds_per_gib|duration_ms|lock_wait_ms)": -?[\d.]+(e[+-]?\d+)?"#,
            r#""$1": [DURATION]"#,
        ),
        // Ages: `RPO 1s`, `1s since the newest backup`, the age column of `backup list`.
        (r"\bRPO \d+[smhd]\b", "RPO Ns"),
        (r"\b\d+[smhd] since\b", "Ns since"),
        // The age of the backup `restore` picked (`2s old`; one digit in a fast test run).
        (r"\b\d[smhd] old\b", "Ns old"),
        (r"(YYYY-MM-DD HH:MM +)\d+[smhd]\b", "${1}Ns"),
        (r#""age_seconds": \d+"#, r#""age_seconds": [AGE]"#),
        // Sizes that vary with the example data's `now()` defaults: JSON byte counts; human ones
        // below keep their count of digits.
        (r#""(size|raw_size|restored_bytes|reclaim_bytes)": \d+"#, r#""$1": [BYTES]"#),
        (r"\b(size|raw_size)=\d+", "$1=[BYTES]"),
        (r"\b\d+(\.\d+)? (B|KiB|MiB|GiB|TiB)/s\b", "[RATE]"),
        (r"\b\d+\.\d×", "N.N×"),
        // Random drill seeds.
        (r"\bseed \d+", "seed [SEED]"),
        (r#""seed": \d+"#, r#""seed": [SEED]"#),
        // The PostgreSQL of the machine, the version of opsbook.
        (r#""(pg_dump_version|server_version)": "[^"]*""#, r#""$1": "[PG VERSION]""#),
        (r"\bopsbook \d+\.\d+\.\d+\b", "opsbook [VERSION]"),
    ]
    .into_iter()
    .map(|(p, r)| (p.to_string(), r.to_string()))
    .collect();
    // `68.5 KiB` → `NN.N KiB`, `70168 bytes` → `NNNNN bytes`.
    for digits in 1..=12 {
        let n = "N".repeat(digits);
        filters.push((format!(r"\b\d{{{digits}}}\.\d ([KMGT]iB)\b"), format!("{n}.N $1")));
        filters.push((format!(r"\b\d{{{digits}}} bytes\b"), format!("{n} bytes")));
    }
    // A table row whose cells hold a value of varying length (a raw float, a timestamp with 3 or 6
    // decimals, a rate, an age) is padded to the border by however much the value left over: that
    // padding shrinks to one space, so only the border of that row moves.
    filters.push((
        r"(?m)^(│.*(?:\[(?:TIMESTAMP|SECONDS|DURATION|BYTES|SEED|AGE)\]|N\.Ns per GiB|Ns since).*?) +│$".to_string(),
        "$1 │".to_string(),
    ));
    filters
}

/// Snapshots an [`Outcome`] (exit code, stdout, stderr as one text) under its filters, into
/// `tests/snapshots/<name>.snap`.
#[macro_export]
macro_rules! assert_outcome {
    ($name:expr, $outcome:expr $(,)?) => {{
        let outcome: &$crate::support::env::Outcome = &$outcome;
        outcome.settings().bind(|| insta::assert_snapshot!($name, outcome.render()));
    }};
}
