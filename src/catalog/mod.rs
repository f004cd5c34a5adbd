//! `policies verify`: reads the live catalog over the admin connection and reports each way
//! tenant isolation is weaker than DESIGN.md's invariants promise. Reads only; changes nothing.

use std::collections::BTreeSet;

use sqlx::{Connection, PgConnection, Postgres, Transaction};

use crate::db::{
    APP_ROLE, AUDIT_DEFINER_FUNCTIONS, AUDIT_EXEMPT_TABLES, AUDIT_LOG_TABLES, AUDIT_ROLE, PLATFORM_PRIVATE_TABLES,
    PLATFORM_TABLES,
};

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
            Rule::ViewNotSecurityInvoker => "view-not-security-invoker",
            Rule::MaterializedViewOverTenantTable => "materialized-view-over-tenant-table",
            Rule::SecurityDefinerExecutable => "security-definer-executable",
            Rule::UniqueKeyNotLeadingTenantId => "unique-key-not-leading-tenant-id",
            Rule::NoTenantIdIndex => "no-tenant-id-index",
            Rule::ForeignKeyWithoutTenantId => "foreign-key-without-tenant-id",
            Rule::AuditTriggerMissing => "audit-trigger-missing",
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
    sqlx::query("SET TRANSACTION READ ONLY").execute(&mut *tx).await?;
    sqlx::query("SET LOCAL search_path = public").execute(&mut *tx).await?;
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
    tx.rollback().await?;
    Ok(out.0.into_iter().collect())
}

/// Every tenant table but the exempt ones records its changes (invariant 6).
async fn check_audit_triggers(tx: &mut Tx<'_>, tables: &[Table], out: &mut Findings) -> Result<(), sqlx::Error> {
    let audited: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT c.relname::text FROM pg_trigger t
           JOIN pg_class c ON c.oid = t.tgrelid
           JOIN pg_proc p ON p.oid = t.tgfoid
          WHERE p.proname = 'audit_row_change' AND t.tgenabled <> 'D' AND NOT t.tgisinternal",
    )
    .fetch_all(&mut **tx)
    .await?;
    for t in tables.iter().filter(|t| t.is_tenant()) {
        if !AUDIT_EXEMPT_TABLES.contains(&t.name.as_str()) && !audited.contains(&t.name) {
            let name = &t.name;
            out.add(
                name,
                Rule::AuditTriggerMissing,
                format!(
                    "{name} has no enabled audit_row_change trigger, so its changes are not audited; add \
                     `CREATE TRIGGER audit_row_change AFTER INSERT OR UPDATE OR DELETE ON {name} FOR EACH ROW \
                     EXECUTE FUNCTION audit_row_change('<resource>')` to its schema migration, or name it in \
                     AUDIT_EXEMPT_TABLES"
                ),
            );
        }
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

/// A table in schema `public` (also the input of the Citus distribution plan, `migrate::citus`:
/// one definition of a tenant table for both).
pub(crate) struct Table {
    pub(crate) name: String,
    rls_enabled: bool,
    rls_forced: bool,
    has_tenant_id: bool,
    tenant_id_not_null: bool,
}

impl Table {
    /// Tenant-owned: has `tenant_id` and is not one of the named platform tables.
    pub(crate) fn is_tenant(&self) -> bool {
        self.has_tenant_id && !PLATFORM_TABLES.contains(&self.name.as_str())
    }
}

fn is_tenant_table(tables: &[Table], name: &str) -> bool {
    tables.iter().any(|t| t.name == name && t.is_tenant())
}

pub(crate) async fn read_tables(conn: &mut PgConnection) -> Result<Vec<Table>, sqlx::Error> {
    let rows: Vec<(String, bool, bool, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
                a.attnum IS NOT NULL, coalesce(a.attnotnull, false)
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
          ORDER BY 1",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, rls_enabled, rls_forced, has_tenant_id, tenant_id_not_null)| Table {
            name,
            rls_enabled,
            rls_forced,
            has_tenant_id,
            tenant_id_not_null,
        })
        .collect())
}

