//! backup prune over a local store holding one real backup and back-dated copies of it.

mod support;

use std::path::Path;
use std::process::Output;

use chrono::{Duration, Utc};
use serde_json::Value;
use support::cmd::{all_output, code, json, opsbook};
use support::pg::TestPg;

fn run(dir: &Path, args: &[&str]) -> Output {
    opsbook(dir).args(args).output().unwrap()
}

/// Copies the real backup to a back-dated directory, rewriting its manifest to match.
fn back_date(store: &Path, manifest: &Value, days: i64) -> String {
    let time = Utc::now() - Duration::days(days);
    let id = format!("{}-{:08x}", time.format("%Y%m%dT%H%M%SZ"), days);
    let dir = format!("shop/{}/{}", time.format("%Y"), time.format("%m"));
    let mut m = manifest.clone();
    m["id"] = id.clone().into();
    for field in ["started", "finished", "snapshot_time"] {
        m[field] = time.to_rfc3339().into();
    }
    for object in m["objects"].as_array_mut().unwrap() {
        let old = object["key"].as_str().unwrap().to_string();
        let name = old.rsplit('/').next().unwrap();
        let new = format!("{dir}/{id}/{name}");
        std::fs::create_dir_all(store.join(&dir).join(&id)).unwrap();
        std::fs::copy(store.join(&old), store.join(&new)).unwrap();
        object["key"] = new.into();
    }
    std::fs::write(store.join(&dir).join(&id).join("manifest.json"), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    id
}

fn manifests(store: &Path) -> usize {
    fn walk(p: &Path, n: &mut usize) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), n);
            } else if e.file_name() == "manifest.json" {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(store, &mut n);
    n
}

