//! Zero-downtime lint of migration files with the embedded squawk linter.
//!
//! Every squawk rule keeps its name (`require-concurrent-index-creation`, …), so `-- squawk-ignore`
//! comments and squawk's documentation apply unchanged. opsbook adds a severity per rule: the
//! `prefer-*` style rules warn, everything else is an error; `opsbook.toml` can move rules
//! between the two, add squawk's opt-in rules or drop rules. squawk's `require-lock-timeout` and
//! `require-statement-timeout` are off unless included: the runner sets both timeouts itself.

use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use squawk_linter::{Linter, LinterSettings, Rule};

use super::MigrateError;

/// `[profiles.NAME.migrate.lint]` in opsbook.toml.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LintConfig {
    /// PostgreSQL version the rules assume (e.g. "15"; squawk's default is 15).
    pub pg_version: Option<String>,
    /// Opt-in squawk rules to enable as well (e.g. "ban-drop-index").
    #[serde(default)]
    pub include: Vec<String>,
    /// Rules to turn off.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Rules that only warn (do not fail `lint` or block `up`).
    #[serde(default)]
    pub warn: Vec<String>,
    /// Rules that are errors even though they warn by default (e.g. "prefer-bigint-over-int").
    #[serde(default)]
    pub error: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One problem in one file.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub rule: String,
    pub severity: Severity,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

/// The rule name of a parse error.
pub const SYNTAX_ERROR: &str = "syntax-error";

/// opsbook's own rule: a statement PostgreSQL refuses inside a transaction block, in a file the
/// runner wraps in one (squawk flags it only beside other statements).
pub const NEEDS_NO_TRANSACTION: &str = "requires-no-transaction";

/// The rule set and severities, checked once.
pub struct Rules {
    rules: Vec<Rule>,
    warn: Vec<Rule>,
    error: Vec<Rule>,
    pg_version: Option<squawk_linter::Version>,
}

fn parse_rules(key: &'static str, names: &[String]) -> Result<Vec<Rule>, MigrateError> {
    names
        .iter()
        .map(|n| Rule::from_str(n.trim()).map_err(|_| MigrateError::UnknownLintRule { key, rule: n.clone() }))
        .collect()
}

impl Rules {
    pub fn new(config: &LintConfig) -> Result<Rules, MigrateError> {
        let include = parse_rules("include", &config.include)?;
        let mut exclude = parse_rules("exclude", &config.exclude)?;
        // The runner sets lock_timeout (and statement_timeout when configured) around every
        // migration, so squawk's "set a timeout in the file" rules only add noise unless asked for.
        for implied in [Rule::RequireLockTimeout, Rule::RequireStatementTimeout, Rule::RequireTimeoutSettings] {
            if !include.contains(&implied) {
                exclude.push(implied);
            }
        }
        let warn = parse_rules("warn", &config.warn)?;
        let error = parse_rules("error", &config.error)?;
        let pg_version = match &config.pg_version {
            Some(v) => Some(
                squawk_linter::Version::from_str(v)
                    .map_err(|error| MigrateError::LintPgVersion { version: v.clone(), error })?,
            ),
            None => None,
        };
        let rules = Linter::with_rules(&include, &exclude).rules.into_iter().collect();
        Ok(Rules { rules, warn, error, pg_version })
    }

    /// The rules with their default severities.
    pub fn defaults() -> Rules {
        Rules::new(&LintConfig::default()).expect("the default rule set is valid")
    }

    fn severity(&self, rule: Rule) -> Severity {
        if self.error.contains(&rule) {
            Severity::Error
        } else if self.warn.contains(&rule) || rule.to_string().starts_with("prefer-") {
            Severity::Warning
        } else {
            Severity::Error
        }
    }

