//! What `rowguard migrate` would distribute on Citus, computed from a freshly migrated plain
//! PostgreSQL catalog (CI has no Citus; the plan is a function of the catalog alone).

use rowguard::db::citus;
use sqlx::{Connection, PgConnection};

use crate::support::spawn_app;

#[tokio::test]
async fn the_plan_distributes_every_tenant_table_and_references_the_platform_tables() {
    let app = spawn_app().await;
    let mut conn = PgConnection::connect(&app.superuser_url()).await.expect("connect");
    assert!(!citus::installed(&mut conn).await.expect("pg_extension"), "the test cluster has no Citus");
    let plan = citus::read_plan(&mut conn).await.expect("plan");
    // Every table with a tenant_id column but the registry, found independently of the plan.
    let tenant_tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
          WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
            AND c.relname NOT IN ('tenants', 'tenant_domains') ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("tenant tables");
    let mut distribute = plan.distribute.clone();
    distribute.sort();
    assert_eq!(distribute, tenant_tables);
    assert!(distribute.contains(&"audit_events".to_string()));
    let mut reference = plan.reference.clone();
    reference.sort();
    assert_eq!(reference, ["operators", "tenant_domains", "tenants"], "history tables stay local");
    assert_eq!(plan.colocate_with, None);
    assert!(plan.misplaced.is_empty());
    // The two organization keys lose ON DELETE SET NULL (Citus refuses it); nothing else changes.
    let mut relaxed: Vec<&str> = plan.foreign_keys.iter().filter(|r| r.relaxed).map(|r| r.key.name.as_str()).collect();
    relaxed.sort();
    assert_eq!(relaxed, ["contacts_organization_fk", "deals_tenant_id_organization_id_fkey"]);
    for rekey in plan.foreign_keys.iter().filter(|r| !r.relaxed) {
        assert_eq!(rekey.add_back, rekey.key.definition);
    }
}
