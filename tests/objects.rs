//! `backup objects` against two real S3 servers (s3s-fs, SigV4, separate roots and keys), local
//! directories, and a proxy that injects 5xx answers in front of the destination.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use bytes::Bytes;
use opsbook::store::{Store, StoreUrl};
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::cmd::{all_output, code, json, opsbook};
use support::pattern;
use support::proxy::{Fail, FaultyProxy};
use support::s3::S3Server;

const SRC_PREFIX: &str = "media";
const DST_PREFIX: &str = "copy";

/// Two S3 servers, a state directory holding opsbook.toml (one `stores` table per side, so each
/// side has its own endpoint and credentials), and a local backup store for the inventories.
struct Env {
    dir: tempfile::TempDir,
    src: S3Server,
    dst: S3Server,
    rt: tokio::runtime::Runtime,
    /// The endpoint opsbook uses for the destination (the server, or a proxy in front of it).
    dst_endpoint: String,
}

impl Env {
    fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
            src: S3Server::start(),
            dst: S3Server::start(),
            rt: tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
            dst_endpoint: String::new(),
        };
        let endpoint = env.dst.endpoint.clone();
        env.with_dst_endpoint(&endpoint)
    }

    fn with_dst_endpoint(mut self, endpoint: &str) -> Env {
        self.dst_endpoint = endpoint.to_string();
        let side = |name: &str, server: &S3Server, prefix: &str, endpoint: &str, secret: &str| {
            format!(
                "[profiles.default.stores.{name}]\nurl = \"{}\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n\
                 access_key = \"{}\"\nsecret_key = \"{secret}\"\npath_style = true\n\n",
                server.url(prefix),
                server.access_key
            )
        };
        let toml = side("src", &self.src, SRC_PREFIX, &self.src.endpoint, "env:SRC_SECRET")
            + &side("dst", &self.dst, DST_PREFIX, endpoint, &self.dst.secret_key);
        std::fs::write(self.dir.path().join("opsbook.toml"), toml).unwrap();
        self
    }

    fn backups(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    fn store(&self, server: &S3Server, prefix: &str) -> Store {
        let url = StoreUrl::parse(&server.url(prefix)).unwrap();
        self.rt.block_on(Store::open(&url, &server.options())).unwrap()
    }

    fn put(&self, key: &str, body: &[u8]) {
        let store = self.store(&self.src, SRC_PREFIX);
        self.rt.block_on(store.put_bytes(key, Bytes::copy_from_slice(body))).unwrap();
    }

    fn delete(&self, key: &str) {
        let store = self.store(&self.src, SRC_PREFIX);
        self.rt.block_on(store.delete(key)).unwrap();
    }

    /// `backup objects --output json --store BACKUPS` plus `args`.
    fn objects(&self, args: &[&str]) -> Output {
        self.objects_with_env(args, &[])
    }

    fn objects_with_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        let backups = self.backups().display().to_string();
        opsbook(self.dir.path())
            .args(["--output", "json", "backup", "objects", "--store", &backups])
            .args(args)
            .env("SRC_SECRET", &self.src.secret_key)
            .envs(vars.iter().copied())
            .output()
            .unwrap()
    }

    fn copied(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dst.object_path(&format!("{DST_PREFIX}/{key}"))).ok()
    }
}

fn ok(out: &Output) -> Value {
    assert_eq!(code(out), 0, "{}", all_output(out));
    json(out)
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The inventory a run wrote, by key.
fn inventory(backups: &Path, report: &Value) -> std::collections::BTreeMap<String, Value> {
    let key = report["inventory_key"].as_str().expect("the run wrote an inventory");
    let text = std::fs::read_to_string(backups.join(key)).unwrap();
    text.lines()
        .map(|line| {
            let entry: Value = serde_json::from_str(line).unwrap();
            (entry["key"].as_str().unwrap().to_string(), entry)
        })
        .collect()
}

fn summaries(backups: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![backups.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|n| n == "objects.json") {
                found.push(path);
            }
        }
    }
    found
}

