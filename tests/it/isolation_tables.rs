//! Isolation of the tables issue 3 added (refresh_tokens, organizations, deals): as SQL run by
//! the app role, table by table, and over HTTP — including the foreign-key probe: tenant B
//! naming tenant A's ids gets exactly the answer a missing id gets, and nothing is created.

use axum::http::{Method, StatusCode};
use rowguard::db::TenantTx;
use rowguard::domain::TenantId;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

use crate::support::{TestApp, spawn_app};

const TABLES: [&str; 3] = ["refresh_tokens", "organizations", "deals"];

/// Ids of one tenant's rows that other rows may reference.
#[derive(Clone, Copy)]
struct Refs {
    user: Uuid,
    contact: Uuid,
    organization: Uuid,
}

/// Insert one row into `table` for `tenant`, referencing `refs`.
async fn insert(conn: &mut PgConnection, table: &str, tenant: TenantId, refs: Refs) -> Result<(), sqlx::Error> {
    let id = Uuid::now_v7();
    let query = match table {
        "refresh_tokens" => sqlx::query(
            "INSERT INTO refresh_tokens (tenant_id, id, user_id, family_id, token_hash, expires_at)
             VALUES ($1, $2, $3, $2, sha256($2::text::bytea), now() + interval '1 day')",
        )
        .bind(tenant)
        .bind(id)
        .bind(refs.user),
        "organizations" => {
            sqlx::query("INSERT INTO organizations (tenant_id, id, name) VALUES ($1, $2, 'Org')").bind(tenant).bind(id)
        }
        "deals" => sqlx::query(
            "INSERT INTO deals (tenant_id, id, title, contact_id, organization_id, amount, currency)
             VALUES ($1, $2, 'Deal', $3, $4, 10, 'EUR')",
        )
        .bind(tenant)
        .bind(id)
        .bind(refs.contact)
        .bind(refs.organization),
        other => panic!("no insert for {other}"),
    };
    query.execute(conn).await.map(|_| ())
}

/// One row in every table for `tenant`, as the app role in a tenant transaction.
async fn seed(conn: &mut PgConnection, tenant: TenantId) -> Refs {
    let mut tx = TenantTx::begin_on(conn, tenant).await.expect("begin");
    let user: Uuid = sqlx::query_scalar("SELECT id FROM users").fetch_one(tx.conn()).await.expect("owner");
    let (contact, organization) = (Uuid::now_v7(), Uuid::now_v7());
    sqlx::query("INSERT INTO organizations (tenant_id, id, name) VALUES ($1, $2, 'Org')")
        .bind(tenant)
        .bind(organization)
        .execute(tx.conn())
        .await
        .expect("organization");
    sqlx::query(
        "INSERT INTO contacts (tenant_id, id, name, email, organization_id) VALUES ($1, $2, 'C', 'c@x.io', $3)",
    )
    .bind(tenant)
    .bind(contact)
    .bind(organization)
    .execute(tx.conn())
    .await
    .expect("contact");
    let refs = Refs { user, contact, organization };
    for table in TABLES {
        if table != "organizations" {
            insert(tx.conn(), table, tenant, refs).await.expect(table);
        }
    }
    tx.commit().await.expect("commit");
    refs
}

async fn count(conn: &mut PgConnection, table: &str, filter: &str) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table} {filter}")))
        .fetch_one(conn)
        .await
        .expect("count")
}

fn refused_by_rls(result: Result<(), sqlx::Error>, what: &str) {
    let err = result.expect_err(what).to_string();
    // On Citus an UPDATE of tenant_id (the distribution column) is refused before RLS sees it.
    assert!(err.contains("row-level security") || err.contains("modifying the partition value"), "{what}: {err}");
}