fn check_tables(tables: &[Table], out: &mut Findings) {
    for t in tables.iter().filter(|t| t.is_tenant()) {
        let name = &t.name;
        if !t.tenant_id_not_null {
            out.add(name, Rule::TenantIdNullable, format!("{name}.tenant_id admits NULL; declare it `uuid NOT NULL`"));
        }
        if !t.rls_enabled {
            out.add(
                name,
                Rule::RlsNotEnabled,
                format!(
                    "{name} has tenant_id but row-level security is not enabled, so every tenant sees every row; \
                     add a policy migration (policies/V{{n}}__{name}_rls.sql) with `ALTER TABLE {name} ENABLE ROW \
                     LEVEL SECURITY`, or name it in PLATFORM_TABLES if it is not tenant-owned"
                ),
            );
        }
        if !t.rls_forced {
            out.add(
                name,
                Rule::RlsNotForced,
                format!(
                    "{name}: row-level security is not forced, so the table's owner is not held to its policies; \
                     `ALTER TABLE {name} FORCE ROW LEVEL SECURITY`"
                ),
            );
        }
    }
}

/// A policy on a table in `public`, with its expressions deparsed (for reading and for the
/// tenant-predicate check) and as stored node trees (for structure: OR, subqueries).
struct Policy {
    table: String,
    name: String,
    permissive: bool,
    command: String,
    using: Option<String>,
    check: Option<String>,
    using_tree: String,
    check_tree: String,
    /// Applies to PUBLIC or names the app role.
    applies_to_app_role: bool,
}

impl Policy {
    fn covers(&self, command: &str) -> bool {
        self.command == "ALL" || self.command == command
    }

    /// What PostgreSQL checks new rows against: WITH CHECK, or USING when an ALL or UPDATE
    /// policy has none.
    fn effective_check(&self) -> Option<&str> {
        self.check.as_deref().or(if matches!(self.command.as_str(), "ALL" | "UPDATE") {
            self.using.as_deref()
        } else {
            None
        })
    }

    /// Whether this policy restricts `command` to the current tenant.
    fn restricts_to_tenant(&self, command: &str) -> bool {
        let reads = || self.using.as_deref().is_some_and(is_tenant_predicate);
        let writes = || self.effective_check().is_some_and(is_tenant_predicate);
        self.permissive
            && self.covers(command)
            && match command {
                "INSERT" => writes(),
                "UPDATE" => reads() && writes(),
                _ => reads(),
            }
    }
}

const COMMANDS: [&str; 4] = ["SELECT", "INSERT", "UPDATE", "DELETE"];

async fn read_policies(tx: &mut Tx<'_>, app_role: &str) -> Result<Vec<Policy>, sqlx::Error> {
    type Row = (String, String, bool, String, Option<String>, Option<String>, String, String, bool);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT c.relname::text, p.polname::text, p.polpermissive,
                CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                              WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid),
                coalesce(p.polqual::text, ''), coalesce(p.polwithcheck::text, ''),
                0::oid = ANY (p.polroles)
                  OR EXISTS (SELECT FROM pg_roles r WHERE r.rolname = $1 AND r.oid = ANY (p.polroles))
           FROM pg_policy p
           JOIN pg_class c ON c.oid = p.polrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public'
          ORDER BY 1, 2",
    )
    .bind(app_role)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(table, name, permissive, command, using, check, using_tree, check_tree, applies_to_app_role)| Policy {
            table,
            name,
            permissive,
            command,
            using,
            check,
            using_tree,
            check_tree,
            applies_to_app_role,
        })
        .collect())
}

fn check_policies(tables: &[Table], policies: &[Policy], out: &mut Findings) {
    for table in tables {
        let name = &table.name;
        let own: Vec<&Policy> = policies.iter().filter(|p| &p.table == name).collect();
        if table.rls_enabled && own.is_empty() {
            out.add(
                name,
                Rule::RlsEnabledNoPolicy,
                format!("{name} has row-level security enabled but no policy, so every query sees no rows"),
            );
        }
        if !table.rls_enabled && !own.is_empty() {
            let names: Vec<&str> = own.iter().map(|p| p.name.as_str()).collect();
            out.add(
                name,
                Rule::PolicyExistsRlsDisabled,
                format!(
                    "{name} has policies ({}) but row-level security is disabled, so they are not enforced",
                    names.join(", ")
                ),
            );
        }
        let mut crowded = Vec::new();
        for command in COMMANDS {
            let permissive: Vec<&str> =
                own.iter().filter(|p| p.permissive && p.covers(command)).map(|p| p.name.as_str()).collect();
            if permissive.len() > 1 {
                crowded.push(format!("{command} ({})", permissive.join(", ")));
            }
        }
        if !crowded.is_empty() {
            out.add(
                name,
                Rule::MultiplePermissivePolicies,
                format!(
                    "{name} has more than one permissive policy for {}; permissive policies are OR-ed, so each \
                     extra one widens access — keep one per command",
                    crowded.join(", ")
                ),
            );
        }
        for policy in &own {
            if policy.using_tree.contains("{SUBLINK") || policy.check_tree.contains("{SUBLINK") {
                out.add(
                    name,
                    Rule::PolicyHasSubquery,
                    format!(
                        "{name}: policy {} has a subquery; compare tenant_id with current_tenant() directly \
                         (Citus rejects subqueries in policies)",
                        policy.name
                    ),
                );
            }
        }
        if table.is_tenant() {
            check_tenant_policies(table, &own, out);
        }
    }
}