fn reasons(report: &Value) -> Vec<(String, String)> {
    let mut r: Vec<(String, String)> = report["copies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["key"].as_str().unwrap().to_string(), c["reason"].as_str().unwrap().to_string()))
        .collect();
    r.sort();
    r
}

#[test]
fn s3_to_s3_copies_everything_then_nothing_then_only_what_changed() {
    let env = Env::new();
    let objects: Vec<(&str, Vec<u8>)> = vec![
        ("photos/a.jpg", pattern(1024, 1)),
        ("photos/b.jpg", pattern(300 * 1024, 2)),
        ("receipts/2026/r1.pdf", pattern(2048, 3)),
        ("empty.txt", Vec::new()),
    ];
    for (key, body) in &objects {
        env.put(key, body);
    }

    let first = ok(&env.objects(&["--from", "src", "--to", "dst"]));
    assert_eq!(first["copied"], 4, "{first}");
    assert_eq!(first["source_objects"], 4);
    let inv = inventory(&env.backups(), &first);
    assert_eq!(inv.len(), 4);
    for (key, body) in &objects {
        assert_eq!(env.copied(key).as_deref(), Some(body.as_slice()), "{key}");
        assert_eq!(inv[*key]["sha256"], sha256(body), "{key}");
        assert_eq!(inv[*key]["size"], body.len());
        // s3s-fs lists no ETags (S3 and R2 do); the modification time stands in for them.
        let entry = &inv[*key];
        assert!(entry["source_etag"].is_string() || entry["source_modified"].is_string(), "{entry}");
    }

    let second = ok(&env.objects(&["--from", "src", "--to", "dst"]));
    assert_eq!(second["copied"], 0, "{second}");
    assert_eq!(second["unchanged"], 4);
    assert_eq!(inventory(&env.backups(), &second), inv, "an unchanged copy keeps its records");

    let changed = pattern(300 * 1024, 20);
    env.put("photos/b.jpg", &changed);
    env.put("photos/c.jpg", b"new");
    let third = ok(&env.objects(&["--from", "src", "--to", "dst"]));
    assert_eq!(
        reasons(&third),
        [("photos/b.jpg".into(), "changed".into()), ("photos/c.jpg".into(), "new".into())],
        "{third}"
    );
    assert_eq!(env.copied("photos/b.jpg").unwrap(), changed);
    let inv = inventory(&env.backups(), &third);
    assert_eq!(inv["photos/b.jpg"]["sha256"], sha256(&changed));
    assert_eq!(inv.len(), 5);

    let backups = env.backups().display().to_string();
    let list = ok(&opsbook(env.dir.path())
        .args(["--output", "json", "backup", "list", "--store", &backups])
        .output()
        .unwrap());
    let sets = list["object_sets"].as_array().unwrap();
    assert_eq!(sets.len(), 3, "{list}");
    assert_eq!(sets[0]["id"], third["id"], "newest first");
    assert_eq!(sets[0]["objects"], 5);
    assert_eq!(list["backups"].as_array().unwrap().len(), 0);
    assert_eq!(list["orphans"], 0, "object runs are not orphaned backups");
}

#[test]
fn a_deleted_source_is_kept_and_removed_only_after_the_window() {
    let env = Env::new();
    env.put("keep.jpg", b"keep");
    env.put("gone.jpg", b"gone");
    // URLs instead of store names: the stores tables still supply each side's settings.
    let (from, to) = (env.src.url(SRC_PREFIX), env.dst.url(DST_PREFIX));
    let run = |extra: &[&str]| {
        let mut args = vec!["--from", from.as_str(), "--to", to.as_str()];
        args.extend_from_slice(extra);
        ok(&env.objects(&args))
    };
    run(&[]);
    env.delete("gone.jpg");

    let within = run(&["--delete-extraneous", "--retain-deleted", "1h"]);
    assert_eq!((within["retained"].as_u64(), within["removed"].as_u64()), (Some(1), Some(0)), "{within}");
    assert_eq!(env.copied("gone.jpg").as_deref(), Some(&b"gone"[..]));
    let inv = inventory(&env.backups(), &within);
    let first_seen = inv["gone.jpg"]["deleted_at"].clone();
    assert!(first_seen.is_string(), "{}", inv["gone.jpg"]);

    let without = run(&[]);
    assert_eq!(without["retained"], 1);
    assert_eq!(inventory(&env.backups(), &without)["gone.jpg"]["deleted_at"], first_seen, "first sighting kept");

    let dry = run(&["--delete-extraneous", "--retain-deleted", "0s", "--dry-run"]);
    assert_eq!(dry["removals"], serde_json::json!(["gone.jpg"]));
    assert!(env.copied("gone.jpg").is_some(), "a dry run removes nothing");

    let after = run(&["--delete-extraneous", "--retain-deleted", "0s"]);
    assert_eq!(after["removed"], 1, "{after}");
    assert!(env.copied("gone.jpg").is_none());
    let inv = inventory(&env.backups(), &after);
    assert!(!inv.contains_key("gone.jpg"));
    assert_eq!(env.copied("keep.jpg").as_deref(), Some(&b"keep"[..]));
}

#[test]
fn local_to_s3_and_s3_to_local() {
    let env = Env::new();
    let local = env.dir.path().join("uploads");
    std::fs::create_dir_all(local.join("2026/11")).unwrap();
    std::fs::write(local.join("2026/11/invoice.pdf"), pattern(5000, 7)).unwrap();
    std::fs::write(local.join("logo.png"), pattern(100, 8)).unwrap();
    let local_url = local.display().to_string();

    let up = ok(&env.objects(&["--from", &local_url, "--to", "dst", "--set", "uploads"]));
    assert_eq!(up["copied"], 2, "{up}");
    assert_eq!(env.copied("2026/11/invoice.pdf").unwrap(), pattern(5000, 7));
    let again = ok(&env.objects(&["--from", &local_url, "--to", "dst", "--set", "uploads"]));
    assert_eq!(again["copied"], 0, "{again}");
    std::fs::write(local.join("logo.png"), pattern(100, 9)).unwrap();
    let touched = ok(&env.objects(&["--from", &local_url, "--to", "dst", "--set", "uploads"]));
    assert_eq!(reasons(&touched), [("logo.png".into(), "changed".into())], "{touched}");

    env.put("photos/x.jpg", &pattern(70_000, 10));
    env.put("y.txt", b"y");
    env.put("empty.txt", b"");
    let cold = env.dir.path().join("cold");
    let cold_url = format!("file://{}", cold.display());
    let down = ok(&env.objects(&["--from", "src", "--to", &cold_url]));
    assert_eq!(down["copied"], 3, "{down}");
    assert_eq!(std::fs::read(cold.join("photos/x.jpg")).unwrap(), pattern(70_000, 10));
    assert_eq!(std::fs::read(cold.join("empty.txt")).unwrap(), b"");
    let inv = inventory(&env.backups(), &down);
    assert_eq!(inv["photos/x.jpg"]["sha256"], sha256(&pattern(70_000, 10)));
    let again = ok(&env.objects(&["--from", "src", "--to", &cold_url]));
    assert_eq!(again["copied"], 0, "{again}");
}

/// Copies `big` (12 MiB) and a small object through a recording proxy; returns what it saw.
fn copy_big_through_proxy(args: &[&str], vars: &[(&str, &str)]) -> Vec<support::proxy::Seen> {
    let env = Env::new();
    let proxy = FaultyProxy::start(&env.dst.endpoint, Fail::Never);
    let env = env.with_dst_endpoint(&proxy.endpoint());
    let big = pattern(12 * 1024 * 1024 + 17, 11);
    env.put("videos/big.mp4", &big);
    env.put("small.jpg", b"small");

    let report = ok(&env.objects_with_env(&[&["--from", "src", "--to", "dst"], args].concat(), vars));
    assert_eq!(report["copied"], 2, "{report}");
    assert_eq!(env.copied("videos/big.mp4").unwrap(), big);
    assert_eq!(env.copied("small.jpg").unwrap(), b"small");
    assert_eq!(inventory(&env.backups(), &report)["videos/big.mp4"]["sha256"], sha256(&big));
    assert!(env.dst.pending_uploads().is_empty());
    proxy.seen()
}

fn part_puts(seen: &[support::proxy::Seen]) -> usize {
    seen.iter().filter(|r| r.method == "PUT" && r.target.contains("partNumber=")).count()
}

#[test]
fn a_large_object_goes_multipart() {
    let seen = copy_big_through_proxy(&["--part-size", "5MiB", "--multipart-threshold", "5MiB"], &[]);
    assert_eq!(part_puts(&seen), 3, "12 MiB in 5 MiB parts: {seen:?}");
    assert!(seen.iter().any(|r| r.method == "POST" && r.target.contains("uploads")), "CreateMultipartUpload");
}

/// Up to --multipart-threshold an object streams from the source into one unsigned PutObject
/// (loopback endpoint); with signed bodies it cannot stream, and goes multipart above a part.
#[test]
fn objects_up_to_the_threshold_stream_in_one_put_unless_bodies_are_signed() {
    let seen = copy_big_through_proxy(&["--part-size", "5MiB"], &[]);
    let puts: Vec<_> = seen.iter().filter(|r| r.method == "PUT").collect();
    assert_eq!((puts.len(), part_puts(&seen)), (2, 0), "one PutObject per object: {seen:?}");
    assert!(puts.iter().all(|r| r.content_sha256.as_deref() == Some("UNSIGNED-PAYLOAD")), "{puts:?}");
    assert!(!seen.iter().any(|r| r.method == "POST"), "no multipart upload: {seen:?}");

    let seen = copy_big_through_proxy(&["--part-size", "5MiB"], &[("OPSBOOK_S3_SIGN_PAYLOAD", "1")]);
    assert_eq!(part_puts(&seen), 3, "signed bodies are buffered part by part: {seen:?}");
    let puts: Vec<_> = seen.iter().filter(|r| r.method == "PUT").collect();
    assert!(puts.iter().all(|r| r.content_sha256.as_deref().is_some_and(|h| h.len() == 64)), "{puts:?}");
}

#[test]
fn injected_5xx_answers_are_retried() {
    let env = Env::new();
    let proxy = FaultyProxy::start(&env.dst.endpoint, Fail::EveryNth(3));
    let env = env.with_dst_endpoint(&proxy.endpoint());
    for i in 0..10u64 {
        env.put(&format!("img/{i}.jpg"), &pattern(2000 + i as usize, i));
    }
    let report = ok(&env.objects(&["--from", "src", "--to", "dst", "--concurrency", "2"]));
    assert_eq!(report["copied"], 10, "{report}");
    assert!(proxy.seen().iter().filter(|r| r.failed).count() >= 3, "the proxy failed requests");
    let inv = inventory(&env.backups(), &report);
    for i in 0..10u64 {
        let body = pattern(2000 + i as usize, i);
        assert_eq!(env.copied(&format!("img/{i}.jpg")).unwrap(), body);
        assert_eq!(inv[&format!("img/{i}.jpg")]["sha256"], sha256(&body));
    }
}

#[test]
fn a_failing_destination_fails_clearly_and_the_next_run_resumes() {
    let env = Env::new();
    // The listing and three copies get through; everything after that answers 503.
    let proxy = FaultyProxy::start(&env.dst.endpoint, Fail::AfterFirst(4));
    let env = env.with_dst_endpoint(&proxy.endpoint());
    for i in 0..8u64 {
        env.put(&format!("doc/{i}.pdf"), &pattern(1000, 100 + i));
    }
    let out = env.objects(&["--from", "src", "--to", "dst", "--concurrency", "1", "--retries", "1"]);
    assert_eq!(code(&out), 3, "an unavailable destination: {}", all_output(&out));
    let report = json(&out);
    let error = report["error"].as_str().unwrap_or_default().to_string() + &all_output(&out);
    assert!(error.contains("copies failed") && error.contains("resumes"), "{error}");
    assert!(error.contains("doc/3.pdf"), "the error names the object: {error}");
    assert!(summaries(&env.backups()).is_empty(), "no inventory for a failed run");

    proxy.set_fail(Fail::Never);
    let resumed = ok(&env.objects(&["--from", "src", "--to", "dst", "--concurrency", "1"]));
    assert_eq!(resumed["resumed"], 3, "{resumed}");
    assert_eq!(resumed["copied"], 5);
    let inv = inventory(&env.backups(), &resumed);
    assert_eq!(inv.len(), 8);
    for i in 0..8u64 {
        let body = pattern(1000, 100 + i);
        assert_eq!(env.copied(&format!("doc/{i}.pdf")).unwrap(), body);
        assert_eq!(inv[&format!("doc/{i}.pdf")]["sha256"], sha256(&body));
    }
    let again = ok(&env.objects(&["--from", "src", "--to", "dst"]));
    assert_eq!((again["copied"].as_u64(), again["resumed"].as_u64()), (Some(0), Some(0)), "the journal was cleared");
}

#[test]
fn overlapping_copy_and_backup_store_is_a_usage_error() {
    let env = Env::new();
    let backups = env.backups().display().to_string();
    let inside = format!("{backups}/media-copy");
    let out = env.objects(&["--from", "src", "--to", &inside]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("overlap"), "{}", all_output(&out));
}

#[test]
fn the_backup_objects_runbook_action_copies() {
    let env = Env::new();
    env.put("a.jpg", b"a");
    let runbook = env.dir.path().join("copy.toml");
    std::fs::write(
        &runbook,
        format!(
            "name = \"copy-media\"\ndescription = \"Copy the media bucket\"\n\n[[steps]]\nid = \"objects\"\n\
             name = \"Copy\"\naction = \"backup-objects\"\nwith = {{ from = \"src\", to = \"dst\", store = \"{}\", \
             retain_deleted = \"\" }}\n",
            env.backups().display()
        ),
    )
    .unwrap();
    let out = opsbook(env.dir.path())
        .args(["--output", "json", "run"])
        .arg(&runbook)
        .env("SRC_SECRET", &env.src.secret_key)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("inventory_key"), "{}", all_output(&out));
    assert_eq!(env.copied("a.jpg").as_deref(), Some(&b"a"[..]));
    assert_eq!(summaries(&env.backups()).len(), 1);
}

