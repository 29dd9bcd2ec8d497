//! The command-line contract: generated completions and man pages are current, flags parse
//! the documented way, and errors carry the documented exit codes and JSON shape.

mod support;

use std::path::Path;

use support::cmd::{all_output, code, json, opsbook};

const SHELLS: [(&str, &str); 5] = [
    ("bash", "opsbook.bash"),
    ("zsh", "_opsbook"),
    ("fish", "opsbook.fish"),
    ("powershell", "_opsbook.ps1"),
    ("elvish", "opsbook.elv"),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Set OPSBOOK_UPDATE_GENERATED=1 to rewrite completions/ and man/ instead of comparing.
fn updating() -> bool {
    std::env::var_os("OPSBOOK_UPDATE_GENERATED").is_some()
}

#[test]
fn completions_are_current() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, file) in SHELLS {
        let out = opsbook(dir.path()).args(["completions", shell]).output().unwrap();
        assert_eq!(code(&out), 0, "{}", all_output(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("backup"), "{shell} completions mention commands");
        let path = repo().join("completions").join(file);
        if updating() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &out.stdout).unwrap();
        } else {
            let committed = std::fs::read(&path).unwrap_or_default();
            assert!(
                committed == out.stdout,
                "{} is stale: run `OPSBOOK_UPDATE_GENERATED=1 cargo test --test cli` and commit",
                path.display()
            );
        }
    }
}

#[test]
fn completions_in_json_are_one_report_carrying_the_script() {
    let dir = tempfile::tempdir().unwrap();
    let out = opsbook(dir.path()).args(["completions", "zsh", "--output", "json"]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(doc["status"], "ok", "{doc}");
    assert_eq!(doc["shell"], "zsh", "{doc}");
    let committed = std::fs::read_to_string(repo().join("completions").join("_opsbook")).unwrap();
    assert_eq!(doc["script"].as_str().unwrap(), committed);
}

#[test]
fn man_pages_are_current() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man");
    let out = opsbook(dir.path()).args(["man"]).arg(&out_dir).output().unwrap();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let mut generated: Vec<String> =
        std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    generated.sort();
    assert!(generated.contains(&"opsbook-backup-run.1".to_string()), "{generated:?}");
    let committed_dir = repo().join("man");
    if updating() {
        let _ = std::fs::remove_dir_all(&committed_dir);
        std::fs::create_dir_all(&committed_dir).unwrap();
    }
    for name in &generated {
        let fresh = std::fs::read(out_dir.join(name)).unwrap();
        let path = committed_dir.join(name);
        if updating() {
            std::fs::write(&path, &fresh).unwrap();
        } else {
            assert!(
                std::fs::read(&path).unwrap_or_default() == fresh,
                "{} is stale: run `OPSBOOK_UPDATE_GENERATED=1 cargo test --test cli` and commit",
                path.display()
            );
        }
    }
    let mut committed: Vec<String> = std::fs::read_dir(&committed_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    committed.sort();
    assert_eq!(committed, generated, "man/ holds pages for commands that no longer exist");
}

#[test]
fn bad_flag_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = opsbook(dir.path()).args(["backup", "run", "--no-such-flag"]).output().unwrap();
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
    let out = opsbook(dir.path())
        .args(["backup", "run", "--compression", "gzip", "--database-url", "postgres://h/db", "--store", "x"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("--compression"), "{}", all_output(&out));
    let out = opsbook(dir.path())
        .args(["backup", "run", "--encrypt-to", "not-a-key", "--database-url", "postgres://h/db", "--store", "x"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("not-a-key"), "{}", all_output(&out));
}

#[test]
fn missing_settings_say_how_to_give_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = opsbook(dir.path()).args(["backup", "run", "--store", "x"]).output().unwrap();
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("--database-url"), "{}", all_output(&out));
    assert!(all_output(&out).contains("DATABASE_URL"), "{}", all_output(&out));
}

#[test]
fn config_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("opsbook.toml"), "[profiles.default]\nstore = \"x\"\nstroe = \"y\"\n").unwrap();
    let out = opsbook(dir.path()).args(["backup", "list"]).output().unwrap();
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    let text = all_output(&out);
    assert!(text.contains("opsbook.toml") && text.contains("line 3") && text.contains("stroe"), "{text}");
    let out = opsbook(dir.path()).args(["--profile", "prod", "backup", "list"]).output().unwrap();
    assert_eq!(code(&out), 2, "{}", all_output(&out));
}

#[test]
fn global_flags_after_the_subcommand_and_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://app:pa55-w0rd-x@127.0.0.1:{port}/db");
    let out = opsbook(dir.path())
        .args(["backup", "run", "--database-url", &url, "--store", "store", "--output", "json", "-q"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", all_output(&out));
    let doc = json(&out);
    assert_eq!(doc["status"], "unavailable");
    assert_eq!(doc["exit_code"], 3);
    assert!(doc["error"].as_str().unwrap().contains("set 'main'"), "{doc}");
    assert!(!all_output(&out).contains("pa55-w0rd-x"));
}

#[test]
fn json_logs_are_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let out = opsbook(dir.path())
        .args(["backup", "list", "--store", store.to_str().unwrap(), "-vv", "--log-format", "json"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "-vv logs at least the start of the command");
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("timestamp").is_some() && v.get("level").is_some(), "{line}");
        assert_eq!(v["span"]["command"], "backup list", "{line}");
        assert_eq!(v["span"]["run_id"].as_str().map(str::len), Some(8), "{line}");
    }
}

#[test]
fn json_logs_carry_the_final_error_and_a_missing_store_is_not_empty() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-store");
    let out = opsbook(dir.path())
        .args(["backup", "list", "--store", missing.to_str().unwrap(), "--log-format", "json"])
        .output()
        .unwrap();
    // A mistyped store directory is an input error, not an empty store.
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"));
    assert_eq!(v["level"], "ERROR", "{stderr}");
    assert!(v["fields"]["message"].as_str().unwrap().contains("does not exist"), "{stderr}");
    // Without -v too, the line says which command and run it belongs to.
    assert_eq!(v["span"]["command"], "backup list", "{stderr}");
}

#[test]
fn a_second_interrupt_stops_at_once() {
    // A server that accepts and never answers keeps the health check waiting (--timeout 10min).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let app = format!("http://{}", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let child = support::cmd::background(dir.path())
        .args(["promote-check", "--only", "health", "--app-url", &app, "--timeout", "10min"])
        .spawn()
        .unwrap();
    let mut child = child;
    // Wait for the check to connect, without hanging if the command ends first.
    listener.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let _conn = loop {
        match listener.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(child.try_wait().unwrap().is_none(), "promote-check ended before connecting");
                assert!(std::time::Instant::now() < deadline, "promote-check never connected");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    // The first one asks for a clean stop (up to 30 s) and says so; the second must not wait.
    use std::io::BufRead;
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("interrupt again to stop at once") {
        assert!(stderr.read_line(&mut seen).unwrap() > 0, "no clean-stop warning: {seen}");
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    std::io::Read::read_to_string(&mut stderr, &mut seen).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(seen.contains("interrupted twice; stopped at once"), "{seen}");
}
