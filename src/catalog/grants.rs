//! The app role (invariant 5): its attributes, what it owns, its memberships, its privileges,
//! the SECURITY DEFINER functions it can execute; and the views over tenant tables.

use sqlx::AssertSqlSafe;

use super::tables::{Table, is_tenant_table};
use super::{Findings, Rule, Tx};
use crate::roles::{
    ADOPTED_TABLES_REGISTRY, AUDIT_DEFINER_FUNCTIONS, AUDIT_LOG_TABLES, AUDIT_ROLE, BUILT_IN_TENANT_TABLES,
    JOBS_DEFINER_FUNCTIONS, JOBS_ROLE, PLATFORM_PRIVATE_TABLES, PLATFORM_TABLES,
};

/// Invariant 5: the role that serves tenant requests is held to RLS and can do nothing else.
pub(super) async fn check_app_role(
    tx: &mut Tx<'_>,
    role: &str,
    tables: &[Table],
    out: &mut Findings,
) -> Result<(), sqlx::Error> {
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
    check_app_role_grants(tx, role, tables, out).await?;

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
        let by_design = if AUDIT_DEFINER_FUNCTIONS.contains(&function.as_str()) {
            Some((AUDIT_ROLE, "the audit log's append path"))
        } else if JOBS_DEFINER_FUNCTIONS.contains(&function.as_str()) {
            Some((JOBS_ROLE, "the outbox's scheduler"))
        } else {
            None
        };
        if let Some((designed_owner, what)) = by_design {
            if owner != designed_owner || privileged_owner || !pinned {
                out.add(
                    &function,
                    Rule::SecurityDefinerExecutable,
                    format!(
                        "{function} is {what} and {role} executes it; it must be owned by \
                         {designed_owner} (NOSUPERUSER NOBYPASSRLS, so RLS holds it) and pin its search_path \
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

const DML: [&str; 4] = ["SELECT", "INSERT", "UPDATE", "DELETE"];

/// What the app role needs on a tenant table for the API to serve it: DML, but on the audit
/// log, which it reads and never writes (sql/V17), and on the checkpoints, which it reads and
/// appends to when it signs one (sql/V10).
fn app_role_needs(table: &str) -> &'static [&'static str] {
    if AUDIT_LOG_TABLES.contains(&table) {
        &["SELECT"]
    } else if table == "audit_checkpoints" {
        &["SELECT", "INSERT"]
    } else {
        &DML
    }
}

/// The other side of excess privilege: every built-in and every adopted tenant table grants
/// the app role what requests need. A revoked DELETE is not a leak, but the API answers 500
/// where it promised a delete, and nothing else would say why. Effective privileges
/// (`has_table_privilege`), so a grant to PUBLIC counts. Tables waiting to be adopted are
/// left out: granting is part of adopting them, and the rls findings already name them.
async fn check_app_role_grants(
    tx: &mut Tx<'_>,
    role: &str,
    tables: &[Table],
    out: &mut Findings,
) -> Result<(), sqlx::Error> {
    let has_registry: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(ADOPTED_TABLES_REGISTRY)
        .fetch_one(&mut **tx)
        .await?;
    let adopted: Vec<String> = if has_registry {
        // A constant table name.
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT table_name FROM {ADOPTED_TABLES_REGISTRY}")))
            .fetch_all(&mut **tx)
            .await?
    } else {
        Vec::new()
    };
    let served: Vec<String> = tables
        .iter()
        .filter(|t| t.is_tenant())
        .filter(|t| BUILT_IN_TENANT_TABLES.contains(&t.name.as_str()) || adopted.contains(&t.name))
        .map(|t| t.name.clone())
        .collect();
    let held: Vec<(String, bool, bool, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text,
                has_table_privilege($1::name, c.oid, 'SELECT'), has_table_privilege($1::name, c.oid, 'INSERT'),
                has_table_privilege($1::name, c.oid, 'UPDATE'), has_table_privilege($1::name, c.oid, 'DELETE')
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relname = ANY($2)
          ORDER BY 1",
    )
    .bind(role)
    .bind(&served)
    .fetch_all(&mut **tx)
    .await?;
    for (table, select, insert, update, delete) in held {
        let has = [select, insert, update, delete];
        let missing: Vec<&str> = DML
            .into_iter()
            .zip(has)
            .filter(|(privilege, has)| !has && app_role_needs(&table).contains(privilege))
            .map(|(privilege, _)| privilege)
            .collect();
        if missing.is_empty() {
            continue;
        }
        let missing = missing.join(", ");
        let fix = if BUILT_IN_TENANT_TABLES.contains(&table.as_str()) {
            format!("`GRANT {missing} ON {table} TO {role}` (as rowguard's migrations grant it)")
        } else {
            format!("`rowguard tables adopt {table}` grants what is missing")
        };
        out.add(
            &table,
            Rule::AppRoleGrantMissing,
            format!("{role} lacks {missing} on {table}, so the API's requests that need it fail (500); {fix}"),
        );
    }
    Ok(())
}

/// Views (any schema) that read a tenant table, directly or through other views.
pub(super) async fn check_views(tx: &mut Tx<'_>, tables: &[Table], out: &mut Findings) -> Result<(), sqlx::Error> {
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
