//! Restored clusters: a data directory another tool (pgBackRest) restored, made into a
//! throwaway [`LocalCluster`] with our port, socket and authentication, started without waiting
//! for recovery, and claimed (superuser password set) once recovery ends.

use std::path::{Path, PathBuf};

use rand::distr::Alphanumeric;
use rand::Rng;

use super::*;

impl LocalCluster {
    /// Makes a throwaway cluster of a data directory another tool restored into `dir/data`
    /// (pgBackRest): our port, socket and state file, local socket connections trusted (the
    /// socket directory is private), TCP with a new superuser password set by [`Self::claim`],
    /// archiving off, and no connections until recovery ends (so hot-standby settings of the
    /// source never stop it). The restored configuration is otherwise kept.
    pub fn adopt(dir: &Path, superuser: &str) -> Result<Self, PgError> {
        let dir = std::path::absolute(dir).map_err(|e| PgError::io("resolve", dir, e))?;
        let data_dir = dir.join(DATA_DIR);
        let version_file = data_dir.join("PG_VERSION");
        let major: u32 = std::fs::read_to_string(&version_file)
            .map_err(|e| PgError::io("read", &version_file, e))?
            .trim()
            .parse()
            .map_err(|_| {
                PgError::cluster("adopt cluster in", &dir, "PG_VERSION is not a major version", ErrorClass::Failed)
            })?;
        let bins = match server_bins_in(&Path::new("/usr/lib/postgresql").join(major.to_string()).join("bin")) {
            Some(b) => b,
            None => {
                let b = discover_server()?;
                if b.major != major {
                    return Err(PgError::NoServerForRestore { major, found: b.major });
                }
                b
            }
        };
        let run_as = run_as()?;
        if let Some(r) = &run_as {
            make_reachable(&dir, r)?;
        }
        // The socket is how the superuser's password gets set: a deep cluster directory gets a
        // short private socket directory of its own.
        let sock = match socket_dir(&dir) {
            Some(sock) => sock,
            None => {
                // Not TMPDIR, which may be the deep directory itself.
                let tmp = Some(PathBuf::from("/tmp")).filter(|t| t.is_dir()).unwrap_or_else(std::env::temp_dir);
                tmp.join(format!("opsbook-sock-{:08x}", rand::random::<u32>()))
            }
        };
        make_private_dir(&sock, run_as.as_ref())?;
        write_private(&dir.join(LOG_FILE), b"", run_as.as_ref())?;
        let conf = data_dir.join("postgresql.conf");
        if !conf.exists() {
            write_private(
                &conf,
                b"# Restored without a postgresql.conf (it lived outside the data directory).\n",
                run_as.as_ref(),
            )?;
        }
        let hba = data_dir.join("opsbook_hba.conf");
        write_private(
            &hba,
            b"# Written by opsbook for a restored throwaway cluster.\nlocal all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
            run_as.as_ref(),
        )?;
        let auto = data_dir.join("postgresql.auto.conf");
        let mut text = std::fs::read_to_string(&auto).unwrap_or_default();
        text.push_str(&format!(
            "\n# Added by opsbook for a restored throwaway cluster\ninclude_if_exists = '{CONF_FILE}'\n\
             hba_file = '{}'\narchive_mode = off\nhot_standby = off\n",
            hba.display().to_string().replace('\'', "''")
        ));
        write_private(&auto, text.as_bytes(), run_as.as_ref())?;
        let cluster = LocalCluster {
            port: free_port(&dir)?,
            data_dir,
            superuser: superuser.to_string(),
            password: rand::rng().sample_iter(&Alphanumeric).take(32).map(char::from).collect(),
            bins,
            run_as,
            dir,
            sock: Some(sock),
        };
        cluster.write_conf()?;
        cluster.write_state()?;
        Ok(cluster)
    }

    /// Starts the server without waiting: a restored cluster may replay WAL for a long time
    /// before it accepts connections ([`Self::claim`] waits for that).
    pub fn start_recovery(&self) -> Result<(), PgError> {
        let mut cmd = self.command(&self.bins.pg_ctl);
        cmd.arg("-D").arg(&self.data_dir).arg("-l").arg(self.log_path()).args(["-W", "start"]);
        let out = run(&mut cmd, "start PostgreSQL", &self.bins.pg_ctl)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(PgError::Tool {
                op: format!("start PostgreSQL in {}", self.data_dir.display()),
                program: self.bins.pg_ctl.clone(),
                detail: output_tail(&out),
            })
        }
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        read_tail(&self.log_path(), 0, lines)
    }

    /// Once an adopted cluster accepts connections on its socket, sets the superuser's password
    /// so [`Self::url`] works. Err while it is still starting or recovering.
    pub async fn claim(&self) -> Result<(), PgError> {
        let Some(sock) = self.socket_dir() else {
            return Err(PgError::cluster(
                "connect to",
                &self.dir,
                "the cluster directory's path is too long for a Unix socket; use a shorter temp directory",
                ErrorClass::Usage,
            ));
        };
        let url = DbUrl::parse(&format!(
            "postgres://{}@localhost:{}/postgres?host={}",
            self.superuser,
            self.port,
            sock.display()
        ))?;
        let mut conn = crate::pg::connect(&url).await?;
        let sql = format!(
            "ALTER ROLE {} PASSWORD {}",
            quote_ident(&self.superuser),
            crate::pg::quote_literal(&self.password)
        );
        sqlx::Executor::execute(&mut conn, sqlx::raw_sql(&sql))
            .await
            .map_err(|e| PgError::query("set the superuser password", url.redacted(), e))?;
        Ok(())
    }
}
