//! Isolation as SQL run by the app role: what RLS itself guarantees, whatever the service does.

use rowguard::db::TenantTx;
use rowguard::domain::TenantId;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, Row};

use crate::support::{TestApp, TestTenant, spawn_app};

async fn insert_contact(conn: &mut PgConnection, tenant: TenantId, name: &str) {
    let mut tx = TenantTx::begin_on(conn, tenant).await.expect("begin");
    sqlx::query("INSERT INTO contacts (tenant_id, id, name, email) VALUES ($1, $2, $3, 'x@example.com')")
        .bind(tenant)
        .bind(uuid::Uuid::now_v7())
        .bind(name)
        .execute(tx.conn())
        .await
        .expect("insert own contact");
    tx.commit().await.expect("commit");
}

async fn two_tenants_with_contacts(app: &TestApp) -> (TestTenant, TestTenant, PgConnection) {
    let a = app.create_tenant("alpha").await;
    let b = app.create_tenant("bravo").await;
    let mut conn = app.app_connection().await;
    for i in 0..3 {
        insert_contact(&mut conn, a.id, &format!("a{i}")).await;
    }
    insert_contact(&mut conn, b.id, "b0").await;
    (a, b, conn)
}

async fn count(conn: &mut PgConnection, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(conn).await.expect("count")
}

#[tokio::test]
async fn without_a_tenant_the_app_role_sees_nothing_and_inserts_nothing() {
    let app = spawn_app().await;
    let (a, _b, mut conn) = two_tenants_with_contacts(&app).await;
    // Never set, in and out of a transaction.
    assert_eq!(count(&mut conn, "SELECT count(*) FROM contacts").await, 0);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM users").await, 0);
    let mut tx = conn.begin().await.expect("begin");
    assert_eq!(count(&mut tx, "SELECT count(*) FROM contacts").await, 0);
    let refused = sqlx::query("INSERT INTO contacts (tenant_id, id, name, email) VALUES ($1, $2, 'x', 'x@y.co')")
        .bind(a.id)
        .bind(uuid::Uuid::now_v7())
        .execute(&mut *tx)
        .await;
    let err = refused.expect_err("insert without a tenant must be refused");
    assert!(err.to_string().contains("row-level security"), "{err}");
    drop(tx);
    // An empty setting (what an expired SET LOCAL leaves behind) fails closed, without an error.
    let mut tx = conn.begin_with("BEGIN; SET LOCAL app.tenant_id = ''").await.expect("begin");
    assert_eq!(count(&mut tx, "SELECT count(*) FROM contacts").await, 0);
}

#[tokio::test]
async fn with_tenant_a_set_only_a_rows_are_visible() {
    let app = spawn_app().await;
    let (a, b, mut conn) = two_tenants_with_contacts(&app).await;
    let mut tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin");
    // No tenant filter in the query: RLS alone decides.
    let tenants: Vec<TenantId> =
        sqlx::query_scalar("SELECT DISTINCT tenant_id FROM contacts").fetch_all(tx.conn()).await.expect("select");
    assert_eq!(tenants, vec![a.id]);
    assert_eq!(count(tx.conn(), "SELECT count(*) FROM contacts").await, 3);
    // Even asking for B's rows by name returns none.
    let theirs: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts WHERE tenant_id = $1")
        .bind(b.id)
        .fetch_one(tx.conn())
        .await
        .expect("count");
    assert_eq!(theirs, 0);
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(tx.conn()).await.expect("users");
    assert_eq!(users, 1, "only A's owner");
}

#[tokio::test]
async fn with_check_refuses_writing_a_row_for_another_tenant() {
    let app = spawn_app().await;
    let (a, b, mut conn) = two_tenants_with_contacts(&app).await;
    let mut tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin");
    let err = sqlx::query("INSERT INTO contacts (tenant_id, id, name, email) VALUES ($1, $2, 'forged', 'f@x.co')")
        .bind(b.id)
        .bind(uuid::Uuid::now_v7())
        .execute(tx.conn())
        .await
        .expect_err("WITH CHECK must refuse B's tenant_id");
    assert!(err.to_string().contains("row-level security"), "{err}");
}

