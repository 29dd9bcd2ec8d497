//! Local throwaway PostgreSQL clusters (initdb + pg_ctl on a free loopback port), used by
//! `opsbook sandbox`, `restore-drill --ephemeral` and the test harness. When running as root the
//! server runs as the `postgres` OS user, because Postgres refuses to run as root.
//!
//! Layout of a cluster directory:
//! `cluster.json` (0600: port, superuser password, binaries), `postgres.log`, `data/` (PGDATA),
//! `sock/` (Unix socket, when the path is short enough).

use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rand::distr::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::tools::{discover_server, server_bins_in, ServerBins};
use super::{quote_ident, DbUrl, PgError};
use crate::error::ErrorClass;

mod adopt;

const STATE_FILE: &str = "cluster.json";
const LOG_FILE: &str = "postgres.log";
const DATA_DIR: &str = "data";
const SOCK_DIR: &str = "sock";
const CONF_FILE: &str = "opsbook.conf";
const SUPERUSER: &str = "postgres";
/// Unix socket paths are limited to 107 bytes; `/.s.PGSQL.65535` takes 16 of them.
const MAX_SOCKET_DIR_LEN: usize = 90;
const START_ATTEMPTS: usize = 3;

/// A throwaway cluster in its own directory.
#[derive(Clone)]
pub struct LocalCluster {
    /// The cluster directory (state file, log, data and socket directories).
    pub dir: PathBuf,
    /// PGDATA (`dir/data`).
    pub data_dir: PathBuf,
    pub port: u16,
    pub superuser: String,
    password: String,
    bins: ServerBins,
    run_as: Option<RunAs>,
    /// The Unix socket directory: `dir/sock` when that path is short enough; a short private
    /// directory for an adopted cluster whose path is not.
    sock: Option<PathBuf>,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .field("superuser", &self.superuser)
            .field("password", &"***")
            .field("bin_dir", &self.bins.bin_dir)
            .field("run_as", &self.run_as.as_ref().map(|r| r.uid))
            .finish()
    }
}

