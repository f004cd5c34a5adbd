//! A bulk load leaves nothing behind in the backend that runs the audit trigger. On Citus that
//! is the worker holding the tenant's shards, whose backends live as long as the coordinator's
//! cached connections to it; Citus 13.2.1–14.0.1 kept a new local plan per execution of each
//! trigger statement there, about 180 kB per audited row, until the kernel killed the backend
//! (`migrate::citus::WORKER_FUNCTION_SETTING`). On PostgreSQL the same load on the one server.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use crate::support::spawn_app;

/// Insert `rows` contacts of `tenant` in one transaction as the fixture does (a multi-row
/// VALUES), each fired through the row-level audit trigger.
async fn load(conn: &mut PgConnection, tenant: uuid::Uuid, rows: usize) {
    conn.execute(AssertSqlSafe(format!("BEGIN; SET LOCAL app.tenant_id = '{tenant}'"))).await.expect("begin");
    let values: Vec<String> =
        (0..rows).map(|i| format!("($1, gen_random_uuid(), 'Contact {i}', 'c{i}@example.com')")).collect();
    let sql = format!("INSERT INTO contacts (tenant_id, id, name, email) VALUES {}", values.join(", "));
    sqlx::query(AssertSqlSafe(sql)).bind(tenant).execute(&mut *conn).await.expect("insert contacts");
    conn.execute("COMMIT").await.expect("commit");
}

async fn cached_plan_bytes(conn: &mut PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(total_bytes), 0)::bigint FROM pg_backend_memory_contexts WHERE name = 'CachedPlan'",
    )
    .fetch_one(conn)
    .await
    .expect("memory contexts")
}

#[tokio::test]
async fn a_bulk_load_leaves_no_plans_behind_where_the_audit_trigger_runs() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let tenant = acme.id.0;
    let mut options = PgConnectOptions::from_str(&app.superuser_url()).expect("options");
    if app.on_citus() {
        // The node holding acme's contacts: there the trigger runs, on the local shard.
        let mut su = PgConnection::connect_with(&options).await.expect("coordinator");
        let (host, port): (String, i32) = sqlx::query_as(
            "SELECT nodename::text, nodeport FROM citus_shards
              WHERE table_name = 'contacts'::regclass
                AND shardid = get_shard_id_for_distribution_column('contacts', $1)",
        )
        .bind(tenant)
        .fetch_one(&mut su)
        .await
        .expect("acme's shard");
        su.close().await.expect("close");
        options = options.host(&host).port(u16::try_from(port).expect("port"));
    }
    let mut node = PgConnection::connect_with(&options).await.expect("the node with acme's rows");
    let events_before: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_one(&mut node)
        .await
        .expect("events");
    // Past PostgreSQL's five custom plans, so that every statement has settled on its plan.
    load(&mut node, tenant, 100).await;
    let settled = cached_plan_bytes(&mut node).await;
    for _ in 0..3 {
        load(&mut node, tenant, 100).await;
    }
    let after = cached_plan_bytes(&mut node).await;
    let events_after: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_one(&mut node)
        .await
        .expect("events");
    assert_eq!(events_after - events_before, 400, "the audit trigger ran for every row");
    // 300 audited rows: the leak kept 65 MB more (Citus 13.2.2); a settled backend keeps what it had.
    assert!(
        after - settled < 2 << 20,
        "plans grew by {} bytes over 300 audited rows ({settled} -> {after})",
        after - settled
    );
    node.close().await.expect("close");
}
