//! The store against a real S3 protocol server (s3s-fs, SigV4) and real local directories.

mod support;

use bytes::Bytes;
use chrono::{Duration, Utc};
use futures::StreamExt;
use opsbook::error::{Classify, ErrorClass};
use opsbook::store::{Store, StoreError, StoreOptions, StoreUrl, UploadConfig};
use support::pattern;
use support::s3::S3Server;
use tokio::io::AsyncReadExt;

const MIB: usize = 1024 * 1024;

fn unique(name: &str) -> String {
    format!("{name}-{:08x}", rand::random::<u32>())
}

/// A store on the shared server under a prefix of its own.
async fn s3_store(name: &str) -> (Store, String) {
    let server = S3Server::shared();
    let prefix = unique(name);
    let url = StoreUrl::parse(&server.url(&prefix)).unwrap();
    (Store::open(&url, &server.options()).await.unwrap(), prefix)
}

async fn local_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = StoreUrl::parse(&dir.path().join("store").display().to_string()).unwrap();
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    (dir, store)
}

async fn read_all(store: &Store, key: &str) -> Vec<u8> {
    let mut reader = store.get_stream(key).await.unwrap();
    let mut data = Vec::new();
    reader.read_to_end(&mut data).await.unwrap();
    data
}

async fn roundtrip(store: &Store) {
    store.put_bytes("set/2024/manifest.json", Bytes::from_static(b"{\"v\":1}")).await.unwrap();
    store.put_bytes("set/2024/data.zst", Bytes::from_static(b"0123456789")).await.unwrap();
    store.put_bytes("other/x", Bytes::from_static(b"x")).await.unwrap();
    // Overwrite replaces the whole object.
    store.put_bytes("set/2024/manifest.json", Bytes::from_static(b"{\"v\":2}")).await.unwrap();

    assert_eq!(store.get_bytes("set/2024/manifest.json").await.unwrap(), "{\"v\":2}");
    assert_eq!(read_all(store, "set/2024/data.zst").await, b"0123456789");
    assert_eq!(store.get_range("set/2024/data.zst", 2, 3).await.unwrap(), "234");
    assert_eq!(store.get_range("set/2024/data.zst", 8, 100).await.unwrap(), "89");
    assert_eq!(store.get_range("set/2024/data.zst", 0, 0).await.unwrap(), "");
    assert!(store.get_range("set/2024/data.zst", 10, 1).await.is_err());

    let head = store.head("set/2024/data.zst").await.unwrap().expect("object exists");
    assert_eq!((head.key.as_str(), head.size), ("set/2024/data.zst", 10));
    assert!(head.last_modified.is_some());
    assert_eq!(store.head("set/2024/missing").await.unwrap(), None);

    let keys = |list: Vec<opsbook::store::ObjectMeta>| list.into_iter().map(|o| (o.key, o.size)).collect::<Vec<_>>();
    assert_eq!(
        keys(store.list("").await.unwrap()),
        [("other/x".into(), 1), ("set/2024/data.zst".into(), 10), ("set/2024/manifest.json".into(), 7)]
    );
    assert_eq!(keys(store.list("set/").await.unwrap()).len(), 2);
    assert_eq!(keys(store.list("set/2024/man").await.unwrap()), [("set/2024/manifest.json".into(), 7)]);
    assert!(store.list("nothing/").await.unwrap().is_empty());

    store.delete("set/2024/data.zst").await.unwrap();
    store.delete("set/2024/data.zst").await.unwrap();
    assert_eq!(store.head("set/2024/data.zst").await.unwrap(), None);
    let err = store.get_bytes("set/2024/data.zst").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Failed);
    assert!(err.to_string().contains("set/2024/data.zst"), "{err}");
    assert!(matches!(store.get_stream("set/2024/data.zst").await, Err(e) if e.is_not_found()));
    assert_eq!(keys(store.list("set/").await.unwrap()).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn local_roundtrip() {
    let (dir, store) = local_store().await;
    roundtrip(&store).await;
    let on_disk = dir.path().join("store/set/2024/manifest.json");
    assert_eq!(std::fs::read(on_disk).unwrap(), b"{\"v\":2}");
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_roundtrip() {
    let (store, prefix) = s3_store("roundtrip").await;
    roundtrip(&store).await;
    let on_disk = S3Server::shared().object_path(&format!("{prefix}/set/2024/manifest.json"));
    assert_eq!(std::fs::read(on_disk).unwrap(), b"{\"v\":2}");
    let head = store.head("other/x").await.unwrap().unwrap();
    assert!(head.etag.is_some_and(|e| !e.contains('"')));
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_list_reads_every_page() {
    let (store, _) = s3_store("pages").await;
    let keys: Vec<String> = (0..1050).map(|i| format!("obj/{i:05}")).collect();
    futures::stream::iter(&keys)
        .map(|key| store.put_bytes(key, Bytes::from_static(b"p")))
        .buffer_unordered(32)
        .for_each(|result| async move { result.unwrap() })
        .await;
    let listed: Vec<String> = store.list("obj/").await.unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(listed, keys);
}

async fn upload_parts(store: &Store, key: &str, data: &[u8], cfg: UploadConfig) -> u64 {
    let mut upload = store.begin_upload(key, cfg).await.unwrap();
    for part in data.chunks(cfg.part_size) {
        upload.put_part(Bytes::copy_from_slice(part)).await.unwrap();
    }
    upload.complete().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_multipart_upload_reads_back_identical() {
    let server = S3Server::shared();
    let (store, prefix) = s3_store("multipart").await;
    let data = pattern(3 * 5 * MIB + 12_345, 1);
    let cfg = UploadConfig { part_size: 5 * MIB, in_flight: 2 };

    let total = upload_parts(&store, "big/data.zst", &data, cfg).await;
    assert_eq!(total, data.len() as u64);

    assert!(read_all(&store, "big/data.zst").await == data, "streamed object differs");
    let on_disk = std::fs::read(server.object_path(&format!("{prefix}/big/data.zst"))).unwrap();
    assert!(on_disk == data, "stored object differs");
    let head = store.head("big/data.zst").await.unwrap().unwrap();
    assert_eq!(head.size, data.len() as u64);
    let tail = store.get_range("big/data.zst", (data.len() - 100) as u64, 1000).await.unwrap();
    assert_eq!(&tail[..], &data[data.len() - 100..]);

    let in_future = Utc::now() + Duration::hours(1);
    assert!(store.stale_uploads("", in_future).await.unwrap().is_empty());
    assert!(!server.pending_uploads().iter().any(|(key, _)| key.starts_with(&prefix)));
}

/// Bodies are signed only when asked to (or over plain HTTP to another host): on this loopback
/// endpoint PutObject and UploadPart go out as UNSIGNED-PAYLOAD by default, with the body's
/// SHA-256 under `sign_payload = true`, and the server accepts both.
#[tokio::test(flavor = "multi_thread")]
async fn s3_payload_signing_follows_the_option() {
    use support::proxy::{Fail, FaultyProxy};
    let server = S3Server::shared();
    let data = pattern(5 * MIB + 777, 9);
    let cfg = UploadConfig { part_size: 5 * MIB, in_flight: 2 };
    for sign in [None, Some(true)] {
        let proxy = FaultyProxy::start(&server.endpoint, Fail::Never);
        let options = StoreOptions { endpoint: Some(proxy.endpoint()), sign_payload: sign, ..server.options() };
        let url = StoreUrl::parse(&server.url(&unique("signing"))).unwrap();
        let store = Store::open(&url, &options).await.unwrap();
        upload_parts(&store, "multi", &data, cfg).await;
        store.put_bytes("single", Bytes::from_static(b"one body")).await.unwrap();
        assert!(store.get_bytes("multi").await.unwrap() == data);
        assert_eq!(store.get_bytes("single").await.unwrap(), "one body");

        let puts: Vec<_> = proxy.seen().into_iter().filter(|s| s.method == "PUT").collect();
        assert_eq!(puts.len(), 3, "two parts and one PutObject: {puts:?}");
        for put in &puts {
            let header = put.content_sha256.as_deref().unwrap_or_default();
            match sign {
                None => assert_eq!(header, "UNSIGNED-PAYLOAD", "{put:?}"),
                _ => assert!(header.len() == 64 && header.bytes().all(|b| b.is_ascii_hexdigit()), "{put:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_exactly_full_parts_and_single_part_and_empty_objects() {
    let server = S3Server::shared();
    let (store, prefix) = s3_store("shapes").await;
    let cfg = UploadConfig { part_size: 5 * MIB, in_flight: 4 };

    let two_full = pattern(2 * 5 * MIB, 2);
    assert_eq!(upload_parts(&store, "two-full", &two_full, cfg).await, two_full.len() as u64);
    assert!(store.get_bytes("two-full").await.unwrap() == two_full);

    // One part: held back and sent as a single PutObject, no multipart upload at all.
    let small = pattern(1000, 3);
    let mut upload = store.begin_upload("single", cfg).await.unwrap();
    upload.put_part(Bytes::from(small.clone())).await.unwrap();
    assert!(!server.pending_uploads().iter().any(|(key, _)| key.starts_with(&prefix)));
    assert_eq!(upload.complete().await.unwrap(), 1000);
    assert_eq!(store.get_bytes("single").await.unwrap(), small);

    let upload = store.begin_upload("empty", cfg).await.unwrap();
    assert_eq!(upload.complete().await.unwrap(), 0);
    assert_eq!(store.head("empty").await.unwrap().unwrap().size, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn local_multipart_upload_reads_back_identical() {
    let (dir, store) = local_store().await;
    let data = pattern(5 * 64 * 1024 + 7, 4);
    let cfg = UploadConfig { part_size: 64 * 1024, in_flight: 2 };
    assert_eq!(upload_parts(&store, "big/data.zst", &data, cfg).await, data.len() as u64);
    assert!(read_all(&store, "big/data.zst").await == data);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("store/big")).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "only the object remains: {leftovers:?}");
    assert!(store.stale_uploads("", Utc::now() + Duration::hours(1)).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_abort_leaves_no_object_and_no_pending_upload() {
    let server = S3Server::shared();
    let (store, prefix) = s3_store("abort").await;
    let cfg = UploadConfig { part_size: 5 * MIB, in_flight: 2 };
    let mut upload = store.begin_upload("aborted", cfg).await.unwrap();
    for seed in 0..2 {
        upload.put_part(Bytes::from(pattern(5 * MIB, seed))).await.unwrap();
    }
    assert!(server.pending_uploads().iter().any(|(key, _)| key == &format!("{prefix}/aborted")));
    upload.abort().await.unwrap();

    assert_eq!(store.head("aborted").await.unwrap(), None);
    assert!(!server.pending_uploads().iter().any(|(key, _)| key.starts_with(&prefix)));
    assert!(store.stale_uploads("", Utc::now() + Duration::hours(1)).await.unwrap().is_empty());
    assert!(!server.object_path(&format!("{prefix}/aborted")).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_dropped_upload_is_aborted_in_the_background() {
    let server = S3Server::shared();
    let (store, prefix) = s3_store("dropped").await;
    let cfg = UploadConfig { part_size: 5 * MIB, in_flight: 2 };
    let mut upload = store.begin_upload("dropped", cfg).await.unwrap();
    for seed in 0..2 {
        upload.put_part(Bytes::from(pattern(5 * MIB, seed))).await.unwrap();
    }
    drop(upload);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.pending_uploads().iter().any(|(key, _)| key.starts_with(&prefix)) {
        assert!(std::time::Instant::now() < deadline, "the multipart upload was not aborted");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(store.head("dropped").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn local_abort_and_drop_leave_nothing() {
    let (dir, store) = local_store().await;
    let cfg = UploadConfig { part_size: 16, in_flight: 1 };
    let mut upload = store.begin_upload("d/aborted", cfg).await.unwrap();
    upload.put_part(Bytes::from(pattern(16, 1))).await.unwrap();
    upload.abort().await.unwrap();

    let mut upload = store.begin_upload("d/dropped", cfg).await.unwrap();
    upload.put_part(Bytes::from(pattern(16, 1))).await.unwrap();
    drop(upload);

    let left: Vec<_> = std::fs::read_dir(dir.path().join("store/d")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(store.list("").await.unwrap().is_empty());
}

async fn assert_part_rules(store: &Store, part_size: usize) {
    let cfg = UploadConfig { part_size, in_flight: 2 };

    let mut upload = store.begin_upload("unequal", cfg).await.unwrap();
    upload.put_part(Bytes::from(vec![1; part_size])).await.unwrap();
    let err = upload.put_part(Bytes::from(vec![2; part_size + 1])).await.unwrap_err();
    assert!(matches!(err, StoreError::Upload { .. }), "{err:?}");
    assert!(err.to_string().contains("larger than the part size"), "{err}");
    upload.abort().await.unwrap();

    let mut upload = store.begin_upload("after-short", cfg).await.unwrap();
    upload.put_part(Bytes::from(vec![1; part_size - 1])).await.unwrap();
    let err = upload.put_part(Bytes::from(vec![2; part_size])).await.unwrap_err();
    assert!(err.to_string().contains("follows a short part"), "{err}");
    assert_eq!(err.class(), ErrorClass::Failed);
    upload.abort().await.unwrap();

    assert_eq!(store.head("unequal").await.unwrap(), None);
    assert_eq!(store.head("after-short").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn unequal_parts_are_rejected() {
    let (_dir, local) = local_store().await;
    assert_part_rules(&local, 1024).await;
    let (s3, _) = s3_store("unequal").await;
    assert_part_rules(&s3, 5 * MIB).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_part_size_below_the_minimum_is_a_usage_error() {
    let (store, _) = s3_store("small-parts").await;
    let err = store.begin_upload("x", UploadConfig { part_size: MIB, in_flight: 1 }).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Usage, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_uploads_find_unfinished_uploads() {
    let server = S3Server::shared();
    let (store, prefix) = s3_store("stale").await;
    let cfg = UploadConfig { part_size: 5 * MIB, in_flight: 2 };
    let mut upload = store.begin_upload("set/unfinished", cfg).await.unwrap();
    for seed in 0..2 {
        upload.put_part(Bytes::from(pattern(5 * MIB, seed))).await.unwrap();
    }

    let found = store.stale_uploads("set/", Utc::now() + Duration::minutes(1)).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].key, "set/unfinished");
    assert!(found[0].upload_id.is_some() && found[0].initiated.is_some());
    assert!(store.stale_uploads("set/", Utc::now() - Duration::hours(1)).await.unwrap().is_empty());
    assert!(store.stale_uploads("elsewhere/", Utc::now() + Duration::minutes(1)).await.unwrap().is_empty());

    store.abort_pending(&found[0]).await.unwrap();
    store.abort_pending(&found[0]).await.unwrap();
    assert!(!server.pending_uploads().iter().any(|(key, _)| key.starts_with(&prefix)));
    drop(upload);
}

#[tokio::test(flavor = "multi_thread")]
async fn local_stale_uploads_are_partial_files() {
    let (_dir, store) = local_store().await;
    let cfg = UploadConfig { part_size: 8, in_flight: 1 };
    let mut upload = store.begin_upload("set/unfinished", cfg).await.unwrap();
    upload.put_part(Bytes::from_static(b"12345678")).await.unwrap();

    assert!(store.list("").await.unwrap().is_empty(), "partial files are not objects");
    let found = store.stale_uploads("", Utc::now() + Duration::minutes(1)).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].key, "set/unfinished");
    assert!(store.stale_uploads("", Utc::now() - Duration::hours(1)).await.unwrap().is_empty());

    store.abort_pending(&found[0]).await.unwrap();
    assert!(store.stale_uploads("", Utc::now() + Duration::minutes(1)).await.unwrap().is_empty());
    drop(upload);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_secret_key_is_unavailable_and_not_printed() {
    let server = S3Server::shared();
    let options = StoreOptions { secret_key: Some("wrong-secret-0123456789".into()), ..server.options() };
    let store = Store::open(&StoreUrl::parse(&server.url("x")).unwrap(), &options).await.unwrap();
    let err = store.list("").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Unavailable, "{err:?}");
    let message = err.to_string();
    assert!(message.contains("SignatureDoesNotMatch"), "{message}");
    assert!(message.contains("ListObjectsV2"), "{message}");
    assert!(!message.contains("wrong-secret"), "{message}");
    assert!(!message.contains(&server.secret_key), "{message}");

    let options = StoreOptions { access_key: Some("NOSUCHKEY".into()), ..server.options() };
    let store = Store::open(&StoreUrl::parse(&server.url("x")).unwrap(), &options).await.unwrap();
    let err = store.put_bytes("k", Bytes::new()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Unavailable, "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_bucket_and_refused_connection_are_unavailable() {
    let server = S3Server::shared();
    let store = Store::open(&StoreUrl::parse("s3://no-such-bucket/p").unwrap(), &server.options()).await.unwrap();
    let err = store.get_bytes("k").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Unavailable, "{err:?}");
    assert!(err.to_string().contains("s3://no-such-bucket/p/k"), "{err}");

    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let options = StoreOptions { endpoint: Some(format!("http://127.0.0.1:{closed_port}")), ..server.options() };
    let store = Store::open(&StoreUrl::parse(&server.url("p")).unwrap(), &options).await.unwrap();
    let err = store.head("k").await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Unavailable, "{err:?}");
    let message = err.to_string();
    assert!(message.starts_with("HeadObject s3://opsbook-test/p/k: cannot reach the S3 endpoint"), "{message}");
}

#[test]
fn unknown_scheme_is_a_usage_error() {
    for url in ["gs://bucket/x", "ftp://host/dir"] {
        let err = StoreUrl::parse(url).unwrap_err();
        assert!(matches!(err, StoreError::UnknownScheme { .. }));
        assert_eq!(err.class(), ErrorClass::Usage);
        assert!(err.to_string().contains(url));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn local_keys_cannot_escape_the_root() {
    let (dir, store) = local_store().await;
    for key in ["../escape", "a/../../escape", "/etc/passwd", "a//b", "x.partial-0001"] {
        let err = store.put_bytes(key, Bytes::from_static(b"no")).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidKey { .. }), "{key}: {err:?}");
        assert_eq!(err.class(), ErrorClass::Usage);
        assert!(store.get_bytes(key).await.is_err());
        assert!(store.begin_upload(key, UploadConfig::default()).await.is_err());
    }
    assert!(!dir.path().join("escape").exists());
    assert!(store.list("../").await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn local_store_on_a_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let url = StoreUrl::parse(&file.display().to_string()).unwrap();
    let err = Store::open(&url, &StoreOptions::default()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Usage, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_local_root_lists_empty_and_is_created_on_write() {
    let dir = tempfile::tempdir().unwrap();
    let url = StoreUrl::parse(&dir.path().join("not/yet").display().to_string()).unwrap();
    let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
    assert!(store.list("").await.unwrap().is_empty());
    assert_eq!(store.head("k").await.unwrap(), None);
    store.put_bytes("k", Bytes::from_static(b"v")).await.unwrap();
    assert_eq!(std::fs::read(dir.path().join("not/yet/k")).unwrap(), b"v");
    assert_eq!(store.url(), &url);
}

/// Runs `probe_store_from_env` in a child copy of this test binary, so the store is configured
/// from the environment exactly as the CLI would be, without touching this process's env.
fn run_probe(envs: &[(String, String)], remove: &[&str], url: &str, expect_url: &str) {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child.args(["--exact", "probe_store_from_env", "--nocapture", "--test-threads=1"]);
    child.envs(envs.iter().map(|(k, v)| (k, v)));
    for name in remove {
        child.env_remove(name);
    }
    child.env("OPSBOOK_STORE_PROBE_URL", url).env("OPSBOOK_STORE_PROBE_EXPECT", expect_url);
    let out = child.output().unwrap();
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{output}");
    assert!(output.contains("1 passed"), "the probe did not run: {output}");
}

/// The child side of `run_probe`; does nothing in a normal run.
#[tokio::test(flavor = "multi_thread")]
async fn probe_store_from_env() {
    let Ok(url) = std::env::var("OPSBOOK_STORE_PROBE_URL") else {
        return;
    };
    let store = Store::open(&StoreUrl::parse(&url).unwrap(), &StoreOptions::default()).await.unwrap();
    assert_eq!(store.url().to_string(), std::env::var("OPSBOOK_STORE_PROBE_EXPECT").unwrap());
    store.put_bytes("probe", Bytes::from_static(b"from env")).await.unwrap();
    assert_eq!(store.get_bytes("probe").await.unwrap(), "from env");
}

#[test]
fn s3_is_configured_from_the_aws_environment() {
    let server = S3Server::shared();
    let prefix = unique("aws-env");
    let url = server.url(&prefix);
    run_probe(&server.env(), &["OPSBOOK_S3_PATH_STYLE"], &url, &url);
    assert_eq!(std::fs::read(server.object_path(&format!("{prefix}/probe"))).unwrap(), b"from env");
}

#[test]
fn s3_is_configured_from_the_r2_environment() {
    let server = S3Server::shared();
    let prefix = unique("r2-env");
    let mut envs = server.env();
    envs.retain(|(name, _)| !name.starts_with("R2_"));
    envs.extend([
        ("R2_ENDPOINT".to_owned(), server.endpoint.clone()),
        ("R2_ACCESS_KEY_ID".to_owned(), server.access_key.clone()),
        ("R2_SECRET_ACCESS_KEY".to_owned(), server.secret_key.clone()),
        ("R2_BUCKET".to_owned(), server.bucket.clone()),
    ]);
    let aws = ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION"];
    envs.retain(|(name, _)| !aws.contains(&name.as_str()));
    let remove: Vec<&str> = aws.iter().copied().chain(["OPSBOOK_S3_PATH_STYLE", "AWS_ENDPOINT_URL_S3"]).collect();
    run_probe(&envs, &remove, &format!("s3:///{prefix}"), &server.url(&prefix));
    assert_eq!(std::fs::read(server.object_path(&format!("{prefix}/probe"))).unwrap(), b"from env");
}