#[tokio::test]
async fn each_new_table_fails_closed_and_shows_a_tenant_only_its_rows() {
    let app = spawn_app().await;
    let (a, b) = (app.create_tenant("alpha").await, app.create_tenant("bravo").await);
    let mut conn = app.app_connection().await;
    let a_refs = seed(&mut conn, a.id).await;
    seed(&mut conn, b.id).await;
    for table in TABLES {
        // No tenant set: nothing visible, nothing insertable.
        assert_eq!(count(&mut conn, table, "").await, 0, "{table} without a tenant");
        let mut tx = conn.begin().await.expect("begin");
        refused_by_rls(insert(&mut tx, table, a.id, a_refs).await, &format!("{table}: insert without a tenant"));
        drop(tx);

        let mut tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin");
        let tenants: Vec<TenantId> =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT DISTINCT tenant_id FROM {table}")))
                .fetch_all(tx.conn())
                .await
                .expect("tenants");
        assert_eq!(tenants, vec![a.id], "{table}: A sees only A's rows");
        let filter = format!("WHERE tenant_id = '{}'", b.id.0);
        assert_eq!(count(tx.conn(), table, &filter).await, 0, "{table}: B's rows by name");
        let changed = sqlx::query(AssertSqlSafe(format!("UPDATE {table} SET tenant_id = tenant_id {filter}")))
            .execute(tx.conn())
            .await
            .expect("update")
            .rows_affected();
        let deleted = sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} {filter}")))
            .execute(tx.conn())
            .await
            .expect("delete")
            .rows_affected();
        assert_eq!((changed, deleted), (0, 0), "{table}: B's rows cannot be touched");
        drop(tx);

        // WITH CHECK: A cannot write a row for B, nor move its own rows to B.
        let mut tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin");
        refused_by_rls(insert(tx.conn(), table, b.id, a_refs).await, &format!("{table}: insert for B"));
        drop(tx);
        let mut tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin");
        let moved = sqlx::query(AssertSqlSafe(format!("UPDATE {table} SET tenant_id = $1")))
            .bind(b.id)
            .execute(tx.conn())
            .await
            .map(|_| ());
        refused_by_rls(moved, &format!("{table}: moving rows to B"));
    }
    let mut tx = TenantTx::begin_on(&mut conn, b.id).await.expect("begin");
    for table in TABLES {
        assert_eq!(count(tx.conn(), table, "").await, 1, "{table}: B's row is intact");
    }
}

#[tokio::test]
async fn tenant_b_cannot_reference_tenant_a_rows_even_knowing_their_ids() {
    let app = spawn_app().await;
    let (a, b) = (app.create_tenant("alpha").await, app.create_tenant("bravo").await);
    let mut conn = app.app_connection().await;
    let a_refs = seed(&mut conn, a.id).await;
    let b_refs = seed(&mut conn, b.id).await;
    // Each of A's ids in turn, the rest B's own: the composite key (B, A's id) does not exist.
    let probes = [
        ("refresh_tokens", Refs { user: a_refs.user, ..b_refs }),
        ("deals", Refs { contact: a_refs.contact, ..b_refs }),
        ("deals", Refs { organization: a_refs.organization, ..b_refs }),
    ];
    for (table, refs) in probes {
        let mut tx = TenantTx::begin_on(&mut conn, b.id).await.expect("begin");
        let err = insert(tx.conn(), table, b.id, refs).await.expect_err("a reference to A's row must fail");
        let is_fk = matches!(&err, sqlx::Error::Database(db) if db.is_foreign_key_violation());
        assert!(is_fk, "{table}: {err}");
    }
    let mut tx = TenantTx::begin_on(&mut conn, b.id).await.expect("begin");
    let attached =
        sqlx::query("UPDATE contacts SET organization_id = $1").bind(a_refs.organization).execute(tx.conn()).await;
    assert!(matches!(&attached, Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation()), "{attached:?}");
}

struct World {
    app: TestApp,
    alpha_token: String,
    bravo_token: String,
    alpha_contact: String,
    alpha_organization: String,
    alpha_deal: String,
    bravo_contact: String,
}