/// Coverage and widening, for a tenant table's policies.
fn check_tenant_policies(table: &Table, own: &[&Policy], out: &mut Findings) {
    let name = &table.name;
    let uncovered: Vec<&str> = COMMANDS
        .into_iter()
        .filter(|command| !own.iter().any(|p| p.applies_to_app_role && p.restricts_to_tenant(command)))
        .collect();
    // With RLS enabled and no policy at all, rls-enabled-no-policy already says it.
    let said_already = own.is_empty() && table.rls_enabled;
    if !uncovered.is_empty() && !said_already {
        let what = if own.is_empty() {
            "has no policy".to_string()
        } else {
            format!("has no permissive policy for the app role restricting {}", uncovered.join(", "))
        };
        out.add(
            name,
            Rule::CommandNotCovered,
            format!(
                "{name} {what} to the current tenant; add `CREATE POLICY tenant_isolation ON {name} USING (tenant_id = \
                 current_tenant()) WITH CHECK (tenant_id = current_tenant())` in a policy migration"
            ),
        );
    }
    for policy in own.iter().filter(|p| p.permissive) {
        let reads = matches!(policy.command.as_str(), "ALL" | "SELECT" | "UPDATE" | "DELETE");
        let writes = matches!(policy.command.as_str(), "ALL" | "INSERT" | "UPDATE");
        if reads && policy.using.is_none() {
            out.add(name, Rule::PolicyMissingUsing, format!("{name}: policy {} has no USING expression", policy.name));
        }
        if writes && policy.check.is_none() {
            out.add(
                name,
                Rule::PolicyMissingWithCheck,
                format!(
                    "{name}: policy {} has no WITH CHECK expression; state `WITH CHECK (tenant_id = current_tenant())`",
                    policy.name
                ),
            );
        }
        for (clause, expr, tree) in
            [("USING", &policy.using, &policy.using_tree), ("WITH CHECK", &policy.check, &policy.check_tree)]
        {
            let Some(expr) = expr.as_deref() else { continue };
            let policy = &policy.name;
            if expr == "true" {
                out.add(
                    name,
                    Rule::PolicyAlwaysTrue,
                    format!("{name}: permissive policy {policy} has {clause} (true), which admits every tenant's rows"),
                );
            } else if tree.contains(":boolop or ") {
                out.add(
                    name,
                    Rule::PolicyHasOr,
                    format!(
                        "{name}: permissive policy {policy} {clause} {expr} has an OR, an escape hatch beside the \
                         tenant check"
                    ),
                );
            } else if !is_tenant_predicate(expr) {
                out.add(
                    name,
                    Rule::PolicyNotTenantScoped,
                    format!(
                        "{name}: permissive policy {policy} {clause} {expr} does not compare tenant_id with \
                         current_tenant() (or NULLIF(current_setting('app.tenant_id', true), '')::uuid), so it \
                         widens access"
                    ),
                );
            }
        }
    }
}

/// The tenant comparison as PostgreSQL deparses it (search path `public`), with
/// `current_tenant()` or the plain fail-closed expression, either way round.
const TENANT_PREDICATES: [&str; 4] = [
    "(tenant_id = current_tenant())",
    "(current_tenant() = tenant_id)",
    "(tenant_id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid)",
    "((NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid = tenant_id)",
];

/// A tenant comparison, or a top-level AND with one as a conjunct (narrower still).
/// Anything else — OR, NOT, CASE, another setting, another column — is not.
fn is_tenant_predicate(expr: &str) -> bool {
    TENANT_PREDICATES.contains(&expr) || top_level_conjuncts(expr).iter().any(|c| TENANT_PREDICATES.contains(c))
}

