//! Each change's event: atomic with the change, append-only for the app role (which can
//! neither change, remove nor forge one), and the stand-down switches only for the platform role.

use axum::http::{Method, StatusCode};
use rowguard::db::TenantTx;
use rowguard::platform::PlatformConn;
use serde_json::json;
use sqlx::{Connection, Executor};

use super::{events, tree_report};
use crate::support::spawn_app;

#[tokio::test]
async fn a_committed_change_has_exactly_one_event_with_its_actor_and_request_id() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let token = app.owner_token(&t).await;
    let made = app
        .call_as(&token, "alpha", Method::POST, "/v1/contacts", Some(json!({"name": "Ada", "email": "ada@x.io"})))
        .await;
    assert_eq!(made.status, StatusCode::CREATED);
    let id = made.body["id"].as_str().expect("id");
    let request_id = made.headers.get("x-request-id").and_then(|v| v.to_str().ok()).expect("request id");
    let found = events(&app, &token, "alpha", &format!("?resource_type=contact&resource_id={id}")).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let e = &found[0];
    assert_eq!(e["action"], "contact.create");
    assert_eq!(e["actor_type"], "user");
    assert_eq!(e["actor_role"], "owner");
    assert_eq!(e["request_id"], request_id);
    assert_eq!(e["details"]["after"]["name"], "Ada");

    let patched = app
        .call_as(&token, "alpha", Method::PATCH, &format!("/v1/contacts/{id}"), Some(json!({"name": "Ada L"})))
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    let updates = events(&app, &token, "alpha", &format!("?action=contact.update&resource_id={id}")).await;
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["details"], json!({"before": {"name": "Ada"}, "after": {"name": "Ada L"}}));

    // A refused request changes nothing and records no data change.
    let bad =
        app.call_as(&token, "alpha", Method::POST, "/v1/contacts", Some(json!({"name": "", "email": "x@y.io"}))).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(events(&app, &token, "alpha", "?action=contact.create").await.len(), 1);
}

#[tokio::test]
async fn a_rolled_back_change_leaves_no_event() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let mut conn = app.app_connection().await;
    let count = "SELECT count(*) FROM audit_events WHERE action = 'contact.create'";
    {
        let mut tx = TenantTx::begin_on(&mut conn, t.id).await.expect("begin");
        sqlx::query("INSERT INTO contacts (tenant_id, id, name, email) VALUES ($1, $2, 'x', 'x@y.io')")
            .bind(t.id)
            .bind(uuid::Uuid::now_v7())
            .execute(tx.conn())
            .await
            .expect("insert");
        let inside: i64 = sqlx::query_scalar(count).fetch_one(tx.conn()).await.expect("count");
        assert_eq!(inside, 1, "the event is written in the change's transaction");
    } // rolled back
    let mut tx = TenantTx::begin_on(&mut conn, t.id).await.expect("begin");
    let after: i64 = sqlx::query_scalar(count).fetch_one(tx.conn()).await.expect("count");
    assert_eq!(after, 0);
}

#[tokio::test]
async fn the_app_role_can_neither_change_nor_remove_events() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let mut conn = app.app_connection().await;
    for statement in [
        "UPDATE audit_events SET action = 'nothing.happened'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        // Re-pointing the head would let the next append hang off a chain of the caller's choosing.
        "UPDATE audit_chain_heads SET seq = 0",
        "DELETE FROM audit_chain_heads",
    ] {
        let mut tx = TenantTx::begin_on(&mut conn, t.id).await.expect("begin");
        let result = tx.conn().execute(statement).await;
        let refused = result
            .as_ref()
            .is_err_and(|e| e.to_string().contains("append-only") || e.to_string().contains("permission denied"));
        assert!(refused, "{statement}: {result:?}");
    }
    // Even the superuser is refused by the trigger (only disabling triggers gets past it).
    let mut su = app.superuser_connection().await;
    let err = su.execute("DELETE FROM audit_events").await.expect_err("append-only for every role");
    assert!(err.to_string().contains("append-only"), "{err}");
}