#[test]
fn a_missing_source_directory_is_an_input_error_not_an_empty_source() {
    let env = Env::new();
    let local = env.dir.path().join("src");
    std::fs::create_dir_all(&local).unwrap();
    for i in 0..3u64 {
        std::fs::write(local.join(format!("{i}.jpg")), pattern(100, i)).unwrap();
    }
    let first = ok(&env.objects(&["--from", local.to_str().unwrap(), "--to", "dst"]));
    assert_eq!(first["copied"], 3, "{first}");
    let inventories = summaries(&env.backups()).len();

    let typo = env.dir.path().join("src2-typo");
    let args = ["--from", typo.to_str().unwrap(), "--to", "dst", "--delete-extraneous", "--retain-deleted", "0s"];
    let out = env.objects(&args);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("--from") && all_output(&out).contains("does not exist"), "{}", all_output(&out));
    for i in 0..3u64 {
        assert_eq!(env.copied(&format!("{i}.jpg")), Some(pattern(100, i)), "the copy is untouched");
    }
    assert_eq!(summaries(&env.backups()).len(), inventories, "no inventory written");

    // A bare word that names no configured store says so.
    let out = env.objects(&["--from", "nosuchstore", "--to", "dst"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("'nosuchstore' is not a store of profile 'default'"), "{}", all_output(&out));
    assert!(all_output(&out).contains("dst, src"), "names the stores: {}", all_output(&out));
}

