//! What `rowguard migrate` would distribute on Citus, computed from a freshly migrated plain
//! PostgreSQL catalog (CI has no Citus; the plan is a function of the catalog alone). Against
//! Citus (ROWGUARD_TEST_CITUS_URL), what was actually placed, from Citus's own catalog.

use rowguard::migrate::citus;
use sqlx::{Connection, PgConnection};

use crate::support::spawn_app;

#[tokio::test]
async fn the_plan_distributes_every_tenant_table_and_references_the_platform_tables() {
    let app = spawn_app().await;
    let mut conn = PgConnection::connect(&app.superuser_url()).await.expect("connect");
    let on_citus = rowguard::backend::Backend::detect(&mut conn)
        .await
        .map(|b| b == rowguard::backend::Backend::Citus)
        .expect("pg_extension");
    let plan = citus::read_plan(&mut conn).await.expect("plan");
    // Every table with a tenant_id column but the registry and the two queues, found independently of the plan.
    let tenant_tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
          WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
            AND c.relname NOT IN ('tenants', 'tenant_domains', 'audit_unsealed', 'outbox_queue') ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("tenant tables");
    if on_citus {
        // ROWGUARD_TEST_CITUS_URL: the database was migrated and distributed like `rowguard
        // migrate`, so the plan is carried out: nothing is left to do, and Citus's own catalog
        // shows every tenant table hash-distributed by tenant_id in one colocation group and
        // the platform tables as reference tables.
        assert!(plan.is_empty() && plan.misplaced.is_empty(), "{plan:?}");
        let placed: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(
            "SELECT logicalrelid::regclass::text, partmethod::text, column_to_column_name(logicalrelid, partkey),
                    colocationid::bigint
               FROM pg_dist_partition ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .expect("pg_dist_partition");
        // The two queues are platform tables (no RLS) written by triggers on the tenant tables'
        // shards, so they are distributed beside them (`citus::SHARDED_PLATFORM_TABLES`).
        let mut expected: Vec<&str> =
            tenant_tables.iter().map(String::as_str).chain(["audit_unsealed", "outbox_queue"]).collect();
        expected.sort();
        let hashed: Vec<&str> = placed.iter().filter(|p| p.1 == "h").map(|p| p.0.as_str()).collect();
        assert_eq!(hashed, expected, "{placed:?}");
        assert!(placed.iter().filter(|p| p.1 == "h").all(|p| p.2.as_deref() == Some("tenant_id")), "{placed:?}");
        let groups: std::collections::BTreeSet<i64> = placed.iter().filter(|p| p.1 == "h").map(|p| p.3).collect();
        assert_eq!(groups.len(), 1, "one colocation group: {placed:?}");
        let reference: Vec<&str> = placed.iter().filter(|p| p.1 == "n").map(|p| p.0.as_str()).collect();
        assert_eq!(reference, ["operators", "rowguard_adopted_tables", "tenant_domains", "tenants"], "{placed:?}");
        return;
    }
    let mut distribute = plan.distribute.clone();
    distribute.sort();
    let mut expected: Vec<String> =
        tenant_tables.iter().cloned().chain(["audit_unsealed".to_string(), "outbox_queue".to_string()]).collect();
    expected.sort();
    assert_eq!(distribute, expected);
    assert!(distribute.contains(&"audit_events".to_string()));
    let mut reference = plan.reference.clone();
    reference.sort();
    // The registry of adopted tables is a platform table like the others; the two queues are
    // distributed (above).
    assert_eq!(
        reference,
        ["operators", "rowguard_adopted_tables", "tenant_domains", "tenants"],
        "history tables stay local"
    );
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