/// The app role may append only through `audit_append`, which stamps the time, actor, number
/// and hashes itself. Each statement here would write a well-formed event or head of the
/// caller's own making, and each must be refused for lack of privilege.
#[tokio::test]
async fn the_app_role_cannot_forge_an_audit_event() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let mut conn = app.app_connection().await;
    let forged_record = "jsonb_populate_record(NULL::audit_events, jsonb_build_object(
            'tenant_id', current_tenant(), 'id', gen_random_uuid(), 'occurred_at', now() - interval '1 year',
            'actor_type', 'system', 'action', 'user.role_change', 'outcome', 'success', 'details', '{}'::jsonb))";
    let cases = [
        (
            "insert an event",
            "INSERT INTO audit_events (tenant_id, seq, id, occurred_at, actor_type, action, outcome, prev_hash, hash)
             VALUES (current_tenant(), 1000, gen_random_uuid(), now() - interval '1 year', 'system',
                     'user.role_change', 'success', '\\x00', '\\x00')"
                .to_string(),
        ),
        (
            "insert a head",
            "INSERT INTO audit_chain_heads (tenant_id, seq, head) VALUES (current_tenant(), 0, '\\x00')
             ON CONFLICT DO NOTHING"
                .to_string(),
        ),
        ("link an event of its own making", format!("SELECT audit_link({forged_record})")),
        ("import an event", format!("SELECT audit_import(to_jsonb({forged_record}))")),
    ];
    for (case, statement) in cases {
        let mut tx = TenantTx::begin_on(&mut conn, t.id).await.expect("begin");
        let err = tx.conn().execute(sqlx::AssertSqlSafe(statement)).await.expect_err(case);
        assert!(err.to_string().contains("permission denied"), "{case}: {err}");
    }
    // Nor can it write the tree, or name a tree state of its own.
    for (case, statement) in [
        ("write a tree node", "INSERT INTO audit_tree_nodes VALUES (current_tenant(), 0, 0, sha256(''))"),
        ("write a head", "INSERT INTO audit_tree_heads VALUES (current_tenant(), 1, sha256(''), now(), 'x')"),
        ("move the tree", "UPDATE audit_tree_state SET size = 0"),
    ] {
        let mut tx = TenantTx::begin_on(&mut conn, t.id).await.expect("begin");
        let err = tx.conn().execute(statement).await.expect_err(case);
        assert!(err.to_string().contains("permission denied"), "{case}: {err}");
    }
    // The one door stays open: an access event through audit_append lands, numbered, with the
    // leaf hash the tree will take, and is sealed into the tree after commit. (Read back in a
    // transaction of its own: on Citus the append writes the tenant's shard as the audit role,
    // and Citus refuses the same transaction a read of that shard as the app role. The event is
    // passed to `audit_leaf` as a row of `audit_events`: on Citus the query runs against the
    // shard, whose row type is the shard's own.)
    let mut tx = TenantTx::begin_on(&mut conn, t.id).await.expect("begin");
    sqlx::query("SELECT audit_append('probe.ok', NULL, NULL, 'success', '{}')")
        .execute(tx.conn())
        .await
        .expect("the app role appends through audit_append");
    tx.commit().await.expect("commit");
    let mut tx = TenantTx::begin_on(&mut conn, t.id).await.expect("begin");
    let hashed: bool = sqlx::query_scalar(
        "SELECT hash = sha256('\\x00'::bytea || audit_leaf(ROW(e.*)::audit_events)) FROM audit_events e
          WHERE tenant_id = current_tenant() AND action = 'probe.ok'",
    )
    .fetch_one(tx.conn())
    .await
    .expect("the event");
    assert!(hashed, "the event carries its leaf hash");
    tx.commit().await.expect("commit");
    let report = tree_report(&app, &t).await;
    assert!(report.valid && report.events_checked >= 1, "{report:?}");
}

/// `app.audit_import` and `app.audit_purge` silence the triggers for the platform role's
/// import and purge only; any other session that sets them is audited and refused as before.
#[tokio::test]
async fn the_audit_stand_down_switches_work_only_for_the_platform_role() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let mut conn = app.app_connection().await;

    let mut tx = TenantTx::begin_on(&mut conn, t.id).await.expect("begin");
    tx.conn().execute("SET LOCAL app.audit_import = 'on'").await.expect("any session may set a custom setting");
    sqlx::query("INSERT INTO contacts (tenant_id, id, name, email) VALUES ($1, $2, 'x', 'x@y.io')")
        .bind(t.id)
        .bind(uuid::Uuid::now_v7())
        .execute(tx.conn())
        .await
        .expect("insert");
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'contact.create'")
        .fetch_one(tx.conn())
        .await
        .expect("count");
    assert_eq!(recorded, 1, "the app role's change is audited whatever it sets");
    tx.commit().await.expect("commit");

    let mut tx = TenantTx::begin_on(&mut conn, t.id).await.expect("begin");
    tx.conn().execute("SET LOCAL app.audit_purge = 'on'").await.expect("set");
    let err = tx.conn().execute("DELETE FROM audit_events").await.expect_err("no purge for the app role");
    assert!(err.to_string().contains("permission denied"), "{err}");
    drop(tx);

    // The app role lacks DELETE anyway, so the trigger is proved with a role that has it but
    // is not the platform role: the switch must not open the append-only trigger for it.
    let mut su = app.superuser_connection().await;
    let role = format!("rg_audit_probe_{}", uuid::Uuid::now_v7().simple());
    // On Citus the role must be able to log in: Citus opens its connections to the workers as
    // the current role (docs/citus.md); it still has no password, and is dropped below.
    let login = if app.on_citus() { "LOGIN" } else { "NOLOGIN" };
    su.execute(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {role} {login}; GRANT USAGE ON SCHEMA public TO {role};
         GRANT SELECT, DELETE ON audit_events TO {role}"
    )))
    .await
    .expect("probe role");
    let attempt = async {
        let mut tx = su.begin().await?;
        tx.execute(sqlx::AssertSqlSafe(format!(
            "SET LOCAL ROLE {role}; SET LOCAL app.tenant_id = '{}'; SET LOCAL app.audit_purge = 'on'",
            t.id
        )))
        .await?;
        tx.execute("DELETE FROM audit_events").await.map(|done| done.rows_affected())
    };
    let result = attempt.await;
    su.execute(sqlx::AssertSqlSafe(format!("DROP OWNED BY {role}; DROP ROLE {role}"))).await.expect("drop probe");
    let err = result.expect_err("the purge switch must not work for a role outside rowguard_platform");
    assert!(err.to_string().contains("append-only"), "{err}");

    // The platform role's purge of a deleted tenant still takes the log with it.
    let mut platform = PlatformConn::connect(&app.superuser_url()).await.expect("platform");
    let slug = rowguard::domain::Slug::parse("alpha").expect("slug");
    let purged = platform.delete_tenant(&slug).await.expect("delete");
    let events = purged.iter().find(|(table, _)| table.ends_with("audit_events")).map(|(_, n)| *n);
    assert!(events.is_some_and(|n| n > 0), "{purged:?}");
}
