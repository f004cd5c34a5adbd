//! The catalog, read as the superuser: every tenant table is covered by RLS the way
//! invariant 1 says, and the app role has the privileges of invariant 5 and no more.

use rowguard::db::{APP_ROLE, PLATFORM_TABLES};
use sqlx::PgConnection;

use crate::support::spawn_app;

/// (name, command, permissive, USING, WITH CHECK) from pg_policies.
type PolicyRow = (String, String, bool, Option<String>, Option<String>);

async fn tenant_tables(conn: &mut PgConnection) -> Vec<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
          ORDER BY 1",
    )
    .fetch_all(conn)
    .await
    .expect("tables");
    tables.into_iter().filter(|t| !PLATFORM_TABLES.contains(&t.as_str())).collect()
}

#[tokio::test]
async fn every_tenant_table_has_forced_rls_and_a_policy_with_using_and_with_check() {
    let app = spawn_app().await;
    let mut conn = app.superuser_connection().await;
    let tables = tenant_tables(&mut conn).await;
    for expected in ["users", "contacts"] {
        assert!(tables.iter().any(|t| t == expected), "{expected} missing from {tables:?}");
    }
    for table in &tables {
        let (enabled, forced, not_null): (bool, bool, bool) = sqlx::query_as(
            "SELECT c.relrowsecurity, c.relforcerowsecurity, a.attnotnull
               FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
              WHERE c.oid = $1::regclass",
        )
        .bind(table)
        .fetch_one(&mut conn)
        .await
        .expect("rls flags");
        assert!(enabled && forced, "{table}: RLS enabled={enabled} forced={forced}");
        assert!(not_null, "{table}: tenant_id must be NOT NULL");
        let policies: Vec<PolicyRow> = sqlx::query_as(
            "SELECT policyname::text, cmd, permissive = 'PERMISSIVE', qual, with_check
               FROM pg_policies WHERE schemaname = 'public' AND tablename = $1",
        )
        .bind(table)
        .fetch_all(&mut conn)
        .await
        .expect("policies");
        assert_eq!(policies.len(), 1, "{table}: exactly one policy expected, got {policies:?}");
        let (name, cmd, permissive, using, check) = &policies[0];
        assert_eq!(cmd, "ALL", "{table}.{name} must cover every command");
        assert!(permissive, "{table}.{name}");
        for (what, expr) in [("USING", using), ("WITH CHECK", check)] {
            let expr = expr.as_deref().unwrap_or_default();
            assert_eq!(expr, "(tenant_id = current_tenant())", "{table}.{name} {what}");
        }
    }
}

#[tokio::test]
async fn keys_and_indexes_of_tenant_tables_lead_with_tenant_id() {
    let app = spawn_app().await;
    let mut conn = app.superuser_connection().await;
    for table in tenant_tables(&mut conn).await {
        let indexes: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT i.indexrelid::regclass::text, a.attname::text
               FROM pg_index i
               LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
              WHERE i.indrelid = $1::regclass",
        )
        .bind(&table)
        .fetch_all(&mut conn)
        .await
        .expect("indexes");
        assert!(!indexes.is_empty(), "{table} has no index");
        for (index, first) in indexes {
            assert_eq!(first.as_deref(), Some("tenant_id"), "{table}: index {index} must lead with tenant_id");
        }
        // Foreign keys to other tenant tables must include tenant_id (FK checks ignore RLS).
        let fks: Vec<(String, String, bool)> = sqlx::query_as(
            "SELECT con.conname::text, con.confrelid::regclass::text,
                    (SELECT attnum FROM pg_attribute WHERE attrelid = con.conrelid AND attname = 'tenant_id') = ANY (con.conkey)
               FROM pg_constraint con WHERE con.contype = 'f' AND con.conrelid = $1::regclass",
        )
        .bind(&table)
        .fetch_all(&mut conn)
        .await
        .expect("fks");
        for (name, target, has_tenant) in fks {
            if !PLATFORM_TABLES.contains(&target.as_str()) {
                assert!(has_tenant, "{table}: foreign key {name} to {target} must include tenant_id");
            }
        }
    }
}

#[tokio::test]
async fn the_app_role_is_unprivileged_and_owns_nothing() {
    let app = spawn_app().await;
    let mut conn = app.superuser_connection().await;
    let (superuser, bypass, createrole, createdb): (bool, bool, bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = $1")
            .bind(APP_ROLE)
            .fetch_one(&mut conn)
            .await
            .expect("role");
    assert_eq!((superuser, bypass, createrole, createdb), (false, false, false, false));
    let owned: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pg_class WHERE relowner = r.oid)
              + (SELECT count(*) FROM pg_proc WHERE proowner = r.oid)
              + (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid)
           FROM pg_roles r WHERE r.rolname = $1",
    )
    .bind(APP_ROLE)
    .fetch_one(&mut conn)
    .await
    .expect("owned");
    assert_eq!(owned, 0, "the app role must own nothing");
    // Member of no other role, so it cannot SET ROLE its way to more.
    let memberships: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1",
    )
    .bind(APP_ROLE)
    .fetch_one(&mut conn)
    .await
    .expect("memberships");
    assert_eq!(memberships, 0);
}

#[tokio::test]
async fn the_app_role_reads_the_registry_but_cannot_change_it() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("alpha").await;
    let mut conn = app.app_connection().await;
    let slug: String = sqlx::query_scalar("SELECT slug FROM tenants WHERE id = $1")
        .bind(tenant.id)
        .fetch_one(&mut conn)
        .await
        .expect("resolution reads the registry");
    assert_eq!(slug, "alpha");
    for statement in [
        "UPDATE tenants SET status = 'active'",
        "DELETE FROM tenants",
        "INSERT INTO tenant_domains (domain, tenant_id) SELECT 'evil.example', id FROM tenants LIMIT 1",
        "SELECT name FROM tenants",
        "DELETE FROM rowguard_schema_history",
    ] {
        let err = sqlx::query(statement).execute(&mut conn).await.expect_err(statement);
        assert!(err.to_string().contains("permission denied"), "{statement}: {err}");
    }
}