/// The OS user the server runs as when we are root.
#[derive(Debug, Clone)]
struct RunAs {
    uid: u32,
    gid: u32,
    home: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct State {
    version: u32,
    port: u16,
    superuser: String,
    password: String,
    bin_dir: PathBuf,
    major: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    socket_dir: Option<PathBuf>,
}

impl LocalCluster {
    /// Creates (initdb) a new cluster in `dir`, which must not already hold one. The cluster is
    /// not started. On failure nothing created here is left behind.
    pub fn create(dir: &Path) -> Result<Self, PgError> {
        let dir = std::path::absolute(dir).map_err(|e| PgError::io("resolve", dir, e))?;
        if dir.join(STATE_FILE).exists() || dir.join(DATA_DIR).exists() {
            return Err(PgError::cluster(
                "create cluster in",
                &dir,
                "a cluster already exists there (open it, or destroy it first)",
                ErrorClass::Usage,
            ));
        }
        let bins = discover_server()?;
        let run_as = run_as()?;
        let existed = dir.exists();
        std::fs::create_dir_all(&dir).map_err(|e| PgError::io("create directory", &dir, e))?;
        let result = Self::init(&dir, bins, run_as);
        if result.is_err() {
            if existed {
                for name in [DATA_DIR, SOCK_DIR] {
                    let _ = std::fs::remove_dir_all(dir.join(name));
                }
                for name in [STATE_FILE, LOG_FILE, ".pwfile"] {
                    let _ = std::fs::remove_file(dir.join(name));
                }
            } else {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        result
    }

    fn init(dir: &Path, bins: ServerBins, run_as: Option<RunAs>) -> Result<Self, PgError> {
        if let Some(r) = &run_as {
            make_reachable(dir, r)?;
        }
        let data_dir = dir.join(DATA_DIR);
        make_private_dir(&data_dir, run_as.as_ref())?;
        if socket_dir(dir).is_some() {
            make_private_dir(&dir.join(SOCK_DIR), run_as.as_ref())?;
        }
        let log = dir.join(LOG_FILE);
        write_private(&log, b"", run_as.as_ref())?;

        let password: String = rand::rng().sample_iter(&Alphanumeric).take(32).map(char::from).collect();
        let pwfile = dir.join(".pwfile");
        write_private(&pwfile, password.as_bytes(), run_as.as_ref())?;

        let cluster = LocalCluster {
            dir: dir.to_path_buf(),
            data_dir: data_dir.clone(),
            port: free_port(dir)?,
            superuser: SUPERUSER.to_string(),
            password,
            bins,
            run_as,
            sock: socket_dir(dir),
        };

        let mut initdb = cluster.command(&cluster.bins.initdb);
        initdb
            .arg("-D")
            .arg(&data_dir)
            .arg("--auth-local=trust")
            .arg("--auth-host=scram-sha-256")
            .arg(format!("--username={SUPERUSER}"))
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("--encoding=UTF8")
            .arg("--no-sync");
        // C.UTF-8 gives Unicode-aware upper()/lower(); plain C where the locale is missing.
        if Path::new("/usr/lib/locale/C.utf8").exists() {
            initdb.arg("--locale=C.UTF-8");
        } else {
            initdb.arg("--no-locale");
        }
        let out = run(&mut initdb, "initdb", &cluster.bins.initdb);
        let _ = std::fs::remove_file(&pwfile);
        let out = out?;
        if !out.status.success() {
            return Err(PgError::Tool {
                op: "initdb".into(),
                program: cluster.bins.initdb.clone(),
                detail: output_tail(&out),
            });
        }

        // Pull our settings in from a file we can rewrite when the port changes.
        let conf = data_dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(|e| PgError::io("read", &conf, e))?;
        text.push_str(&format!("\n# Added by opsbook\ninclude_if_exists = '{CONF_FILE}'\n"));
        std::fs::write(&conf, text).map_err(|e| PgError::io("write", &conf, e))?;
        cluster.write_conf()?;
        cluster.write_state()?;
        Ok(cluster)
    }

    /// Reattaches to a cluster created earlier (possibly by another process) in `dir`.
    pub fn open(dir: &Path) -> Result<Self, PgError> {
        let dir = std::path::absolute(dir).map_err(|e| PgError::io("resolve", dir, e))?;
        let path = dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(PgError::cluster(
                    "open cluster in",
                    &dir,
                    "no opsbook cluster there (cluster.json is missing)",
                    ErrorClass::Usage,
                ))
            }
            Err(e) => return Err(PgError::io("read", &path, e)),
        };
        let state: State = serde_json::from_str(&text).map_err(|e| {
            PgError::cluster("open cluster in", &dir, format!("corrupt cluster.json: {e}"), ErrorClass::Failed)
        })?;
        let bins = match server_bins_in(&state.bin_dir) {
            Some(b) if b.major == state.major => b,
            _ => {
                let b = discover_server()?;
                if b.major != state.major {
                    return Err(PgError::NoServerForCluster { dir: dir.clone(), major: state.major, found: b.major });
                }
                b
            }
        };
        Ok(LocalCluster {
            data_dir: dir.join(DATA_DIR),
            sock: state.socket_dir.or_else(|| socket_dir(&dir)),
            dir,
            port: state.port,
            superuser: state.superuser,
            password: state.password,
            bins,
            run_as: run_as()?,
        })
    }

    /// True when `dir` holds a cluster created by [`LocalCluster::create`].
    pub fn exists(dir: &Path) -> bool {
        dir.join(STATE_FILE).is_file()
    }

