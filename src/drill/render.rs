//! A drill report as Markdown (for a ticket or a wiki page) and as JUnit XML (for CI dashboards).

use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{DrillReport, Outcome};

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

// Long by design: one Markdown template, section by section in the order the report reads.
pub fn markdown(r: &DrillReport) -> String {
    let mut out = String::new();
    out.push_str(&format!("# Restore drill {} — {}\n\n", r.drill_id, if r.ok { "passed" } else { "FAILED" }));
    if let Some(error) = &r.error {
        out.push_str(&format!("Stopped by an error: {}\n\n", cell(error)));
    }
    let backup = match &r.backup_snapshot {
        Some(snapshot) => {
            format!("`{}` of set `{}` in `{}` (snapshot {})", r.backup_id, r.set, r.store, snapshot.to_rfc3339())
        }
        None => format!("none selected, set `{}` in `{}`", r.set, r.store),
    };
    out.push_str(&format!(
        "- Backup: {backup}\n- Target: {}\n- Restore: {}, {} bytes\n- Started: {}; finished: {}\n- Seed: {}\n",
        if r.target.is_empty() { "not created" } else { &r.target },
        r.restore_mode,
        r.restored_bytes,
        r.started.to_rfc3339(),
        r.time.to_rfc3339(),
        r.seed
    ));
    out.push_str(&format!(
        "- RTO: {:.1}s{}{}\n- RPO: {:.0}s{}\n\n",
        r.rto.seconds,
        r.rto_seconds_per_gib.map(|g| format!(" ({g:.1}s per GiB)")).unwrap_or_default(),
        r.rto.target_seconds.map(|t| format!(", target {t:.0}s")).unwrap_or_default(),
        r.rpo.seconds,
        r.rpo.target_seconds.map(|t| format!(", target {t:.0}s")).unwrap_or_default(),
    ));
    out.push_str("## Steps\n\n| step | result | time | detail |\n|---|---|---|---|\n");
    for s in &r.steps {
        let result = match s.outcome {
            Outcome::Passed => "passed",
            Outcome::Failed => "**FAILED**",
            Outcome::Skipped => "skipped",
        };
        out.push_str(&format!("| {} | {result} | {:.1}s | {} |\n", s.name, s.seconds, cell(&s.detail)));
    }
    if !r.tables.is_empty() {
        out.push_str("\n## Row counts\n\n| table | in backup | restored | |\n|---|---:|---:|---|\n");
        for t in &r.tables {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                cell(&t.table),
                t.expected,
                t.restored.map_or_else(|| "missing".into(), |n| n.to_string()),
                if t.ok { "ok" } else { "**mismatch**" }
            ));
        }
    }
    if !r.sql_checks.is_empty() {
        out.push_str("\n## SQL checks\n\n| line | statement | value | |\n|---|---|---|---|\n");
        for c in &r.sql_checks {
            out.push_str(&format!(
                "| {} | `{}` | {} | {} |\n",
                c.line,
                cell(&c.statement),
                cell(c.error.as_deref().or(c.value.as_deref()).unwrap_or("")),
                if c.ok { "ok" } else { "**failed**" }
            ));
        }
    }
    if let Some(o) = &r.objects {
        out.push_str(&format!(
            "\n## Objects\n\n{} of {} sampled objects readable (sampled from {} {} keys in {}{}).\n",
            o.readable,
            o.sampled,
            o.candidates,
            o.sampled_from,
            o.source,
            if o.presigned { ", through presigned URLs" } else { "" }
        ));
        for key in &o.missing {
            out.push_str(&format!("- missing: `{key}`\n"));
        }
        for p in &o.unreadable {
            out.push_str(&format!("- unreadable: `{}` ({})\n", p.key, cell(&p.error)));
        }
    }
    if let Some(kept) = &r.kept {
        out.push_str(&format!("\nKept: {kept}\n"));
    }
    out
}

pub fn junit(r: &DrillReport) -> String {
    let mut suite = TestSuite::new(format!("restore-drill {}", r.set));
    for s in &r.steps {
        let status = match s.outcome {
            Outcome::Passed => TestCaseStatus::success(),
            Outcome::Skipped => {
                let mut st = TestCaseStatus::skipped();
                st.set_message(s.detail.clone());
                st
            }
            Outcome::Failed => {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                st.set_message(s.detail.clone());
                st
            }
        };
        let mut case = TestCase::new(s.name.clone(), status);
        case.set_classname(format!("opsbook.restore-drill.{}", r.set));
        case.set_time(Duration::from_secs_f64(s.seconds.max(0.0)));
        if s.outcome == Outcome::Passed {
            case.set_system_out(s.detail.clone());
        }
        suite.add_test_case(case);
    }
    let mut report = Report::new(format!("opsbook restore-drill {}", r.drill_id));
    report.add_test_suite(suite);
    report.to_string().unwrap_or_default()
}

/// Writes the Markdown report and JUnit file the spec asks for, rendered from the report with its
/// secrets masked.
pub fn write_files(spec: &super::DrillSpec, report: &DrillReport) -> Result<(), super::DrillError> {
    let masked = crate::redact::redacted(report);
    type Render = fn(&DrillReport) -> String;
    let files: [(&Option<std::path::PathBuf>, Render, &str); 2] =
        [(&spec.report, markdown, "Markdown report"), (&spec.junit, junit, "JUnit report")];
    for (path, render, what) in files {
        if let Some(path) = path {
            crate::redact::write_file(path, &render(&masked), None).map_err(|source| super::DrillError::Io {
                op: format!("write the {what} {}", path.display()),
                source,
            })?;
        }
    }
    Ok(())
}
