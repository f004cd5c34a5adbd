//! Proofs and signed heads checked by the verifier in mod.rs: every event included and old heads
//! consistent with new ones, the tree hidden from other tenants, operators' reads, the published key.

use axum::http::{Method, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sqlx::Connection;

use super::{
    all_events, create_contacts, hashes, head_of_size, leaf_hash, open_checkpoint, unhex, verify_consistency,
    verify_inclusion,
};
use crate::support::spawn_app;

// ---- Tests ----

#[tokio::test]
async fn every_event_is_provably_in_the_signed_tree_and_old_heads_are_consistent_with_new_ones() {
    let app = spawn_app().await;
    let t = app.create_tenant("merkle").await;
    let token = app.owner_token(&t).await;
    create_contacts(&app, &token, "merkle", 12).await;
    let events = all_events(&app, &token, "merkle").await;
    let first = head_of_size(&app, &token, "merkle", events.len() as u64).await;
    let vkey = first["verifier_key"].as_str().expect("verifier key");
    let (origin, size, root) = open_checkpoint(first["note"].as_str().expect("note"), vkey);
    assert_eq!(origin, first["origin"]);
    assert!(origin.ends_with(&t.id.to_string()), "the origin names the tenant's log: {origin}");
    assert_eq!(size, events.len() as u64);
    assert_eq!(hex::encode(root), first["root_hash"]);

    // Every event: its leaf as the documentation defines it, its path to the signed root.
    for e in &events {
        let id = e["id"].as_str().expect("id");
        let p = app.call_as(&token, "merkle", Method::GET, &format!("/v1/audit-events/{id}/proof"), None).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        let leaf = leaf_hash(&app, &t, e).await;
        assert_eq!(hex::encode(leaf), p.body["leaf_hash"], "the leaf of {e}");
        let index = p.body["leaf_index"].as_u64().expect("index");
        assert!(verify_inclusion(index, size, leaf, &hashes(&p.body["audit_path"]), root), "inclusion of {e}");
    }

    // The export carries every sealed event's leaf, and names the signed head it was cut at.
    let request = axum::http::Request::get("/v1/audit-events/export")
        .header("x-tenant", "merkle")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .expect("request");
    let answer = tower::ServiceExt::oneshot(app.router.clone(), request).await.expect("answer");
    assert_eq!(answer.status(), StatusCode::OK);
    let size_header = answer.headers().get("audit-tree-size").and_then(|v| v.to_str().ok()).map(str::to_string);
    let root_header = answer.headers().get("audit-tree-root").and_then(|v| v.to_str().ok()).map(str::to_string);
    assert!(size_header.as_deref().is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= size)), "{size_header:?}");
    assert_eq!(root_header.map(|r| r.len()), Some(64));
    let body = http_body_util::BodyExt::collect(answer.into_body()).await.expect("body").to_bytes();
    let exported: Vec<Value> =
        String::from_utf8_lossy(&body).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(exported.len(), events.len());
    for e in &exported {
        let leaf = leaf_hash(&app, &t, e).await;
        assert_eq!(e["leaf_hash"], hex::encode(leaf), "the exported leaf of {e}");
        assert!(e["leaf_index"].as_u64().is_some_and(|i| i < size));
    }

    // The log grows; the old head is consistent with the new one.
    create_contacts(&app, &token, "merkle", 9).await;
    let events = all_events(&app, &token, "merkle").await;
    let second = head_of_size(&app, &token, "merkle", events.len() as u64).await;
    let (_, size2, root2) = open_checkpoint(second["note"].as_str().expect("note"), vkey);
    assert!(size2 > size);
    let c = app
        .call_as(&token, "merkle", Method::GET, &format!("/v1/audit-log/consistency?from={size}&to={size2}"), None)
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    let proof = hashes(&c.body["proof"]);
    assert!(verify_consistency(size, size2, root, root2, &proof), "consistency {size} -> {size2}");
    // Every smaller size too, against roots the verifier gets from inclusion-checked proofs.
    for from in 1..size2 {
        let c = app
            .call_as(&token, "merkle", Method::GET, &format!("/v1/audit-log/consistency?from={from}&to={size2}"), None)
            .await;
        assert_eq!(c.status, StatusCode::OK, "{}", c.body);
        assert!(
            verify_consistency(from, size2, unhex(&c.body["from_root"]), root2, &hashes(&c.body["proof"])),
            "consistency {from} -> {size2}"
        );
    }
    // A proof against the old signed size still verifies against the old root.
    let e = &events[events.len() - 1];
    let id = e["id"].as_str().expect("id");
    let p = app
        .call_as(&token, "merkle", Method::GET, &format!("/v1/audit-events/{id}/proof?tree_size={size}"), None)
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(verify_inclusion(
        p.body["leaf_index"].as_u64().expect("index"),
        size,
        unhex(&p.body["leaf_hash"]),
        &hashes(&p.body["audit_path"]),
        root
    ));

    // Bad sizes are a 400 naming the bounds, never a 500.
    for q in ["from=0", &format!("from={}", size2 + 1), &format!("from=2&to={}", size2 + 5), "from=x"] {
        let r = app.call_as(&token, "merkle", Method::GET, &format!("/v1/audit-log/consistency?{q}"), None).await;
        r.assert_problem(StatusCode::BAD_REQUEST, "invalid_query");
    }
    let r = app
        .call_as(&token, "merkle", Method::GET, &format!("/v1/audit-events/{id}/proof?tree_size={}", size2 + 1), None)
        .await;
    r.assert_problem(StatusCode::BAD_REQUEST, "invalid_query");
}