#[tokio::test]
async fn an_update_cannot_move_a_row_to_another_tenant_nor_touch_theirs() {
    let app = spawn_app().await;
    let (a, b, mut conn) = two_tenants_with_contacts(&app).await;
    {
        let mut tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin");
        let err = sqlx::query("UPDATE contacts SET tenant_id = $1")
            .bind(b.id)
            .execute(tx.conn())
            .await
            .expect_err("moving rows to B must be refused");
        // On Citus the distribution column cannot change at all, which refuses it first.
        let refused = err.to_string();
        assert!(
            refused.contains("row-level security") || refused.contains("modifying the partition value"),
            "{refused}"
        );
    }
    let mut tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin");
    let touched = sqlx::query("UPDATE contacts SET name = 'hijacked' WHERE tenant_id = $1")
        .bind(b.id)
        .execute(tx.conn())
        .await
        .expect("update")
        .rows_affected();
    let deleted =
        sqlx::query("DELETE FROM contacts WHERE tenant_id = $1").bind(b.id).execute(tx.conn()).await.expect("delete");
    assert_eq!((touched, deleted.rows_affected()), (0, 0));
    tx.commit().await.expect("commit");
    let mut tx = TenantTx::begin_on(&mut conn, b.id).await.expect("begin");
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM contacts").fetch_all(tx.conn()).await.expect("names");
    assert_eq!(names, vec!["b0".to_string()]);
}

#[tokio::test]
async fn the_setting_is_gone_after_commit_and_after_rollback() {
    let app = spawn_app().await;
    let (a, _b, mut conn) = two_tenants_with_contacts(&app).await;
    let setting = "SELECT current_setting('app.tenant_id', true)";
    let tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin");
    tx.commit().await.expect("commit");
    let after_commit: Option<String> = sqlx::query_scalar(setting).fetch_one(&mut conn).await.expect("read");
    assert_eq!(after_commit.as_deref().unwrap_or(""), "");
    assert_eq!(count(&mut conn, "SELECT count(*) FROM contacts").await, 0);
    {
        let mut tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin");
        assert_eq!(count(tx.conn(), "SELECT count(*) FROM contacts").await, 3);
    } // dropped: rolled back
    let after_rollback: Option<String> = sqlx::query_scalar(setting).fetch_one(&mut conn).await.expect("read");
    assert_eq!(after_rollback.as_deref().unwrap_or(""), "");
    assert_eq!(count(&mut conn, "SELECT count(*) FROM contacts").await, 0);
}

#[tokio::test]
async fn a_pool_of_one_connection_carries_nothing_between_tenants() {
    let app = spawn_app().await;
    let (a, b, _conn) = two_tenants_with_contacts(&app).await;
    let pool = PgPoolOptions::new().max_connections(1).connect_with(app.app_connect_options()).await.expect("pool");
    for round in 0..6 {
        let (tenant, expected) = if round % 2 == 0 { (a.id, 3) } else { (b.id, 1) };
        let statement = format!("BEGIN; SET LOCAL app.tenant_id = '{}'", tenant.0);
        let mut tx = pool.begin_with(AssertSqlSafe(statement)).await.expect("begin");
        let rows = sqlx::query("SELECT tenant_id FROM contacts").fetch_all(&mut *tx).await.expect("select");
        assert_eq!(rows.len(), expected, "round {round}");
        assert!(rows.iter().all(|r| r.get::<TenantId, _>(0) == tenant));
        if round % 3 == 0 {
            tx.rollback().await.expect("rollback");
        } else {
            tx.commit().await.expect("commit");
        }
        // Between transactions the same connection sees nothing at all.
        let mut conn = pool.acquire().await.expect("acquire");
        let between: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts").fetch_one(&mut *conn).await.expect("c");
        assert_eq!(between, 0, "round {round}");
        conn.execute("SELECT 1").await.expect("ping");
    }
}