#[test]
fn prune_keeps_policy_verified_and_guards_against_mass_deletion() {
    let pg = TestPg::shared();
    let db = pg.fresh_db("prune");
    pg.load_example(&db);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    let out =
        run(dir.path(), &["backup", "run", "--database-url", &db, "--store", s, "--set", "shop", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let manifest = json(&out)["backup"].clone();
    let ids: Vec<String> = (1..=10).map(|d| back_date(&store, &manifest, d)).collect();
    assert_eq!(manifests(&store), 11);

    // Mark the 7-day-old backup verified: prune must keep the newest verified backup.
    let verified = &ids[6];
    let out = run(dir.path(), &["backup", "verify", verified, "--store", s, "--set", "shop"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));

    // An empty policy is refused.
    let out = run(dir.path(), &["backup", "prune", "--store", s, "--set", "shop"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("keep"), "{}", all_output(&out));

    // Deleting more than half needs --force.
    let out = run(dir.path(), &["backup", "prune", "--store", s, "--set", "shop", "--keep-daily", "3"]);
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(all_output(&out).contains("--force"), "{}", all_output(&out));
    assert_eq!(manifests(&store), 11, "refused prune deletes nothing");
    // A dry run still shows that plan, and says the real run would need --force.
    let args = ["backup", "prune", "--store", s, "--set", "shop", "--keep-daily", "3", "--dry-run"];
    let out = run(dir.path(), &args);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(all_output(&out).contains("would delete 7 backups"), "{}", all_output(&out));
    assert!(all_output(&out).contains("--force"), "{}", all_output(&out));
    let out = run(dir.path(), &[&args[..], &["--output", "json"]].concat());
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(json(&out)["plan"]["refused"].as_str().unwrap().contains("--force"), "{}", all_output(&out));
    assert_eq!(manifests(&store), 11, "dry run deletes nothing");

    // Dry run: a plan with reasons, nothing deleted.
    let out = run(
        dir.path(),
        &[
            "backup",
            "prune",
            "--store",
            s,
            "--set",
            "shop",
            "--keep-daily",
            "3",
            "--force",
            "--dry-run",
            "--output",
            "json",
        ],
    );
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let plan = json(&out);
    let backups = plan["plan"]["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 11);
    let kept: Vec<&Value> = backups.iter().filter(|b| b["keep"] == true).collect();
    assert_eq!(kept.len(), 4, "3 daily + the newest verified: {backups:#?}");
    let v = backups.iter().find(|b| b["id"] == verified.as_str()).unwrap();
    assert!(v["reasons"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().contains("verified")), "{v}");
    assert_eq!(manifests(&store), 11, "dry run deletes nothing");

    // An orphan older than a day goes; a fresh one (a run in progress) stays.
    let old_orphan = store.join("shop/2020/01/20200101T000000Z-0000dead");
    std::fs::create_dir_all(&old_orphan).unwrap();
    let f = old_orphan.join("data.pgdump.zst");
    std::fs::write(&f, b"partial").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 86400))
        .unwrap();
    let now = Utc::now();
    let fresh_orphan = store.join(format!("shop/{}/{}-0000beef", now.format("%Y/%m"), now.format("%Y%m%dT%H%M%SZ")));
    std::fs::create_dir_all(&fresh_orphan).unwrap();
    std::fs::write(fresh_orphan.join("data.pgdump.zst"), b"in progress").unwrap();

    let out = run(
        dir.path(),
        &["backup", "prune", "--store", s, "--set", "shop", "--keep-daily", "3", "--force", "--output", "json"],
    );
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(json(&out)["plan"]["orphans"].as_array().unwrap().len(), 1);
    assert_eq!(manifests(&store), 4);
    assert!(!f.exists(), "old orphan removed");
    assert!(!store.join("shop/2020").exists(), "directories left empty are removed too");
    assert!(fresh_orphan.join("data.pgdump.zst").exists(), "fresh orphan kept");
    let list = json(&run(dir.path(), &["backup", "list", "--store", s, "--output", "json"]));
    let listed: Vec<&str> = list["backups"].as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert!(listed.contains(&verified.as_str()));
    // Every listed backup still has its data.
    for b in list["backups"].as_array().unwrap() {
        let out = run(dir.path(), &["backup", "verify", b["id"].as_str().unwrap(), "--store", s, "--set", "shop"]);
        assert_eq!(code(&out), 0, "{}", all_output(&out));
    }
}

#[test]
fn run_with_prune_uses_configured_policy() {
    let pg = TestPg::shared();
    let db = pg.fresh_db("cfgprune");
    pg.load_example(&db);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::write(
        dir.path().join("opsbook.toml"),
        format!(
            "[profiles.default]\nstore = \"{}\"\n[profiles.default.sets.shop]\ndatabase_url = \"env:SHOP_DB\"\nkeep_last = 2\n",
            store.display()
        ),
    )
    .unwrap();
    for _ in 0..3 {
        let out = opsbook(dir.path()).env("SHOP_DB", &db).args(["backup", "run", "--all", "--prune"]).output().unwrap();
        assert_eq!(code(&out), 0, "{}", all_output(&out));
    }
    assert_eq!(manifests(&store), 2, "keep_last = 2 from opsbook.toml");
}

#[test]
fn prune_goes_on_when_the_provider_cannot_list_uploads() {
    use support::s3::{S3Server, NO_UPLOAD_LISTING};
    let pg = TestPg::shared();
    let s3 = S3Server::shared();
    let db = pg.fresh_db("prunes3");
    pg.load_example(&db);
    let dir = tempfile::tempdir().unwrap();
    let url = s3.url(&format!("{NO_UPLOAD_LISTING}-prune"));
    let with_s3 = |args: &[&str]| opsbook(dir.path()).envs(s3.env()).args(args).output().unwrap();
    for _ in 0..2 {
        let out = with_s3(&["backup", "run", "--database-url", &db, "--store", &url, "--set", "shop"]);
        assert_eq!(code(&out), 0, "{}", all_output(&out));
    }
    let out = with_s3(&["backup", "prune", "--store", &url, "--set", "shop", "--keep-last", "1"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(
        all_output(&out).contains("stale uploads: skipped: not supported by this provider"),
        "{}",
        all_output(&out)
    );
    let manifests =
        s3.list(&format!("{NO_UPLOAD_LISTING}-prune/shop/")).into_iter().filter(|k| k.ends_with("/manifest.json"));
    assert_eq!(manifests.count(), 1, "the policy was applied");
}
