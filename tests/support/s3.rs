//! A real S3 server for tests: s3s + s3s-fs over HTTP on 127.0.0.1 with SigV4 auth enabled.
//!
//! s3s-fs 0.14 does not implement ListMultipartUploads, which opsbook needs to find abandoned
//! uploads; `TrackedFs` wraps it, delegates every operation s3s-fs implements, and keeps the
//! multipart uploads in flight so it can answer that call.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3Request, S3Response, S3Result, S3};
use s3s_fs::FileSystem;

pub const BUCKET: &str = "opsbook-test";
pub const REGION: &str = "us-east-1";

/// Key prefix under which the server does not implement ListMultipartUploads.
pub const NO_UPLOAD_LISTING: &str = "no-upload-listing";

/// Key prefix under which CreateMultipartUpload answers 2 s after the upload exists.
pub const SLOW_CREATE: &str = "slow-create";

/// A running server. Dropping it stops the server and removes its directory; the `shared()`
/// one lives for the whole test binary and its directory is removed at process exit.
pub struct S3Server {
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
    /// The s3s-fs root; the bucket is the directory `root/<bucket>`.
    pub root: PathBuf,
    dir: Option<tempfile::TempDir>,
    uploads: Arc<Mutex<BTreeMap<String, InFlight>>>,
    shutdown: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl S3Server {
    /// Starts a server with a fresh temp dir, the bucket `opsbook-test` and random credentials.
    pub fn start() -> S3Server {
        S3Server::start_with(false)
    }

    /// The same server over HTTPS (`https://127.0.0.1:<port>`), presenting the test CA's
    /// certificate: for clients that speak only TLS (pgBackRest).
    pub fn start_tls() -> S3Server {
        S3Server::start_with(true)
    }

    fn start_with(tls: bool) -> S3Server {
        let dir =
            tempfile::Builder::new().prefix("opsbook-s3-").tempdir().expect("create a temp dir for the S3 server");
        let root = dir.path().canonicalize().expect("canonicalize the S3 server root");
        std::fs::create_dir(root.join(BUCKET)).expect("create the test bucket directory");

        let access_key = format!("OPSBOOKTEST{:016X}", rand::random::<u64>());
        let secret_key = hex::encode(rand::random::<[u8; 20]>());

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("make the listener non-blocking");
        let scheme = if tls { "https" } else { "http" };
        let endpoint = format!("{scheme}://{}", listener.local_addr().expect("listener address"));
        let acceptor = tls.then(|| tokio_rustls::TlsAcceptor::from(super::tls::TestCa::shared().server_config()));

        let fs = FileSystem::new(&root).expect("open the s3s-fs root");
        let uploads = Arc::new(Mutex::new(BTreeMap::new()));
        let tracked = TrackedFs { inner: fs, root: root.clone(), uploads: Arc::clone(&uploads) };
        let mut builder = S3ServiceBuilder::new(tracked);
        builder.set_auth(SimpleAuth::from_single(access_key.clone(), secret_key.clone()));
        let service = builder.build();

        let (shutdown, stop) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("s3s-fs".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("build the S3 server runtime");
                runtime.block_on(serve(listener, service, acceptor, stop));
            })
            .expect("spawn the S3 server thread");

        S3Server {
            endpoint,
            access_key,
            secret_key,
            bucket: BUCKET.to_owned(),
            root,
            dir: Some(dir),
            uploads,
            shutdown: Mutex::new(Some(shutdown)),
            thread: Mutex::new(Some(thread)),
        }
    }

