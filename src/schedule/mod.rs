//! Schedules for runbooks: crontab entries, systemd service + timer units and Kubernetes CronJobs
//! built from each runbook's `schedule`. The scheduler runs `opsbook run`; opsbook has no
//! scheduler of its own, and overlapping runs are refused by the runbooks' own locks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Classify, ErrorClass};
use crate::runbook::Runbook;

mod calendar;
mod k8s;

pub use calendar::*;
pub use k8s::*;

/// Name of the ConfigMap that holds the runbook files in Kubernetes.
pub const CONFIG_MAP: &str = "opsbook-runbooks";
/// Where the ConfigMap is mounted in the CronJob's container.
pub const MOUNT_PATH: &str = "/runbooks";
/// Longest CronJob name Kubernetes accepts (the Job controller appends 11 characters).
const CRONJOB_NAME_MAX: usize = 52;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("runbook {name}: cannot convert schedule `{cron}` to a systemd OnCalendar= value: {source}")]
    Calendar { name: String, cron: String, source: CalendarError },
    #[error("runbooks `{first}` and `{second}` both become {what} `{value}`; rename one of them")]
    Collision { what: &'static str, value: String, first: String, second: String },
    #[error(
        "no runbook declares a schedule (considered: {}); add a line such as `schedule = \"0 2 * * *\"` \
         (minute hour day-of-month month day-of-week) above the first [section] of the runbooks to schedule",
        considered.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NothingScheduled { considered: Vec<PathBuf> },
    #[error("cannot render the Kubernetes manifests as YAML: {0}")]
    Yaml(serde_saphyr::SerializeError),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

impl Classify for ScheduleError {
    fn class(&self) -> ErrorClass {
        match self {
            ScheduleError::Calendar { .. }
            | ScheduleError::Collision { .. }
            | ScheduleError::NothingScheduled { .. } => ErrorClass::Usage,
            ScheduleError::Yaml(_) | ScheduleError::Write { .. } => ErrorClass::Failed,
        }
    }
}

/// One runbook as the generators see it.
#[derive(Debug, Clone)]
pub struct Job {
    /// The runbook's `name`.
    pub name: String,
    pub description: Option<String>,
    /// The 5-field cron expression, when the runbook declares one.
    pub schedule: Option<String>,
    /// The path handed to `opsbook run` on a host (relative to the working directory when inside it).
    pub run_path: PathBuf,
    /// The runbook's file name, the key of its text in the Kubernetes ConfigMap.
    pub file_name: String,
    /// The runbook's text.
    pub source: String,
}

impl Job {
    pub fn new(rb: &Runbook, run_path: PathBuf) -> Self {
        let file_name = rb.path.file_name().map_or_else(|| "runbook.toml".into(), |f| f.to_string_lossy().into_owned());
        Self {
            name: rb.file.name.clone(),
            description: rb.file.description.clone(),
            schedule: rb.file.schedule.clone(),
            run_path,
            file_name,
            source: rb.source.clone(),
        }
    }
}

/// Fails with the list of runbooks considered when none of them declares a schedule.
pub fn require_scheduled(jobs: &[Job]) -> Result<(), ScheduleError> {
    if jobs.iter().any(|j| j.schedule.is_some()) {
        return Ok(());
    }
    Err(ScheduleError::NothingScheduled { considered: jobs.iter().map(|j| j.run_path.clone()).collect() })
}

/// How a host (cron or systemd) runs opsbook.
#[derive(Debug, Clone)]
pub struct Host {
    /// The directory the runs start in.
    pub workdir: PathBuf,
    /// The opsbook executable.
    pub bin: PathBuf,
    /// A KEY=VALUE file loaded before each run.
    pub env_file: Option<PathBuf>,
}

/// Settings of the Kubernetes manifests.
#[derive(Debug, Clone)]
pub struct K8s {
    pub image: String,
    /// The Secret whose keys become the container's environment.
    pub secret: String,
}

/// A generated file (a systemd unit).
#[derive(Debug, Clone, Serialize)]
pub struct GeneratedFile {
    pub name: String,
    /// Where it was written, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    pub content: String,
}

/// What was emitted for one runbook.
#[derive(Debug, Clone, Serialize)]
pub struct Emitted {
    pub name: String,
    pub path: PathBuf,
    pub schedule: Option<String>,
    /// Why nothing was emitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// The crontab entry or the CronJob document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The systemd units.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<GeneratedFile>,
}

impl Emitted {
    fn new(job: &Job) -> Self {
        Self {
            name: job.name.clone(),
            path: job.run_path.clone(),
            schedule: job.schedule.clone(),
            skipped: None,
            text: None,
            files: Vec::new(),
        }
    }

    fn skipped(job: &Job) -> Self {
        Self { skipped: Some(NO_SCHEDULE.into()), ..Self::new(job) }
    }
}

const NO_SCHEDULE: &str = "no schedule";

/// Everything generated for one scheduler.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// crontab, systemd or k8s.
    pub target: &'static str,
    pub runbooks: Vec<Emitted>,
    /// The ConfigMap document holding the runbook files (k8s only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// All of it, as printed on stdout.
    pub text: String,
}

