//! `validate` (applied files against their recorded checksums, with cosmetic repair) and
//! `baseline` (record existing migrations as applied).

use super::*;

/// One applied migration whose file no longer matches.
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    pub version: i64,
    pub description: String,
    pub file: Option<String>,
    pub kind: DriftKind,
    pub removed: Vec<String>,
    pub added: Vec<String>,
    pub repaired: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ValidateReport {
    pub database: String,
    pub checked: usize,
    pub drift: Vec<Drift>,
}

impl ValidateReport {
    pub fn ok(&self) -> bool {
        self.drift.iter().all(|d| d.repaired)
    }
}

/// `migrate validate`: classifies every applied migration whose file changed. With
/// `repair_cosmetic`, records the new checksum for changes that are only cosmetic (like
/// Flyway's repair), so sqlx and opsbook accept the file again.
pub async fn validate(settings: &Settings, repair_cosmetic: bool) -> Result<ValidateReport, MigrateError> {
    let (source, mut conn) = open(settings).await?;
    let history = history::read(&mut conn).await?;
    let mut drift = Vec::new();
    let mut checked = 0;
    for row in history.applied.iter().filter(|r| r.success) {
        checked += 1;
        let Some(file) = source.find(row.version) else {
            drift.push(Drift {
                version: row.version,
                description: row.description.clone(),
                file: None,
                kind: DriftKind::Missing,
                removed: Vec::new(),
                added: Vec::new(),
                repaired: false,
            });
            continue;
        };
        if file.checksum == row.checksum {
            continue;
        }
        let original =
            history.side_for(row.version).filter(|s| s.checksum == row.checksum).and_then(|s| s.script.clone());
        let (kind, diff) = match &original {
            Some(text) => drift::classify(text, &file.sql),
            None => (DriftKind::Unknown, drift::StatementDiff::default()),
        };
        drift.push(Drift {
            version: row.version,
            description: file.description.clone(),
            file: Some(file.file_name.clone()),
            kind,
            removed: diff.removed,
            added: diff.added,
            repaired: false,
        });
    }
    if repair_cosmetic && drift.iter().any(|d| d.kind == DriftKind::Cosmetic) {
        let lock = MigrationLock::acquire(&mut conn, settings.lock_wait).await?;
        let result = repair(&mut conn, &source, &mut drift).await;
        lock.release(&mut conn).await;
        result?;
    }
    Ok(ValidateReport { database: settings.database_url.redacted(), checked, drift })
}

pub(super) async fn repair(conn: &mut PgConnection, source: &Source, drift: &mut [Drift]) -> Result<(), MigrateError> {
    exec(conn, "BEGIN", "begin").await?;
    for d in drift.iter_mut().filter(|d| d.kind == DriftKind::Cosmetic) {
        let file = source.find(d.version).expect("drift entries with a kind have a file");
        history::set_checksum(conn, d.version, &file.checksum).await?;
        history::log(conn, &side_entry(file, "repair", "not-linted", None)).await?;
        d.repaired = true;
    }
    exec(conn, "COMMIT", "commit").await
}

#[derive(Debug, Clone, Serialize)]
pub struct BaselineReport {
    pub database: String,
    pub version: i64,
    pub recorded: Vec<Applied>,
    pub already_applied: usize,
}

/// `migrate baseline VERSION`: records every migration up to VERSION as applied without running
/// it (for a database whose schema already exists).
pub async fn baseline(settings: &Settings, version: i64) -> Result<BaselineReport, MigrateError> {
    let (source, mut conn) = open(settings).await?;
    if source.find(version).is_none() {
        // A typo (20 for 2) would otherwise mark every migration below it applied.
        return Err(MigrateError::UnknownBaseline { version, dir: source.dir.clone() });
    }
    let upto: Vec<&MigrationFile> =
        source.versioned.iter().filter(|m| m.version.is_some_and(|v| v <= version)).collect();
    let lock = MigrationLock::acquire(&mut conn, settings.lock_wait).await?;
    let result = async {
        history::ensure_tables(&mut conn).await?;
        let history = history::read(&mut conn).await?;
        let applied: HashSet<i64> = history.applied.iter().map(|r| r.version).collect();
        exec(&mut conn, "BEGIN", "begin").await?;
        let mut recorded = Vec::new();
        for m in upto.iter().filter(|m| !applied.contains(&m.version.unwrap_or_default())) {
            history::record(&mut conn, &m.description, 0, &side_entry(m, "baseline", "not-linted", None)).await?;
            recorded.push(self::applied(m, Duration::ZERO, 0, "not-linted"));
        }
        exec(&mut conn, "COMMIT", "commit").await?;
        Ok::<_, MigrateError>(BaselineReport {
            database: settings.database_url.redacted(),
            version,
            already_applied: upto.len() - recorded.len(),
            recorded,
        })
    }
    .await;
    lock.release(&mut conn).await;
    result
}
