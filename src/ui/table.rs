//! Tables for human output (comfy-table), sized to the terminal. Cells are masked for secrets as
//! they are added, before the layout can wrap a secret across lines past the mask.

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ColumnConstraint, ContentArrangement};

/// Columns holding identifiers people copy into the next command: never wrapped.
const WHOLE: [&str; 3] = ["id", "backup", "version"];

/// Columns holding identifiers or names opsbook prints exactly (see `redact::redact_identifier`):
/// a weak secret never rewrites them.
const IDENTIFIERS: [&str; 15] = [
    "id",
    "backup",
    "version",
    "set",
    "step",
    "check",
    "key",
    "object",
    "object set",
    "secret",
    "run",
    "resource",
    "action",
    "status",
    "result",
];

/// Below this many columns a terminal is not worth fitting (a pty that reports width 0 would
/// wrap every cell to one character): the table is printed at its natural width.
const MIN_FIT_WIDTH: u16 = 40;

/// A table whose cells are masked for secrets before layout: rows are kept as given and masked
/// when the table is drawn, after the URL passwords of every cell are registered, so a secret
/// is masked whichever row shows it first.
pub struct Table {
    inner: comfy_table::Table,
    identifier: Vec<bool>,
    rows: Vec<Vec<String>>,
}

/// A table with the house style: light borders, header row, wrapped to the terminal width
/// (except identifier columns, which keep their full width).
pub fn new(header: &[&str]) -> Table {
    let mut table = comfy_table::Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header(header.iter().copied());
    // Off a terminal, `COLUMNS` (as `ls` reads it) still asks for a width: scripts and the
    // layout snapshots use it.
    if table.width().is_none() {
        if let Some(columns) = std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse::<u16>().ok()) {
            table.set_width(columns);
        }
    }
    let fit = table.width().is_some_and(|w| w >= MIN_FIT_WIDTH);
    table.set_content_arrangement(if fit { ContentArrangement::Dynamic } else { ContentArrangement::Disabled });
    for (i, name) in header.iter().enumerate() {
        if WHOLE.contains(name) {
            if let Some(column) = table.column_mut(i) {
                column.set_constraint(ColumnConstraint::ContentWidth);
            }
        }
    }
    Table { inner: table, identifier: header.iter().map(|h| IDENTIFIERS.contains(h)).collect(), rows: Vec::new() }
}

impl Table {
    pub fn add_row(&mut self, cells: Vec<String>) -> &mut Self {
        self.rows.push(cells);
        self
    }

    /// Lays the table out for a terminal of `width` columns (tests; a real table reads the
    /// terminal's width).
    pub fn set_width(&mut self, width: u16) -> &mut Self {
        self.inner.set_width(width).set_content_arrangement(ContentArrangement::Dynamic);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::redact;
        self.rows.iter().flatten().for_each(|cell| redact::register_urls_in(cell));
        let mut table = self.inner.clone();
        // Too wide for the terminal even with its widest wrappable column (a detail) wrapped to
        // 20 characters: drop the padding (one space still separates the columns) before the
        // short columns have to wrap.
        if let Some(width) = table.width().filter(|w| *w >= MIN_FIT_WIDTH) {
            let columns = self.rows.iter().map(Vec::len).chain([table.column_count()]).max().unwrap_or(0);
            let headers: Vec<String> =
                table.header().map(|h| h.cell_iter().map(|c| c.content()).collect()).unwrap_or_default();
            let widths: Vec<(usize, bool)> = (0..columns)
                .map(|i| {
                    let header = headers.get(i).map_or(0, |h| h.chars().count());
                    let content = self.rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count());
                    let wrappable = !headers.get(i).is_some_and(|h| WHOLE.contains(&h.as_str()));
                    (content.chain([header]).max().unwrap_or(0), wrappable)
                })
                .collect();
            let widest_wrappable = widths.iter().filter(|(_, w)| *w).map(|(n, _)| *n).max().unwrap_or(0);
            let needed =
                widths.iter().map(|(n, _)| n).sum::<usize>() - widest_wrappable.saturating_sub(20) + 3 * columns + 1;
            if needed > usize::from(width) {
                for column in table.column_iter_mut() {
                    column.set_padding((0, 0));
                }
            }
        }
        for row in &self.rows {
            let masked = row.iter().enumerate().map(|(i, cell)| {
                let identifier = self.identifier.get(i).copied().unwrap_or(false);
                if identifier { redact::redact_identifier(cell) } else { redact::redact(cell) }.into_owned()
            });
            table.add_row(masked.collect::<Vec<_>>());
        }
        table.fmt(f)
    }
}

/// Human byte sizes: 1.2 GiB, 340 KiB.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Human age: 3m, 5h, 2d, 7w.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7_199 => format!("{}m", s / 60),
        7_200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn identifiers_never_wrap_on_a_narrow_table() {
        let mut t = super::new(&["set", "id", "detail"]);
        t.set_width(50);
        let id = "20261123T231500Z-37a96843";
        t.add_row(vec!["shop".into(), id.into(), "a long detail that must wrap ".repeat(4)]);
        let text = t.to_string();
        assert!(text.contains(id), "{text}");
        assert!(text.lines().count() > 5, "the detail column wrapped: {text}");
    }

    #[test]
    fn sizes_and_ages() {
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(super::age(30), "30s");
        assert_eq!(super::age(600), "10m");
        assert_eq!(super::age(3 * 3600), "3h");
        assert_eq!(super::age(3 * 86_400), "3d");
    }
}
