//! `policies verify`: reads the live catalog over the admin connection and reports each way
//! tenant isolation is weaker than DESIGN.md's invariants promise. Reads only; changes nothing.
//!
//! The rooms: `tables` reads which tables there are and which are tenant tables (the one
//! query `migrate::citus` shares); `rls` checks row-level security and the policies (their
//! shape, the functions they call, `current_tenant()`); `grants` the app role (attributes,
//! ownership, memberships, the privileges it must not hold and those it needs, definer
//! functions) and the views over tenant tables; `keys` the primary, unique and foreign keys;
//! `audit` the audit triggers. `overview` is what `tables list` shows: every tenant table with
//! its RLS, audit and API state.

use std::collections::BTreeSet;

use sqlx::{Connection, PgConnection, Postgres, Transaction};

use crate::roles::APP_ROLE;

mod audit;
mod grants;
mod keys;
pub mod overview;
mod rls;
mod tables;

pub(crate) use tables::{Table, read_tables};

use audit::check_audit_triggers;
use grants::{check_app_role, check_views};
use keys::check_keys;
use rls::{check_current_tenant, check_policies, check_policy_functions, check_tables, read_policies};

/// What a finding breaks. The kebab-case id (`rls-not-forced`) is stable: scripts match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// A tenant table's `tenant_id` admits NULL (invariant 1).
    TenantIdNullable,
    /// A tenant table without `ENABLE ROW LEVEL SECURITY`: every role sees every tenant.
    RlsNotEnabled,
    /// A tenant table without `FORCE ROW LEVEL SECURITY`: its owner is not held to the policies.
    RlsNotForced,
    /// Some of SELECT, INSERT, UPDATE, DELETE has no permissive policy restricting it to the
    /// current tenant for the app role.
    CommandNotCovered,
    /// A permissive policy without USING where its command reads rows.
    PolicyMissingUsing,
    /// A permissive policy without WITH CHECK where its command writes rows.
    PolicyMissingWithCheck,
    /// A permissive policy whose USING or WITH CHECK is `true`.
    PolicyAlwaysTrue,
    /// A permissive policy with an OR: an escape hatch beside the tenant check.
    PolicyHasOr,
    /// A permissive policy that does not compare `tenant_id` with the tenant setting.
    PolicyNotTenantScoped,
    /// More than one permissive policy for one command of one table (splinter's
    /// `multiple_permissive_policies`): they are OR-ed, so every extra one widens access.
    MultiplePermissivePolicies,
    /// A policy with a subquery (SELECT, EXISTS, IN (SELECT …)): Citus rejects it on a
    /// distributed table, and it costs a plan node per statement.
    PolicyHasSubquery,
    /// A policy calling a VOLATILE function: evaluated once per row, never once per statement.
    PolicyCallsVolatileFunction,
    /// A policy calling a function the planner cannot inline (plpgsql, SECURITY DEFINER,
    /// SET options, a body that reads tables): a call per row.
    PolicyCallsNonInlinableFunction,
    /// `current_tenant()` is not the STABLE, inlinable, fail-closed function policies rely on.
    CurrentTenantDefinition,
    /// RLS enabled and no policy (splinter's `rls_enabled_no_policy`): every query sees nothing.
    RlsEnabledNoPolicy,
    /// A policy on a table whose RLS is disabled (splinter's `policy_exists_rls_disabled`):
    /// the policy is written but not enforced.
    PolicyExistsRlsDisabled,
    /// The app role does not exist, so nothing about it can be verified.
    AppRoleMissing,
    /// The app role is a superuser: RLS does not apply to it at all.
    AppRoleSuperuser,
    /// The app role has BYPASSRLS: RLS does not apply to it at all.
    AppRoleBypassrls,
    /// The app role has CREATEROLE: it can grant itself other roles' powers.
    AppRoleCreaterole,
    /// The app role has CREATEDB.
    AppRoleCreatedb,
    /// The app role owns an object: owners may disable RLS on, or grant, what they own.
    AppRoleOwnsObject,
    /// The app role is a member of another role, and can act with that role's privileges.
    AppRoleMemberOfRole,
    /// The app role holds a privilege beyond DML on tenant tables and SELECT on the registry
    /// columns resolution needs (TRUNCATE, REFERENCES and TRIGGER ignore or escape RLS), or
    /// may write the audit log other than through `audit_append` (a forged event or head).
    AppRoleExcessPrivilege,
    /// The app role lacks a privilege the API needs on a built-in or adopted tenant table
    /// (SELECT, INSERT, UPDATE or DELETE; fewer on the audit tables, which it may not write):
    /// the requests that need it fail with a server error instead of being served.
    AppRoleGrantMissing,
    /// A view over a tenant table that runs with its owner's rights instead of the caller's.
    ViewNotSecurityInvoker,
    /// A materialized view over a tenant table: it stores rows, and RLS does not apply to it.
    MaterializedViewOverTenantTable,
    /// A SECURITY DEFINER function the app role can execute: it runs with its owner's rights.
    /// The audit append path (`AUDIT_DEFINER_FUNCTIONS`) is one by design, and is reported
    /// only when it is not owned by the audit role or does not pin its search_path.
    SecurityDefinerExecutable,
    /// A primary key or unique index of a tenant table that does not lead with `tenant_id`
    /// (Citus needs the distribution column in every unique constraint).
    UniqueKeyNotLeadingTenantId,
    /// A tenant table with no index leading with `tenant_id`: every tenant query scans.
    NoTenantIdIndex,
    /// A foreign key between tenant tables that does not match `tenant_id` to `tenant_id`:
    /// foreign-key checks ignore RLS, so it lets one tenant point at (and probe for)
    /// another tenant's rows, and Citus cannot co-locate it.
    ForeignKeyWithoutTenantId,
    /// A tenant table without the enabled `audit_row_change` trigger (and not named in
    /// `AUDIT_EXEMPT_TABLES`): its changes would escape the audit trail.
    AuditTriggerMissing,
    /// The registry of adopted tables names a table that no longer exists (dropped or
    /// renamed): whatever now carries its data is not known to be guarded.
    AdoptedTableMissing,
}

