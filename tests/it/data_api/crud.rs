//! CRUD over an adopted table through HTTP with two tenants: keyset pages, filters, errors
//! naming the column, and another tenant's rows answered exactly like missing ones.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{id_of, until_served};
use crate::adopt::{adopt_both, app_with_operator_tables};
use crate::support::TestApp;

async fn contact_of(app: &TestApp, token: &str, tenant: &str) -> String {
    let body = json!({"name": "Ada", "email": format!("ada@{tenant}.test")});
    let r = app.call_as(token, tenant, Method::POST, "/v1/contacts", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["id"].as_str().expect("id").to_string()
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