/// `((a) AND (b) AND (c))` → `["(a)", "(b)", "(c)"]`; anything else → empty. The deparser
/// parenthesises every boolean operand, so an AND outside all parentheses and quotes
/// (after the outermost pair) is the top-level one.
fn top_level_conjuncts(expr: &str) -> Vec<&str> {
    let Some(inner) = expr.strip_prefix('(').and_then(|e| e.strip_suffix(')')) else { return vec![] };
    let mut parts = Vec::new();
    let (mut depth, mut start, mut quote) = (0i32, 0usize, None::<u8>);
    let bytes = inner.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'\'' | b'"' => quote = Some(b),
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    // The outer pair did not enclose the whole expression: `(a) AND (b)`.
                    if depth < 0 {
                        return vec![];
                    }
                }
                b' ' if depth == 0 && inner[i..].starts_with(" AND ") => {
                    parts.push(&inner[start..i]);
                    start = i + 5;
                    i += 4;
                }
                _ => {}
            },
        }
        i += 1;
    }
    if parts.is_empty() || depth != 0 || quote.is_some() {
        return vec![];
    }
    parts.push(&inner[start..]);
    parts
}

/// Functions the policies call, found in the stored expression trees (`:funcid` of a call,
/// `:opfuncid` of an operator), including built-ins, which `pg_depend` does not record.
async fn check_policy_functions(tx: &mut Tx<'_>, out: &mut Findings) -> Result<(), sqlx::Error> {
    type Row = (String, String, String, String, String, bool);
    let rows: Vec<Row> = sqlx::query_as(
        r"WITH calls AS (
              SELECT p.polrelid, p.polname,
                     (regexp_matches(coalesce(p.polqual::text, '') || ' ' || coalesce(p.polwithcheck::text, ''),
                                     ':(?:op)?funcid (\d+)', 'g'))[1]::oid AS fn
                FROM pg_policy p
          )
          SELECT DISTINCT c.relname::text, calls.polname::text, f.oid::regprocedure::text, l.lanname::text,
                 f.provolatile::text,
                 -- What the planner's inline_function() needs of a scalar SQL function, and
                 -- a body that only computes an expression (no table, no subquery).
                 fn_ns.nspname = 'pg_catalog' AND l.lanname IN ('internal', 'c')
                 OR (l.lanname = 'sql' AND NOT f.prosecdef AND f.proconfig IS NULL AND NOT f.proretset
                     AND body.src ~* '^\s*(begin\s+atomic\s+)?(select|return)\s'
                     AND body.src !~* '\mfrom\M'
                     AND (SELECT count(*) FROM regexp_matches(body.src, '\mselect\M', 'gi')) <= 1)
            FROM calls
            JOIN pg_class c ON c.oid = calls.polrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_proc f ON f.oid = calls.fn
            JOIN pg_namespace fn_ns ON fn_ns.oid = f.pronamespace
            JOIN pg_language l ON l.oid = f.prolang
           CROSS JOIN LATERAL (SELECT CASE WHEN f.prosqlbody IS NOT NULL THEN pg_get_function_sqlbody(f.oid)
                                           ELSE f.prosrc END AS src) body
           WHERE n.nspname = 'public'
           ORDER BY 1, 2, 3",
    )
    .fetch_all(&mut **tx)
    .await?;
    for (table, policy, function, language, volatility, inlinable) in rows {
        if volatility == "v" {
            out.add(
                &table,
                Rule::PolicyCallsVolatileFunction,
                format!(
                    "{table}: policy {policy} calls {function}, which is VOLATILE and so evaluated for every row; \
                     read the tenant through current_tenant() (STABLE)"
                ),
            );
        }
        if !inlinable {
            out.add(
                &table,
                Rule::PolicyCallsNonInlinableFunction,
                format!(
                    "{table}: policy {policy} calls {function} (LANGUAGE {language}), which the planner cannot \
                     inline (not a single-expression SQL function, or SECURITY DEFINER, SET options, or a body \
                     that reads tables); read the tenant through current_tenant()"
                ),
            );
        }
    }
    Ok(())
}