#[test]
fn marking_or_removing_most_of_the_copy_needs_force() {
    let env = Env::new();
    for i in 0..12u64 {
        env.put(&format!("img/{i}.jpg"), &pattern(500, i));
    }
    ok(&env.objects(&["--from", "src", "--to", "dst"]));
    for i in 0..7u64 {
        env.delete(&format!("img/{i}.jpg"));
    }
    let inventories = summaries(&env.backups()).len();

    // Marking 7 of 12 as deleted at the source, or removing them: refused.
    for extra in [&[][..], &["--delete-extraneous", "--retain-deleted", "0s"][..]] {
        let out = env.objects(&[&["--from", "src", "--to", "dst"][..], extra].concat());
        assert_eq!(code(&out), 1, "{}", all_output(&out));
        assert!(
            all_output(&out).contains("refusing to mark or remove 7 of the 12") && all_output(&out).contains("--force"),
            "{}",
            all_output(&out)
        );
    }
    assert_eq!(summaries(&env.backups()).len(), inventories, "a refused run writes no inventory");
    assert!(env.copied("img/0.jpg").is_some(), "a refused run removes nothing");

    // A dry run shows the plan and says why the real run would refuse it.
    let dry = ok(&env.objects(&[
        "--from",
        "src",
        "--to",
        "dst",
        "--delete-extraneous",
        "--retain-deleted",
        "0s",
        "--dry-run",
    ]));
    assert_eq!(dry["removals"].as_array().unwrap().len(), 7, "{dry}");
    assert!(dry["refused"].as_str().unwrap().contains("--force"), "{dry}");

    // Accepted once with --force, they are marked; removing them when their retention is over is
    // routine and needs no --force.
    let forced = ok(&env.objects(&["--from", "src", "--to", "dst", "--force"]));
    assert_eq!(forced["retained"], 7, "{forced}");
    let later = ok(&env.objects(&["--from", "src", "--to", "dst", "--delete-extraneous", "--retain-deleted", "0s"]));
    assert_eq!(later["removed"], 7, "{later}");
    assert!(env.copied("img/0.jpg").is_none());
    assert!(env.copied("img/11.jpg").is_some());
}

#[test]
fn each_destination_of_a_set_is_planned_against_its_own_inventory() {
    let env = Env::new();
    let cold = env.dir.path().join("cold");
    let cold_url = format!("file://{}", cold.display());
    env.put("a.jpg", b"a1");
    ok(&env.objects(&["--from", "src", "--to", &cold_url]));
    // The source changes (same size) and only the other copy of the set is refreshed…
    env.put("a.jpg", b"a2");
    ok(&env.objects(&["--from", "src", "--to", "dst"]));
    // …so the first copy still holds the old bytes: its own inventory says so, the other
    // copy's (the newest of the set) would call it current.
    let report = ok(&env.objects(&["--from", "src", "--to", &cold_url]));
    assert_eq!(report["copied"], 1, "{report}");
    assert_eq!(std::fs::read(cold.join("a.jpg")).unwrap(), b"a2");
}
