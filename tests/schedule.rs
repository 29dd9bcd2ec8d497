//! `opsbook schedule crontab | systemd | k8s` against runbook files the tests write themselves.

mod support;

use std::path::Path;

use support::cmd::{all_output, code, json, opsbook};

const SCHEDULED: &str = r#"name = "nightly"
description = "Nightly wait"
schedule = "30 2 * * *"
lock = true

[[steps]]
id = "w"
action = "wait"
with = { duration = "1s" }
"#;

const UNSCHEDULED: &str = r#"name = "adhoc"
description = "Run by hand"

[[steps]]
id = "w"
action = "wait"
with = { duration = "1s" }
"#;

/// A temp dir with ./runbooks/nightly.toml (scheduled) and ./runbooks/adhoc.toml (not).
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runbooks")).unwrap();
    std::fs::write(dir.path().join("runbooks/nightly.toml"), SCHEDULED).unwrap();
    std::fs::write(dir.path().join("runbooks/adhoc.toml"), UNSCHEDULED).unwrap();
    dir
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    opsbook(dir).args(args).output().unwrap()
}

#[test]
fn crontab_has_the_cron_line_and_skips_runbooks_without_schedule() {
    let dir = workspace();
    let out = run(
        dir.path(),
        &[
            "schedule",
            "crontab",
            "--workdir",
            "/srv/app",
            "--bin",
            "/usr/local/bin/opsbook",
            "--log-dir",
            "/var/log/ops",
        ],
    );
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let text = stdout(&out);
    assert!(text.contains("# nightly: Nightly wait\n"), "{text}");
    // The runbooks are outside --workdir here, so their paths are absolute.
    let path = dir.path().canonicalize().unwrap().join("runbooks/nightly.toml");
    let line = format!(
        "30 2 * * * cd /srv/app && /usr/local/bin/opsbook run {} >> /var/log/ops/nightly.log 2>&1",
        path.display()
    );
    assert!(text.contains(&line), "missing `{line}` in:\n{text}");
    assert!(text.contains("# adhoc: skipped: no schedule"), "{text}");
}

