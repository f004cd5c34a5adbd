//! An adopted table guarded like a built-in one: isolation as the app role at SQL level, the
//! audit log without secrets, and tenant export, import and purge.

use rowguard::db::TenantTx;
use rowguard::domain::Slug;
use rowguard::platform::PlatformConn;
use rowguard::platform::transfer;
use serde_json::{Value, json};
use sqlx::Executor;

use super::{adopt_both, app_with_operator_tables, insert_project};

#[tokio::test]
async fn as_the_app_role_tenant_b_cannot_reach_tenant_a_rows_of_an_adopted_table() {
    let (app, _dir) = app_with_operator_tables().await;
    adopt_both(&app).await;
    let a = app.create_tenant("alpha").await;
    let b = app.create_tenant("bravo").await;
    let mut conn = app.app_connection().await;
    let project = insert_project(&mut conn, a.id, "Alpha's", "tok-a").await;
    insert_project(&mut conn, b.id, "Bravo's", "tok-b").await;

    let mut tx = TenantTx::begin_on(&mut conn, b.id).await.expect("begin as B");
    let seen: Vec<String> =
        sqlx::query_scalar("SELECT name FROM projects ORDER BY id").fetch_all(tx.conn()).await.expect("read");
    assert_eq!(seen, vec!["Bravo's"]);
    let by_id: i64 = sqlx::query_scalar("SELECT count(*) FROM projects WHERE tenant_id = $1 AND id = $2")
        .bind(a.id)
        .bind(project)
        .fetch_one(tx.conn())
        .await
        .expect("read by id");
    assert_eq!(by_id, 0);
    let updated = sqlx::query("UPDATE projects SET name = 'taken' WHERE id = $1")
        .bind(project)
        .execute(tx.conn())
        .await
        .expect("update");
    assert_eq!(updated.rows_affected(), 0);
    let deleted =
        sqlx::query("DELETE FROM tasks WHERE project_id = $1").bind(project).execute(tx.conn()).await.expect("delete");
    assert_eq!(deleted.rows_affected(), 0);
    // Writing a row for A is refused by WITH CHECK.
    let forged = sqlx::query("INSERT INTO projects (tenant_id, name) VALUES ($1, 'forged')")
        .bind(a.id)
        .execute(tx.conn())
        .await
        .expect_err("WITH CHECK refuses A's tenant_id");
    assert!(forged.to_string().contains("row-level security"), "{forged}");
    drop(tx);
    // A task of B's pointing at A's project: the composite key finds no (B, project) row.
    let mut tx = TenantTx::begin_on(&mut conn, b.id).await.expect("begin as B");
    let probe = sqlx::query("INSERT INTO tasks (tenant_id, project_id, title) VALUES ($1, $2, 'probe')")
        .bind(b.id)
        .bind(project)
        .execute(tx.conn())
        .await
        .expect_err("a reference to another tenant's project is refused");
    assert!(
        probe.as_database_error().and_then(|e| e.code()).as_deref() == Some("23503"),
        "a foreign-key violation, like a missing row: {probe}"
    );
    drop(tx);
    // Without a tenant: nothing.
    let none: i64 = sqlx::query_scalar("SELECT count(*) FROM projects").fetch_one(&mut conn).await.expect("count");
    assert_eq!(none, 0);
    // A's project is untouched, and the registry is the app role's to read, never to write.
    let mut tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin as A");
    let (name, budget, tags): (String, String, Vec<String>) =
        sqlx::query_as("SELECT name, budget::text, tags FROM projects WHERE id = $1")
            .bind(project)
            .fetch_one(tx.conn())
            .await
            .expect("A's project");
    assert_eq!((name.as_str(), budget.as_str(), tags.len()), ("Alpha's", "1234.50", 2));
    let registry: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rowguard_adopted_tables").fetch_one(tx.conn()).await.expect("read");
    assert_eq!(registry, 2);
    let write = sqlx::query("UPDATE rowguard_adopted_tables SET write_roles = '{auditor}'").execute(tx.conn()).await;
    assert!(write.expect_err("no write").to_string().contains("permission denied"));
}

#[tokio::test]
async fn the_audit_log_records_adopted_table_changes_without_their_secrets() {
    let (app, _dir) = app_with_operator_tables().await;
    adopt_both(&app).await;
    let a = app.create_tenant("alpha").await;
    let mut conn = app.app_connection().await;
    let project = insert_project(&mut conn, a.id, "Alpha's", "tok-secret-1").await;
    let mut tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin");
    sqlx::query("UPDATE projects SET name = 'Renamed', secret_token = 'tok-secret-2' WHERE id = $1")
        .bind(project)
        .execute(tx.conn())
        .await
        .expect("update");
    tx.commit().await.expect("commit");

    let mut tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin");
    let events: Vec<(String, Option<String>, Value)> = sqlx::query_as(
        "SELECT action, resource_id, details FROM audit_events WHERE resource_type = 'projects' ORDER BY seq",
    )
    .fetch_all(tx.conn())
    .await
    .expect("events");
    let id = project.to_string();
    assert_eq!(
        events.iter().map(|(action, rid, _)| (action.as_str(), rid.as_deref())).collect::<Vec<_>>(),
        vec![("projects.create", Some(id.as_str())), ("projects.update", Some(id.as_str()))]
    );
    let created = &events[0].2["after"];
    assert_eq!(created["name"], "Alpha's");
    assert_eq!(created["budget"], 1234.50);
    assert_eq!(created["tags"], json!(["a", "b"]));
    assert!(created.get("secret_token").is_none() && created.get("ApiToken").is_none(), "{created}");
    assert_eq!(events[1].2, json!({"before": {"name": "Alpha's"}, "after": {"name": "Renamed"}}));
    let text = serde_json::to_string(&events).expect("json");
    assert!(!text.contains("tok-secret") && !text.contains("api-secret-value"), "{text}");
    // The task insert is recorded under its own table's name.
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'tasks.create'")
        .fetch_one(tx.conn())
        .await
        .expect("count");
    assert_eq!(tasks, 1);
}

