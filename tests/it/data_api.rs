//! The generic API over adopted tables (`/v1/data/{table}`), through HTTP with two tenants and
//! several roles: CRUD, keyset pages, filters, every JSON type, type errors naming the column,
//! constraint violations, cross-tenant reads, writes and references answered exactly like
//! missing rows, the role sets, the audit trail, and the OpenAPI document — all for tables the
//! operator wrote in SQL and adopted, with no restart.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Executor;

use crate::adopt::{adopt_both, app_with_operator_tables};
use crate::support::{TestApp, TestResponse};
use rowguard::domain::Role;
use rowguard::migrate::adopt::adopt;

/// A table with a uuid key and one column of each type the API maps.
const SAMPLES: &str = "CREATE TABLE samples (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    id         uuid NOT NULL DEFAULT gen_random_uuid(),
    small      smallint,
    whole      integer,
    big        bigint,
    money      numeric(12, 2),
    ratio      double precision,
    flag       boolean,
    code       varchar(5),
    letter     char(1),
    body       text,
    day        date,
    at         timestamptz,
    local_at   timestamp,
    doc        jsonb,
    raw        json,
    numbers    integer[],
    labels     text[],
    address    inet,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, code)
)";

/// Wait until the service serves `table` (the adoption's NOTIFY reaches it asynchronously).
async fn until_served(app: &TestApp, token: &str, tenant: &str, table: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = app.call_as(token, tenant, Method::GET, &format!("/v1/data/{table}?limit=1"), None).await;
        if r.status == StatusCode::OK {
            return;
        }
        assert!(Instant::now() < deadline, "{table} never served: {} {}", r.status, r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A GET's body as the bytes the service sent (the test client's `body` is parsed JSON).
async fn body_text(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> String {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut request = axum::http::Request::builder().uri(path).header("host", "localhost:8080");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request.body(axum::body::Body::empty()).expect("request");
    let response = app.router.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

async fn contact_of(app: &TestApp, token: &str, tenant: &str) -> String {
    let body = json!({"name": "Ada", "email": format!("ada@{tenant}.test")});
    let r = app.call_as(token, tenant, Method::POST, "/v1/contacts", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["id"].as_str().expect("id").to_string()
}

fn id_of(r: &TestResponse) -> String {
    match &r.body["id"] {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => panic!("no id in {other}"),
    }
}

#[tokio::test]
async fn adopted_tables_are_served_with_crud_pages_filters_and_named_errors() {
    let (app, _dir) = app_with_operator_tables().await;
    let a = app.create_tenant("data-a").await;
    let b = app.create_tenant("data-b").await;
    let ta = app.owner_token(&a).await;
    let tb = app.owner_token(&b).await;
    // Before adoption the tables are not served (and never were: no route per table).
    app.call_as(&ta, &a.slug, Method::GET, "/v1/data/projects", None)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "unknown_table");
    adopt_both(&app).await;
    until_served(&app, &ta, &a.slug, "projects").await;
    until_served(&app, &ta, &a.slug, "tasks").await;
    // Built-in tables and made-up names are not reachable through /v1/data.
    for table in ["contacts", "users", "audit_events", "tenants", "nope", "projects%22"] {
        app.call_as(&ta, &a.slug, Method::GET, &format!("/v1/data/{table}"), None)
            .await
            .assert_problem(StatusCode::NOT_FOUND, "unknown_table");
    }

    // Create: the identity key and defaults are filled in, numeric is a decimal string,
    // tenant_id is never shown.
    let contact_a = contact_of(&app, &ta, &a.slug).await;
    let contact_b = contact_of(&app, &tb, &b.slug).await;
    let new = json!({"name": "Apollo", "budget": "1250.50", "starts_on": "2026-03-01",
        "settings": {"colour": "blue", "levels": [1, 2]}, "tags": ["x", "y"], "contact_id": contact_a,
        "secret_token": "s3cret"});
    let created = app.call_as(&ta, &a.slug, Method::POST, "/v1/data/projects", Some(new)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.content_type(), "application/json");
    let project = id_of(&created);
    assert_eq!(created.body["budget"], "1250.50");
    assert_eq!(created.body["starts_on"], "2026-03-01");
    assert_eq!(created.body["settings"], json!({"colour": "blue", "levels": [1, 2]}));
    assert_eq!(created.body["tags"], json!(["x", "y"]));
    assert_eq!(created.body["contact_id"], contact_a);
    assert!(created.body.get("tenant_id").is_none(), "{}", created.body);
    let path = format!("/v1/data/projects/{project}");
    let got = app.call_as(&ta, &a.slug, Method::GET, &path, None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, created.body);

    // Patch: only the named columns change; null clears a nullable one.
    let patched =
        app.call_as(&ta, &a.slug, Method::PATCH, &path, Some(json!({"budget": "99.9", "starts_on": null}))).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["budget"], "99.90");
    assert_eq!(patched.body["starts_on"], Value::Null);
    assert_eq!(patched.body["name"], "Apollo");
    let same = app.call_as(&ta, &a.slug, Method::PATCH, &path, Some(json!({}))).await;
    assert_eq!(same.body, patched.body, "an empty patch changes nothing");

    // Type errors: 422 naming the column, before the database sees anything.
    for (body, column) in [
        (json!({"name": "x", "budget": 1.5}), "budget"),
        (json!({"name": "x", "budget": "12x"}), "budget"),
        (json!({"name": "x", "budget": "1234567890123.00"}), "budget"),
        (json!({"name": "x", "starts_on": "tomorrow"}), "starts_on"),
        (json!({"name": "x", "tags": "x"}), "tags"),
        (json!({"name": "x", "tags": ["x", 1]}), "tags[1]"),
        (json!({"name": "x", "contact_id": "not-a-uuid"}), "contact_id"),
        (json!({"name": 7}), "name"),
        (json!({"name": null}), "name"),
        (json!({"name": "x", "colour": "red"}), "colour"),
        (json!({"name": "x", "id": 5}), "id"),
        (json!({"name": "x", "tenant_id": b.id.0.to_string()}), "tenant_id"),
        (json!({"budget": "1"}), "name"),
    ] {
        let r = app.call_as(&ta, &a.slug, Method::POST, "/v1/data/projects", Some(body.clone())).await;
        r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        let detail = r.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(column), "{body}: {detail}");
    }
    // CHECK and NOT NULL from the database, named.
    let r = app.call_as(&ta, &a.slug, Method::POST, "/v1/data/projects", Some(json!({"name": ""}))).await;
    r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "check_violation");
    assert!(r.body["detail"].as_str().unwrap_or_default().contains("projects_name_check"), "{}", r.body);

    // Foreign keys: a missing parent and another tenant's parent answer the same 422.
    let missing = app
        .call_as(
            &ta,
            &a.slug,
            Method::POST,
            "/v1/data/projects",
            Some(json!({"name": "x", "contact_id": uuid::Uuid::now_v7()})),
        )
        .await;
    missing.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_reference");
    let foreign = app
        .call_as(&ta, &a.slug, Method::POST, "/v1/data/projects", Some(json!({"name": "x", "contact_id": contact_b})))
        .await;
    foreign.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_reference");
    assert_eq!(missing.body["detail"], foreign.body["detail"]);
    let b_project = app.call_as(&tb, &b.slug, Method::POST, "/v1/data/projects", Some(json!({"name": "B's"}))).await;
    assert_eq!(b_project.status, StatusCode::CREATED, "{}", b_project.body);
    let b_project = id_of(&b_project);
    let task_of = |project: &str| json!({"project_id": project.parse::<i64>().expect("int"), "title": "t"});
    let r = app.call_as(&ta, &a.slug, Method::POST, "/v1/data/tasks", Some(task_of(&b_project))).await;
    r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_reference");
    let task = app.call_as(&ta, &a.slug, Method::POST, "/v1/data/tasks", Some(task_of(&project))).await;
    assert_eq!(task.status, StatusCode::CREATED, "{}", task.body);
    assert_eq!(task.body["done"], false);
    // An id a sequence numbers (even BY DEFAULT identity) is never set by a request: the
    // sequence is every tenant's, and an id near its end would stop everyone's inserts.
    let again = json!({"id": i64::MAX, "project_id": task.body["project_id"], "title": "far"});
    let r = app.call_as(&ta, &a.slug, Method::POST, "/v1/data/tasks", Some(again)).await;
    r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert!(r.body["detail"].as_str().unwrap_or_default().contains("sequence"), "{}", r.body);
    let path_of_task = format!("/v1/data/tasks/{}", task.body["id"]);
    app.call_as(&ta, &a.slug, Method::PATCH, &path_of_task, Some(json!({"id": 7})))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    // Deleting a referenced row → 409 naming the foreign key.
    let r = app.call_as(&ta, &a.slug, Method::DELETE, &path, None).await;
    r.assert_problem(StatusCode::CONFLICT, "row_in_use");
    assert!(r.body["detail"].as_str().unwrap_or_default().contains("tasks"), "{}", r.body);

    // Tenant B sees none of A's rows: get, patch and delete answer as for a missing id.
    let nowhere = app.call_as(&tb, &b.slug, Method::GET, "/v1/data/projects/999999999", None).await;
    nowhere.assert_problem(StatusCode::NOT_FOUND, "not_found");
    for method in [Method::GET, Method::PATCH, Method::DELETE] {
        let body = (method == Method::PATCH).then(|| json!({"name": "stolen"}));
        let r = app.call_as(&tb, &b.slug, method.clone(), &path, body).await;
        r.assert_problem(StatusCode::NOT_FOUND, "not_found");
        assert_eq!(r.body["detail"], nowhere.body["detail"], "{method}");
    }
    let listed = app.call_as(&tb, &b.slug, Method::GET, "/v1/data/projects", None).await;
    let ids: Vec<String> =
        listed.body["items"].as_array().expect("items").iter().map(|p| p["id"].to_string()).collect();
    assert_eq!(ids, vec![b_project.clone()], "B lists only its own");
    let unchanged = app.call_as(&ta, &a.slug, Method::GET, &path, None).await;
    assert_eq!(unchanged.body["name"], "Apollo");

    // Keyset pages in key order, and filters on indexed columns.
    for i in 0..4 {
        let r = app
            .call_as(
                &ta,
                &a.slug,
                Method::POST,
                "/v1/data/tasks",
                Some(json!({"project_id": project.parse::<i64>().expect("int"), "title": format!("t{i}")})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("/v1/data/tasks?limit=2&cursor={c}"),
            None => "/v1/data/tasks?limit=2".to_string(),
        };
        let page = app.call_as(&ta, &a.slug, Method::GET, &url, None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let items = page.body["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|t| t["id"].as_i64().expect("id")));
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in key order: {seen:?}");
    let filtered = app
        .call_as(&ta, &a.slug, Method::GET, &format!("/v1/data/tasks?project_id={project}&select=title"), None)
        .await;
    assert_eq!(filtered.status, StatusCode::OK, "{}", filtered.body);
    let items = filtered.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 5);
    assert_eq!(items[0], json!({"title": "t"}), "only the selected column");
    let none = app.call_as(&ta, &a.slug, Method::GET, "/v1/data/tasks?project_id=424242", None).await;
    assert_eq!(none.body["items"], json!([]));
    for (query, code) in [
        ("title=t", "invalid_query"),
        ("nope=1", "invalid_query"),
        ("project_id=abc", "invalid_query"),
        ("limit=0", "invalid_query"),
        ("limit=101", "invalid_query"),
        ("select=nope", "invalid_query"),
        ("cursor=abc", "invalid_cursor"),
        ("limit=1&limit=2", "invalid_query"),
    ] {
        app.call_as(&ta, &a.slug, Method::GET, &format!("/v1/data/tasks?{query}"), None)
            .await
            .assert_problem(StatusCode::BAD_REQUEST, code);
    }
    app.call_as(&ta, &a.slug, Method::GET, "/v1/data/tasks/abc", None)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_path");

    // Every change is in A's audit trail, by the owner, with the secret redacted.
    let mut su = app.superuser_connection().await;
    let events: Vec<(String, String, Option<uuid::Uuid>, Option<String>)> = sqlx::query_as(
        "SELECT action, details::text, actor_id, resource_id FROM audit_events
          WHERE tenant_id = $1 AND resource_type = 'projects' ORDER BY seq",
    )
    .bind(a.id.0)
    .fetch_all(&mut su)
    .await
    .expect("audit events");
    let actions: Vec<&str> = events.iter().map(|(a, _, _, _)| a.as_str()).collect();
    assert_eq!(actions, vec!["projects.create", "projects.update"], "{events:?}");
    let created_event: Value = serde_json::from_str(&events[0].1).expect("details");
    assert_eq!(created_event["after"]["name"], "Apollo");
    assert!(created_event["after"].get("secret_token").is_none(), "redacted: {created_event}");
    assert!(created_event["after"].get("tenant_id").is_none(), "{created_event}");
    assert!(events[0].2.is_some(), "the acting user is recorded");
    assert_eq!(events[0].3.as_deref(), Some(project.as_str()), "the row's key names the resource");
    let updated_event: Value = serde_json::from_str(&events[1].1).expect("details");
    assert!(
        updated_event["after"].get("budget").is_some() && updated_event["after"].get("name").is_none(),
        "{updated_event}"
    );
    let b_events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND resource_type = 'projects'")
            .bind(b.id.0)
            .fetch_one(&mut su)
            .await
            .expect("count");
    assert_eq!(b_events, 1, "B's log holds only B's create");

    // The OpenAPI document describes both tables, from the catalog.
    let doc = app.call(Method::GET, "/openapi.json", &[], None).await;
    assert_eq!(doc.status, StatusCode::OK);
    for path in ["/v1/data/projects", "/v1/data/projects/{id}", "/v1/data/tasks", "/v1/data/tasks/{id}"] {
        assert!(doc.body["paths"][path].is_object(), "{path} documented");
    }
    let schemas = &doc.body["components"]["schemas"];
    assert_eq!(schemas["data.projects"]["properties"]["budget"]["oneOf"][0]["type"], "string");
    assert!(schemas["data.projects"]["properties"].get("tenant_id").is_none());
    assert_eq!(schemas["data.projects.new"]["required"], json!(["name"]));
    assert!(schemas["data.projects.new"]["properties"].get("id").is_none(), "generated always: not writable");
    assert!(schemas["data.tasks.new"]["properties"].get("id").is_none(), "numbered by a sequence: not writable");
    assert!(
        doc.body["paths"]["/v1/data/tasks"]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .any(|p| p["name"] == "project_id")
    );
}

#[tokio::test]
async fn every_mapped_type_round_trips_and_uuid_keys_work() {
    let (app, _dir) = app_with_operator_tables().await;
    let mut su = app.superuser_connection().await;
    // One statement per message, as psql sends them (Citus replays a message's whole text).
    for statement in ["SET ROLE rowguard_owner", SAMPLES, "RESET ROLE"] {
        su.execute(statement).await.expect("create samples");
    }
    let a = app.create_tenant("types-a").await;
    let ta = app.owner_token(&a).await;
    adopt(&mut su, "samples", None, None, false).await.expect("adopt samples");
    until_served(&app, &ta, &a.slug, "samples").await;
    let row = json!({
        "small": -32768, "whole": 2147483647, "big": 9007199254740993i64, "money": "-1234567890.12",
        "ratio": 0.25, "flag": true, "code": "ab", "letter": "z", "body": "naïve ✓", "day": "2024-02-29",
        "at": "2026-01-31T09:30:00.123456Z", "local_at": "2026-01-31T09:30:00", "doc": {"a": [1, "two", null]},
        "raw": [1, 2], "numbers": [1, null, 3], "labels": ["a", "b c"], "address": "192.168.0.1"
    });
    let created = app.call_as(&ta, &a.slug, Method::POST, "/v1/data/samples", Some(row.clone())).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().expect("uuid id").to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    let got = app.call_as(&ta, &a.slug, Method::GET, &format!("/v1/data/samples/{id}"), None).await;
    for (column, expected) in [
        ("small", json!(-32768)),
        ("whole", json!(2147483647)),
        ("big", json!(9007199254740993i64)),
        ("money", json!("-1234567890.12")),
        ("ratio", json!(0.25)),
        ("flag", json!(true)),
        ("code", json!("ab")),
        ("letter", json!("z")),
        ("body", json!("naïve ✓")),
        ("day", json!("2024-02-29")),
        ("at", json!("2026-01-31T09:30:00.123456+00:00")),
        ("local_at", json!("2026-01-31T09:30:00")),
        ("doc", json!({"a": [1, "two", null]})),
        ("raw", json!([1, 2])),
        ("numbers", json!([1, null, 3])),
        ("labels", json!(["a", "b c"])),
        ("address", json!("192.168.0.1")),
    ] {
        assert_eq!(got.body[column], expected, "{column}: {}", got.body);
    }
    // Out of range, too long, wrong shape: 422 naming the column.
    for (body, column) in [
        (json!({"small": 32768}), "small"),
        (json!({"whole": 2147483648i64}), "whole"),
        (json!({"code": "toolong"}), "code"),
        (json!({"flag": "yes"}), "flag"),
        (json!({"at": "2026-01-31 09:30"}), "at"),
        (json!({"numbers": [1.5]}), "numbers[0]"),
        (json!({"doc": {"a": "\u{0}"}}), "doc"),
        (json!({"body": "a\u{0}b"}), "body"),
    ] {
        let r = app.call_as(&ta, &a.slug, Method::POST, "/v1/data/samples", Some(body.clone())).await;
        r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert!(r.body["detail"].as_str().unwrap_or_default().contains(column), "{body}: {}", r.body);
    }
    // A value only PostgreSQL can check (inet): 422 with the database's words (type and value).
    let r =
        app.call_as(&ta, &a.slug, Method::POST, "/v1/data/samples", Some(json!({"address": "not an address"}))).await;
    r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value");
    assert!(r.body["detail"].as_str().unwrap_or_default().contains("inet"), "{}", r.body);
    // More decimals than the column keeps: refused, not rounded.
    let r = app.call_as(&ta, &a.slug, Method::POST, "/v1/data/samples", Some(json!({"money": "1.005"}))).await;
    r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert!(r.body["detail"].as_str().unwrap_or_default().contains("money"), "{}", r.body);
    // json/jsonb get the digits and keys the client sent, not a float's.
    let body = r#"{"doc": {"n": 12345678901234567890123456789.5}, "raw": {"b": 1, "a": 2, "a": 3}}"#;
    let bearer = format!("Bearer {ta}");
    let headers = [("x-tenant", a.slug.as_str()), ("authorization", bearer.as_str())];
    let r = app
        .send_raw(Method::POST, "/v1/data/samples", &headers, Some("application/json"), axum::body::Body::from(body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let exact: (String, String) = sqlx::query_as("SELECT doc::text, raw::text FROM samples WHERE id = $1::uuid")
        .bind(r.body["id"].as_str().expect("id"))
        .fetch_one(&mut su)
        .await
        .expect("stored");
    assert_eq!(exact.0, r#"{"n": 12345678901234567890123456789.5}"#);
    assert_eq!(exact.1, r#"{"b": 1, "a": 2, "a": 3}"#, "json keeps the text as sent");
    // ... and is answered as stored, the row's columns in table order.
    let id = r.body["id"].as_str().expect("id").to_string();
    let text = body_text(&app, &format!("/v1/data/samples/{id}"), &headers).await;
    assert!(text.find("\"small\"") < text.find("\"address\""), "columns in table order: {text}");
    assert!(text.contains(r#""raw":{"b": 1, "a": 2, "a": 3}"#), "json answered as stored: {text}");
    assert!(text.contains("12345678901234567890123456789.5"), "jsonb digits kept: {text}");
    // A jsonb number beyond a float's range is JSON PostgreSQL keeps: accepted.
    let huge = r#"{"doc": {"x": 1e400}}"#;
    let r = app
        .send_raw(Method::POST, "/v1/data/samples", &headers, Some("application/json"), axum::body::Body::from(huge))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // A filter value that is not UTF-8 once decoded is refused, not matched against nothing.
    app.call_as(&ta, &a.slug, Method::GET, "/v1/data/samples?code=%ff", None)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_query");
    // A unique key per tenant → 409 naming its column.
    let r = app.call_as(&ta, &a.slug, Method::POST, "/v1/data/samples", Some(json!({"code": "ab"}))).await;
    r.assert_problem(StatusCode::CONFLICT, "unique_violation");
    assert!(r.body["detail"].as_str().unwrap_or_default().contains("code"), "{}", r.body);
    // A malformed uuid in the path is 400; a well-formed unknown one 404.
    app.call_as(&ta, &a.slug, Method::GET, "/v1/data/samples/xyz", None)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_path");
    app.call_as(&ta, &a.slug, Method::GET, &format!("/v1/data/samples/{}", uuid::Uuid::now_v7()), None)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn each_tables_role_sets_decide_who_reads_and_writes() {
    let (app, _dir) = app_with_operator_tables().await;
    adopt_both(&app).await;
    let a = app.create_tenant("roles-a").await;
    let owner = app.owner_token(&a).await;
    until_served(&app, &owner, &a.slug, "projects").await;
    let created = app.call_as(&owner, &a.slug, Method::POST, "/v1/data/projects", Some(json!({"name": "p"}))).await;
    let project = id_of(&created);
    // The defaults: every role reads, every role but the auditor writes.
    for role in ["admin", "manager", "member", "auditor"] {
        let user = app.create_user(&a, role).await;
        let read = app.call_as(&user.access_token, &a.slug, Method::GET, "/v1/data/projects", None).await;
        assert_eq!(read.status, StatusCode::OK, "{role} reads");
        let write = app
            .call_as(&user.access_token, &a.slug, Method::POST, "/v1/data/projects", Some(json!({"name": role})))
            .await;
        if role == "auditor" {
            write.assert_problem(StatusCode::FORBIDDEN, "forbidden");
            for method in [Method::PATCH, Method::DELETE] {
                let body = (method == Method::PATCH).then(|| json!({"name": "x"}));
                let path = format!("/v1/data/projects/{project}");
                app.call_as(&user.access_token, &a.slug, method, &path, body)
                    .await
                    .assert_problem(StatusCode::FORBIDDEN, "forbidden");
            }
        } else {
            assert_eq!(write.status, StatusCode::CREATED, "{role} writes: {}", write.body);
        }
    }
    // Narrow the sets: only owners write tasks, and members no longer read them.
    let mut su = app.superuser_connection().await;
    adopt(&mut su, "tasks", Some(vec![Role::Owner, Role::Admin, Role::Auditor]), Some(vec![Role::Owner]), false)
        .await
        .expect("re-adopt with narrower roles");
    let member = app.create_user(&a, "member").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = app.call_as(&member.access_token, &a.slug, Method::GET, "/v1/data/tasks", None).await;
        if r.status == StatusCode::FORBIDDEN {
            r.assert_problem(StatusCode::FORBIDDEN, "forbidden");
            assert!(r.body["detail"].as_str().unwrap_or_default().contains("tasks"), "{}", r.body);
            break;
        }
        assert!(Instant::now() < deadline, "the narrower sets never applied: {}", r.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let admin = app.create_user(&a, "admin").await;
    let body = json!({"project_id": project.parse::<i64>().expect("int"), "title": "t"});
    app.call_as(&admin.access_token, &a.slug, Method::POST, "/v1/data/tasks", Some(body.clone()))
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    let r = app.call_as(&owner, &a.slug, Method::POST, "/v1/data/tasks", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app.call_as(&admin.access_token, &a.slug, Method::GET, "/v1/data/tasks", None).await;
    assert_eq!(r.status, StatusCode::OK);
    // Unauthenticated: 401 like every tenant route.
    app.call(Method::GET, "/v1/data/tasks", &[("x-tenant", &a.slug)], None)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "missing_token");
}

#[tokio::test]
async fn a_table_altered_while_served_is_read_again_without_a_restart() {
    let (app, _dir) = app_with_operator_tables().await;
    adopt_both(&app).await;
    let a = app.create_tenant("alter-a").await;
    let owner = app.owner_token(&a).await;
    until_served(&app, &owner, &a.slug, "projects").await;
    let created = app
        .call_as(
            &owner,
            &a.slug,
            Method::POST,
            "/v1/data/projects",
            Some(json!({"name": "p", "starts_on": "2026-01-01"})),
        )
        .await;
    let path = format!("/v1/data/projects/{}", id_of(&created));
    // Read twice: the second read runs the statement its connection prepared the first time.
    for _ in 0..2 {
        let r = app.call_as(&owner, &a.slug, Method::GET, &path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(r.body.get("note").is_none());
    }
    // A column added by an operator migration (which notifies): served once read again.
    let mut su = app.superuser_connection().await;
    su.execute("ALTER TABLE projects ADD COLUMN note text DEFAULT 'hello'; NOTIFY rowguard_tables_changed")
        .await
        .expect("alter");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = app.call_as(&owner, &a.slug, Method::GET, &path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        if r.body["note"] == "hello" {
            break;
        }
        assert!(Instant::now() < deadline, "the new column never appeared: {}", r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A column dropped behind the service's back (no NOTIFY): the first statement that meets
    // it answers 503 and asks for the catalog again; the next one is served without it.
    su.execute("ALTER TABLE projects DROP COLUMN starts_on").await.expect("drop");
    let first = app.call_as(&owner, &a.slug, Method::GET, &path, None).await;
    assert!(first.status == StatusCode::SERVICE_UNAVAILABLE || first.status == StatusCode::OK, "{}", first.body);
    if first.status == StatusCode::SERVICE_UNAVAILABLE {
        first.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = app.call_as(&owner, &a.slug, Method::GET, &path, None).await;
        if r.status == StatusCode::OK {
            assert!(r.body.get("starts_on").is_none(), "{}", r.body);
            assert_eq!(r.body["note"], "hello");
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {} {}", r.status, r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Keys made `DEFERRABLE INITIALLY DEFERRED` (Django makes every key so, and `--all-tables`
/// keeps them) are checked at commit, not at the statement: a reference to another tenant's
/// row, or deleting a row still referenced, is still 422 `invalid_reference` / 409
/// `row_in_use` naming the key, never a 500 — for adopted rows and built-in users alike.
#[tokio::test]
async fn keys_checked_at_commit_answer_named_4xx() {
    let (app, dir) = app_with_operator_tables().await;
    let mut su = app.superuser_connection().await;
    // Through the operator's folder: a key to a built-in table (users) is one Citus accepts only
    // from a table distributed beside it, which `migrate --dir` does as it creates the table.
    std::fs::write(
        dir.join("V3__bookings.sql"),
        "CREATE TABLE bookings (
             tenant_id uuid NOT NULL REFERENCES tenants (id),
             id bigint GENERATED BY DEFAULT AS IDENTITY, note text, booked_by uuid, parent_id bigint,
             PRIMARY KEY (tenant_id, id),
             FOREIGN KEY (tenant_id, booked_by) REFERENCES users (tenant_id, id) DEFERRABLE INITIALLY DEFERRED,
             FOREIGN KEY (tenant_id, parent_id) REFERENCES bookings (tenant_id, id) DEFERRABLE INITIALLY DEFERRED);",
    )
    .expect("write V3");
    let applied =
        rowguard::migrate::operator::apply(&app.superuser_url(), &dir).await.expect("a table with deferred keys");
    assert_eq!(applied, vec!["V3__bookings".to_string()]);
    adopt(&mut su, "bookings", None, None, false).await.expect("adopt");
    let a = app.create_tenant("deferred-a").await;
    let b = app.create_tenant("deferred-b").await;
    let owner_a = app.owner_token(&a).await;
    until_served(&app, &owner_a, &a.slug, "bookings").await;
    let member_a = app.create_user(&a, "member").await;
    let member_b = app.create_user(&b, "member").await;
    let booking = |body: Value| app.call_as(&owner_a, &a.slug, Method::POST, "/v1/data/bookings", Some(body));
    let parent = booking(json!({"note": "first", "booked_by": member_a.id})).await;
    assert_eq!(parent.status, StatusCode::CREATED, "{}", parent.body);
    let parent = id_of(&parent);
    let child = booking(json!({"note": "child", "parent_id": parent.parse::<i64>().expect("int")})).await;
    assert_eq!(child.status, StatusCode::CREATED, "{}", child.body);

    // Another tenant's user, a missing parent: refused at commit, named, nothing written.
    let r = booking(json!({"note": "x", "booked_by": member_b.id})).await;
    r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_reference");
    assert!(r.body["detail"].as_str().is_some_and(|d| d.contains("booked_by")), "{}", r.body);
    booking(json!({"note": "x", "parent_id": 999_999}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_reference");
    let path = format!("/v1/data/bookings/{parent}");
    app.call_as(&owner_a, &a.slug, Method::PATCH, &path, Some(json!({"booked_by": member_b.id})))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_reference");
    // A row still referenced: 409, and it stays.
    app.call_as(&owner_a, &a.slug, Method::DELETE, &path, None)
        .await
        .assert_problem(StatusCode::CONFLICT, "row_in_use");
    let r = app.call_as(&owner_a, &a.slug, Method::DELETE, &format!("/v1/users/{}", member_a.id), None).await;
    r.assert_problem(StatusCode::CONFLICT, "row_in_use");
    // The referencing table by name (on Citus from the worker's message, which has no field).
    assert!(r.body["detail"].as_str().is_some_and(|d| d.contains("rows of bookings ")), "{}", r.body);
    let r = app.call_as(&owner_a, &a.slug, Method::GET, &path, None).await;
    assert_eq!((r.status, r.body["booked_by"].as_str()), (StatusCode::OK, Some(member_a.id.as_str())), "{}", r.body);
    let listed = app.call_as(&owner_a, &a.slug, Method::GET, "/v1/data/bookings", None).await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(2), "{}", listed.body);
}
