//! What the table's definition decides: its role sets, a change to it while served (read
//! again without a restart), and keys checked at commit answered as named 4xx.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Executor;

use super::{id_of, until_served};
use crate::adopt::{adopt_both, app_with_operator_tables};
use rowguard::domain::Role;
use rowguard::migrate::adopt::adopt;

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
