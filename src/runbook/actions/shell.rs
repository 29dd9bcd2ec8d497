//! The `shell` runbook action: runs a command (`sh -c` or a direct argv), captures its stdout as
//! an output and checks its exit code.
//!
//! The child gets a null stdin and its own process group. Dropping the running action (the
//! engine's step timeout, Ctrl-C) kills the whole group, so `sh -c 'a | b'` leaves nothing
//! behind. When the command exits but something it started in the background still holds its
//! stdout or stderr open, the action waits at most [`OUTPUT_GRACE`] for the output and leaves
//! that background process running.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::process::Stdio;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{ActionCtx, ActionError, Outputs};

/// The most stdout kept as the `stdout` output.
pub const STDOUT_LIMIT: usize = 64 * 1024;
/// The tail of stderr kept as the `stderr` output.
pub const STDERR_LIMIT: usize = 8 * 1024;
/// How long to keep reading output after the command exited.
pub const OUTPUT_GRACE: Duration = Duration::from_secs(2);
/// Lines of the stderr tail quoted in a failure message.
const ERROR_STDERR_LINES: usize = 20;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// A command line run with `sh -c` (pipes, redirections, `&&` work). Give `command` or `argv`.
    #[serde(default)]
    pub command: Option<String>,
    /// A program and its arguments, run directly without a shell (the program is looked up in
    /// PATH). Give `command` or `argv`.
    #[serde(default)]
    pub argv: Option<Vec<String>>,
    /// Extra environment variables; the rest of opsbook's environment is inherited.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory; relative paths resolve against the runbook's directory. Default: the
    /// runbook's directory, so `./scripts/x.sh` means the same wherever opsbook is started.
    #[serde(default)]
    pub cwd: Option<String>,
    /// The exit code (or list of codes) that counts as success. Default 0.
    #[serde(default)]
    pub expect_exit: Option<ExitExpect>,
    /// Keep stdout (trimmed, at most 64 KiB) as the `stdout` output. When false, stdout is
    /// discarded. Default true.
    #[serde(default = "default_true")]
    pub capture: bool,
}

fn default_true() -> bool {
    true
}

/// Acceptable exit codes.
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(untagged)]
pub enum ExitExpect {
    One(i32),
    Many(Vec<i32>),
}

impl ExitExpect {
    fn codes(&self) -> &[i32] {
        match self {
            ExitExpect::One(c) => std::slice::from_ref(c),
            ExitExpect::Many(cs) => cs,
        }
    }

    fn describe(&self) -> String {
        self.codes().iter().map(ToString::to_string).collect::<Vec<_>>().join(" or ")
    }
}

/// Why an `expect_exit` value is not a list of exit codes.
#[derive(Debug, thiserror::Error)]
pub enum ExitExpectError {
    #[error("invalid exit code `{got}`: use a number or a list of numbers")]
    Code { got: Value },
    #[error("expect_exit is an empty list")]
    EmptyList,
}

impl<'de> Deserialize<'de> for ExitExpect {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let code = |v: &Value| -> Result<i32, ExitExpectError> {
            match v {
                Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            }
            .ok_or_else(|| ExitExpectError::Code { got: v.clone() })
        };
        let parsed = match &v {
            Value::Array(items) if items.is_empty() => Err(ExitExpectError::EmptyList),
            Value::Array(items) => items.iter().map(code).collect::<Result<Vec<_>, _>>().map(ExitExpect::Many),
            other => code(other).map(ExitExpect::One),
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

/// Bytes read from a pipe: the first or the last `limit`, and how many there were in all.
struct Capture {
    keep_tail: bool,
    limit: usize,
    bytes: VecDeque<u8>,
    total: usize,
}

impl Capture {
    fn new(keep_tail: bool, limit: usize) -> Self {
        Capture { keep_tail, limit, bytes: VecDeque::new(), total: 0 }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len();
        if self.keep_tail {
            self.bytes.extend(chunk);
            let excess = self.bytes.len().saturating_sub(self.limit);
            self.bytes.drain(..excess);
        } else {
            let room = self.limit.saturating_sub(self.bytes.len());
            self.bytes.extend(&chunk[..chunk.len().min(room)]);
        }
    }

    fn truncated(&self) -> bool {
        self.total > self.bytes.len()
    }

    fn text(&self) -> String {
        let bytes: Vec<u8> = self.bytes.iter().copied().collect();
        if self.keep_tail {
            // Skip a character cut in half at the start.
            let start = bytes.iter().take(3).take_while(|b| (*b & 0xC0) == 0x80).count();
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        } else {
            super::http::utf8_prefix(&bytes, bytes.len())
        }
    }
}

async fn pump<R: AsyncRead + Unpin>(reader: Option<R>, capture: &mut Capture) {
    let Some(mut reader) = reader else { return };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => capture.push(&buf[..n]),
        }
    }
}