    /// Starts the server and waits until it accepts connections. Already running → Ok. When the
    /// port was taken meanwhile, a new free port is picked (and remembered).
    pub fn start(&mut self) -> Result<(), PgError> {
        if self.is_running() {
            return Ok(());
        }
        let mut last = None;
        for attempt in 0..START_ATTEMPTS {
            if attempt > 0 || !port_is_free(self.port) {
                self.port = free_port(&self.dir)?;
                self.write_conf()?;
                self.write_state()?;
            }
            let log = self.log_path();
            let offset = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
            let mut cmd = self.command(&self.bins.pg_ctl);
            cmd.arg("-D").arg(&self.data_dir).arg("-l").arg(&log).args(["-w", "-t", "60", "start"]);
            let out = run(&mut cmd, "start PostgreSQL", &self.bins.pg_ctl)?;
            if out.status.success() {
                return Ok(());
            }
            let log_tail = read_tail(&log, offset, 20);
            let port_clash = log_tail.contains("Address already in use");
            last = Some(PgError::Tool {
                op: format!("start PostgreSQL in {}", self.data_dir.display()),
                program: self.bins.pg_ctl.clone(),
                detail: format!("{}\n--- last lines of {} ---\n{}", output_tail(&out), log.display(), log_tail),
            });
            if !port_clash {
                break;
            }
        }
        Err(last.expect("at least one start attempt"))
    }

    /// Stops the server (fast shutdown: disconnects clients, no recovery needed). Not running → Ok.
    pub fn stop(&self) -> Result<(), PgError> {
        self.stop_mode("fast")
    }

    /// Stops the server without a clean shutdown (for process-exit hooks of throwaway clusters).
    pub fn stop_immediate(&self) -> Result<(), PgError> {
        self.stop_mode("immediate")
    }

    fn stop_mode(&self, mode: &str) -> Result<(), PgError> {
        if !self.is_running() {
            return Ok(());
        }
        let mut cmd = self.command(&self.bins.pg_ctl);
        cmd.arg("-D").arg(&self.data_dir).args(["-m", mode, "-w", "-t", "60", "stop"]);
        let out = run(&mut cmd, "stop PostgreSQL", &self.bins.pg_ctl)?;
        if out.status.success() || !self.is_running() {
            Ok(())
        } else {
            Err(PgError::Tool {
                op: format!("stop PostgreSQL in {}", self.data_dir.display()),
                program: self.bins.pg_ctl.clone(),
                detail: output_tail(&out),
            })
        }
    }

