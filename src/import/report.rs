//! What an import run reports: per tenant its outcome, row counts and problems; for the run
//! its totals; and the progress events the CLI draws its bar from.

use serde::Serialize;

use super::MAX_PROBLEMS;
use crate::domain::TenantId;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub users: u64,
    pub organizations: u64,
    pub contacts: u64,
    pub deals: u64,
    /// `--all-tables`: the rows of every other table.
    pub other_tables: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.users + self.organizations + self.contacts + self.deals + self.other_tables
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Imported,
    /// `--dry-run`: everything checked, nothing written.
    WouldImport,
    /// Imported by an earlier run, and its source has not changed since (or cannot tell).
    Skipped,
    /// Imported by an earlier run, and its source has changed since: nothing written, and the
    /// run exits non-zero so nobody takes the old copy for the new one.
    Changed,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Imported => "imported",
            Outcome::WouldImport => "would import",
            Outcome::Skipped => "skipped",
            Outcome::Changed => "CHANGED since import",
            Outcome::Failed => "FAILED",
        }
    }
}

/// What is wrong, where: the tenant (schema), the table and the row (its source id).
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub table: String,
    pub row: Option<String>,
    pub message: String,
}

impl Problem {
    pub(super) fn new(table: &str, row: Option<&str>, message: impl Into<String>) -> Problem {
        Problem { table: table.to_string(), row: row.map(str::to_string), message: message.into() }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TenantReport {
    pub schema: String,
    pub slug: Option<String>,
    pub tenant_id: Option<TenantId>,
    pub outcome: Outcome,
    pub rows: Counts,
    /// `--all-tables`: the rows of each other table (their sum is `rows.other_tables`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tables: std::collections::BTreeMap<String, u64>,
    pub domains: usize,
    pub seconds: f64,
    pub problems: Vec<Problem>,
    pub notes: Vec<String>,
}

impl TenantReport {
    pub(super) fn new(schema: &str) -> TenantReport {
        TenantReport {
            schema: schema.to_string(),
            slug: None,
            tenant_id: None,
            outcome: Outcome::Failed,
            rows: Counts::default(),
            tables: Default::default(),
            domains: 0,
            seconds: 0.0,
            problems: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub(super) fn fail(mut self, problems: Vec<Problem>) -> TenantReport {
        self.outcome = Outcome::Failed;
        let extra = problems.len().saturating_sub(MAX_PROBLEMS);
        self.problems = problems.into_iter().take(MAX_PROBLEMS).collect();
        if extra > 0 {
            self.notes.push(format!("{extra} more problem(s) not listed"));
        }
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub source_database: String,
    pub dry_run: bool,
    pub tenants: Vec<TenantReport>,
    /// Rows written (or, in a dry run, that would be), over all tenants.
    pub rows: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
    /// `--all-tables` (not a dry run): the plan the other tables were created from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_tables: Option<super::AllTablesPlan>,
}

impl ImportReport {
    pub fn failed(&self) -> usize {
        self.tenants.iter().filter(|t| t.outcome == Outcome::Failed).count()
    }

    /// Tenants imported before whose source has changed since.
    pub fn changed(&self) -> usize {
        self.tenants.iter().filter(|t| t.outcome == Outcome::Changed).count()
    }
}

/// What `import_schemas` tells its caller while it runs (the CLI's progress bar or lines).
pub enum Progress<'a> {
    /// The registry is read: this many tenants will be looked at.
    Started { tenants: usize },
    /// One tenant is done, whatever its outcome.
    Tenant(&'a TenantReport),
}
