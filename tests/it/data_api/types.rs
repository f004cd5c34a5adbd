//! Every JSON type the API maps, round-tripped through a table with a uuid key.

use axum::http::{Method, StatusCode};
use serde_json::json;
use sqlx::Executor;

use super::until_served;
use crate::adopt::app_with_operator_tables;
use crate::support::TestApp;
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