#[tokio::test]
async fn export_import_and_purge_carry_adopted_tables() {
    let (app, _dir) = app_with_operator_tables().await;
    adopt_both(&app).await;
    let a = app.create_tenant("alpha").await;
    let b = app.create_tenant("bravo").await;
    let mut conn = app.app_connection().await;
    let project = insert_project(&mut conn, a.id, "Alpha's", "tok-a").await;
    insert_project(&mut conn, b.id, "Bravo's", "tok-b").await;

    let mut platform = PlatformConn::connect(&app.superuser_url()).await.expect("platform");
    let mut file = Vec::new();
    let header = transfer::export(&mut platform, &Slug::parse("alpha").expect("slug"), &mut file, &mut |_| {})
        .await
        .expect("export");
    assert_eq!((header.tables.get("projects"), header.tables.get("tasks")), (Some(&1), Some(&1)));
    assert!(!String::from_utf8_lossy(&file).contains("Bravo's"));
    // As if the export were imported into another database, whose sequences start afresh.
    let mut fresh = app.superuser_connection().await;
    fresh
        .execute(
            "SELECT setval(pg_get_serial_sequence('projects', 'id'), 1, false);
             SELECT setval(pg_get_serial_sequence('tasks', 'id'), 1, false)",
        )
        .await
        .expect("restart the sequences");
    let (copy, counts) =
        transfer::import(&mut platform, file.as_slice(), &Slug::parse("alpha-copy").expect("slug"), &mut |_| {})
            .await
            .expect("import (GENERATED ALWAYS ids kept)");
    assert_eq!((counts.get("projects"), counts.get("tasks")), (Some(&1), Some(&1)));
    let mut tx = TenantTx::begin_on(&mut conn, copy).await.expect("begin as the copy");
    let row: (i64, String, String, Value) = sqlx::query_as(
        "SELECT p.id, p.name, p.budget::text, p.settings FROM projects p
           JOIN tasks t ON t.tenant_id = p.tenant_id AND t.project_id = p.id",
    )
    .fetch_one(tx.conn())
    .await
    .expect("the copy's project and task");
    assert_eq!(row, (project, "Alpha's".to_string(), "1234.50".to_string(), json!({"color": "green"})));
    // The import moved the sequences past the ids it brought: the copy's next rows do not
    // collide with its imported ones.
    let next: i64 = sqlx::query_scalar("INSERT INTO projects (tenant_id, name) VALUES ($1, 'next') RETURNING id")
        .bind(copy)
        .fetch_one(tx.conn())
        .await
        .expect("a new project after the import");
    assert!(next > project, "{next} after imported {project}");
    drop(tx);
    // A file whose ids sit past half a shared sequence's range is refused, changing nothing:
    // importing it would soon stop every tenant's inserts.
    let text = String::from_utf8(file.clone()).expect("utf-8");
    let planted: String = text
        .lines()
        .filter(|l| !l.starts_with(r#"{"table":"tasks""#))
        .map(|l| {
            let l = l.replace(r#""tasks":1"#, r#""tasks":0"#);
            if l.starts_with(r#"{"table":"projects""#) {
                l.replace(&format!(r#""id":{project},"#), r#""id":9223372036854775000,"#)
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(planted.contains("9223372036854775000"), "the id was planted");
    let refused =
        transfer::import(&mut platform, planted.as_bytes(), &Slug::parse("alpha-planted").expect("slug"), &mut |_| {})
            .await;
    let message = refused.expect_err("refused").to_string();
    assert!(message.contains("past half") && message.contains("projects.id"), "{message}");

    let purged = platform.delete_tenant(&Slug::parse("alpha").expect("slug")).await.expect("delete alpha");
    let deleted = |table: &str| purged.iter().find(|(t, _)| t == table).map(|(_, n)| *n);
    assert_eq!((deleted("public.projects"), deleted("public.tasks")), (Some(1), Some(1)), "{purged:?}");
    let mut su = app.superuser_connection().await;
    let left: Vec<(String, i64)> = sqlx::query_as(
        "SELECT 'projects', count(*) FROM projects WHERE tenant_id = $1
         UNION ALL SELECT 'tasks', count(*) FROM tasks WHERE tenant_id = $1",
    )
    .bind(a.id)
    .fetch_all(&mut su)
    .await
    .expect("left");
    assert_eq!(left, vec![("projects".to_string(), 0), ("tasks".to_string(), 0)]);
    let others: i64 = sqlx::query_scalar("SELECT count(*) FROM projects").fetch_one(&mut su).await.expect("count");
    assert_eq!(others, 2, "bravo's and the copy's projects stay");
}
