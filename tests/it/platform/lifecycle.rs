//! A tenant's lifecycle past creation: suspension, and delete-and-purge counted from the
//! catalog, sparing the other tenants and freeing the slug.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use rowguard::domain::Slug;
use rowguard::platform::{PlatformConn, PlatformError};
use serde_json::json;
use sqlx::{AssertSqlSafe, Executor, PgConnection};

use super::{api_tenant, new_tenant, operator_token, platform};
use crate::support::{TestApp, spawn_app};

/// Polls `path` on `tenant` until it answers `status` (the resolution cache is dropped by a
/// NOTIFY; its TTL is 30 s, so passing within 3 s proves the invalidation).
async fn eventually(app: &TestApp, token: &str, tenant: &str, status: StatusCode, code: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = app.call_as(token, tenant, Method::GET, "/v1/me", None).await;
        if r.status == status {
            if let Some(code) = code {
                r.assert_problem(status, code);
            }
            return;
        }
        assert!(Instant::now() < deadline, "{tenant}: expected {status} within 3 s, got {} {}", r.status, r.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_suspended_tenant_gets_403_on_tenant_routes_while_operators_still_manage_it() {
    let app = spawn_app().await;
    let token = operator_token(&app).await;
    let acme = api_tenant(&app, &token, "acme").await;
    let owner = app.owner_token(&acme).await;
    eventually(&app, &owner, "acme", StatusCode::OK, None).await;

    let r =
        platform(&app, &token, Method::PATCH, "/platform/v1/tenants/acme", Some(json!({"status": "suspended"}))).await;
    assert_eq!((r.status, r.body["status"].as_str()), (StatusCode::OK, Some("suspended")), "{}", r.body);
    eventually(&app, &owner, "acme", StatusCode::FORBIDDEN, Some("tenant_suspended")).await;
    let login = app
        .call(
            Method::POST,
            "/v1/auth/login",
            &[("x-tenant", "acme")],
            Some(json!({"email": acme.owner_email, "password": acme.owner_password})),
        )
        .await;
    login.assert_problem(StatusCode::FORBIDDEN, "tenant_suspended");

    // The platform API still manages it.
    let got = platform(&app, &token, Method::GET, "/platform/v1/tenants/acme", None).await;
    assert_eq!((got.status, got.body["status"].as_str()), (StatusCode::OK, Some("suspended")));
    let r = platform(&app, &token, Method::PATCH, "/platform/v1/tenants/acme", Some(json!({"plan": "pro"}))).await;
    assert_eq!((r.status, r.body["plan"].as_str()), (StatusCode::OK, Some("pro")), "{}", r.body);
    let r = platform(
        &app,
        &token,
        Method::POST,
        "/platform/v1/tenants/acme/domains",
        Some(json!({"domain": "crm.acme.example"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    let r = platform(&app, &token, Method::PATCH, "/platform/v1/tenants/acme", Some(json!({"status": "active"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    eventually(&app, &owner, "acme", StatusCode::OK, None).await;

    // Each lifecycle change is in the tenant's own audit trail, by an operator.
    let log = app.call_as(&owner, "acme", Method::GET, "/v1/audit-events?resource_type=tenant", None).await;
    let actions: Vec<(&str, &str)> = log.body["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|e| Some((e["action"].as_str()?, e["actor_type"].as_str()?))).collect())
        .unwrap_or_default();
    assert_eq!(
        actions,
        vec![
            ("tenant.resume", "operator"),
            ("tenant.domain_add", "operator"),
            ("tenant.plan_change", "operator"),
            ("tenant.suspend", "operator")
        ],
        "{}",
        log.body
    );
    // Each names the operator (one and the same id, not a user of the tenant) and its request.
    let items = log.body["items"].as_array().expect("items");
    let operator = items[0]["actor_id"].as_str().expect("the operator's id");
    assert!(items.iter().all(|e| e["actor_id"] == operator), "{}", log.body);
    assert!(items.iter().all(|e| e["request_id"].as_str().is_some_and(|r| !r.is_empty())), "{}", log.body);
    let users = app.call_as(&owner, "acme", Method::GET, "/v1/users", None).await;
    assert!(!users.body.to_string().contains(operator), "the operator is not one of the tenant's users");
    assert_eq!(items[1]["details"]["domain"], "crm.acme.example");
}

/// Rows per table with a `tenant_id` column, for one tenant, read as the superuser from every
/// table the catalog lists, so a table added later is counted with no change here.
async fn rows_per_tenant_table(su: &mut PgConnection, tenant: uuid::Uuid) -> BTreeMap<String, i64> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
          WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          ORDER BY 1",
    )
    .fetch_all(&mut *su)
    .await
    .expect("tenant tables");
    let mut counts = BTreeMap::new();
    for table in tables {
        let sql = format!("SELECT count(*) FROM {table} WHERE tenant_id = $1");
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql)).bind(tenant).fetch_one(&mut *su).await.expect("count");
        counts.insert(table, n);
    }
    counts
}

#[tokio::test]
async fn deleting_a_tenant_purges_its_rows_from_every_tenant_table_and_spares_the_others() {
    let app = spawn_app().await;
    let token = operator_token(&app).await;
    let mut tenants = Vec::new();
    for slug in ["doomed", "spared"] {
        let t = api_tenant(&app, &token, slug).await;
        let domain = json!({"domain": format!("crm.{slug}.example")});
        let r =
            platform(&app, &token, Method::POST, &format!("/platform/v1/tenants/{slug}/domains"), Some(domain)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let owner = app.owner_token(&t).await;
        for i in 0..3 {
            let contact = json!({"name": format!("Contact {i}"), "email": format!("c{i}@{slug}.example")});
            let r = app.call_as(&owner, slug, Method::POST, "/v1/contacts", Some(contact)).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        }
        tenants.push((t, owner));
    }
    let [(doomed, doomed_token), (spared, spared_token)] = <[_; 2]>::try_from(tenants).ok().expect("two tenants");
    let mut su = app.superuser_connection().await;
    // A tenant table the purge code has never heard of, added the way docs/isolation.md says, whose
    // rows reference contacts: found from the catalog, and purged before the contacts it needs.
    // The composite key to contacts comes after the table exists (and, on Citus, after
    // `migrate`'s distribution step has placed it): Citus refuses a key from a table it has
    // not distributed yet to a distributed one (docs/citus.md, Known limits on Citus).
    // One statement per message: Citus replays the whole text of a message that changes a
    // table it manages on that table's shards, where several statements are refused.
    for statement in [
        "CREATE TABLE invoices (
             tenant_id uuid NOT NULL REFERENCES tenants (id),
             id uuid NOT NULL,
             contact_id uuid NOT NULL,
             PRIMARY KEY (tenant_id, id))",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON invoices TO rowguard_app, rowguard_platform",
        "ALTER TABLE invoices ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE invoices FORCE ROW LEVEL SECURITY",
        "CREATE POLICY tenant_isolation ON invoices
             USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant())",
    ] {
        su.execute(statement).await.expect("a later tenant table");
    }
    if rowguard::backend::Backend::detect(&mut su)
        .await
        .map(|b| b == rowguard::backend::Backend::Citus)
        .expect("extensions")
    {
        let report = rowguard::migrate::citus::distribute(&mut su).await.expect("distribute invoices");
        assert_eq!(report.distributed, ["invoices"], "{report:?}");
    }
    su.execute("ALTER TABLE invoices ADD FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts (tenant_id, id)")
        .await
        .expect("its key to contacts");
    su.execute("INSERT INTO invoices SELECT tenant_id, gen_random_uuid(), id FROM contacts").await.expect("rows");
    // The sealer grows the audit trees in the background: let it catch up first, so that the
    // counts below change only by what the purge does.
    crate::support::wait_until_sealed(&mut su).await;
    let before = rows_per_tenant_table(&mut su, doomed.id.0).await;
    for table in ["public.users", "public.contacts", "public.tenant_domains", "public.invoices"] {
        assert!(before.get(table).is_some_and(|n| *n > 0), "{table} should hold doomed's rows first: {before:?}");
    }
    let spared_before = rows_per_tenant_table(&mut su, spared.id.0).await;

    let r = platform(&app, &token, Method::DELETE, "/platform/v1/tenants/doomed", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);

    let after = rows_per_tenant_table(&mut su, doomed.id.0).await;
    assert_eq!(after.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>());
    let left: Vec<_> = after.iter().filter(|(_, n)| **n != 0).collect();
    assert!(left.is_empty(), "rows of the deleted tenant remain: {left:?}");
    assert_eq!(rows_per_tenant_table(&mut su, spared.id.0).await, spared_before, "another tenant's rows changed");

    // Deleted answers exactly like unknown on tenant routes, token or not ...
    eventually(&app, &doomed_token, "doomed", StatusCode::NOT_FOUND, Some("tenant_not_found")).await;
    let r = app.call(Method::GET, "/v1/me", &[("host", "crm.doomed.example")], None).await;
    r.assert_problem(StatusCode::BAD_REQUEST, "tenant_required"); // its domain is released
    eventually(&app, &spared_token, "spared", StatusCode::OK, None).await;
    // ... operators still see the tombstone, cannot revive it, and may delete again.
    let got = platform(&app, &token, Method::GET, "/platform/v1/tenants/doomed", None).await;
    assert_eq!((got.status, got.body["status"].as_str()), (StatusCode::OK, Some("deleted")));
    let r =
        platform(&app, &token, Method::PATCH, "/platform/v1/tenants/doomed", Some(json!({"status": "active"}))).await;
    r.assert_problem(StatusCode::CONFLICT, "tenant_deleted");
    let r = platform(&app, &token, Method::POST, "/platform/v1/tenants", Some(new_tenant("doomed"))).await;
    r.assert_problem(StatusCode::CONFLICT, "slug_taken");
    let r = platform(&app, &token, Method::DELETE, "/platform/v1/tenants/doomed", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn patching_status_to_deleted_purges_like_delete() {
    let app = spawn_app().await;
    let token = operator_token(&app).await;
    let t = api_tenant(&app, &token, "acme").await;
    let r =
        platform(&app, &token, Method::PATCH, "/platform/v1/tenants/acme", Some(json!({"status": "deleted"}))).await;
    assert_eq!((r.status, r.body["status"].as_str()), (StatusCode::OK, Some("deleted")), "{}", r.body);
    let mut su = app.superuser_connection().await;
    let left: Vec<_> = rows_per_tenant_table(&mut su, t.id.0).await.into_iter().filter(|(_, n)| *n != 0).collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn purging_a_deleted_tenant_removes_its_registry_entry_and_frees_the_slug() {
    let app = spawn_app().await;
    let token = operator_token(&app).await;
    api_tenant(&app, &token, "acme").await;
    let slug = Slug::parse("acme").expect("slug");
    let mut cli = PlatformConn::connect(&app.superuser_url()).await.expect("platform connection");
    assert!(matches!(cli.purge_tenant(&slug).await, Err(PlatformError::TenantNotDeleted(_))), "only a deleted tenant");
    cli.delete_tenant(&slug).await.expect("delete");
    cli.purge_tenant(&slug).await.expect("purge");
    assert!(cli.tenant(&slug).await.expect("lookup").is_none());
    let again = platform(&app, &token, Method::POST, "/platform/v1/tenants", Some(new_tenant("acme"))).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
}