/// Kills the child's process group when the action is dropped before the child exited.
struct GroupGuard {
    pgid: Option<u32>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// How a command is shown in messages: the first line of `command`, or argv with quoting.
fn shown(input: &Input) -> String {
    match (&input.command, &input.argv) {
        (Some(c), _) => format!("`{}`", super::sql::summary(c)),
        (None, Some(argv)) => {
            let words: Vec<String> = argv
                .iter()
                .map(|a| {
                    if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
                        a.clone()
                    } else {
                        format!("'{}'", a.replace('\'', "'\\''"))
                    }
                })
                .collect();
            format!("`{}`", super::http::excerpt(&words.join(" "), 120))
        }
        (None, None) => String::new(),
    }
}

/// How a command ended, for an error message: "exited with 3", "was killed by signal 9".
pub(crate) fn how_it_ended(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.code() {
        Some(code) => format!("exited with {code}"),
        None => format!("was killed by signal {}", status.signal().unwrap_or(0)),
    }
}

/// The last lines of stderr, for an error message.
fn stderr_note(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return " (no stderr)".to_string();
    }
    let tail = lines[lines.len().saturating_sub(ERROR_STDERR_LINES)..].join("\n");
    format!("; stderr:\n{}", crate::redact::redact(&tail))
}

/// Spawns `cmd` in its own process group and waits for it, reading its output (stdout only
/// when captured); the group is killed if the action is dropped first.
async fn run_child(
    mut cmd: tokio::process::Command,
    input: &Input,
    shown: &str,
) -> Result<(std::process::ExitStatus, Capture, Capture), ActionError> {
    let mut child = cmd.spawn().map_err(|error| {
        let program = match (&input.command, &input.argv) {
            (Some(_), _) => "sh".to_string(),
            (None, Some(argv)) => argv[0].clone(),
            (None, None) => String::new(),
        };
        if error.kind() == std::io::ErrorKind::NotFound {
            ActionError::ProgramNotFound { command: shown.to_string(), program }
        } else {
            ActionError::Spawn { command: shown.to_string(), error }
        }
    })?;
    let mut guard = GroupGuard { pgid: child.id() };

    let mut stdout = Capture::new(false, STDOUT_LIMIT);
    let mut stderr = Capture::new(true, STDERR_LIMIT);
    let status = {
        let out_pipe = child.stdout.take();
        let err_pipe = child.stderr.take();
        let reading = async { tokio::join!(pump(out_pipe, &mut stdout), pump(err_pipe, &mut stderr)) };
        tokio::pin!(reading);
        let mut read_all = false;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                _ = &mut reading, if !read_all => read_all = true,
            }
        };
        // The command is gone; a process it left in the background is not ours to kill.
        guard.pgid = None;
        if !read_all {
            let _ = tokio::time::timeout(OUTPUT_GRACE, &mut reading).await;
        }
        status.map_err(|error| ActionError::WaitChild { command: shown.to_string(), error })?
    };
    Ok((status, stdout, stderr))
}

