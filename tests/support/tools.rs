//! The Python tools the tests drive (moto's S3 server, the Standard Webhooks reference library),
//! found where `scripts/test` installs them: its virtual environment first
//! (`$OPSBOOK_TEST_VENV`, else `target/test-tools/venv`), then `python3` on `PATH`. The pinned
//! versions come from `scripts/test-requirements.txt`, the one list of them; a copy of another
//! version counts as missing, so a system-wide moto of the wrong release fails loudly here rather
//! than confusingly in a test.

use std::path::PathBuf;
use std::sync::OnceLock;

pub const INSTALL_HINT: &str = "run the tests through `scripts/test`, which installs the pinned Python tools \
     into target/test-tools/venv (or install scripts/test-requirements.txt into the python3 on PATH)";

const REQUIREMENTS: &str = include_str!("../../scripts/test-requirements.txt");

/// The pinned version of a requirement (`moto` for `moto[server]==5.0.28`).
pub fn pinned(package: &str) -> &'static str {
    REQUIREMENTS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .find_map(|l| {
            let (name, version) = l.split_once("==")?;
            let name = name.split('[').next()?.trim();
            (name == package).then_some(version.trim())
        })
        .unwrap_or_else(|| panic!("{package} is not pinned in scripts/test-requirements.txt"))
}

/// The interpreter that has the pinned tools: the test virtual environment's when there is one.
pub fn python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = std::env::var_os("OPSBOOK_TEST_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-tools/venv"));
        let in_venv = venv.join("bin/python3");
        if in_venv.is_file() {
            in_venv
        } else {
            PathBuf::from("python3")
        }
    })
}

/// Fails loudly, naming the fix, unless `module` imports in [`python`] at `package`'s pinned
/// version. `what` says which tests need it.
pub fn require(package: &str, module: &str, what: &str) {
    let version = pinned(package);
    let probe = format!("import importlib.metadata as m, {module}\nprint(m.version('{package}'))");
    let out = std::process::Command::new(python())
        .args(["-c", &probe])
        .output()
        .unwrap_or_else(|e| panic!("{what} need {}: cannot run it ({e}); {INSTALL_HINT}", python().display()));
    assert!(
        out.status.success(),
        "{what} need {package}=={version}, which {} cannot import: {}; {INSTALL_HINT}",
        python().display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        found,
        version,
        "{what} need {package}=={version}, but {} has {package} {found}; {INSTALL_HINT}",
        python().display()
    );
}
