//! moto's S3 server (Python, from PyPI) on 127.0.0.1, for the bucket-configuration APIs s3s-fs
//! lacks (versioning, lifecycle, CORS, public access block). One server per test binary; it dies
//! with the test process.

use std::os::unix::process::CommandExt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const REGION: &str = "us-east-1";

pub struct Moto {
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
}

impl Moto {
    pub fn shared() -> &'static Moto {
        static MOTO: OnceLock<Moto> = OnceLock::new();
        MOTO.get_or_init(Moto::start)
    }

    fn start() -> Moto {
        super::tools::require("moto", "moto.server", "the provision tests (moto's S3 server)");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let endpoint = format!("http://127.0.0.1:{port}");
        // Spawned from a thread that never ends, so PDEATHSIG fires only when the test process
        // exits (it fires when the spawning thread dies).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut cmd = std::process::Command::new(super::tools::python());
            cmd.args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            // SAFETY: the closure only calls prctl, which is async-signal-safe, between fork and exec.
            #[allow(unsafe_code)]
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = cmd.spawn();
            let ok = child.is_ok();
            tx.send(child.map(drop).map_err(|e| e.to_string())).unwrap();
            if ok {
                loop {
                    std::thread::park();
                }
            }
        });
        rx.recv().unwrap().unwrap_or_else(|e| panic!("cannot start moto: {e}; {}", super::tools::INSTALL_HINT));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not listen on {endpoint} within 30s; {}",
                super::tools::INSTALL_HINT
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { endpoint }
    }

    /// Environment reaching this server and nothing else.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_SESSION_TOKEN", ""),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent/aws-config"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials"),
            ("R2_ENDPOINT", ""),
            ("R2_ACCESS_KEY_ID", ""),
            ("R2_SECRET_ACCESS_KEY", ""),
            ("R2_BUCKET", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// AWS SDK settings reaching this server (for S3, IAM and Secrets Manager clients).
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
                aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "test"),
            ))
            .build()
    }

    /// An S3 client for reading back what opsbook configured.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(&self.sdk_config()).force_path_style(true).build();
        aws_sdk_s3::Client::from_conf(config)
    }
}