/// The command to run, from `command` (with `sh -c`) or `argv`, before its environment and
/// working directory are set.
fn command(input: &Input) -> Result<tokio::process::Command, ActionError> {
    Ok(match (&input.command, &input.argv) {
        (Some(c), None) => {
            if c.trim().is_empty() {
                return Err(ActionError::Empty { input: "command" });
            }
            let mut cmd = tokio::process::Command::new("sh");
            cmd.arg("-c").arg(c);
            cmd
        }
        (None, Some(argv)) => {
            let Some(program) = argv.first().filter(|p| !p.is_empty()) else {
                return Err(ActionError::EmptyArgv);
            };
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(&argv[1..]);
            cmd
        }
        (Some(_), Some(_)) => return Err(ActionError::Both { first: "command", second: "argv" }),
        (None, None) => {
            return Err(ActionError::Neither {
                choices: "`command` (run with sh -c) or `argv` (program and arguments)",
            })
        }
    })
}

pub async fn run(input: Input, ctx: &ActionCtx<'_>) -> Result<Outputs, ActionError> {
    let mut cmd = command(&input)?;
    for key in input.env.keys() {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(ActionError::EnvName { name: key.clone() });
        }
    }
    let cwd = match input.cwd.as_deref() {
        Some(c) => Some(ctx.resolve_path(c)),
        None => Some(ctx.base_dir.clone()).filter(|d| !d.as_os_str().is_empty()),
    };
    let expect = input.expect_exit.clone().unwrap_or(ExitExpect::One(0));
    let shown = shown(&input);

    if ctx.dry_run {
        let mut would = format!("run {shown}");
        if let Some(dir) = &cwd {
            would.push_str(&format!(" in {}", dir.display()));
        }
        let mut out = Outputs::new();
        out.insert("dry_run".into(), Value::Bool(true));
        out.insert("would".into(), Value::String(would));
        return Ok(out);
    }

    if let Some(dir) = &cwd {
        if !dir.is_dir() {
            return Err(ActionError::NotADirectory { path: dir.clone() });
        }
        cmd.current_dir(dir);
    }
    cmd.envs(&input.env)
        .stdin(Stdio::null())
        .stdout(if input.capture { Stdio::piped() } else { Stdio::null() })
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let (status, stdout, stderr) = run_child(cmd, &input, &shown).await?;

    let exit_code = match status.code() {
        Some(code) => code,
        None => {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        }
    };
    let stderr_text = stderr.text();
    if !expect.codes().contains(&exit_code) {
        return Err(ActionError::Exited {
            command: shown,
            status,
            expected: expect.describe(),
            stderr_note: stderr_note(&stderr_text),
            via_shell: input.command.is_some(),
        });
    }

    let mut out = Outputs::new();
    out.insert("exit_code".into(), Value::from(exit_code));
    if input.capture {
        out.insert("stdout".into(), Value::String(stdout.text().trim().to_string()));
        out.insert("stdout_truncated".into(), Value::Bool(stdout.truncated()));
    }
    out.insert("stderr".into(), Value::String(stderr_text));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_head_and_tail() {
        let mut head = Capture::new(false, 4);
        head.push(b"ab");
        head.push(b"cdef");
        assert_eq!(head.text(), "abcd");
        assert!(head.truncated());
        let mut tail = Capture::new(true, 4);
        tail.push(b"ab");
        tail.push(b"cdef");
        assert_eq!(tail.text(), "cdef");
        let mut tail = Capture::new(true, 3);
        tail.push("xé".as_bytes());
        tail.push(b"z");
        assert_eq!(tail.text(), "éz");
        let mut cut = Capture::new(true, 2);
        cut.push("é!".as_bytes());
        assert_eq!(cut.text(), "!");
    }

    #[test]
    fn exit_expectations() {
        let one: ExitExpect = serde_json::from_value(serde_json::json!(3)).unwrap();
        assert_eq!(one.codes(), &[3]);
        let many: ExitExpect = serde_json::from_value(serde_json::json!([0, "1"])).unwrap();
        assert_eq!(many.describe(), "0 or 1");
        assert!(serde_json::from_value::<ExitExpect>(serde_json::json!("x")).is_err());
        assert!(serde_json::from_value::<ExitExpect>(serde_json::json!([])).is_err());
    }

    #[test]
    fn argv_is_shown_quoted() {
        let input: Input = serde_json::from_value(serde_json::json!({"argv": ["echo", "a b", "it's"]})).unwrap();
        assert_eq!(shown(&input), r#"`echo 'a b' 'it'\''s'`"#);
    }
}
