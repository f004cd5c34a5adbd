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

use crate::support::{TestApp, TestTenant};

mod proofs;
mod sealing;

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