    /// Lints one file's text. `in_transaction`: the runner wraps it in a transaction (so e.g.
    /// CREATE INDEX CONCURRENTLY is flagged as impossible there). Syntax errors are findings with
    /// the rule `syntax-error`.
    pub fn lint(&self, file: &Path, text: &str, in_transaction: bool) -> Vec<Finding> {
        let display = file.display().to_string();
        let parse = squawk_syntax::SourceFile::parse(text);
        let mut findings: Vec<Finding> = parse
            .errors()
            .into_iter()
            .map(|e| {
                let (line, column) = crate::text::line_col(text, usize::from(e.range().start()));
                Finding {
                    file: display.clone(),
                    line,
                    column,
                    rule: SYNTAX_ERROR.into(),
                    severity: Severity::Error,
                    message: e.message().to_string(),
                    help: Some("fix the SQL; PostgreSQL would reject this statement".into()),
                }
            })
            .collect();
        if in_transaction {
            for st in super::statements::split(text).unwrap_or_default() {
                if st.effect == super::statements::TxEffect::NeedsNoTransaction {
                    let (line, column) = crate::text::line_col(text, st.start);
                    findings.push(Finding {
                        file: display.clone(),
                        line,
                        column,
                        rule: NEEDS_NO_TRANSACTION.into(),
                        severity: Severity::Error,
                        message: format!("{} cannot run inside a transaction block", st.head),
                        help: Some("move it to its own file whose first line is `-- no-transaction`".into()),
                    });
                }
            }
        }
        let mut linter = Linter::from(self.rules.iter().copied());
        linter.settings =
            LinterSettings { pg_version: self.pg_version.unwrap_or_default(), assume_in_transaction: in_transaction };
        for v in linter.lint(&parse, text) {
            let (line, column) = crate::text::line_col(text, usize::from(v.text_range.start()));
            findings.push(Finding {
                file: display.clone(),
                line,
                column,
                rule: v.code.to_string(),
                severity: self.severity(v.code),
                message: v.message,
                help: v.help,
            });
        }
        findings.sort_by_key(|f| (f.line, f.column));
        findings
    }
}

/// Whether any finding is an error.
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

/// A one-word verdict for history: clean, warnings or errors.
pub fn verdict(findings: &[Finding]) -> &'static str {
    if has_errors(findings) {
        "errors"
    } else if findings.is_empty() {
        "clean"
    } else {
        "warnings"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules_hit(sql: &str) -> Vec<String> {
        Rules::defaults().lint(Path::new("m.sql"), sql, true).into_iter().map(|f| f.rule).collect()
    }

    #[test]
    fn catches_the_classic_outage_causes() {
        assert!(rules_hit("CREATE INDEX idx ON products (name);").contains(&"require-concurrent-index-creation".into()));
        assert!(rules_hit("ALTER TABLE products ADD COLUMN sku text NOT NULL;")
            .iter()
            .any(|r| r == "adding-required-field" || r == "adding-not-nullable-field"));
        assert!(rules_hit("ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (p) REFERENCES products (id);")
            .iter()
            .any(|r| r == "adding-foreign-key-constraint" || r == "constraint-missing-not-valid"));
        assert!(
            rules_hit("ALTER TABLE products ALTER COLUMN price TYPE numeric;").contains(&"changing-column-type".into())
        );
        assert!(rules_hit("ALTER TABLE products DROP COLUMN legacy;").contains(&"ban-drop-column".into()));
        assert!(rules_hit("ALTER TABLE products RENAME COLUMN a TO b;").contains(&"renaming-column".into()));
    }

    #[test]
    fn syntax_errors_carry_a_line() {
        let f = Rules::defaults().lint(Path::new("m.sql"), "SELECT 1;\nCREAT TABLE x (id int);\n", true);
        let syntax: Vec<_> = f.iter().filter(|f| f.rule == "syntax-error").collect();
        assert!(!syntax.is_empty(), "{f:?}");
        assert_eq!(syntax[0].line, 2);
    }

    #[test]
    fn a_concurrent_index_alone_in_a_transactional_file_is_flagged() {
        let sql = "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);";
        assert!(rules_hit(sql).contains(&NEEDS_NO_TRANSACTION.to_string()));
        let no_tx = Rules::defaults().lint(Path::new("m.sql"), sql, false);
        assert!(no_tx.iter().all(|f| f.rule != NEEDS_NO_TRANSACTION), "{no_tx:?}");
    }

    #[test]
    fn severities_follow_the_config() {
        let rules = Rules::new(&LintConfig { warn: vec!["ban-drop-column".into()], ..Default::default() }).unwrap();
        let f = rules.lint(Path::new("m.sql"), "ALTER TABLE t DROP COLUMN c;", true);
        assert!(f.iter().all(|f| f.severity == Severity::Warning), "{f:?}");
        assert!(Rules::new(&LintConfig { exclude: vec!["no-such-rule".into()], ..Default::default() }).is_err());
    }
}