    /// One server per test binary.
    pub fn shared() -> &'static S3Server {
        static SHARED: OnceLock<S3Server> = OnceLock::new();
        SHARED.get_or_init(|| {
            let mut server = S3Server::start();
            // Statics are never dropped: hand the directory to an exit hook instead.
            let dir = server.dir.take().expect("a fresh server owns its dir");
            remove_at_exit(dir.keep());
            server
        })
    }

    /// Environment for a child process (or an in-process SDK) to reach this server and nothing
    /// else: endpoint, credentials and region, with profiles, IMDS and R2 variables neutralised.
    pub fn env(&self) -> Vec<(String, String)> {
        let missing = |name: &str| self.root.join(format!(".no-{name}")).display().to_string();
        [
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_SESSION_TOKEN", String::new()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_DEFAULT_REGION", REGION.to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("AWS_CONFIG_FILE", missing("aws-config")),
            ("AWS_SHARED_CREDENTIALS_FILE", missing("aws-credentials")),
            ("R2_ENDPOINT", String::new()),
            ("R2_ACCESS_KEY_ID", String::new()),
            ("R2_SECRET_ACCESS_KEY", String::new()),
            ("R2_BUCKET", String::new()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    /// Store options that reach this server without touching the process environment.
    pub fn options(&self) -> opsbook::store::StoreOptions {
        opsbook::store::StoreOptions {
            path_style: Some(true),
            endpoint: Some(self.endpoint.clone()),
            region: Some(REGION.to_owned()),
            access_key: Some(self.access_key.clone()),
            secret_key: Some(self.secret_key.clone()),
            sign_payload: None,
        }
    }

    /// `s3://opsbook-test/<prefix>`. Under a prefix starting with [`NO_UPLOAD_LISTING`] the
    /// server answers ListMultipartUploads with NotImplemented, as some providers do.
    pub fn url(&self, prefix: &str) -> String {
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{prefix}", self.bucket)
        }
    }

    /// The file s3s-fs keeps the object `key` (a full bucket key) in.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.root.join(&self.bucket).join(key)
    }

    /// Full bucket keys of the objects whose key starts with `prefix`, sorted, read straight
    /// from the s3s-fs directory (no HTTP, so usable from synchronous tests).
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let bucket_dir = self.root.join(&self.bucket);
        let mut keys = Vec::new();
        let mut dirs = vec![bucket_dir.clone()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for path in entries.flatten().map(|entry| entry.path()) {
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let Ok(relative) = path.strip_prefix(&bucket_dir) else {
                    continue;
                };
                let key = relative.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/");
                if key.starts_with(prefix) {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        keys
    }

    /// Multipart uploads begun and neither completed nor aborted, as `(key, upload_id)`, as
    /// the server sees them.
    pub fn pending_uploads(&self) -> Vec<(String, String)> {
        let uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        uploads.iter().map(|(id, u)| (u.key.clone(), id.clone())).collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    service: S3Service,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("register the listener");
    let http = ConnBuilder::new(TokioExecutor::new());
    loop {
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(_) => continue,
            },
            _ = &mut stop => break,
        };
        let (http, service) = (http.clone(), service.clone());
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => {
                    let _ = http.serve_connection(TokioIo::new(socket), service).await;
                }
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(socket).await {
                        let _ = http.serve_connection(TokioIo::new(tls), service).await;
                    }
                }
            }
        });
    }
}

static EXIT_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn remove_at_exit(dir: PathBuf) {
    extern "C" fn remove_dirs() {
        let dirs = std::mem::take(&mut *EXIT_DIRS.lock().unwrap_or_else(|e| e.into_inner()));
        for dir in dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    let mut dirs = EXIT_DIRS.lock().unwrap_or_else(|e| e.into_inner());
    if dirs.is_empty() {
        // SAFETY: registers a plain `extern "C"` function with no arguments, as atexit requires.
        #[allow(unsafe_code)]
        unsafe {
            libc::atexit(remove_dirs);
        }
    }
    dirs.push(dir);
}

/// A multipart upload begun and not yet completed or aborted.
struct InFlight {
    bucket: String,
    key: String,
    initiated: SystemTime,
}

/// s3s-fs plus ListMultipartUploads.
struct TrackedFs {
    inner: FileSystem,
    root: PathBuf,
    uploads: Arc<Mutex<BTreeMap<String, InFlight>>>,
}

impl TrackedFs {
    /// S3 answers NoSuchUpload for an unknown or finished upload; s3s-fs says AccessDenied.
    fn check_upload(&self, upload_id: &str) -> S3Result<()> {
        let uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        if uploads.contains_key(upload_id) {
            Ok(())
        } else {
            Err(s3s::s3_error!(NoSuchUpload))
        }
    }

    fn forget(&self, upload_id: &str) {
        self.uploads.lock().unwrap_or_else(|e| e.into_inner()).remove(upload_id);
    }
}

/// The shape `#[async_trait]` gives the `S3` trait's methods.
type Reply<'a, T> = Pin<Box<dyn Future<Output = S3Result<S3Response<T>>> + Send + 'a>>;

/// Delegates to s3s-fs. With `bucket`, a missing bucket answers NoSuchBucket first, as S3 does
/// (s3s-fs says NoSuchKey for objects in a missing bucket).
macro_rules! delegate {
    ($($method:ident: $input:ident => $output:ident $(, $bucket:ident)?;)*) => {$(
        fn $method<'life0, 'async_trait>(
            &'life0 self,
            req: S3Request<$input>,
        ) -> Reply<'async_trait, $output>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            $(
                if !self.root.join(&req.input.$bucket).is_dir() {
                    return Box::pin(async { Err(s3s::s3_error!(NoSuchBucket)) });
                }
            )?
            self.inner.$method(req)
        }
    )*};
}