#[test]
fn crontab_defaults_and_env_file() {
    let dir = workspace();
    let out = run(dir.path(), &["schedule", "crontab", "runbooks/nightly.toml", "--env-file", "ops.env"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let text = stdout(&out);
    let workdir = dir.path().canonicalize().unwrap();
    let env_file = workdir.join("ops.env");
    let cron_line = text.lines().find(|l| l.starts_with("30 2 * * * ")).unwrap_or_else(|| panic!("{text}"));
    // Default workdir: the current directory; default bin: this opsbook, absolute.
    assert!(cron_line.starts_with(&format!("30 2 * * * cd {} && ", workdir.display())), "{cron_line}");
    assert!(cron_line.contains(&format!("{{ set -a; . {}; set +a; }} && /", env_file.display())), "{cron_line}");
    assert!(
        cron_line.contains("opsbook run runbooks/nightly.toml >> /var/log/opsbook/nightly.log 2>&1"),
        "{cron_line}"
    );
    assert!(!text.contains("adhoc"), "only the named runbook: {text}");
}

#[test]
fn systemd_units_on_stdout_and_in_a_directory() {
    let dir = workspace();
    let out = run(dir.path(), &["schedule", "systemd", "--env-file", "/etc/opsbook/env"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let text = stdout(&out);
    assert!(text.contains("# --- file: opsbook-nightly.service ---\n"), "{text}");
    assert!(text.contains("# --- file: opsbook-nightly.timer ---\n"), "{text}");
    assert!(text.contains("Type=oneshot\n"), "{text}");
    assert!(text.contains("OnCalendar=*-*-* 02:30:00\n"), "{text}");
    assert!(text.contains("Persistent=true\n"), "{text}");
    assert!(text.contains("EnvironmentFile=/etc/opsbook/env\n"), "{text}");
    assert!(text.contains(" run runbooks/nightly.toml --no-input\n"), "{text}");
    assert!(!text.contains("opsbook-adhoc"), "{text}");
    assert!(text.contains("# adhoc: skipped: no schedule"), "{text}");

    let units = dir.path().join("units");
    let out = run(dir.path(), &["schedule", "systemd", "--out", "units"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let listed: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(listed, ["units/opsbook-nightly.service", "units/opsbook-nightly.timer"]);
    let timer = std::fs::read_to_string(units.join("opsbook-nightly.timer")).unwrap();
    assert!(timer.contains("OnCalendar=*-*-* 02:30:00\n"), "{timer}");
    let service = std::fs::read_to_string(units.join("opsbook-nightly.service")).unwrap();
    assert!(service.contains("Type=oneshot\n") && !service.contains("EnvironmentFile"), "{service}");
}

#[test]
fn k8s_manifests_parse_as_yaml() {
    let dir = workspace();
    let out = run(dir.path(), &["schedule", "k8s", "--image", "registry.example/opsbook:1.2", "--secret", "shop-env"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let text = stdout(&out);
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"));
    assert_eq!(documents.len(), 2, "{text}");

    let config_map = documents.iter().find(|d| d["kind"] == "ConfigMap").expect("a ConfigMap");
    assert_eq!(config_map["apiVersion"], "v1");
    assert_eq!(config_map["metadata"]["name"], "opsbook-runbooks");
    assert_eq!(config_map["data"]["nightly.toml"], SCHEDULED, "the runbook text, byte for byte");
    assert!(config_map["data"].get("adhoc.toml").is_none());

    let cronjobs: Vec<&serde_json::Value> = documents.iter().filter(|d| d["kind"] == "CronJob").collect();
    assert_eq!(cronjobs.len(), 1, "{text}");
    let job = cronjobs[0];
    assert_eq!(job["apiVersion"], "batch/v1");
    assert_eq!(job["metadata"]["name"], "opsbook-nightly");
    assert_eq!(job["spec"]["schedule"], "30 2 * * *");
    assert_eq!(job["spec"]["concurrencyPolicy"], "Forbid");
    assert_eq!(job["spec"]["successfulJobsHistoryLimit"], 3);
    assert_eq!(job["spec"]["failedJobsHistoryLimit"], 3);
    let job_spec = &job["spec"]["jobTemplate"]["spec"];
    assert_eq!(job_spec["backoffLimit"], 0);
    let pod = &job_spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "registry.example/opsbook:1.2");
    assert_eq!(
        container["args"],
        serde_json::json!(["run", "/runbooks/nightly.toml", "--no-input", "--output", "json"])
    );
    assert_eq!(container["envFrom"][0]["secretRef"]["name"], "shop-env");
    assert_eq!(container["volumeMounts"][0]["mountPath"], "/runbooks");
    let volume = &pod["volumes"][0];
    assert_eq!(volume["name"], container["volumeMounts"][0]["name"]);
    assert_eq!(volume["configMap"]["name"], "opsbook-runbooks");
}

#[test]
fn k8s_defaults() {
    let dir = workspace();
    let out = run(dir.path(), &["schedule", "k8s", "nightly"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&stdout(&out)).unwrap();
    let job = documents.iter().find(|d| d["kind"] == "CronJob").unwrap();
    let container = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "opsbook:latest");
    assert_eq!(container["envFrom"][0]["secretRef"]["name"], "opsbook-env");
}

#[test]
fn json_lists_what_was_emitted() {
    let dir = workspace();
    let out = run(dir.path(), &["schedule", "systemd", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let doc = json(&out);
    assert_eq!(doc["status"], "ok");
    assert_eq!(doc["target"], "systemd");
    let runbooks = doc["runbooks"].as_array().unwrap();
    assert_eq!(runbooks.len(), 2);
    let adhoc = runbooks.iter().find(|r| r["name"] == "adhoc").unwrap();
    assert_eq!(adhoc["skipped"], "no schedule");
    let nightly = runbooks.iter().find(|r| r["name"] == "nightly").unwrap();
    assert_eq!(nightly["schedule"], "30 2 * * *");
    let files: Vec<&str> = nightly["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(files, ["opsbook-nightly.service", "opsbook-nightly.timer"]);
    assert!(nightly["files"][1]["content"].as_str().unwrap().contains("OnCalendar=*-*-* 02:30:00"));

    let out = run(dir.path(), &["schedule", "crontab", "--output", "json"]);
    let doc = json(&out);
    let nightly = doc["runbooks"].as_array().unwrap().iter().find(|r| r["name"] == "nightly").unwrap().clone();
    assert!(nightly["text"].as_str().unwrap().contains("30 2 * * * cd "), "{doc}");
}

#[test]
fn no_runbook_with_a_schedule_is_a_usage_error() {
    let dir = workspace();
    let out = run(dir.path(), &["schedule", "crontab", "runbooks/adhoc.toml"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    let text = all_output(&out);
    assert!(text.contains("no runbook declares a schedule"), "{text}");
    assert!(text.contains("runbooks/adhoc.toml"), "{text}");
    assert!(text.contains("schedule = \"0 2 * * *\""), "{text}");
    assert!(out.stdout.is_empty(), "nothing emitted: {text}");
}

#[test]
fn an_invalid_runbook_is_a_usage_error() {
    let dir = workspace();
    std::fs::write(
        dir.path().join("runbooks/broken.toml"),
        "name = \"broken\"\nschedule = \"61 * * * *\"\nsteps = []\n",
    )
    .unwrap();
    let out = run(dir.path(), &["schedule", "k8s"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("broken.toml"), "{}", all_output(&out));

    let out = run(dir.path(), &["schedule", "crontab", "missing.toml"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("cannot read runbook missing.toml"), "{}", all_output(&out));
}

#[test]
fn an_unconvertible_schedule_is_refused_for_systemd_only() {
    let dir = workspace();
    let either = SCHEDULED.replace("30 2 * * *", "0 3 1 * 1");
    std::fs::write(dir.path().join("runbooks/nightly.toml"), either).unwrap();
    let out = run(dir.path(), &["schedule", "systemd"]);
    assert_eq!(code(&out), 2, "{}", all_output(&out));
    assert!(all_output(&out).contains("cannot convert schedule `0 3 1 * 1`"), "{}", all_output(&out));
    let out = run(dir.path(), &["schedule", "crontab"]);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
}
