//! The pgBackRest configuration file opsbook writes for a stanza: repository, retention,
//! compression, encryption and the cluster, from the resolved profile. It holds the repository's
//! secrets, so it is written 0600 and owned by the user pgBackRest runs as.

use std::fmt::Write as _;

use super::{Pitr, Repo};

/// The configuration file's text. `log`, `lock` and `spool` paths are under `p.dir`.
pub fn render(p: &Pitr) -> String {
    let mut g = Vec::<(&str, String)>::new();
    match &p.repo {
        Repo::Local(path) => {
            g.push(("repo1-type", "posix".into()));
            g.push(("repo1-path", path.display().to_string()));
        }
        Repo::S3(s) => {
            g.push(("repo1-type", "s3".into()));
            g.push(("repo1-path", s.path.clone()));
            g.push(("repo1-s3-bucket", s.bucket.clone()));
            g.push(("repo1-s3-endpoint", s.endpoint.clone()));
            g.push(("repo1-s3-region", s.region.clone()));
            g.push(("repo1-s3-key", s.key.clone()));
            g.push(("repo1-s3-key-secret", s.secret.clone()));
            if s.path_style {
                g.push(("repo1-s3-uri-style", "path".into()));
            }
            if let Some(port) = s.port {
                g.push(("repo1-storage-port", port.to_string()));
            }
            if let Some(ca) = &s.ca_file {
                g.push(("repo1-storage-ca-file", ca.display().to_string()));
            }
        }
    }
    g.push(("repo1-retention-full", p.keep_full.to_string()));
    if let Some(d) = p.keep_diff {
        g.push(("repo1-retention-diff", d.to_string()));
    }
    if let Some(pass) = &p.cipher_pass {
        g.push(("repo1-cipher-type", "aes-256-cbc".into()));
        g.push(("repo1-cipher-pass", pass.clone()));
    }
    g.push(("compress-type", p.compress_type.clone()));
    if let Some(level) = p.compress_level {
        g.push(("compress-level", level.to_string()));
    }
    g.push(("process-max", p.process_max.to_string()));
    g.push(("start-fast", "y".into()));
    g.push(("log-path", p.dir.join("log").display().to_string()));
    g.push(("lock-path", p.dir.join("lock").display().to_string()));
    g.push(("spool-path", p.dir.join("spool").display().to_string()));
    g.push(("log-level-file", "info".into()));

    let mut out = format!(
        "# Written by `opsbook pitr setup` (profile {}); it is rewritten by the next setup, so change\n\
         # [profiles.{}.pitr] in opsbook.toml rather than this file.\n[global]\n",
        p.profile, p.profile
    );
    for (k, v) in &g {
        let _ = writeln!(out, "{k}={v}");
    }
    let _ = write!(
        out,
        "\n[{}]\npg1-path={}\npg1-port={}\npg1-socket-path={}\n",
        p.stanza,
        p.pg_path.display(),
        p.pg_port,
        p.socket_dir.display()
    );
    out
}