#[tokio::test]
async fn another_tenant_sees_neither_the_tree_nor_the_proofs() {
    let app = spawn_app().await;
    let a = app.create_tenant("treea").await;
    let b = app.create_tenant("treeb").await;
    let (ta, tb) = (app.owner_token(&a).await, app.owner_token(&b).await);
    create_contacts(&app, &ta, "treea", 3).await;
    let events = all_events(&app, &ta, "treea").await;
    head_of_size(&app, &ta, "treea", events.len() as u64).await;
    let id = events[0]["id"].as_str().expect("id");
    let theirs = app.call_as(&tb, "treeb", Method::GET, &format!("/v1/audit-events/{id}/proof"), None).await;
    theirs.assert_problem(StatusCode::NOT_FOUND, "not_found");
    let missing =
        app.call_as(&tb, "treeb", Method::GET, &format!("/v1/audit-events/{}/proof", uuid::Uuid::now_v7()), None).await;
    assert_eq!(theirs.body["detail"], missing.body["detail"], "another tenant's event looks like a missing one");
    let b_events = all_events(&app, &tb, "treeb").await;
    let b_head = head_of_size(&app, &tb, "treeb", b_events.len() as u64).await;
    assert!(b_head["origin"].as_str().expect("origin").ends_with(&b.id.to_string()));

    // As SQL run by the app role: B's transaction sees none of A's tree, and cannot write one.
    let mut conn = app.app_connection().await;
    let mut tx = rowguard::db::TenantTx::begin_on(&mut conn, b.id).await.expect("tx");
    for table in ["audit_tree_nodes", "audit_tree_leaves", "audit_tree_state", "audit_tree_heads"] {
        let theirs: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table} WHERE tenant_id = $1")))
                .bind(a.id)
                .fetch_one(tx.conn())
                .await
                .expect("count");
        assert_eq!(theirs, 0, "{table}: B reads none of A's rows");
    }
    let forged = sqlx::query("INSERT INTO audit_tree_nodes (tenant_id, level, idx, hash) VALUES ($1, 30, 0, $2)")
        .bind(b.id)
        .bind(vec![0u8; 32])
        .execute(tx.conn())
        .await;
    assert!(forged.is_err(), "the app role cannot write tree nodes, even its own tenant's");
    drop(tx);
    // The sealer's queue has no RLS (ids only, read across tenants by the audit role's
    // definers): the app role may not touch it at all.
    for statement in ["SELECT count(*) FROM audit_unsealed", "DELETE FROM audit_unsealed"] {
        let err = sqlx::query(statement).execute(&mut conn).await.expect_err(statement);
        assert!(err.to_string().contains("permission denied"), "{statement}: {err}");
    }
    conn.close().await.expect("close");
}

