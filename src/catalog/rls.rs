//! Row-level security on the tables (tenant_id NOT NULL, RLS enabled and forced) and the
//! policies: their coverage and shape, the functions they call, and `current_tenant()` itself.

use super::tables::Table;
use super::{Findings, Rule, Tx};

pub(super) fn check_tables(tables: &[Table], out: &mut Findings) {
    for t in tables.iter().filter(|t| t.is_tenant()) {
        let name = &t.name;
        if !t.tenant_id_not_null {
            out.add(name, Rule::TenantIdNullable, format!("{name}.tenant_id admits NULL; declare it `uuid NOT NULL`"));
        }
        if !t.rls_enabled {
            let fix = if t.is_operators() {
                format!(
                    "`rowguard tables adopt {name}` guards it (RLS enabled and forced, the tenant policy, the audit \
                     trigger, the app role's grants), or says what to change first"
                )
            } else {
                format!(
                    "add a policy migration (policies/V{{n}}__{name}_rls.sql) with `ALTER TABLE {name} ENABLE ROW \
                     LEVEL SECURITY`, or name it in PLATFORM_TABLES if it is not tenant-owned"
                )
            };
            out.add(
                name,
                Rule::RlsNotEnabled,
                format!(
                    "{name} has tenant_id but row-level security is not enabled, so every tenant sees every row; {fix}"
                ),
            );
        }
        if !t.rls_forced {
            let or_adopt =
                if t.is_operators() { format!(" (`rowguard tables adopt {name}` does it too)") } else { String::new() };
            out.add(
                name,
                Rule::RlsNotForced,
                format!(
                    "{name}: row-level security is not forced, so the table's owner is not held to its policies; \
                     `ALTER TABLE {name} FORCE ROW LEVEL SECURITY`{or_adopt}"
                ),
            );
        }
    }
}

/// A policy on a table in `public`, with its expressions deparsed (for reading and for the
/// tenant-predicate check) and as stored node trees (for structure: OR, subqueries).
pub(super) struct Policy {
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

pub(super) async fn read_policies(tx: &mut Tx<'_>, app_role: &str) -> Result<Vec<Policy>, sqlx::Error> {
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

pub(super) fn check_policies(tables: &[Table], policies: &[Policy], out: &mut Findings) {
    for table in tables {
        let name = &table.name;
        let own: Vec<&Policy> = policies.iter().filter(|p| &p.table == name).collect();
        if table.rls_enabled && own.is_empty() {
            let fix = if table.is_operators() {
                format!("; `rowguard tables adopt {name}` adds the tenant policy")
            } else {
                String::new()
            };
            out.add(
                name,
                Rule::RlsEnabledNoPolicy,
                format!("{name} has row-level security enabled but no policy, so every query sees no rows{fix}"),
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
        let fix = if table.is_operators() {
            format!(
                "`rowguard tables adopt {name}` adds rowguard's tenant policy (and names any other permissive policy \
                 to drop first)"
            )
        } else {
            format!(
                "add `CREATE POLICY tenant_isolation ON {name} USING (tenant_id = current_tenant()) WITH CHECK \
                 (tenant_id = current_tenant())` in a policy migration"
            )
        };
        out.add(name, Rule::CommandNotCovered, format!("{name} {what} to the current tenant; {fix}"));
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
pub(super) async fn check_policy_functions(tx: &mut Tx<'_>, out: &mut Findings) -> Result<(), sqlx::Error> {
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
pub(super) async fn check_current_tenant(tx: &mut Tx<'_>, out: &mut Findings) -> Result<(), sqlx::Error> {
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