impl S3 for TrackedFs {
    delegate! {
        create_bucket: CreateBucketInput => CreateBucketOutput;
        list_buckets: ListBucketsInput => ListBucketsOutput;
        copy_object: CopyObjectInput => CopyObjectOutput, bucket;
        delete_bucket: DeleteBucketInput => DeleteBucketOutput, bucket;
        delete_object: DeleteObjectInput => DeleteObjectOutput, bucket;
        delete_objects: DeleteObjectsInput => DeleteObjectsOutput, bucket;
        get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput, bucket;
        get_object: GetObjectInput => GetObjectOutput, bucket;
        head_bucket: HeadBucketInput => HeadBucketOutput, bucket;
        head_object: HeadObjectInput => HeadObjectOutput, bucket;
        list_objects: ListObjectsInput => ListObjectsOutput, bucket;
        list_objects_v2: ListObjectsV2Input => ListObjectsV2Output, bucket;
        put_object: PutObjectInput => PutObjectOutput, bucket;
        upload_part: UploadPartInput => UploadPartOutput, bucket;
        upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput, bucket;
        list_parts: ListPartsInput => ListPartsOutput, bucket;
    }

    fn create_multipart_upload<'life0, 'async_trait>(
        &'life0 self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> Reply<'async_trait, CreateMultipartUploadOutput>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
            let response = self.inner.create_multipart_upload(req).await?;
            if let Some(upload_id) = response.output.upload_id.clone() {
                let record = InFlight { bucket, key, initiated: SystemTime::now() };
                self.uploads.lock().unwrap_or_else(|e| e.into_inner()).insert(upload_id, record);
            }
            // The upload exists from here on; a slow answer lets a test interrupt the client
            // while it waits for the upload id.
            if response.output.key.as_deref().is_some_and(|k| k.starts_with(SLOW_CREATE)) {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            Ok(response)
        })
    }

    fn complete_multipart_upload<'life0, 'async_trait>(
        &'life0 self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> Reply<'async_trait, CompleteMultipartUploadOutput>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let upload_id = req.input.upload_id.clone();
            self.check_upload(&upload_id)?;
            let response = self.inner.complete_multipart_upload(req).await?;
            self.forget(&upload_id);
            Ok(response)
        })
    }

    fn abort_multipart_upload<'life0, 'async_trait>(
        &'life0 self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> Reply<'async_trait, AbortMultipartUploadOutput>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let upload_id = req.input.upload_id.clone();
            self.check_upload(&upload_id)?;
            let response = self.inner.abort_multipart_upload(req).await?;
            self.forget(&upload_id);
            Ok(response)
        })
    }

    fn list_multipart_uploads<'life0, 'async_trait>(
        &'life0 self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> Reply<'async_trait, ListMultipartUploadsOutput>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let input = req.input;
            if !self.root.join(&input.bucket).is_dir() {
                return Err(s3s::s3_error!(NoSuchBucket));
            }
            let prefix = input.prefix.clone().unwrap_or_default();
            // Stands in for providers without this API (s3s-fs itself, some S3-compatible servers).
            if prefix.starts_with(NO_UPLOAD_LISTING) {
                return Err(s3s::s3_error!(NotImplemented));
            }
            let mut uploads: Vec<MultipartUpload> = self
                .uploads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|(_, u)| u.bucket == input.bucket && u.key.starts_with(&prefix))
                .map(|(id, u)| MultipartUpload {
                    key: Some(u.key.clone()),
                    upload_id: Some(id.clone()),
                    initiated: Some(Timestamp::from(u.initiated)),
                    ..Default::default()
                })
                .collect();
            uploads.sort_by(|a, b| a.key.cmp(&b.key).then(a.upload_id.cmp(&b.upload_id)));
            Ok(S3Response::new(ListMultipartUploadsOutput {
                bucket: Some(input.bucket),
                prefix: input.prefix,
                is_truncated: Some(false),
                uploads: Some(uploads),
                ..Default::default()
            }))
        })
    }
}