impl Plan {
    /// The generated files, in order.
    pub fn files(&self) -> impl Iterator<Item = &GeneratedFile> {
        self.runbooks.iter().flat_map(|r| r.files.iter())
    }
}

// ---------------------------------------------------------------------------------------------
// crontab

/// A crontab: a commented entry per scheduled runbook, a comment for each one without a schedule.
pub fn crontab(jobs: &[Job], host: &Host, log_dir: &Path) -> Result<Plan, ScheduleError> {
    let log_names: Vec<(String, String)> =
        jobs.iter().filter(|j| j.schedule.is_some()).map(|j| (j.name.clone(), file_safe(&j.name))).collect();
    unique("log file name", &log_names)?;
    let mut text = String::new();
    text.push_str("# Generated by `opsbook schedule crontab`. Install with `crontab FILE` (this replaces the\n");
    text.push_str("# user's crontab) or merge into `crontab -e`. Times are the host's local time.\n");
    text.push_str(&format!(
        "# Logs go to {}/NAME.log: create the directory, writable by the crontab's user, first.\n",
        one_line(&log_dir.display().to_string())
    ));
    text.push_str("# A run that is still going when the next one starts is refused by the runbook's lock.\n");
    let mut runbooks = Vec::new();
    for job in jobs {
        text.push('\n');
        let Some(cron) = &job.schedule else {
            text.push_str(&format!(
                "# {}: skipped: {NO_SCHEDULE} ({})\n",
                one_line(&job.name),
                one_line(&path_text(&job.run_path))
            ));
            runbooks.push(Emitted::skipped(job));
            continue;
        };
        let log = log_dir.join(format!("{}.log", file_safe(&job.name)));
        let mut command = format!("cd {} && ", shell_quote(&path_text(&host.workdir)));
        if let Some(env_file) = &host.env_file {
            command.push_str(&format!("{{ set -a; . {}; set +a; }} && ", shell_quote(&path_text(env_file))));
        }
        command.push_str(&format!(
            "{} run {} >> {} 2>&1",
            shell_quote(&path_text(&host.bin)),
            shell_quote(&path_text(&job.run_path)),
            shell_quote(&path_text(&log))
        ));
        let entry = format!("# {}\n{cron} {}\n", comment_title(job), cron_escape(&command));
        text.push_str(&entry);
        runbooks.push(Emitted { text: Some(entry), ..Emitted::new(job) });
    }
    Ok(Plan { target: "crontab", runbooks, config_map: None, text })
}

/// `# name: description` for a crontab entry.
fn comment_title(job: &Job) -> String {
    match &job.description {
        Some(d) if !d.trim().is_empty() => format!("{}: {}", one_line(&job.name), one_line(d)),
        _ => one_line(&job.name),
    }
}

/// Cron turns an unescaped `%` in the command into a newline.
fn cron_escape(command: &str) -> String {
    command.replace('%', "\\%")
}

