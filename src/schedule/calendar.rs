//! Cron expressions: parsing the five fields and converting them to systemd `OnCalendar=`
//! values.

use super::*;

pub(super) struct Field {
    what: &'static str,
    lo: u32,
    hi: u32,
    /// Accepted names for values, the first one meaning `name_base`.
    names: &'static [&'static str],
    name_base: u32,
}

pub(super) const MINUTE: Field = Field { what: "minute", lo: 0, hi: 59, names: &[], name_base: 0 };
pub(super) const HOUR: Field = Field { what: "hour", lo: 0, hi: 23, names: &[], name_base: 0 };
pub(super) const DAY: Field = Field { what: "day-of-month", lo: 1, hi: 31, names: &[], name_base: 0 };
pub(super) const MONTH: Field = Field {
    what: "month",
    lo: 1,
    hi: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    name_base: 1,
};
pub(super) const WEEKDAY: Field = Field {
    what: "day-of-week",
    lo: 0,
    hi: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    name_base: 0,
};

/// systemd's weekday names, Monday first; cron counts from Sunday = 0 (and 7).
pub(super) const SYSTEMD_DAYS: [(&str, u32); 7] =
    [("Mon", 1), ("Tue", 2), ("Wed", 3), ("Thu", 4), ("Fri", 5), ("Sat", 6), ("Sun", 0)];

/// Why a cron expression has no systemd `OnCalendar=` equivalent. `field` names the cron
/// field ("minute", "day-of-week", …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("`{text}` nicknames are not supported; write the 5 fields (e.g. `0 0 * * *`)")]
    Nickname { text: String },
    #[error("expected 5 fields (minute hour day-of-month month day-of-week), found {found}")]
    FieldCount { found: usize },
    #[error(
        "cron runs when either the day of month or the day of week matches, systemd only when both do; restrict \
         only one of the two"
    )]
    DayAndWeekday,
    #[error("`{text}` is not a number in the {field} field")]
    NotANumber { text: String, field: &'static str },
    #[error("{value} is outside {lo}-{hi} in the {field} field")]
    OutOfRange { value: u32, lo: u32, hi: u32, field: &'static str },
    #[error("`{text}` is not a step in the {field} field")]
    Step { text: String, field: &'static str },
    #[error("the range {start}-{end} in the {field} field runs backwards")]
    Backwards { start: u32, end: u32, field: &'static str },
}

/// One comma-separated part of a cron field.
pub(super) struct Part {
    start: u32,
    /// The explicit end of a range (`a-b`); `*` ends at the field's maximum.
    end: Option<u32>,
    step: Option<u32>,
    star: bool,
}

impl Field {
    fn value(&self, text: &str) -> Result<u32, CalendarError> {
        let v = match self.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
            Some(i) => i as u32 + self.name_base,
            None => text.parse().map_err(|_| CalendarError::NotANumber { text: text.to_string(), field: self.what })?,
        };
        if v < self.lo || v > self.hi {
            return Err(CalendarError::OutOfRange { value: v, lo: self.lo, hi: self.hi, field: self.what });
        }
        Ok(v)
    }

    fn parts(&self, field: &str) -> Result<Vec<Part>, CalendarError> {
        field
            .split(',')
            .map(|part| {
                let (range, step) = match part.split_once('/') {
                    Some((r, s)) => {
                        let step = s
                            .parse::<u32>()
                            .ok()
                            .filter(|s| *s > 0)
                            .ok_or_else(|| CalendarError::Step { text: s.to_string(), field: self.what })?;
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
                    return Err(CalendarError::Backwards { start, end, field: self.what });
                }
                Ok(Part { start, end, step, star: false })
            })
            .collect()
    }

    /// The field as a systemd calendar component.
    fn component(&self, field: &str) -> Result<String, CalendarError> {
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
    fn weekdays(&self, field: &str) -> Result<BTreeSet<u32>, CalendarError> {
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
pub fn on_calendar(cron: &str) -> Result<String, CalendarError> {
    if cron.trim_start().starts_with('@') {
        return Err(CalendarError::Nickname { text: cron.trim().to_string() });
    }
    let fields: Vec<&str> = cron.split_whitespace().collect();
    let [minute, hour, day, month, weekday] = fields[..] else {
        return Err(CalendarError::FieldCount { found: fields.len() });
    };
    if !day.starts_with('*') && !weekday.starts_with('*') {
        return Err(CalendarError::DayAndWeekday);
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
pub(super) fn weekday_list(days: &BTreeSet<u32>) -> String {
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