    /// True when a server is running on this data directory (`pg_ctl status`).
    pub fn is_running(&self) -> bool {
        if !self.data_dir.join("PG_VERSION").exists() {
            return false;
        }
        let mut cmd = self.command(&self.bins.pg_ctl);
        cmd.arg("-D").arg(&self.data_dir).arg("status");
        cmd.output().map(|o| o.status.success()).unwrap_or(false)
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/db` (contains the password).
    pub fn url(&self, db: &str) -> DbUrl {
        DbUrl::parse(&format!("postgres://{}:{}@127.0.0.1:{}/postgres", self.superuser, self.password, self.port))
            .expect("generated cluster URL parses")
            .with_database(db)
    }

    /// Creates a database owned by the superuser and returns its URL. The server must be running.
    pub async fn create_database(&self, name: &str) -> Result<DbUrl, PgError> {
        let admin = self.url("postgres");
        let mut conn = super::connect(&admin).await?;
        let sql = format!("CREATE DATABASE {}", quote_ident(name));
        // `Executor::execute` (a boxed, Send future) rather than `RawSql::execute`, whose
        // generic async fn makes callers' futures non-Send.
        sqlx::Executor::execute(&mut conn, sqlx::raw_sql(&sql))
            .await
            .map_err(|e| PgError::query(format!("create database {name}"), admin.redacted(), e))?;
        Ok(self.url(name))
    }

    /// Stops the server and removes the whole cluster directory.
    pub fn destroy(self) -> Result<(), PgError> {
        if self.stop().is_err() {
            self.stop_immediate()?;
        }
        if let Some(sock) = self.sock.as_ref().filter(|s| !s.starts_with(&self.dir)) {
            let _ = std::fs::remove_dir_all(sock);
        }
        std::fs::remove_dir_all(&self.dir).map_err(|e| PgError::io("remove", &self.dir, e))
    }

    /// The shell command that stops this cluster, as whoever runs it now would type it: the
    /// full `pg_ctl` path, and run as the `postgres` OS user when the cluster runs as that user.
    pub fn stop_command(&self) -> String {
        let pg_ctl = format!("{} -D {} stop", self.bins.pg_ctl.display(), self.data_dir.display());
        match &self.run_as {
            Some(_) => format!("runuser -u {SUPERUSER} -- {pg_ctl}"),
            None => pg_ctl,
        }
    }

    /// The server log (`dir/postgres.log`).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    /// The superuser password (a secret; never log it).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The server binaries this cluster runs with.
    pub fn bins(&self) -> &ServerBins {
        &self.bins
    }

    /// The Unix socket directory, when the cluster listens on one.
    pub fn socket_dir(&self) -> Option<PathBuf> {
        self.sock.clone()
    }

    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.stdin(Stdio::null()).current_dir(&self.dir);
        if let Some(r) = &self.run_as {
            cmd.uid(r.uid).gid(r.gid).env("HOME", &r.home).env("USER", SUPERUSER).env("LOGNAME", SUPERUSER);
        }
        cmd
    }

    fn write_conf(&self) -> Result<(), PgError> {
        let sock = self.sock.as_ref().map(|p| p.display().to_string().replace('\'', "''")).unwrap_or_default();
        let text = format!(
            "# Written by opsbook for a throwaway local cluster; rewritten on every start.\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{sock}'\n\
             # Durability is pointless for a throwaway cluster and costs a lot of time:\n\
             # a crash may corrupt it, which is acceptable here (never use this for real data).\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             max_connections = 100\n\
             shared_buffers = 64MB\n",
            port = self.port
        );
        write_private(&self.data_dir.join(CONF_FILE), text.as_bytes(), self.run_as.as_ref())
    }

    fn write_state(&self) -> Result<(), PgError> {
        let state = State {
            version: 1,
            port: self.port,
            superuser: self.superuser.clone(),
            password: self.password.clone(),
            bin_dir: self.bins.bin_dir.clone(),
            major: self.bins.major,
            // Only a socket directory outside the cluster directory needs remembering.
            socket_dir: self.sock.clone().filter(|s| !s.starts_with(&self.dir)),
        };
        let json = serde_json::to_vec_pretty(&state).expect("state serializes");
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        write_private(&tmp, &json, None)?;
        let path = self.dir.join(STATE_FILE);
        std::fs::rename(&tmp, &path).map_err(|e| PgError::io("write", &path, e))
    }
}

/// The `postgres` OS user when we are root, since Postgres refuses to run as root.
fn run_as() -> Result<Option<RunAs>, PgError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name(SUPERUSER).map_err(|error| PgError::PostgresUserLookup { error })?;
    match user {
        Some(u) => Ok(Some(RunAs { uid: u.uid.as_raw(), gid: u.gid.as_raw(), home: u.dir })),
        None => Err(PgError::NoPostgresUser),
    }
}

/// Makes `dir` and its ancestors traversable by the server's OS user. `dir` itself and
/// ancestors inside the system temp directory (tempdirs are 0700) get `o+x`; any other
/// unreachable ancestor is an error naming it, rather than a silent chmod of e.g. /root.
fn make_reachable(dir: &Path, r: &RunAs) -> Result<(), PgError> {
    let tmp = std::env::temp_dir();
    for (i, ancestor) in dir.ancestors().enumerate() {
        let meta = std::fs::metadata(ancestor).map_err(|e| PgError::io("inspect", ancestor, e))?;
        let mode = meta.permissions().mode();
        if can_traverse(&meta, mode, r) {
            continue;
        }
        let ours = i == 0 || (ancestor.starts_with(&tmp) && ancestor != tmp);
        if !ours {
            return Err(PgError::cluster(
                "create cluster in",
                dir,
                format!(
                    "the `postgres` OS user (the server cannot run as root) cannot enter {} (mode {:o}); \
                     run `chmod o+x {}` or put the cluster in a directory it can reach",
                    ancestor.display(),
                    mode & 0o7777,
                    ancestor.display()
                ),
                ErrorClass::Failed,
            ));
        }
        let new_mode = (mode & 0o7777) | 0o011;
        std::fs::set_permissions(ancestor, std::fs::Permissions::from_mode(new_mode))
            .map_err(|e| PgError::io("chmod", ancestor, e))?;
    }
    Ok(())
}

fn can_traverse(meta: &std::fs::Metadata, mode: u32, r: &RunAs) -> bool {
    use std::os::unix::fs::MetadataExt;
    if meta.uid() == r.uid {
        mode & 0o100 != 0
    } else if meta.gid() == r.gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

/// Creates a 0700 directory owned by the server's OS user.
fn make_private_dir(path: &Path, r: Option<&RunAs>) -> Result<(), PgError> {
    std::fs::create_dir_all(path).map_err(|e| PgError::io("create directory", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| PgError::io("chmod", path, e))?;
    chown(path, r)
}

/// Writes a 0600 file (created with that mode), owned by the server's OS user when given.
fn write_private(path: &Path, contents: &[u8], r: Option<&RunAs>) -> Result<(), PgError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| PgError::io("write", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| PgError::io("chmod", path, e))?;
    f.write_all(contents).map_err(|e| PgError::io("write", path, e))?;
    chown(path, r)
}

fn chown(path: &Path, r: Option<&RunAs>) -> Result<(), PgError> {
    match r {
        Some(r) => std::os::unix::fs::chown(path, Some(r.uid), Some(r.gid)).map_err(|e| PgError::io("chown", path, e)),
        None => Ok(()),
    }
}

fn socket_dir(dir: &Path) -> Option<PathBuf> {
    let sock = dir.join(SOCK_DIR);
    (sock.as_os_str().len() <= MAX_SOCKET_DIR_LEN).then_some(sock)
}

fn free_port(dir: &Path) -> Result<u16, PgError> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| PgError::io("find a free loopback port for the cluster in", dir, e))
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn run(cmd: &mut Command, op: &str, program: &Path) -> Result<Output, PgError> {
    cmd.output().map_err(|e| PgError::Tool {
        op: op.to_string(),
        program: program.to_path_buf(),
        detail: format!("cannot run it: {e}"),
    })
}

fn output_tail(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if text.is_empty() {
        text = stdout.trim().to_string();
    }
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    if tail.is_empty() {
        format!("exited with {}", out.status)
    } else {
        tail
    }
}

/// The last `lines` lines of a file from byte `offset` on.
fn read_tail(path: &Path, offset: u64, lines: usize) -> String {
    let mut buf = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.seek(SeekFrom::Start(offset));
        let _ = f.read_to_string(&mut buf);
    }
    let all: Vec<&str> = buf.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_dir_only_when_short() {
        assert_eq!(socket_dir(Path::new("/tmp/x")), Some(PathBuf::from("/tmp/x/sock")));
        let long = PathBuf::from(format!("/{}", "d".repeat(100)));
        assert_eq!(socket_dir(&long), None);
    }

    #[test]
    fn tail_reads_from_offset() {
        let dir = std::env::temp_dir().join(format!("opsbook-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("log");
        std::fs::write(&f, "old\nnew1\nnew2\nnew3\n").unwrap();
        assert_eq!(read_tail(&f, 4, 2), "new2\nnew3");
        assert_eq!(read_tail(&f, 4, 10), "new1\nnew2\nnew3");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn free_port_is_bindable() {
        let p = free_port(Path::new("/tmp")).unwrap();
        assert!(p > 0);
    }
}