/// A word for `sh`: unchanged when it is plainly safe, otherwise in single quotes.
fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

// ---------------------------------------------------------------------------------------------
// systemd

/// A oneshot service and a timer per scheduled runbook.
pub fn systemd(jobs: &[Job], host: &Host) -> Result<Plan, ScheduleError> {
    let units: Vec<(String, String)> =
        jobs.iter().filter(|j| j.schedule.is_some()).map(|j| (j.name.clone(), unit_name(&j.name))).collect();
    unique("systemd unit", &units)?;
    let mut runbooks = Vec::new();
    let mut header = String::from(
        "# Generated by `opsbook schedule systemd`. Copy the units to /etc/systemd/system (add User= to\n\
         # run as someone other than root) or ~/.config/systemd/user, then\n\
         # `systemctl daemon-reload && systemctl enable --now UNIT.timer`. Times are the host's local time.\n",
    );
    for job in jobs {
        let Some(cron) = &job.schedule else {
            header.push_str(&format!(
                "# {}: skipped: {NO_SCHEDULE} ({})\n",
                one_line(&job.name),
                one_line(&path_text(&job.run_path))
            ));
            runbooks.push(Emitted::skipped(job));
            continue;
        };
        let calendar = on_calendar(cron).map_err(|source| ScheduleError::Calendar {
            name: job.name.clone(),
            cron: cron.clone(),
            source,
        })?;
        let unit = unit_name(&job.name);
        let title = match &job.description {
            Some(d) if !d.trim().is_empty() => format!("opsbook runbook {}: {}", job.name, d),
            _ => format!("opsbook runbook {}", job.name),
        };
        let mut service = String::new();
        service.push_str("[Unit]\n");
        service.push_str(&format!("Description={}\n", unit_value(&title)));
        service.push_str("Wants=network-online.target\nAfter=network-online.target\n\n");
        service.push_str("[Service]\nType=oneshot\n");
        service.push_str(&format!("WorkingDirectory={}\n", unit_value(&path_text(&host.workdir))));
        if let Some(env_file) = &host.env_file {
            service.push_str(&format!("EnvironmentFile={}\n", unit_value(&path_text(env_file))));
        }
        service.push_str(&format!(
            "ExecStart={} run {} --no-input\n",
            exec_word(&path_text(&host.bin)),
            exec_word(&path_text(&job.run_path))
        ));
        let mut timer = String::new();
        timer.push_str("[Unit]\n");
        timer.push_str(&format!(
            "Description={}\n\n",
            unit_value(&format!("Schedule of opsbook runbook {} ({cron})", job.name))
        ));
        timer.push_str("[Timer]\n");
        timer.push_str(&format!("# cron: {cron}\n"));
        timer.push_str(&format!("OnCalendar={calendar}\n"));
        timer.push_str("Persistent=true\n");
        timer.push_str(&format!("Unit={unit}.service\n\n"));
        timer.push_str("[Install]\nWantedBy=timers.target\n");
        let files = vec![
            GeneratedFile { name: format!("{unit}.service"), path: None, content: service },
            GeneratedFile { name: format!("{unit}.timer"), path: None, content: timer },
        ];
        runbooks.push(Emitted { files, ..Emitted::new(job) });
    }
    let mut text = header;
    for file in runbooks.iter().flat_map(|r| r.files.iter()) {
        text.push_str(&format!("\n# --- file: {} ---\n", file.name));
        text.push_str(&file.content);
    }
    Ok(Plan { target: "systemd", runbooks, config_map: None, text })
}

/// `opsbook-NAME`, with characters systemd does not allow in unit names replaced by `-`.
pub fn unit_name(name: &str) -> String {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "_.-".contains(c) { c } else { '-' }).collect();
    format!("opsbook-{safe}")
}

/// A unit-file value: one line, `%` specifiers escaped.
fn unit_value(value: &str) -> String {
    one_line(value).replace('%', "%%")
}

