//! The audit log's Merkle tree (sql/V21, issue 18): events sealed after commit by the
//! service's sealer, signed heads, inclusion and consistency proofs — checked here by a
//! verifier written from RFC 9162 and the C2SP note format in this file, not by the code under
//! test — isolation of the tree between tenants, and sealing by two instances at once.

use axum::http::{Method, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Connection;

use crate::support::{TestApp, TestTenant, spawn_app, spawn_app_with};

// ---- An independent verifier (RFC 9162 §2.1, C2SP signed-note) ----

fn h(parts: &[&[u8]]) -> [u8; 32] {
    let mut d = Sha256::new();
    for p in parts {
        d.update(p);
    }
    d.finalize().into()
}

fn unhex(s: &Value) -> [u8; 32] {
    let bytes = hex::decode(s.as_str().expect("hex string")).expect("hex");
    bytes.try_into().expect("32 bytes")
}

/// RFC 9162 §2.1.3.2.
fn verify_inclusion(index: u64, size: u64, leaf: [u8; 32], path: &[[u8; 32]], root: [u8; 32]) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s, mut r) = (index, size - 1, leaf);
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = h(&[&[1], p, &r]);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = h(&[&[1], &r, p]);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == root
}

/// RFC 9162 §2.1.4.2.
fn verify_consistency(
    first: u64,
    second: u64,
    first_root: [u8; 32],
    second_root: [u8; 32],
    proof: &[[u8; 32]],
) -> bool {
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 || first > second {
        return false;
    }
    let mut path = proof.to_vec();
    if first.is_power_of_two() {
        path.insert(0, first_root);
    }
    let Some((start, rest)) = path.split_first() else { return false };
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = h(&[&[1], c, &fr]);
            sr = h(&[&[1], c, &sr]);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = h(&[&[1], &sr, c]);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == first_root && sr == second_root && s == 0
}

/// Open a C2SP signed note with a verifier key `<name>+<hex id>+<base64(0x01 ‖ key)>`; returns
/// (origin, size, root) of the checkpoint it carries.
fn open_checkpoint(note: &str, vkey: &str) -> (String, u64, [u8; 32]) {
    let mut parts = vkey.splitn(3, '+');
    let (name, id, key) = (parts.next().expect("name"), parts.next().expect("key id"), parts.next().expect("key"));
    let key = STANDARD.decode(key).expect("base64 key");
    assert_eq!(key[0], 1, "an Ed25519 key");
    let public: [u8; 32] = key[1..].try_into().expect("32-byte key");
    let mut id_input = name.as_bytes().to_vec();
    id_input.push(b'\n');
    id_input.extend_from_slice(&key);
    let key_id = &h(&[&id_input])[..4];
    assert_eq!(hex::encode(key_id), id, "the key id is the one the name and key give");
    let split = note.find("\n\n").expect("blank line");
    let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
    let line = signatures
        .lines()
        .find(|l| l.starts_with(&format!("\u{2014} {name} ")))
        .expect("a signature line by the log's key");
    let sig = STANDARD.decode(line.rsplit(' ').next().expect("signature")).expect("base64 signature");
    assert_eq!(&sig[..4], key_id);
    let signature = Signature::from_slice(&sig[4..]).expect("signature");
    VerifyingKey::from_bytes(&public)
        .expect("key")
        .verify(text.as_bytes(), &signature)
        .expect("the note's signature verifies");
    let lines: Vec<&str> = text.lines().collect();
    let root: [u8; 32] = STANDARD.decode(lines[2]).expect("base64 root").try_into().expect("32 bytes");
    (lines[0].to_string(), lines[1].parse().expect("size"), root)
}