impl Rule {
    /// The stable id, as in the JSON output.
    pub fn id(self) -> &'static str {
        match self {
            Rule::TenantIdNullable => "tenant-id-nullable",
            Rule::RlsNotEnabled => "rls-not-enabled",
            Rule::RlsNotForced => "rls-not-forced",
            Rule::CommandNotCovered => "command-not-covered",
            Rule::PolicyMissingUsing => "policy-missing-using",
            Rule::PolicyMissingWithCheck => "policy-missing-with-check",
            Rule::PolicyAlwaysTrue => "policy-always-true",
            Rule::PolicyHasOr => "policy-has-or",
            Rule::PolicyNotTenantScoped => "policy-not-tenant-scoped",
            Rule::MultiplePermissivePolicies => "multiple-permissive-policies",
            Rule::PolicyHasSubquery => "policy-has-subquery",
            Rule::PolicyCallsVolatileFunction => "policy-calls-volatile-function",
            Rule::PolicyCallsNonInlinableFunction => "policy-calls-non-inlinable-function",
            Rule::CurrentTenantDefinition => "current-tenant-definition",
            Rule::RlsEnabledNoPolicy => "rls-enabled-no-policy",
            Rule::PolicyExistsRlsDisabled => "policy-exists-rls-disabled",
            Rule::AppRoleMissing => "app-role-missing",
            Rule::AppRoleSuperuser => "app-role-superuser",
            Rule::AppRoleBypassrls => "app-role-bypassrls",
            Rule::AppRoleCreaterole => "app-role-createrole",
            Rule::AppRoleCreatedb => "app-role-createdb",
            Rule::AppRoleOwnsObject => "app-role-owns-object",
            Rule::AppRoleMemberOfRole => "app-role-member-of-role",
            Rule::AppRoleExcessPrivilege => "app-role-excess-privilege",
            Rule::AppRoleGrantMissing => "app-role-grant-missing",
            Rule::ViewNotSecurityInvoker => "view-not-security-invoker",
            Rule::MaterializedViewOverTenantTable => "materialized-view-over-tenant-table",
            Rule::SecurityDefinerExecutable => "security-definer-executable",
            Rule::UniqueKeyNotLeadingTenantId => "unique-key-not-leading-tenant-id",
            Rule::NoTenantIdIndex => "no-tenant-id-index",
            Rule::ForeignKeyWithoutTenantId => "foreign-key-without-tenant-id",
            Rule::AuditTriggerMissing => "audit-trigger-missing",
            Rule::AdoptedTableMissing => "adopted-table-missing",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// One thing wrong: the object (a table for table and policy rules, else the role, view or
/// function), the rule it breaks, and a sentence saying what and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Finding {
    pub object: String,
    pub rule: Rule,
    pub message: String,
}

/// Verify the database `conn` is connected to, for the service's role `APP_ROLE`.
///
/// Every check is a catalog query plus a little Rust, so an operator can prove from the
/// database itself — not from the migration files — that every tenant table is covered: a
/// forgotten policy migration, a hand-made `ALTER TABLE`, a grant typed into psql all show
/// up, named by object and by a stable rule id. Empty means nothing found.
pub async fn verify(conn: &mut PgConnection) -> Result<Vec<Finding>, sqlx::Error> {
    verify_for_role(conn, APP_ROLE).await
}

/// As `verify`, for the role named `app_role` (tests use a role of their own, since roles
/// are cluster-wide and altering the real one would disturb every other database).
///
/// Runs in one read-only transaction, so every check sees the same catalog, with the search
/// path set to `public` alone, so expressions deparse the same way for every caller.
pub async fn verify_for_role(conn: &mut PgConnection, app_role: &str) -> Result<Vec<Finding>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query!("SET TRANSACTION READ ONLY").execute(&mut *tx).await?;
    sqlx::query!("SET LOCAL search_path = public").execute(&mut *tx).await?;
    let mut out = Findings::default();
    let tables = read_tables(&mut tx).await?;
    check_tables(&tables, &mut out);
    let policies = read_policies(&mut tx, app_role).await?;
    check_policies(&tables, &policies, &mut out);
    check_policy_functions(&mut tx, &mut out).await?;
    check_current_tenant(&mut tx, &mut out).await?;
    check_app_role(&mut tx, app_role, &tables, &mut out).await?;
    check_views(&mut tx, &tables, &mut out).await?;
    check_keys(&mut tx, &tables, &mut out).await?;
    check_audit_triggers(&mut tx, &tables, &mut out).await?;
    check_adopted_tables_exist(&mut tx, &mut out).await?;
    tx.rollback().await?;
    Ok(out.0.into_iter().collect())
}