/// One word of an `ExecStart=` command line: quoted when needed, `%` and `$` escaped.
fn exec_word(word: &str) -> String {
    let escaped = word.replace('%', "%%").replace('$', "$$");
    let plain =
        !escaped.is_empty() && escaped.chars().all(|c| !c.is_whitespace() && !c.is_control() && !"\"'\\;".contains(c));
    if plain {
        escaped
    } else {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// Writes the generated files into `dir` (created when missing) and records where.
pub fn write_files(plan: &mut Plan, dir: &Path) -> Result<(), ScheduleError> {
    std::fs::create_dir_all(dir).map_err(|source| ScheduleError::Write { path: dir.into(), source })?;
    for file in plan.runbooks.iter_mut().flat_map(|r| r.files.iter_mut()) {
        let path = dir.join(&file.name);
        std::fs::write(&path, &file.content).map_err(|source| ScheduleError::Write { path: path.clone(), source })?;
        file.path = Some(path);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

/// Fails when two runbooks map to the same generated name.
fn unique(what: &'static str, names: &[(String, String)]) -> Result<(), ScheduleError> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (runbook, value) in names {
        if let Some(first) = seen.insert(value, runbook) {
            return Err(ScheduleError::Collision {
                what,
                value: value.clone(),
                first: first.to_string(),
                second: runbook.clone(),
            });
        }
    }
    Ok(())
}

/// A name usable as a file name: letters, digits, `.`, `_`, `-`.
fn file_safe(name: &str) -> String {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).collect();
    if safe.trim_matches('.').is_empty() {
        "runbook".into()
    } else {
        safe
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, schedule: Option<&str>) -> Job {
        Job {
            name: name.into(),
            description: Some("Does things".into()),
            schedule: schedule.map(Into::into),
            run_path: PathBuf::from(format!("runbooks/{name}.toml")),
            file_name: format!("{name}.toml"),
            source: format!("name = \"{name}\"\n"),
        }
    }

    fn host() -> Host {
        Host { workdir: "/srv/app".into(), bin: "/usr/local/bin/opsbook".into(), env_file: None }
    }

    #[test]
    fn daily_at_a_time() {
        assert_eq!(on_calendar("30 2 * * *").unwrap(), "*-*-* 02:30:00");
        assert_eq!(on_calendar("0 0 * * *").unwrap(), "*-*-* 00:00:00");
        assert_eq!(on_calendar("  5   23 * * * ").unwrap(), "*-*-* 23:05:00");
    }

    #[test]
    fn every_minute_and_steps() {
        assert_eq!(on_calendar("* * * * *").unwrap(), "*-*-* *:*:00");
        assert_eq!(on_calendar("*/15 * * * *").unwrap(), "*-*-* *:0/15:00");
        assert_eq!(on_calendar("0 */6 * * *").unwrap(), "*-*-* 0/6:00:00");
        assert_eq!(on_calendar("5/20 * * * *").unwrap(), "*-*-* *:05/20:00");
        assert_eq!(on_calendar("0 1-5/2 * * *").unwrap(), "*-*-* 01..05/2:00:00");
        assert_eq!(on_calendar("0 0 */2 * *").unwrap(), "*-*-1/2 00:00:00");
        assert_eq!(on_calendar("0 0 1 */3 *").unwrap(), "*-1/3-01 00:00:00");
    }

    #[test]
    fn lists_and_ranges() {
        assert_eq!(on_calendar("0,30 8-18 * * *").unwrap(), "*-*-* 08..18:00,30:00");
        assert_eq!(on_calendar("15 3 1,15 * *").unwrap(), "*-*-01,15 03:15:00");
        assert_eq!(on_calendar("0 4 1 1-6 *").unwrap(), "*-01..06-01 04:00:00");
        assert_eq!(on_calendar("0 4 1 jan,JUL *").unwrap(), "*-01,07-01 04:00:00");
    }

    #[test]
    fn days_of_week() {
        assert_eq!(on_calendar("0 9 * * 1-5").unwrap(), "Mon..Fri *-*-* 09:00:00");
        assert_eq!(on_calendar("0 9 * * 0").unwrap(), "Sun *-*-* 09:00:00");
        assert_eq!(on_calendar("0 9 * * 7").unwrap(), "Sun *-*-* 09:00:00");
        assert_eq!(on_calendar("0 9 * * 6,0").unwrap(), "Sat,Sun *-*-* 09:00:00");
        assert_eq!(on_calendar("0 9 * * 5-7").unwrap(), "Fri..Sun *-*-* 09:00:00");
        assert_eq!(on_calendar("0 9 * * 0-2").unwrap(), "Mon,Tue,Sun *-*-* 09:00:00");
        assert_eq!(on_calendar("0 9 * * 1,3,4,5").unwrap(), "Mon,Wed..Fri *-*-* 09:00:00");
        assert_eq!(on_calendar("0 9 * * */2").unwrap(), "Tue,Thu,Sat,Sun *-*-* 09:00:00");
        assert_eq!(on_calendar("0 9 * * mon-fri").unwrap(), "Mon..Fri *-*-* 09:00:00");
        assert_eq!(on_calendar("0 9 * * 0-6").unwrap(), "*-*-* 09:00:00");
        assert_eq!(on_calendar("0 9 1 * *").unwrap(), "*-*-01 09:00:00");
        // A day-of-month step starting with `*` restricts alongside the weekday, as in cron.
        assert_eq!(on_calendar("0 9 */2 * 1").unwrap(), "Mon *-*-1/2 09:00:00");
    }

    #[test]
    fn refuses_what_does_not_convert() {
        let err = |c: &str| on_calendar(c).unwrap_err().to_string();
        assert!(err("0 9 1 * 1").contains("either the day of month or the day of week"), "{}", err("0 9 1 * 1"));
        assert!(err("@daily").contains("nicknames are not supported"));
        assert!(err("0 2 * *").contains("expected 5 fields"));
        assert!(err("0 2 L * *").contains("`L` is not a number in the day-of-month field"));
        assert!(err("0 2 * * 1#2").contains("not a number in the day-of-week field"));
        assert!(err("61 2 * * *").contains("61 is outside 0-59 in the minute field"));
        assert!(err("0 22-2 * * *").contains("runs backwards"));
        assert!(err("*/0 * * * *").contains("not a step"));
        assert!(err("0 2 * * 8").contains("outside 0-7"));
    }

    /// When systemd is installed, it agrees that every converted form is valid.
    #[test]
    fn systemd_accepts_the_conversions() {
        let forms =
            ["30 2 * * *", "*/15 * * * *", "0 1-5/2 * * *", "0,30 8-18 1,15 jan-jun *", "0 9 * * 0-2", "0 0 */2 */3 *"];
        for cron in forms {
            let calendar = on_calendar(cron).unwrap();
            let Ok(out) = std::process::Command::new("systemd-analyze").args(["calendar", &calendar]).output() else {
                return;
            };
            assert!(out.status.success(), "{cron} -> {calendar}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }

    #[test]
    fn crontab_entries() {
        let mut h = host();
        h.env_file = Some("/etc/opsbook/env".into());
        let plan = crontab(&[job("nightly", Some("0 2 * * *")), job("adhoc", None)], &h, Path::new("/var/log/opsbook"))
            .unwrap();
        assert!(plan.text.contains("# nightly: Does things\n0 2 * * * cd /srv/app && { set -a; . /etc/opsbook/env; set +a; } && /usr/local/bin/opsbook run runbooks/nightly.toml >> /var/log/opsbook/nightly.log 2>&1\n"), "{}", plan.text);
        assert!(plan.text.contains("# adhoc: skipped: no schedule"), "{}", plan.text);
        assert_eq!(plan.runbooks[1].skipped.as_deref(), Some("no schedule"));
    }

    #[test]
    fn crontab_quotes_and_escapes() {
        let h = Host { workdir: "/srv/my app".into(), bin: "/opt/ops%book".into(), env_file: None };
        let plan = crontab(&[job("x", Some("0 2 * * *"))], &h, Path::new("/var/log")).unwrap();
        assert!(plan.text.contains("cd '/srv/my app' && '/opt/ops\\%book' run"), "{}", plan.text);
    }

    #[test]
    fn systemd_units() {
        let mut h = host();
        h.env_file = Some("/etc/opsbook/env".into());
        let plan = systemd(&[job("nightly", Some("30 2 * * *")), job("adhoc", None)], &h).unwrap();
        let names: Vec<&str> = plan.files().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["opsbook-nightly.service", "opsbook-nightly.timer"]);
        let service = &plan.runbooks[0].files[0].content;
        assert!(service.contains("Type=oneshot\n"));
        assert!(service.contains("WorkingDirectory=/srv/app\n"));
        assert!(service.contains("EnvironmentFile=/etc/opsbook/env\n"));
        assert!(service.contains("ExecStart=/usr/local/bin/opsbook run runbooks/nightly.toml --no-input\n"));
        let timer = &plan.runbooks[0].files[1].content;
        assert!(timer.contains("OnCalendar=*-*-* 02:30:00\nPersistent=true\n"), "{timer}");
        assert!(plan.text.contains("# --- file: opsbook-nightly.timer ---\n"));
        assert!(plan.text.contains("# adhoc: skipped: no schedule"));
    }

    #[test]
    fn systemd_refuses_an_unconvertible_schedule() {
        let err = systemd(&[job("x", Some("0 2 1 * 1"))], &host()).unwrap_err();
        assert!(matches!(err, ScheduleError::Calendar { .. }));
        assert!(err.to_string().contains("runbook x: cannot convert schedule `0 2 1 * 1`"), "{err}");
    }

    #[test]
    fn exec_words_are_quoted() {
        assert_eq!(exec_word("/usr/bin/opsbook"), "/usr/bin/opsbook");
        assert_eq!(exec_word("/srv/my app/x.toml"), "\"/srv/my app/x.toml\"");
        assert_eq!(exec_word("/a/100%$x"), "/a/100%%$$x");
    }

    #[test]
    fn dns_names() {
        assert_eq!(cronjob_name("nightly-backup"), "opsbook-nightly-backup");
        assert_eq!(cronjob_name("Nightly Backup_2"), "opsbook-nightly-backup-2");
        let long = cronjob_name(&"a".repeat(80));
        assert_eq!(long.len(), 52);
        assert_eq!(cronjob_name(&format!("{}-b", "a".repeat(43))), format!("opsbook-{}", "a".repeat(43)));
        assert_eq!(config_key("my runbook.toml"), "my-runbook.toml");
    }

    #[test]
    fn collisions_are_refused() {
        let err = k8s(&[job("a b", Some("0 2 * * *")), job("a_b", Some("0 3 * * *"))], &settings()).unwrap_err();
        assert!(err.to_string().contains("both become CronJob name `opsbook-a-b`"), "{err}");
    }

    fn settings() -> K8s {
        K8s { image: "opsbook:latest".into(), secret: "opsbook-env".into() }
    }

    #[test]
    fn k8s_documents() {
        let plan = k8s(&[job("nightly", Some("30 2 * * *")), job("adhoc", None)], &settings()).unwrap();
        assert!(plan.text.contains("kind: CronJob"));
        let config_map = plan.config_map.as_deref().unwrap();
        assert!(config_map.contains("nightly.toml"), "{config_map}");
        assert!(!config_map.contains("adhoc.toml"), "{config_map}");
        assert_eq!(plan.text.matches("---\n").count(), 2);
        assert_eq!(plan.runbooks[0].name, "nightly");
        assert_eq!(plan.runbooks[1].skipped.as_deref(), Some("no schedule"));
    }

    #[test]
    fn nothing_scheduled() {
        let err = require_scheduled(&[job("a", None)]).unwrap_err();
        assert!(err.to_string().contains("considered: runbooks/a.toml"), "{err}");
        assert!(err.to_string().contains("schedule = \"0 2 * * *\""), "{err}");
        assert!(require_scheduled(&[job("a", None), job("b", Some("0 2 * * *"))]).is_ok());
    }
}
