//! The operator's console on the bare host: suspending and resuming a tenant, the rate-limit
//! override, the tenants list with its row counts, the health panel and the policy findings.

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::{contact_renamed, html, operator_signs_in};
use crate::support::{TestApp, TestResponse, spawn_app};

/// The tenant API's answer to `GET /v1/contacts` once it is `status` (registry changes reach
/// the resolution cache through a NOTIFY, within milliseconds).
async fn api_answers(app: &TestApp, token: &str, tenant: &str, status: StatusCode) -> TestResponse {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let r = app.call_as(token, tenant, Method::GET, "/v1/contacts", None).await;
        if r.status == status || std::time::Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn operator_suspends_a_tenant_its_api_answers_tenant_suspended_and_resumes_it() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let mut operator = operator_signs_in(&app).await;

    let list = operator.get("/console/platform/").await;
    assert_eq!(list.status, StatusCode::OK, "{}", html(&list));
    assert!(html(&list).contains("/console/platform/tenants/acme"));
    let search = operator.get("/console/platform/?q=nomatch&status=").await;
    assert!(html(&search).contains("No tenants match"), "{}", html(&search));

    let csrf = operator.csrf();
    let suspended =
        operator.post("/console/platform/tenants/acme/status", &[("csrf", &csrf), ("status", "suspended")]).await;
    assert_eq!(suspended.status, StatusCode::SEE_OTHER, "{}", html(&suspended));
    let refused = api_answers(&app, &owner, "acme", StatusCode::FORBIDDEN).await;
    refused.assert_problem(StatusCode::FORBIDDEN, "tenant_suspended");
    assert!(html(&operator.get("/console/platform/tenants/acme").await).contains("Resume"));

    let resumed =
        operator.post("/console/platform/tenants/acme/status", &[("csrf", &csrf), ("status", "active")]).await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER, "{}", html(&resumed));
    assert_eq!(api_answers(&app, &owner, "acme", StatusCode::OK).await.status, StatusCode::OK);
    let plan = operator.post("/console/platform/tenants/acme/plan", &[("csrf", &csrf), ("plan", "pro")]).await;
    assert_eq!(plan.status, StatusCode::SEE_OTHER, "{}", html(&plan));

    // A custom domain: added (the tenant answers on it), then removed.
    let added = operator
        .post(
            "/console/platform/tenants/acme/domains",
            &[("csrf", &csrf), ("domain", "crm.acme-corp.example"), ("primary", "yes")],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", html(&added));
    assert!(html(&operator.get("/console/platform/tenants/acme").await).contains("crm.acme-corp.example"));
    let auth = format!("Bearer {owner}");
    let on_domain =
        app.call(Method::GET, "/v1/me", &[("host", "crm.acme-corp.example"), ("authorization", &auth)], None).await;
    assert_eq!(on_domain.status, StatusCode::OK, "{}", on_domain.body);
    let under_base =
        operator.post("/console/platform/tenants/acme/domains", &[("csrf", &csrf), ("domain", "x.localhost")]).await;
    assert_eq!(under_base.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", html(&under_base));
    let removed = operator
        .post("/console/platform/tenants/acme/domains/remove", &[("csrf", &csrf), ("domain", "crm.acme-corp.example")])
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", html(&removed));
    assert!(!html(&operator.get("/console/platform/tenants/acme").await).contains("crm.acme-corp.example"));

    // Each change is in the tenant's own audit log, as the platform API's are.
    let events = app.call_as(&owner, "acme", Method::GET, "/v1/audit-events?resource_type=tenant", None).await;
    let actions: Vec<&str> =
        events.body["items"].as_array().expect("items").iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        ["tenant.domain_remove", "tenant.domain_add", "tenant.plan_change", "tenant.resume", "tenant.suspend"]
    );
    // By the operator, named by id, with the console request's id.
    let items = events.body["items"].as_array().expect("items");
    assert!(items.iter().all(|e| e["actor_type"] == "operator"), "{}", events.body);
    assert!(
        items.iter().all(|e| e["actor_id"].is_string() && e["actor_id"] == items[0]["actor_id"]),
        "{}",
        events.body
    );
    assert!(items.iter().all(|e| e["request_id"].is_string()), "{}", events.body);

    let verify = operator.get("/console/platform/tenants/acme/verify").await;
    assert_eq!(verify.status, StatusCode::OK, "{}", html(&verify));
    assert!(html(&verify).contains("Intact"));
    let policies = operator.get("/console/platform/policies").await;
    assert_eq!(policies.status, StatusCode::OK, "{}", html(&policies));
    assert!(html(&policies).contains("No findings"), "{}", html(&policies));
    let health = operator.get("/console/platform/health").await;
    assert!(html(&health).contains("Ready"), "{}", html(&health));

    // Delete wants the slug typed exactly.
    let typo = operator.post("/console/platform/tenants/acme/delete", &[("csrf", &csrf), ("confirm", "acm")]).await;
    assert_eq!(typo.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", html(&typo));
    assert_eq!(app.call_as(&owner, "acme", Method::GET, "/v1/contacts", None).await.status, StatusCode::OK);
    let deleted = operator.post("/console/platform/tenants/acme/delete", &[("csrf", &csrf), ("confirm", "acme")]).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", html(&deleted));
    let gone = api_answers(&app, &owner, "acme", StatusCode::NOT_FOUND).await;
    gone.assert_problem(StatusCode::NOT_FOUND, "tenant_not_found");
}

#[tokio::test]
async fn the_operator_sees_policies_verify_findings_of_the_live_database() {
    use sqlx::Executor;
    let app = spawn_app().await;
    let mut operator = operator_signs_in(&app).await;
    assert!(html(&operator.get("/console/platform/policies").await).contains("No findings"));
    let mut su = app.superuser_connection().await;
    su.execute("ALTER TABLE contacts NO FORCE ROW LEVEL SECURITY").await.expect("weaken");
    let page = operator.get("/console/platform/policies").await;
    assert_eq!(page.status, StatusCode::OK, "{}", html(&page));
    assert!(html(&page).contains("rls-not-forced") && html(&page).contains("contacts"), "{}", html(&page));
}

/// The status of the first tenant API answer whose `RateLimit-Limit` (the burst) is `burst`.
async fn quota_of_next_answer(app: &TestApp, token: &str, burst: &str) -> StatusCode {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = app.call_as(token, "acme", Method::GET, "/v1/contacts", None).await;
        if r.headers.get("ratelimit-limit").is_some_and(|v| v == burst) {
            return r.status;
        }
        assert!(std::time::Instant::now() < deadline, "never announced a burst of {burst}: {:?}", r.headers);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn operator_changes_the_rate_limit_override_and_the_tenant_is_held_to_it() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let mut operator = operator_signs_in(&app).await;
    let page = operator.get("/console/platform/tenants/acme").await;
    assert!(html(&page).contains("20 requests/s, burst 100 (from the free plan)"), "{}", html(&page));
    let path = "/console/platform/tenants/acme/rate-limit";

    // Refused without the token, and for values the registry does not take; nothing changes.
    let forged = operator.post(path, &[("per_second", "1"), ("burst", "2")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", html(&forged));
    let csrf = operator.csrf();
    for (per_second, burst) in [("0", "2"), ("1", "abc"), ("1", "1000001"), ("", "2")] {
        let bad = operator.post(path, &[("csrf", &csrf), ("per_second", per_second), ("burst", burst)]).await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{per_second}/{burst}: {}", html(&bad));
    }
    assert!(html(&operator.get("/console/platform/tenants/acme").await).contains("(from the free plan)"));

    let set = operator.post(path, &[("csrf", &csrf), ("per_second", "1"), ("burst", "2")]).await;
    assert_eq!(set.status, StatusCode::SEE_OTHER, "{}", html(&set));
    let page = operator.get("/console/platform/tenants/acme").await;
    assert!(html(&page).contains("1 requests/s, burst 2 (override)"), "{}", html(&page));
    // The tenant's API is held to it at once (the registry's NOTIFY reaches the cache): its
    // answers announce a burst of 2, and the third request in a row is refused.
    assert_eq!(quota_of_next_answer(&app, &owner, "2").await, StatusCode::OK);
    let statuses = [
        app.call_as(&owner, "acme", Method::GET, "/v1/contacts", None).await.status,
        app.call_as(&owner, "acme", Method::GET, "/v1/contacts", None).await.status,
    ];
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");

    let clear = operator.post(path, &[("csrf", &csrf), ("clear", "1")]).await;
    assert_eq!(clear.status, StatusCode::SEE_OTHER, "{}", html(&clear));
    assert!(html(&operator.get("/console/platform/tenants/acme").await).contains("(from the free plan)"));
    assert_eq!(quota_of_next_answer(&app, &owner, "100").await, StatusCode::OK);

    // Both changes are in the tenant's own audit log, before and after, as a plan change is.
    let events =
        app.call_as(&owner, "acme", Method::GET, "/v1/audit-events?action=tenant.rate_limit_change", None).await;
    let items = events.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{}", events.body);
    let (cleared, set) = (&items[0]["details"], &items[1]["details"]);
    assert_eq!(set["before"], json!({"rate_limit_per_second": null, "rate_limit_burst": null}));
    assert_eq!(set["after"], json!({"rate_limit_per_second": 1, "rate_limit_burst": 2}));
    assert_eq!(cleared["after"], json!({"rate_limit_per_second": null, "rate_limit_burst": null}));
    assert_eq!(items[0]["actor_type"], "operator");
    assert_eq!(items[0]["resource_id"], acme.id.to_string());
}

#[tokio::test]
async fn the_tenants_list_counts_each_tenants_rows_in_its_own_transaction() {
    use sqlx::Row;
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    contact_renamed(&app, &acme).await;
    let owner = app.owner_token(&acme).await;
    for i in 0..3 {
        let body = json!({"name": format!("Contact {i}"), "email": format!("c{i}@example.com")});
        assert_eq!(
            app.call_as(&owner, "acme", Method::POST, "/v1/contacts", Some(body)).await.status,
            StatusCode::CREATED
        );
    }
    // What the counts must be, read by the superuser (which bypasses RLS) table by table.
    let mut su = app.superuser_connection().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
          JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relrowsecurity AND c.relforcerowsecurity",
    )
    .fetch_all(&mut su)
    .await
    .expect("tables");
    let audit_tables = [
        "audit_events",
        "audit_chain_heads",
        "audit_checkpoints",
        "audit_tree_nodes",
        "audit_tree_leaves",
        "audit_tree_state",
        "audit_tree_heads",
    ];
    let mut expected = std::collections::HashMap::new();
    for tenant in [&acme, &globex] {
        let mut data = 0;
        for table in tables.iter().filter(|t| !audit_tables.contains(&t.as_str())) {
            let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table} WHERE tenant_id = $1")))
                .bind(tenant.id)
                .fetch_one(&mut su)
                .await
                .expect("count")
                .get(0);
            data += n;
        }
        expected.insert(tenant.slug.clone(), data);
    }
    assert!(expected["acme"] >= 5 && expected["globex"] >= 1, "{expected:?}");
    assert_ne!(expected["acme"], expected["globex"]);

    let mut operator = operator_signs_in(&app).await;
    let list = operator.get("/console/platform/").await;
    assert_eq!(list.status, StatusCode::OK, "{}", html(&list));
    // Each row holds its own tenant's count: acme's rows are not in globex's and vice versa.
    for slug in ["acme", "globex"] {
        let row = html(&list)
            .split("<tr>")
            .find(|r| r.contains(&format!("/console/platform/tenants/{slug}\"")))
            .expect("the tenant's row");
        assert!(row.contains(&format!("<td class=\"num rows\">{}</td>", expected[slug])), "{slug} {expected:?}: {row}");
    }
    let page = operator.get("/console/platform/tenants/acme").await;
    assert!(html(&page).contains("<td><code>contacts</code></td><td class=\"num\">4</td>"), "{}", html(&page));
}

#[tokio::test]
async fn the_health_panel_shows_request_rate_and_p99_by_route_and_no_tenant() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    for _ in 0..5 {
        assert_eq!(app.call_as(&owner, "acme", Method::GET, "/v1/contacts", None).await.status, StatusCode::OK);
    }
    let mut operator = operator_signs_in(&app).await;
    let health = operator.get("/console/platform/health").await;
    assert_eq!(health.status, StatusCode::OK, "{}", html(&health));
    let page = html(&health);
    let row = page.split("<tr>").find(|r| r.contains("<code>/v1/contacts</code>")).expect("a row for /v1/contacts");
    assert!(row.contains("<td>GET</td><td class=\"num\">5</td>"), "{row}");
    assert!(row.contains(" ms</td>"), "a p99 in milliseconds: {row}");
    assert!(page.contains("p99") && page.contains("Per second"), "{page}");
    assert!(!page.contains("acme") && !page.contains(&acme.id.to_string()), "no tenant named on the panel");
    let metrics = app.call(Method::GET, "/metrics", &[], None).await;
    let text = metrics.body.as_str().unwrap_or_default().to_string();
    assert!(text.contains("rowguard_http_request_duration_seconds_bucket"), "{text}");
    assert!(!text.contains("acme") && !text.contains(&acme.id.to_string()) && !text.contains("tenant="), "{text}");
}