/// `current_tenant()` itself: STABLE (IMMUTABLE would let a cached plan keep one tenant's
/// id; VOLATILE costs a call per row), inlinable SQL, and fail-closed (invariant 2).
async fn check_current_tenant(tx: &mut Tx<'_>, out: &mut Findings) -> Result<(), sqlx::Error> {
    let rows: Vec<(String, String, String, bool, bool, String)> = sqlx::query_as(
        "SELECT f.oid::regprocedure::text, f.provolatile::text, l.lanname::text, f.prosecdef, f.proisstrict,
                CASE WHEN f.prosqlbody IS NOT NULL THEN pg_get_function_sqlbody(f.oid) ELSE f.prosrc END
           FROM pg_proc f
           JOIN pg_namespace n ON n.oid = f.pronamespace
           JOIN pg_language l ON l.oid = f.prolang
          WHERE n.nspname = 'public' AND f.proname = 'current_tenant'",
    )
    .fetch_all(&mut **tx)
    .await?;
    for (function, volatility, language, security_definer, strict, body) in rows {
        let compact: String = body.to_lowercase().chars().filter(|c| !c.is_whitespace()).collect();
        let mut wrong = Vec::new();
        if volatility != "s" {
            wrong.push("not STABLE");
        }
        if language != "sql" {
            wrong.push("not LANGUAGE sql");
        }
        if security_definer {
            wrong.push("SECURITY DEFINER");
        }
        if strict {
            wrong.push("STRICT");
        }
        if !compact.contains("nullif(current_setting('app.tenant_id',true),'')") {
            wrong.push("not NULLIF(current_setting('app.tenant_id', true), '')::uuid");
        }
        if !wrong.is_empty() {
            out.add(
                &function,
                Rule::CurrentTenantDefinition,
                format!(
                    "{function} is {}; policies rely on a STABLE, inlinable LANGUAGE sql function returning \
                     NULLIF(current_setting('app.tenant_id', true), '')::uuid (policies/V1__current_tenant.sql)",
                    wrong.join(", ")
                ),
            );
        }
    }
    Ok(())
}