#[tokio::test]
async fn operators_read_any_tenants_head_and_proofs_through_the_platform_api() {
    let app = spawn_app().await;
    let t = app.create_tenant("opsview").await;
    let token = app.owner_token(&t).await;
    create_contacts(&app, &token, "opsview", 3).await;
    let events = all_events(&app, &token, "opsview").await;
    let head = head_of_size(&app, &token, "opsview", events.len() as u64).await;
    let op = crate::support::create_operator(&app, "ops@audit-tree.test").await;
    let body = json!({"email": op.email, "password": op.password});
    let login = app.call(Method::POST, "/platform/v1/auth/login", &[], Some(body)).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let op_token = login.body["access_token"].as_str().expect("operator token").to_string();
    let auth = format!("Bearer {op_token}");
    let call = |path: String| {
        let (app, auth) = (&app, auth.clone());
        async move { app.call(Method::GET, &path, &[("authorization", &auth)], None).await }
    };
    let theirs = call("/platform/v1/tenants/opsview/audit-log/head".into()).await;
    assert_eq!(theirs.status, StatusCode::OK, "{}", theirs.body);
    assert_eq!((&theirs.body["tree_size"], &theirs.body["note"]), (&head["tree_size"], &head["note"]));
    let (_, size, root) =
        open_checkpoint(theirs.body["note"].as_str().expect("note"), head["verifier_key"].as_str().expect("vkey"));
    let e = &events[0];
    let p = call(format!("/platform/v1/tenants/opsview/audit-events/{}/proof", e["id"].as_str().expect("id"))).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(verify_inclusion(
        p.body["leaf_index"].as_u64().expect("index"),
        size,
        leaf_hash(&app, &t, e).await,
        &hashes(&p.body["audit_path"]),
        root
    ));
    let c = call(format!("/platform/v1/tenants/opsview/audit-log/consistency?from=1&to={size}")).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    assert!(verify_consistency(1, size, unhex(&c.body["from_root"]), root, &hashes(&c.body["proof"])));
    call("/platform/v1/tenants/nosuch/audit-log/head".into()).await.assert_problem(StatusCode::NOT_FOUND, "not_found");
    // A tenant's token is not an operator's.
    let r = app
        .call(
            Method::GET,
            "/platform/v1/tenants/opsview/audit-log/head",
            &[("authorization", &format!("Bearer {token}"))],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
}

/// The key is published where anyone can fetch it once and keep it: no token, on the bare host
/// and on a tenant's, as a JWK and as a C2SP verifier key naming the same bytes. A head checked
/// with the pinned key (not the one served beside the head) verifies.
#[tokio::test]
async fn the_audit_key_is_published_without_a_token_and_checks_the_signed_heads() {
    let app = spawn_app().await;
    let t = app.create_tenant("pinned").await;
    let token = app.owner_token(&t).await;
    create_contacts(&app, &token, "pinned", 3).await;

    let bare = app.call(Method::GET, "/.well-known/audit-keys.json", &[], None).await;
    assert_eq!(bare.status, StatusCode::OK, "{}", bare.body);
    assert!(bare.headers.get("cache-control").is_some_and(|v| v.to_str().is_ok_and(|v| v.starts_with("public"))));
    let on_tenant = app.call(Method::GET, "/.well-known/audit-keys.json", &[("x-tenant", "pinned")], None).await;
    assert_eq!(on_tenant.status, StatusCode::OK);
    assert_eq!(on_tenant.body, bare.body, "one key for every tenant's log");

    let jwk = &bare.body["keys"][0];
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str(), jwk["alg"].as_str()),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(jwk["x"].as_str().expect("x")).expect("base64url");
    let vkey = bare.body["verifier_key"].as_str().expect("verifier key");
    // `<name>+<key id>+<base64 key>`: the name holds no '+', the base64 may.
    let vkey_bytes = STANDARD.decode(vkey.splitn(3, '+').nth(2).expect("key")).expect("base64");
    assert_eq!(vkey_bytes[0], 1);
    assert_eq!(&vkey_bytes[1..], &x[..], "the JWK and the verifier key are the same key");
    assert!(vkey.starts_with(&format!("{}+", bare.body["log_name"].as_str().expect("log name"))));

    let events = all_events(&app, &token, "pinned").await;
    let head = head_of_size(&app, &token, "pinned", events.len() as u64).await;
    let (origin, size, root) = open_checkpoint(head["note"].as_str().expect("note"), vkey);
    assert_eq!(origin, format!("{}/{}", bare.body["log_name"].as_str().expect("log name"), t.id));
    assert_eq!(size, events.len() as u64);
    assert_eq!(hex::encode(root), head["root_hash"]);
}
