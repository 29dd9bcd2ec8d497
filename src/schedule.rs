//! Schedules for runbooks: crontab entries, systemd service + timer units and Kubernetes CronJobs
//! built from each runbook's `schedule`. The scheduler runs `opsbook run`; opsbook has no
//! scheduler of its own, and overlapping runs are refused by the runbooks' own locks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Classify, ErrorClass};
use crate::runbook::Runbook;

/// Name of the ConfigMap that holds the runbook files in Kubernetes.
pub const CONFIG_MAP: &str = "opsbook-runbooks";
/// Where the ConfigMap is mounted in the CronJob's container.
pub const MOUNT_PATH: &str = "/runbooks";
/// Longest CronJob name Kubernetes accepts (the Job controller appends 11 characters).
const CRONJOB_NAME_MAX: usize = 52;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("runbook {name}: cannot convert schedule `{cron}` to a systemd OnCalendar= value: {reason}")]
    Calendar { name: String, cron: String, reason: String },
    #[error("runbooks `{first}` and `{second}` both become {what} `{value}`; rename one of them")]
    Collision { what: &'static str, value: String, first: String, second: String },
    #[error(
        "no runbook declares a schedule (considered: {}); add a line such as `schedule = \"0 2 * * *\"` \
         (minute hour day-of-month month day-of-week) above the first [section] of the runbooks to schedule",
        considered.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NothingScheduled { considered: Vec<PathBuf> },
    #[error("cannot render the Kubernetes manifests as YAML: {0}")]
    Yaml(String),
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
        let calendar = on_calendar(cron).map_err(|reason| ScheduleError::Calendar {
            name: job.name.clone(),
            cron: cron.clone(),
            reason,
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

/// A ConfigMap with the scheduled runbooks' files and a CronJob per scheduled runbook.
pub fn k8s(jobs: &[Job], settings: &K8s) -> Result<Plan, ScheduleError> {
    let scheduled: Vec<&Job> = jobs.iter().filter(|j| j.schedule.is_some()).collect();
    let names: Vec<(String, String)> = scheduled.iter().map(|j| (j.name.clone(), cronjob_name(&j.name))).collect();
    unique("CronJob name", &names)?;
    let keys: Vec<(String, String)> = scheduled.iter().map(|j| (j.name.clone(), config_key(&j.file_name))).collect();
    unique("ConfigMap key", &keys)?;

    let config_map = ConfigMap {
        api_version: "v1",
        kind: "ConfigMap",
        metadata: Metadata::new(CONFIG_MAP.into(), None),
        data: scheduled.iter().map(|j| (config_key(&j.file_name), j.source.as_str())).collect(),
    };
    let config_map = yaml(&config_map)?;
    let mut text = String::from(
        "# Generated by `opsbook schedule k8s`. Apply with `kubectl apply -f FILE` after creating the\n\
         # secret, e.g. `kubectl create secret generic NAME --from-env-file=.env`. spec.schedule is read\n\
         # in the kube-controller-manager's time zone (usually UTC).\n",
    );
    let mut runbooks = Vec::new();
    for job in jobs {
        if job.schedule.is_none() {
            text.push_str(&format!(
                "# {}: skipped: {NO_SCHEDULE} ({})\n",
                one_line(&job.name),
                one_line(&path_text(&job.run_path))
            ));
            runbooks.push(Emitted::skipped(job));
        }
    }
    text.push_str("---\n");
    text.push_str(&config_map);
    for job in &scheduled {
        let document = yaml(&cronjob(job, settings))?;
        text.push_str("---\n");
        text.push_str(&document);
        runbooks.push(Emitted { text: Some(document), ..Emitted::new(job) });
    }
    // Keep the order of the runbooks as given.
    runbooks.sort_by_key(|r| jobs.iter().position(|j| j.name == r.name && j.run_path == r.path));
    Ok(Plan { target: "k8s", runbooks, config_map: Some(config_map), text })
}

fn cronjob(job: &Job, settings: &K8s) -> CronJob {
    let name = cronjob_name(&job.name);
    let labels = Some(name.clone());
    CronJob {
        api_version: "batch/v1",
        kind: "CronJob",
        metadata: Metadata::new(name.clone(), labels.clone()),
        spec: CronJobSpec {
            schedule: job.schedule.clone().unwrap_or_default(),
            concurrency_policy: "Forbid",
            successful_jobs_history_limit: 3,
            failed_jobs_history_limit: 3,
            job_template: JobTemplate {
                spec: JobSpec {
                    backoff_limit: 0,
                    template: PodTemplate {
                        metadata: Metadata { name: None, ..Metadata::new(name, labels) },
                        spec: PodSpec {
                            restart_policy: "Never",
                            containers: vec![Container {
                                name: "opsbook",
                                image: settings.image.clone(),
                                args: vec![
                                    "run".into(),
                                    format!("{MOUNT_PATH}/{}", config_key(&job.file_name)),
                                    "--no-input".into(),
                                    "--output".into(),
                                    "json".into(),
                                ],
                                env_from: vec![EnvFrom { secret_ref: NameRef { name: settings.secret.clone() } }],
                                volume_mounts: vec![VolumeMount {
                                    name: "runbooks",
                                    mount_path: MOUNT_PATH,
                                    read_only: true,
                                }],
                            }],
                            volumes: vec![Volume { name: "runbooks", config_map: NameRef { name: CONFIG_MAP.into() } }],
                        },
                    },
                },
            },
        },
    }
}

/// `opsbook-NAME` as a DNS-1123 name: lowercase letters, digits and `-`, at most 52 characters.
pub fn cronjob_name(name: &str) -> String {
    let mut out = String::from("opsbook-");
    for c in name.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out.truncate(CRONJOB_NAME_MAX);
    out.trim_end_matches('-').to_string()
}

/// A ConfigMap key: letters, digits, `-`, `_` and `.`.
fn config_key(file_name: &str) -> String {
    file_name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' }).collect()
}

fn yaml<T: Serialize>(value: &T) -> Result<String, ScheduleError> {
    // The default (YAML 1.1-compatible quoting) matters: Kubernetes reads manifests with a
    // YAML 1.1 parser, where e.g. `on` or `0755` would change type.
    serde_saphyr::to_string(value).map_err(|e| ScheduleError::Yaml(e.to_string()))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigMap<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    data: BTreeMap<String, &'a str>,
}

#[derive(Serialize)]
struct Metadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    labels: BTreeMap<&'static str, String>,
}

impl Metadata {
    fn new(name: String, instance: Option<String>) -> Self {
        let mut labels = BTreeMap::from([("app.kubernetes.io/name", "opsbook".to_string())]);
        if let Some(instance) = instance {
            labels.insert("app.kubernetes.io/instance", instance);
        }
        Self { name: Some(name), labels }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CronJob {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: CronJobSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CronJobSpec {
    schedule: String,
    concurrency_policy: &'static str,
    successful_jobs_history_limit: u32,
    failed_jobs_history_limit: u32,
    job_template: JobTemplate,
}

#[derive(Serialize)]
struct JobTemplate {
    spec: JobSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JobSpec {
    backoff_limit: u32,
    template: PodTemplate,
}

#[derive(Serialize)]
struct PodTemplate {
    metadata: Metadata,
    spec: PodSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    restart_policy: &'static str,
    containers: Vec<Container>,
    volumes: Vec<Volume>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: &'static str,
    image: String,
    args: Vec<String>,
    env_from: Vec<EnvFrom>,
    volume_mounts: Vec<VolumeMount>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvFrom {
    secret_ref: NameRef,
}

#[derive(Serialize)]
struct NameRef {
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VolumeMount {
    name: &'static str,
    mount_path: &'static str,
    read_only: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Volume {
    name: &'static str,
    config_map: NameRef,
}

// ---------------------------------------------------------------------------------------------
// cron -> systemd OnCalendar

struct Field {
    what: &'static str,
    lo: u32,
    hi: u32,
    /// Accepted names for values, the first one meaning `name_base`.
    names: &'static [&'static str],
    name_base: u32,
}

const MINUTE: Field = Field { what: "minute", lo: 0, hi: 59, names: &[], name_base: 0 };
const HOUR: Field = Field { what: "hour", lo: 0, hi: 23, names: &[], name_base: 0 };
const DAY: Field = Field { what: "day-of-month", lo: 1, hi: 31, names: &[], name_base: 0 };
const MONTH: Field = Field {
    what: "month",
    lo: 1,
    hi: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    name_base: 1,
};
const WEEKDAY: Field = Field {
    what: "day-of-week",
    lo: 0,
    hi: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    name_base: 0,
};

/// systemd's weekday names, Monday first; cron counts from Sunday = 0 (and 7).
const SYSTEMD_DAYS: [(&str, u32); 7] =
    [("Mon", 1), ("Tue", 2), ("Wed", 3), ("Thu", 4), ("Fri", 5), ("Sat", 6), ("Sun", 0)];

/// One comma-separated part of a cron field.
struct Part {
    start: u32,
    /// The explicit end of a range (`a-b`); `*` ends at the field's maximum.
    end: Option<u32>,
    step: Option<u32>,
    star: bool,
}

impl Field {
    fn value(&self, text: &str) -> Result<u32, String> {
        let v = match self.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
            Some(i) => i as u32 + self.name_base,
            None => text.parse().map_err(|_| format!("`{text}` is not a number in the {} field", self.what))?,
        };
        if v < self.lo || v > self.hi {
            return Err(format!("{v} is outside {}-{} in the {} field", self.lo, self.hi, self.what));
        }
        Ok(v)
    }

    fn parts(&self, field: &str) -> Result<Vec<Part>, String> {
        field
            .split(',')
            .map(|part| {
                let (range, step) = match part.split_once('/') {
                    Some((r, s)) => {
                        let step = s
                            .parse::<u32>()
                            .ok()
                            .filter(|s| *s > 0)
                            .ok_or_else(|| format!("`{s}` is not a step in the {} field", self.what))?;
                        (r, Some(step))
                    }
                    None => (part, None),
                };
                if range == "*" {
                    return Ok(Part { start: self.lo, end: None, step, star: true });
                }
                let (start, end) = match range.split_once('-') {
                    Some((a, b)) => (self.value(a)?, Some(self.value(b)?)),
                    None => (self.value(range)?, None),
                };
                if let Some(end) = end.filter(|end| *end < start) {
                    return Err(format!("the range {start}-{end} in the {} field runs backwards", self.what));
                }
                Ok(Part { start, end, step, star: false })
            })
            .collect()
    }

    /// The field as a systemd calendar component.
    fn component(&self, field: &str) -> Result<String, String> {
        let parts = self.parts(field)?;
        if parts.iter().any(|p| p.star && p.step.is_none()) {
            return Ok("*".into());
        }
        let rendered: Vec<String> = parts
            .iter()
            .map(|p| match (p.star, p.end, p.step) {
                (true, _, Some(step)) => format!("{}/{step}", p.start),
                (_, None, None) => format!("{:02}", p.start),
                (_, None, Some(step)) => format!("{:02}/{step}", p.start),
                (_, Some(end), None) => format!("{:02}..{end:02}", p.start),
                (_, Some(end), Some(step)) => format!("{:02}..{end:02}/{step}", p.start),
            })
            .collect();
        Ok(rendered.join(","))
    }

    /// The days of the week a day-of-week field allows (0 = Sunday).
    fn weekdays(&self, field: &str) -> Result<BTreeSet<u32>, String> {
        let mut days = BTreeSet::new();
        for p in self.parts(field)? {
            let end = p.end.unwrap_or(if p.star || p.step.is_some() { self.hi } else { p.start });
            days.extend((p.start..=end).step_by(p.step.unwrap_or(1) as usize).map(|d| d % 7));
        }
        Ok(days)
    }
}

/// Converts a 5-field cron expression (minute hour day-of-month month day-of-week) into a systemd
/// `OnCalendar=` value: `30 2 * * *` → `*-*-* 02:30:00`, `*/15 * * * *` → `*-*-* *:0/15:00`,
/// `0 9 * * 1-5` → `Mon..Fri *-*-* 09:00:00`. Refuses what systemd cannot express the same way.
pub fn on_calendar(cron: &str) -> Result<String, String> {
    if cron.trim_start().starts_with('@') {
        return Err(format!("`{}` nicknames are not supported; write the 5 fields (e.g. `0 0 * * *`)", cron.trim()));
    }
    let fields: Vec<&str> = cron.split_whitespace().collect();
    let [minute, hour, day, month, weekday] = fields[..] else {
        return Err(format!("expected 5 fields (minute hour day-of-month month day-of-week), found {}", fields.len()));
    };
    if !day.starts_with('*') && !weekday.starts_with('*') {
        return Err("cron runs when either the day of month or the day of week matches, systemd only when both \
                    do; restrict only one of the two"
            .into());
    }
    let days = WEEKDAY.weekdays(weekday)?;
    let weekday_prefix = if days.len() == 7 { String::new() } else { format!("{} ", weekday_list(&days)) };
    Ok(format!(
        "{weekday_prefix}*-{}-{} {}:{}:00",
        MONTH.component(month)?,
        DAY.component(day)?,
        HOUR.component(hour)?,
        MINUTE.component(minute)?
    ))
}

/// `Mon..Fri`, `Sat,Sun`, `Mon,Wed..Fri`: runs of three or more days become ranges.
fn weekday_list(days: &BTreeSet<u32>) -> String {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, (_, n)) in SYSTEMD_DAYS.iter().enumerate() {
        if !days.contains(n) {
            continue;
        }
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == i => *end = i,
            _ => runs.push((i, i)),
        }
    }
    let mut out = Vec::new();
    for (a, b) in runs {
        if b >= a + 2 {
            out.push(format!("{}..{}", SYSTEMD_DAYS[a].0, SYSTEMD_DAYS[b].0));
        } else {
            out.extend((a..=b).map(|i| SYSTEMD_DAYS[i].0.to_string()));
        }
    }
    out.join(",")
}

// ---------------------------------------------------------------------------------------------
// helpers

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
        let err = |c: &str| on_calendar(c).unwrap_err();
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