/// Every table the registry of adopted tables names still exists in schema public.
async fn check_adopted_tables_exist(tx: &mut Tx<'_>, out: &mut Findings) -> Result<(), sqlx::Error> {
    use crate::roles::ADOPTED_TABLES_REGISTRY;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(ADOPTED_TABLES_REGISTRY)
        .fetch_one(&mut **tx)
        .await?;
    if !exists {
        return Ok(());
    }
    // A constant table name.
    let missing: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT table_name FROM {ADOPTED_TABLES_REGISTRY}
          WHERE to_regclass(format('public.%I', table_name)) IS NULL ORDER BY 1"
    )))
    .fetch_all(&mut **tx)
    .await?;
    for table in missing {
        out.add(
            &table,
            Rule::AdoptedTableMissing,
            format!(
                "{table} was adopted but no longer exists (dropped or renamed): adopt a renamed table under its new \
                 name (`rowguard tables adopt NEW_NAME`), then, as the owner, `DELETE FROM {ADOPTED_TABLES_REGISTRY} \
                 WHERE table_name = '{}'`",
                table.replace('\'', "''")
            ),
        );
    }
    Ok(())
}

/// Sorted and free of duplicates (a function called from USING and WITH CHECK is one finding).
#[derive(Default)]
struct Findings(BTreeSet<Finding>);

impl Findings {
    fn add(&mut self, object: impl Into<String>, rule: Rule, message: impl Into<String>) {
        self.0.insert(Finding { object: object.into(), rule, message: message.into() });
    }
}

type Tx<'c> = Transaction<'c, Postgres>;