#[tokio::test]
async fn policy_findings_show_code_as_code_and_row_counts_name_the_tables_left_out() {
    use sqlx::Executor;
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let mut operator = operator_signs_in(&app).await;
    let list = operator.get("/console/platform/").await;
    assert!(!html(&list).contains("Not counted"), "nothing is left out of a sound catalog: {}", html(&list));
    let mut su = app.superuser_connection().await;
    su.execute("ALTER TABLE contacts NO FORCE ROW LEVEL SECURITY").await.expect("weaken");

    let page = operator.get("/console/platform/policies").await;
    assert_eq!(page.status, StatusCode::OK, "{}", html(&page));
    assert!(html(&page).contains("<code>ALTER TABLE contacts FORCE ROW LEVEL SECURITY</code>"), "{}", html(&page));
    let table = html(&page).split("<tbody>").nth(1).unwrap_or("");
    assert!(!table.contains('`'), "no literal backticks: {table}");

    let list = operator.get("/console/platform/").await;
    assert_eq!(list.status, StatusCode::OK, "{}", html(&list));
    assert!(html(&list).contains("Not counted: 1 table is left out"), "{}", html(&list));
    let tenant = operator.get("/console/platform/tenants/acme").await;
    assert_eq!(tenant.status, StatusCode::OK, "{}", html(&tenant));
    assert!(html(&tenant).contains("Not counted: 1 table is left out"), "{}", html(&tenant));
    assert!(html(&tenant).contains("(<code>contacts</code>)"), "the tenant page names it: {}", html(&tenant));
}