/// The stored text of an event's details (jsonb's own rendering, which the leaf covers; a
/// JSON parser on the client side would reorder and respace it).
async fn details_text(app: &TestApp, id: &str) -> String {
    let mut su = app.superuser_connection().await;
    let text: String = sqlx::query_scalar("SELECT details::text FROM audit_events WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&mut su)
        .await
        .expect("details");
    su.close().await.expect("close");
    text
}

/// The leaf hash of an event as the documentation defines the leaf bytes, rebuilt from the
/// API's JSON and the details' stored text.
async fn leaf_hash(app: &TestApp, tenant: &TestTenant, e: &Value) -> [u8; 32] {
    let details = details_text(app, e["id"].as_str().expect("id")).await;
    let text = |k: &str| e[k].as_str().unwrap_or("").to_string();
    let micros = chrono::DateTime::parse_from_rfc3339(e["occurred_at"].as_str().expect("time"))
        .expect("RFC 3339")
        .timestamp_micros();
    let fields = [
        "rowguard.audit/2".to_string(),
        tenant.id.to_string(),
        e["seq"].as_i64().expect("seq").to_string(),
        text("id"),
        micros.to_string(),
        text("actor_type"),
        text("actor_id"),
        text("actor_role"),
        text("client_ip"),
        text("user_agent"),
        text("request_id"),
        text("action"),
        text("resource_type"),
        text("resource_id"),
        text("outcome"),
        details,
    ];
    let encoded: Vec<String> = fields.iter().map(|f| format!("{}:{f}", f.len())).collect();
    h(&[&[0], encoded.join("|").as_bytes()])
}

// ---- Helpers ----

async fn all_events(app: &TestApp, token: &str, tenant: &str) -> Vec<Value> {
    let r = app.call_as(token, tenant, Method::GET, "/v1/audit-events?limit=500", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["items"].as_array().cloned().unwrap_or_default()
}

/// Wait (up to 20 s) until the signed head covers `size` events.
async fn head_of_size(app: &TestApp, token: &str, tenant: &str, size: u64) -> Value {
    for _ in 0..200 {
        let r = app.call_as(token, tenant, Method::GET, "/v1/audit-log/head", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        if r.body["tree_size"].as_u64() == Some(size) {
            return r.body;
        }
        assert!(r.body["tree_size"].as_u64().unwrap_or(0) <= size, "more leaves than events: {}", r.body);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the tree of {tenant} never reached {size} leaves");
}

async fn create_contacts(app: &TestApp, token: &str, tenant: &str, n: usize) {
    for i in 0..n {
        let body = json!({"name": format!("C{i}"), "email": format!("c{i}@{tenant}.test")});
        let r = app.call_as(token, tenant, Method::POST, "/v1/contacts", Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
}

fn hashes(v: &Value) -> Vec<[u8; 32]> {
    v.as_array().expect("array").iter().map(unhex).collect()
}

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
async fn hundreds_of_parallel_writes_in_one_tenant_are_all_sealed_by_two_instances() {
    // Hundreds of writes and proofs: more than the free plan's quota allows.
    let app = spawn_app_with(|c| c.rate_limits = false).await;
    let second = app.another_instance_with(|c| c.rate_limits = false).await;
    let t = app.create_tenant("busy").await;
    let token = app.owner_token(&t).await;
    let mut tasks = Vec::new();
    // As many at once as the two instances' pools hold; the rest queue here, not in the pool.
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(4));
    for i in 0..200 {
        let (router, token) = (if i % 2 == 0 { app.router.clone() } else { second.router.clone() }, token.clone());
        let slots = std::sync::Arc::clone(&slots);
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await.expect("slot");
            use tower::ServiceExt;
            let body = json!({"name": format!("P{i}"), "email": format!("p{i}@busy.test")}).to_string();
            let request = axum::http::Request::post("/v1/contacts")
                .header("x-tenant", "busy")
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .expect("request");
            let answer = router.oneshot(request).await.expect("answer");
            let status = answer.status();
            let body = http_body_util::BodyExt::collect(answer.into_body()).await.expect("body").to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }));
    }
    for task in tasks {
        let (status, body) = task.await.expect("join");
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
        let r = app.call_as(&token, "busy", Method::GET, &format!("/v1/audit-events?limit=500{q}"), None).await;
        events.extend(r.body["items"].as_array().cloned().unwrap_or_default());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert!(events.len() >= 200, "{}", events.len());
    let head = head_of_size(&app, &token, "busy", events.len() as u64).await;
    let (_, size, root) =
        open_checkpoint(head["note"].as_str().expect("note"), head["verifier_key"].as_str().expect("vkey"));
    // Every event once, each provably included.
    let mut seen = std::collections::HashSet::new();
    for e in &events {
        let id = e["id"].as_str().expect("id");
        let p = app.call_as(&token, "busy", Method::GET, &format!("/v1/audit-events/{id}/proof"), None).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        assert!(seen.insert(p.body["leaf_index"].as_u64().expect("index")), "a leaf index given twice");
        assert!(verify_inclusion(
            p.body["leaf_index"].as_u64().expect("index"),
            size,
            leaf_hash(&app, &t, e).await,
            &hashes(&p.body["audit_path"]),
            root
        ));
    }
    assert_eq!(seen.len() as u64, size);
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

/// A log written before the tree (sql/V21's upgrade): events linked as a hash chain, with no
/// transaction id, queued for sealing as the migration queues every tenant. The sealer puts
/// them in the tree first, in chain order; both the chain and the tree verify, and events
/// written afterwards follow them.
#[tokio::test]
async fn a_chain_written_before_the_tree_is_sealed_first_in_chain_order_and_still_verifies() {
    let app = spawn_app().await;
    let tenant = rowguard::domain::TenantId(uuid::Uuid::now_v7());
    let mut su = app.superuser_connection().await;
    sqlx::query("INSERT INTO tenants (id, slug, name) VALUES ($1, 'legacy', 'Legacy')")
        .bind(tenant)
        .execute(&mut su)
        .await
        .expect("tenant");
    // Three events as the chain wrote them: seq 1..3, each hash over the previous one.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET session_replication_role = replica;
         DO $$ DECLARE r audit_events; prev bytea := '\\x{zero}';
         BEGIN
           FOR i IN 1..3 LOOP
             r := jsonb_populate_record(NULL::audit_events, jsonb_build_object(
                    'tenant_id', '{tenant}', 'seq', i, 'id', gen_random_uuid(),
                    'occurred_at', date_trunc('microseconds', now()) + i * interval '1 second',
                    'actor_type', 'system', 'action', 'legacy.event', 'outcome', 'success',
                    'details', jsonb_build_object('n', i), 'xid', '0'));
             r.prev_hash := prev;
             r.hash := sha256(prev || audit_canonical(r));
             INSERT INTO audit_events VALUES (r.*);
             prev := r.hash;
           END LOOP;
           INSERT INTO audit_chain_heads (tenant_id, seq, head) VALUES ('{tenant}', 3, prev);
           INSERT INTO audit_unsealed (tenant_id, xid) VALUES ('{tenant}', '0');
           -- As the migration does: new events are numbered past every chain.
           PERFORM setval('audit_event_seq',
               greatest((SELECT max(seq) FROM audit_events), (SELECT last_value FROM audit_event_seq)) + 1, false);
         END $$;
         SET session_replication_role = origin;",
        zero = "00".repeat(32),
        tenant = tenant.0
    )))
    .execute(&mut su)
    .await
    .expect("a legacy chain");
    crate::support::wait_until_sealed(&mut su).await;
    // A new event after the upgrade, appended the new way.
    let mut conn = app.app_connection().await;
    let mut tx = rowguard::db::TenantTx::begin_on(&mut conn, tenant).await.expect("tx");
    sqlx::query("SELECT audit_append('after.upgrade', NULL, NULL, 'success', '{}')")
        .execute(tx.conn())
        .await
        .expect("append");
    tx.commit().await.expect("commit");
    crate::support::wait_until_sealed(&mut su).await;
    let order: Vec<(i64, String)> = sqlx::query_as(
        "SELECT l.leaf_index, e.action FROM audit_tree_leaves l JOIN audit_events e USING (tenant_id, seq)
          WHERE l.tenant_id = $1 ORDER BY l.leaf_index",
    )
    .bind(tenant)
    .fetch_all(&mut su)
    .await
    .expect("leaves");
    let actions: Vec<&str> = order.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(actions, ["legacy.event", "legacy.event", "legacy.event", "after.upgrade"]);
    let seqs: Vec<i64> = sqlx::query_scalar(
        "SELECT l.seq FROM audit_tree_leaves l WHERE l.tenant_id = $1 AND l.leaf_index < 3 ORDER BY l.leaf_index",
    )
    .bind(tenant)
    .fetch_all(&mut su)
    .await
    .expect("seqs");
    assert_eq!(seqs, [1, 2, 3], "the chain's order");
    let mut tx = rowguard::db::TenantTx::begin_on(&mut conn, tenant).await.expect("tx");
    let key = app.ctx.audit.verifying_key();
    let tree =
        rowguard::audit::tree::verify(tx.conn(), tenant, Some((app.ctx.audit.log_name(), &key))).await.expect("tree");
    assert!(tree.valid, "{tree:?}");
    assert_eq!((tree.size, tree.events_checked), (4, 4));
    let chain = rowguard::audit::verify_chain(tx.conn(), tenant, &[]).await.expect("chain");
    assert!(chain.valid && chain.events == 3, "{chain:?}");
}

/// A tenant whose sealing fails (here: its next leaf's place taken behind the sealer's back)
/// is reported and stays queued; the other tenants of the same pass are sealed all the same.
#[tokio::test]
async fn one_tenant_failing_to_seal_holds_no_other_tenant_back() {
    let app = spawn_app().await;
    let (a, b) = (app.create_tenant("breaks").await, app.create_tenant("fine").await);
    let (ta, tb) = (app.owner_token(&a).await, app.owner_token(&b).await);
    let mut su = app.superuser_connection().await;
    crate::support::wait_until_sealed(&mut su).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET session_replication_role = replica;
         INSERT INTO audit_tree_nodes (tenant_id, level, idx, hash)
           SELECT tenant_id, 0, size, sha256('') FROM audit_tree_state WHERE tenant_id = '{}';
         SET session_replication_role = origin;",
        a.id.0
    )))
    .execute(&mut su)
    .await
    .expect("block the next leaf");
    create_contacts(&app, &ta, "breaks", 1).await;
    create_contacts(&app, &tb, "fine", 2).await;
    let b_events = all_events(&app, &tb, "fine").await;
    head_of_size(&app, &tb, "fine", b_events.len() as u64).await;
    let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_unsealed WHERE tenant_id = $1")
        .bind(a.id)
        .fetch_one(&mut su)
        .await
        .expect("queue");
    assert!(waiting >= 1, "the failing tenant stays queued");
    let request = axum::http::Request::get("/metrics").body(axum::body::Body::empty()).expect("request");
    let answer = tower::ServiceExt::oneshot(app.router.clone(), request).await.expect("answer");
    let body = http_body_util::BodyExt::collect(answer.into_body()).await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&body);
    let failures: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("rowguard_audit_seal_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the failure counter");
    assert!(failures >= 1.0, "failures are counted: {failures}");
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