/// Invariant 5: the role that serves tenant requests is held to RLS and can do nothing else.
async fn check_app_role(tx: &mut Tx<'_>, role: &str, tables: &[Table], out: &mut Findings) -> Result<(), sqlx::Error> {
    let attributes: Option<(bool, bool, bool, bool)> =
        sqlx::query_as("SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = $1")
            .bind(role)
            .fetch_optional(&mut **tx)
            .await?;
    let Some((superuser, bypassrls, createrole, createdb)) = attributes else {
        out.add(role, Rule::AppRoleMissing, format!("role {role} does not exist"));
        return Ok(());
    };
    for (has, rule, what) in [
        (superuser, Rule::AppRoleSuperuser, "SUPERUSER, so RLS does not apply to it; `ALTER ROLE {role} NOSUPERUSER`"),
        (bypassrls, Rule::AppRoleBypassrls, "BYPASSRLS, so RLS does not apply to it; `ALTER ROLE {role} NOBYPASSRLS`"),
        (createrole, Rule::AppRoleCreaterole, "CREATEROLE, so it can take other roles' powers"),
        (createdb, Rule::AppRoleCreatedb, "CREATEDB"),
    ] {
        if has {
            out.add(role, rule, format!("role {role} has {}", what.replace("{role}", role)));
        }
    }

    let owned: Vec<String> = sqlx::query_scalar(
        "SELECT CASE c.relkind WHEN 'r' THEN 'table ' WHEN 'p' THEN 'table ' WHEN 'v' THEN 'view '
                               WHEN 'm' THEN 'materialized view ' WHEN 'S' THEN 'sequence '
                               WHEN 'i' THEN 'index ' ELSE 'relation ' END || c.oid::regclass::text
           FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = $1
         UNION ALL
         SELECT 'function ' || f.oid::regprocedure::text
           FROM pg_proc f JOIN pg_roles r ON r.oid = f.proowner WHERE r.rolname = $1
         UNION ALL
         SELECT 'schema ' || quote_ident(s.nspname)
           FROM pg_namespace s JOIN pg_roles r ON r.oid = s.nspowner WHERE r.rolname = $1
         ORDER BY 1",
    )
    .bind(role)
    .fetch_all(&mut **tx)
    .await?;
    for object in owned {
        out.add(
            &object,
            Rule::AppRoleOwnsObject,
            format!("{object} is owned by {role}; an owner can disable RLS and grant, so give it to rowguard_owner"),
        );
    }

    let groups: Vec<String> = sqlx::query_scalar(
        "SELECT g.rolname::text FROM pg_auth_members m
           JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member
          WHERE r.rolname = $1 ORDER BY 1",
    )
    .bind(role)
    .fetch_all(&mut **tx)
    .await?;
    for group in groups {
        out.add(
            role,
            Rule::AppRoleMemberOfRole,
            format!("role {role} is a member of {group} and can act with its privileges; `REVOKE {group} FROM {role}`"),
        );
    }

    // A superuser holds every privilege; listing them would bury the one finding that matters.
    if superuser {
        return Ok(());
    }
    check_app_role_privileges(tx, role, tables, out).await?;

    // (function, owner, owner may bypass RLS, search_path pinned by a SET clause). EXECUTE
    // granted to the role itself or to PUBLIC, as for tables below: through a membership it is
    // the member-of-role finding (the owner role is a member of the audit role by design, so
    // a role inside the owner could run every audit definer — one cause, reported once).
    let definers: Vec<(String, String, bool, bool)> = sqlx::query_as(
        "SELECT f.oid::regprocedure::text, o.rolname::text, o.rolsuper OR o.rolbypassrls,
                EXISTS (SELECT FROM unnest(f.proconfig) c WHERE c LIKE 'search\\_path=%')
           FROM pg_proc f JOIN pg_namespace n ON n.oid = f.pronamespace JOIN pg_roles o ON o.oid = f.proowner
          WHERE f.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
            AND EXISTS (SELECT FROM aclexplode(coalesce(f.proacl, acldefault('f', f.proowner))) g
                         WHERE g.privilege_type = 'EXECUTE'
                           AND (g.grantee = 0 OR g.grantee IN (SELECT oid FROM pg_roles WHERE rolname = $1)))
          ORDER BY 1",
    )
    .bind(role)
    .fetch_all(&mut **tx)
    .await?;
    for (function, owner, privileged_owner, pinned) in definers {
        // The audit log's append path is a definer by design (sql/V17): accepted only as long
        // as it runs as the audit role, held to RLS, with a search path no caller can steer.
        if AUDIT_DEFINER_FUNCTIONS.contains(&function.as_str()) {
            if owner != AUDIT_ROLE || privileged_owner || !pinned {
                out.add(
                    &function,
                    Rule::SecurityDefinerExecutable,
                    format!(
                        "{function} is the audit log's append path and {role} executes it; it must be owned by \
                         {AUDIT_ROLE} (NOSUPERUSER NOBYPASSRLS, so RLS holds it) and pin its search_path \
                         (`SET search_path = pg_catalog, public, pg_temp`); now owned by {owner}{}{}",
                        if privileged_owner { ", which bypasses RLS" } else { "" },
                        if pinned { "" } else { ", with no search_path of its own" },
                    ),
                );
            }
            continue;
        }
        out.add(
            &function,
            Rule::SecurityDefinerExecutable,
            format!(
                "{function} is SECURITY DEFINER and {role} can execute it, so it runs with its owner's rights; \
                 make it SECURITY INVOKER or `REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC, {role}`"
            ),
        );
    }
    Ok(())
}

