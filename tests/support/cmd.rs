//! Running the real opsbook binary with a clean, isolated environment.

use std::path::Path;

use assert_cmd::Command;

/// The binary with an environment that cannot reach anything the test did not set up: no
/// inherited DATABASE_URL/OPSBOOK_STORE/AWS settings, state in `state_dir`, no sandbox.
pub fn opsbook(state_dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("opsbook").expect("opsbook binary is built");
    for var in [
        "DATABASE_URL",
        "OPSBOOK_STORE",
        "OPSBOOK_CONFIG",
        "OPSBOOK_PROFILE",
        "OPSBOOK_NOTIFY_URL",
        "OPSBOOK_METRICS_FILE",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "R2_ENDPOINT",
        "R2_ACCESS_KEY_ID",
        "R2_SECRET_ACCESS_KEY",
        "R2_BUCKET",
        "PG_BIN",
        "NO_COLOR",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("OPSBOOK_STATE_DIR", state_dir)
        .env("OPSBOOK_SANDBOX_DIR", state_dir.join("no-sandbox"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", state_dir.join("no-aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", state_dir.join("no-aws-credentials"))
        .current_dir(state_dir);
    cmd
}

/// stdout as a JSON document.
pub fn json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// stdout + stderr, for assertions on messages.
pub fn all_output(output: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

pub fn code(output: &std::process::Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

/// The same isolated environment as `opsbook`, as a std Command for runs started in the
/// background (spawn, then inspect while it runs).
pub fn background(state_dir: &Path) -> std::process::Command {
    let template = opsbook(state_dir);
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("opsbook"));
    for (k, v) in template.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.current_dir(state_dir).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    cmd
}