/// `read_once` sets the tenant (and user) in the implicit transaction of one message, on a
/// connection from the read pool that is handed back without a check: with a read pool of
/// one connection, neither the tenant nor the user reaches the next read, after a read that
/// succeeded or one that failed, and a failed read leaves nothing that breaks the next one.
#[tokio::test]
async fn a_one_message_read_leaves_nothing_on_the_connection() {
    use rowguard::db::{Database, HotStatement, Literal};
    use rowguard::domain::UserId;
    static PROBE: HotStatement = HotStatement {
        name: "rg_test_probe",
        params: "int",
        sql: "SELECT current_setting('app.tenant_id', true) AS tenant, current_setting('app.user_id', true) AS usr, \
              (SELECT count(*) FROM contacts) / $1 AS visible, pg_backend_pid() AS backend",
    };
    let app = spawn_app().await;
    let (a, b, _conn) = two_tenants_with_contacts(&app).await;
    let db = Database::connect(&app.app_url(), 1, std::slice::from_ref(&PROBE)).await.expect("pools of one");
    let user = UserId(uuid::Uuid::now_v7());
    let probe = |tenant: TenantId, user: Option<UserId>, divisor: i64| {
        let db = db.clone();
        async move {
            let rows = TenantTx::read_once(&db, tenant, user, &PROBE, &[Literal::Int(divisor)]).await?;
            let row = &rows[0];
            // An unset setting reads as NULL on a fresh connection and as '' once it has been
            // set and reset; either way, empty.
            let usr: Option<String> = row.get("usr");
            let seen: (String, String, i64, i32) =
                (row.get("tenant"), usr.unwrap_or_default(), row.get("visible"), row.get("backend"));
            Ok::<_, sqlx::Error>(seen)
        }
    };

    let (tenant, usr, visible, first) = probe(a.id, Some(user), 1).await.expect("read as A");
    assert_eq!((tenant, usr, visible), (a.id.to_string(), user.0.to_string(), 3), "the read ran as A's user");
    let (tenant, usr, visible, second) = probe(b.id, None, 1).await.expect("read as B");
    assert_eq!(second, first, "the read pool reused its one connection");
    assert_eq!((tenant, usr, visible), (b.id.to_string(), String::new(), 1), "nothing of A's read was left");

    assert!(probe(a.id, Some(user), 0).await.is_err(), "division by zero must fail the read");
    let (tenant, usr, visible, _) = probe(b.id, None, 1).await.expect("a read after a failed one");
    assert_eq!((tenant, usr, visible), (b.id.to_string(), String::new(), 1), "nothing of the failed read was left");
}

/// The one pool hands a connection back without a round trip of its own, so what a dropped
/// tenant transaction leaves must never reach the next holder: with a pool of ONE connection,
/// A's transaction dropped without commit (a write in it, and one dropped halfway through a
/// statement) is rolled back before B gets the connection, B's transaction is B's, and B's
/// COMMIT does not commit A's write.
#[tokio::test]
async fn a_dropped_tenant_transaction_leaves_nothing_to_the_next_on_the_same_connection() {
    use rowguard::db::{Actor, Database, TenantTx};
    let app = spawn_app().await;
    let a = app.create_tenant("drop-a").await;
    let b = app.create_tenant("drop-b").await;
    let db = Database::connect(&app.app_url(), 1, &[]).await.expect("a pool of one");
    let acting = Actor {
        user: Some(rowguard::domain::UserId::new_v7()),
        role: Some(rowguard::domain::Role::Owner),
        request_id: Some(uuid::Uuid::now_v7()),
        ..Actor::default()
    };
    let mut tx = TenantTx::begin(&db, a.id, &acting).await.expect("begin as A, someone acting");
    let pid = backend_pid(&mut tx).await;
    sqlx::query(
        "INSERT INTO contacts (tenant_id, id, name, email) VALUES ($1, gen_random_uuid(), 'Dropped', 'x@a.test')",
    )
    .bind(a.id)
    .execute(tx.conn())
    .await
    .expect("a write");
    drop(tx);
    // Dropped halfway through a statement: a sleep cut off after 50 ms.
    let mut tx = TenantTx::begin(&db, a.id, &Actor::default()).await.expect("begin as A again");
    assert_eq!(backend_pid(&mut tx).await, pid, "the same connection, handed back after the rollback");
    let cut = tokio::time::timeout(
        std::time::Duration::from_millis(50),
        sqlx::query("SELECT pg_sleep(0.5)").execute(tx.conn()),
    )
    .await;
    assert!(cut.is_err(), "the statement was cut off");
    drop(tx);
    let mut tx = TenantTx::begin(&db, b.id, &Actor::default()).await.expect("begin as B");
    assert_eq!(backend_pid(&mut tx).await, pid, "reused once the cut-off statement was read and rolled back");
    let (tenant, user, role, request): (String, String, String, String) = sqlx::query_as(
        "SELECT current_setting('app.tenant_id'), coalesce(current_setting('app.user_id', true), ''),
                coalesce(current_setting('app.role', true), ''), coalesce(current_setting('app.request_id', true), '')",
    )
    .fetch_one(tx.conn())
    .await
    .expect("B's settings");
    assert_eq!(tenant, b.id.0.to_string());
    assert_eq!((user.as_str(), role.as_str(), request.as_str()), ("", "", ""), "nothing of A's actor");
    tx.commit().await.expect("commit");
    let mut su = app.superuser_connection().await;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts WHERE name = 'Dropped'")
        .fetch_one(&mut su)
        .await
        .expect("count");
    assert_eq!(left, 0, "A's write was rolled back, not committed by B's COMMIT");
    db.close().await;
}

async fn backend_pid(tx: &mut TenantTx<'static>) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(tx.conn()).await.expect("pid")
}