/// DML on tenant tables, SELECT on the registry columns resolution needs, SELECT on other
/// tables without tenant_id (the migration history, for /readyz) — and nothing else.
async fn check_app_role_privileges(
    tx: &mut Tx<'_>,
    role: &str,
    tables: &[Table],
    out: &mut Findings,
) -> Result<(), sqlx::Error> {
    // Grants made to the role itself or to PUBLIC, table-wide or on some column. Privileges
    // it would inherit through a role membership, or holds as an owner, are left out: those
    // are findings of their own (member-of-role, owns-object) and would only bury the cause.
    let rows: Vec<(String, String, bool)> = sqlx::query_as(
        "WITH app AS (SELECT oid FROM pg_roles WHERE rolname = $1),
              tables AS (
                  SELECT c.oid, c.relname, c.relacl, c.relowner
                    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
                     AND c.relowner NOT IN (SELECT oid FROM app))
         SELECT t.relname::text, g.privilege_type, false
           FROM tables t CROSS JOIN LATERAL aclexplode(coalesce(t.relacl, acldefault('r', t.relowner))) g
          WHERE g.grantee = 0 OR g.grantee IN (SELECT oid FROM app)
         UNION
         SELECT t.relname::text, g.privilege_type, true
           FROM tables t
           JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
          CROSS JOIN LATERAL aclexplode(a.attacl) g
          WHERE g.grantee = 0 OR g.grantee IN (SELECT oid FROM app)
          ORDER BY 1, 2, 3",
    )
    .bind(role)
    .fetch_all(&mut **tx)
    .await?;
    for (table, privilege, on_columns_only) in rows {
        let platform = PLATFORM_TABLES.contains(&table.as_str());
        let why = if AUDIT_LOG_TABLES.contains(&table.as_str()) && privilege != "SELECT" {
            Some("the audit log is written only through audit_append, which links and hashes every event")
        } else if is_tenant_table(tables, &table) {
            match privilege.as_str() {
                "TRUNCATE" => Some("TRUNCATE ignores row-level security"),
                "REFERENCES" => Some("REFERENCES lets it probe other tenants' keys (foreign-key checks ignore RLS)"),
                "TRIGGER" => Some("TRIGGER lets it run code on every tenant's writes"),
                _ => None,
            }
        } else if PLATFORM_PRIVATE_TABLES.contains(&table.as_str()) {
            Some("it holds operators' credentials, for the platform role only")
        } else if privilege == "SELECT" {
            (platform && !on_columns_only).then_some(
                "it may read every column of a platform table; grant SELECT on the columns tenant resolution \
                 needs only",
            )
        } else if platform {
            Some("platform tables are written by the platform role only, never by a tenant request")
        } else {
            Some("tables without tenant_id are read-only to the app role")
        };
        if let Some(why) = why {
            out.add(
                &table,
                Rule::AppRoleExcessPrivilege,
                format!("{role} holds {privilege} on {table}: {why}; `REVOKE {privilege} ON {table} FROM {role}`"),
            );
        }
    }
    let (create_in_public, create_in_database): (bool, bool) = sqlx::query_as(
        "SELECT has_schema_privilege($1::name, 'public', 'CREATE'),
                has_database_privilege($1::name, current_database(), 'CREATE')",
    )
    .bind(role)
    .fetch_one(&mut **tx)
    .await?;
    if create_in_public {
        out.add(
            "schema public",
            Rule::AppRoleExcessPrivilege,
            format!("{role} may CREATE in schema public, and would own what it creates"),
        );
    }
    if create_in_database {
        out.add(
            "database",
            Rule::AppRoleExcessPrivilege,
            format!("{role} may CREATE schemas in this database, and would own them"),
        );
    }
    Ok(())
}

/// Views (any schema) that read a tenant table, directly or through other views.
async fn check_views(tx: &mut Tx<'_>, tables: &[Table], out: &mut Findings) -> Result<(), sqlx::Error> {
    let rows: Vec<(String, String, bool, String)> = sqlx::query_as(
        "WITH RECURSIVE direct AS (
             SELECT DISTINCT r.ev_class AS view, d.refobjid AS rel
               FROM pg_rewrite r
               JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                               AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class
         ), reaches AS (
             SELECT view, rel FROM direct
             UNION
             SELECT reaches.view, direct.rel FROM reaches JOIN direct ON direct.view = reaches.rel
         )
         SELECT DISTINCT v.oid::regclass::text, v.relkind::text,
                EXISTS (SELECT FROM pg_options_to_table(v.reloptions) o
                         WHERE o.option_name = 'security_invoker'
                           AND lower(o.option_value) IN ('true', 'on', 'yes', '1')),
                t.relname::text
           FROM reaches
           JOIN pg_class v ON v.oid = reaches.view
           JOIN pg_namespace vn ON vn.oid = v.relnamespace
           JOIN pg_class t ON t.oid = reaches.rel
           JOIN pg_namespace tn ON tn.oid = t.relnamespace
          WHERE v.relkind IN ('v', 'm') AND vn.nspname NOT IN ('pg_catalog', 'information_schema')
            AND tn.nspname = 'public' AND t.relkind IN ('r', 'p')
          ORDER BY 1, 4",
    )
    .fetch_all(&mut **tx)
    .await?;
    for (view, kind, security_invoker, table) in rows {
        if !is_tenant_table(tables, &table) {
            continue;
        }
        if kind == "m" {
            out.add(
                &view,
                Rule::MaterializedViewOverTenantTable,
                format!("materialized view {view} stores rows of tenant table {table}, and RLS does not apply to it"),
            );
        } else if !security_invoker {
            out.add(
                &view,
                Rule::ViewNotSecurityInvoker,
                format!(
                    "view {view} reads tenant table {table} with its owner's rights; \
                     `ALTER VIEW {view} SET (security_invoker = true)`"
                ),
            );
        }
    }
    Ok(())
}