async fn post(app: &TestApp, token: &str, tenant: &str, path: &str, body: Value) -> String {
    let r = app.call_as(token, tenant, Method::POST, path, Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{path}: {}", r.body);
    r.body["id"].as_str().expect("id").to_string()
}

async fn world() -> World {
    let app = spawn_app().await;
    let (alpha, bravo) = (app.create_tenant("alpha").await, app.create_tenant("bravo").await);
    let (alpha_token, bravo_token) = (app.owner_token(&alpha).await, app.owner_token(&bravo).await);
    let alpha_organization = post(&app, &alpha_token, "alpha", "/v1/organizations", json!({"name": "Acme"})).await;
    let contact = json!({"name": "Ada", "email": "ada@alpha.io", "organization_id": alpha_organization});
    let alpha_contact = post(&app, &alpha_token, "alpha", "/v1/contacts", contact).await;
    let deal = json!({"title": "Big", "contact_id": alpha_contact, "amount": "100.00", "currency": "EUR"});
    let alpha_deal = post(&app, &alpha_token, "alpha", "/v1/deals", deal).await;
    let bravo_contact =
        post(&app, &bravo_token, "bravo", "/v1/contacts", json!({"name": "Bob", "email": "bob@bravo.io"})).await;
    World { app, alpha_token, bravo_token, alpha_contact, alpha_organization, alpha_deal, bravo_contact }
}

#[tokio::test]
async fn tenant_b_cannot_read_change_or_delete_tenant_a_organizations_or_deals() {
    let w = world().await;
    let resources = [
        ("/v1/organizations", &w.alpha_organization, json!({"name": "pwned"})),
        ("/v1/deals", &w.alpha_deal, json!({"stage": "lost"})),
    ];
    for (base, id, patch) in resources {
        let (theirs, missing) = (format!("{base}/{id}"), format!("{base}/{}", Uuid::now_v7()));
        for (method, body) in [(Method::GET, None), (Method::PATCH, Some(patch.clone())), (Method::DELETE, None)] {
            let r = w.app.call_as(&w.bravo_token, "bravo", method.clone(), &theirs, body.clone()).await;
            let nothing = w.app.call_as(&w.bravo_token, "bravo", method.clone(), &missing, body).await;
            r.assert_problem(StatusCode::NOT_FOUND, "not_found");
            assert_eq!(r.body["detail"], nothing.body["detail"], "{method} {base}: exactly like a missing id");
        }
        let list = w.app.call_as(&w.bravo_token, "bravo", Method::GET, base, None).await;
        assert_eq!(list.body["items"], json!([]), "{base}: B's list shows none of A's");
        let still = w.app.call_as(&w.alpha_token, "alpha", Method::GET, &format!("{base}/{id}"), None).await;
        assert_eq!(still.status, StatusCode::OK, "{base}: A's row is intact");
    }
    let filtered = format!("/v1/contacts?organization_id={}", w.alpha_organization);
    let r = w.app.call_as(&w.bravo_token, "bravo", Method::GET, &filtered, None).await;
    assert_eq!(r.body["items"], json!([]));
}

#[tokio::test]
async fn tenant_b_naming_tenant_a_ids_gets_the_answer_of_a_missing_id_and_creates_nothing() {
    let w = world().await;
    let missing = Uuid::now_v7().to_string();
    let deal = |contact: &str, organization: Option<&str>| json!({"title": "Probe", "contact_id": contact, "organization_id": organization, "amount": "1", "currency": "USD"});
    // (what is probed, method, path, body naming A's id, the same body naming a missing id)
    let probes = [
        (
            "deal → A's contact",
            Method::POST,
            "/v1/deals".to_string(),
            deal(&w.alpha_contact, None),
            deal(&missing, None),
        ),
        (
            "deal → A's organization",
            Method::POST,
            "/v1/deals".to_string(),
            deal(&w.bravo_contact, Some(&w.alpha_organization)),
            deal(&w.bravo_contact, Some(&missing)),
        ),
        (
            "contact → A's organization",
            Method::POST,
            "/v1/contacts".to_string(),
            json!({"name": "P", "email": "p@bravo.io", "organization_id": w.alpha_organization}),
            json!({"name": "P", "email": "p@bravo.io", "organization_id": missing}),
        ),
        (
            "contact patched → A's organization",
            Method::PATCH,
            format!("/v1/contacts/{}", w.bravo_contact),
            json!({"organization_id": w.alpha_organization}),
            json!({"organization_id": missing}),
        ),
    ];
    for (what, method, path, theirs, nothing) in probes {
        let r = w.app.call_as(&w.bravo_token, "bravo", method.clone(), &path, Some(theirs)).await;
        let m = w.app.call_as(&w.bravo_token, "bravo", method.clone(), &path, Some(nothing)).await;
        r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_reference");
        m.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_reference");
        assert_eq!((&r.body["title"], &r.body["detail"]), (&m.body["title"], &m.body["detail"]), "{what}");
    }
    // Nothing was created or attached, and A's rows are untouched.
    let deals = w.app.call_as(&w.bravo_token, "bravo", Method::GET, "/v1/deals", None).await;
    assert_eq!(deals.body["items"], json!([]));
    let contacts = w.app.call_as(&w.bravo_token, "bravo", Method::GET, "/v1/contacts", None).await;
    let items = contacts.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{}", contacts.body);
    assert_eq!(items[0]["organization_id"], Value::Null);
    let mut db = w.app.superuser_connection().await;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM deals").fetch_one(&mut db).await.expect("count");
    assert_eq!(total, 1, "only A's own deal exists");
}