/// Citus readiness (invariant 1): unique keys lead with tenant_id, an index leads with it,
/// and foreign keys between tenant tables carry it.
async fn check_keys(tx: &mut Tx<'_>, tables: &[Table], out: &mut Findings) -> Result<(), sqlx::Error> {
    let indexes: Vec<(String, String, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, i.indexrelid::regclass::text, i.indisunique, i.indkey[0] = a.attnum
           FROM pg_index i
           JOIN pg_class c ON c.oid = i.indrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
          WHERE n.nspname = 'public'
          ORDER BY 1, 2",
    )
    .fetch_all(&mut **tx)
    .await?;
    for table in tables.iter().filter(|t| t.is_tenant()) {
        let name = &table.name;
        let own: Vec<_> = indexes.iter().filter(|(t, ..)| t == name).collect();
        if !own.iter().any(|(_, _, _, leads)| *leads) {
            out.add(
                name,
                Rule::NoTenantIdIndex,
                format!("{name} has no index leading with tenant_id; make its primary key (tenant_id, id)"),
            );
        }
        for (_, index, _, _) in own.iter().filter(|(_, _, unique, leads)| *unique && !*leads) {
            out.add(
                name,
                Rule::UniqueKeyNotLeadingTenantId,
                format!(
                    "{name}: unique index {index} does not lead with tenant_id; uniqueness is per tenant \
                     (and Citus needs the distribution column in it), so make it (tenant_id, …)"
                ),
            );
        }
    }

    let foreign_keys: Vec<(String, String, String, bool)> = sqlx::query_as(
        "SELECT c.relname::text, con.conname::text, t.oid::regclass::text,
                EXISTS (SELECT FROM unnest(con.conkey, con.confkey) AS k(src, dst)
                         WHERE k.src = a.attnum AND k.dst = ta.attnum)
           FROM pg_constraint con
           JOIN pg_class c ON c.oid = con.conrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_class t ON t.oid = con.confrelid
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
           LEFT JOIN pg_attribute ta ON ta.attrelid = t.oid AND ta.attname = 'tenant_id' AND NOT ta.attisdropped
          WHERE con.contype = 'f' AND n.nspname = 'public'
          ORDER BY 1, 2",
    )
    .fetch_all(&mut **tx)
    .await?;
    for (table, constraint, target, matches_tenant) in foreign_keys {
        if is_tenant_table(tables, &table) && is_tenant_table(tables, &target) && !matches_tenant {
            out.add(
                &table,
                Rule::ForeignKeyWithoutTenantId,
                format!(
                    "{table}: foreign key {constraint} to tenant table {target} does not match tenant_id to \
                     tenant_id; foreign-key checks ignore RLS, so it can point at another tenant's row — make it \
                     FOREIGN KEY (tenant_id, …) REFERENCES {target} (tenant_id, …)"
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_predicates_are_recognised_alone_and_in_a_conjunction() {
        for expr in [
            "(tenant_id = current_tenant())",
            "(current_tenant() = tenant_id)",
            "((tenant_id = current_tenant()) AND (status <> 'x AND y'::text))",
            "((deleted_at IS NULL) AND (tenant_id = current_tenant()))",
        ] {
            assert!(is_tenant_predicate(expr), "{expr}");
        }
    }

    #[test]
    fn anything_else_is_not_a_tenant_predicate() {
        for expr in [
            "true",
            "(tenant_id IS NOT NULL)",
            "((tenant_id = current_tenant()) OR true)",
            "(NOT (tenant_id = current_tenant()))",
            "(owner_id = current_tenant())",
            "((tenant_id = current_tenant()) AND (x)) OR (y)",
            "(tenant_id = (current_setting('app.tenant_id'::text))::uuid)",
            "CASE WHEN x THEN true ELSE (tenant_id = current_tenant()) END",
            "((a = 'it''s (') AND (tenant_id = other_tenant()))",
        ] {
            assert!(!is_tenant_predicate(expr), "{expr}");
        }
    }
}
