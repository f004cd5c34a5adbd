//! Organizations and deals for one tenant: round trips, list filters (contacts by
//! organization, deals by stage), money as exact decimal strings, and what deletion does.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestApp, spawn_app};

async fn created(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let r = app.call_as(token, "alpha", Method::POST, path, Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{path}: {}", r.body);
    r.body
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().expect("items").iter().map(|i| i["id"].as_str().expect("id").to_string()).collect()
}

#[tokio::test]
async fn organizations_and_deals_round_trip_and_filter() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let token = app.owner_token(&t).await;
    let acme = created(&app, &token, "/v1/organizations", json!({"name": " Acme ", "domain": "Acme.COM"})).await;
    assert_eq!((&acme["name"], &acme["domain"]), (&json!("Acme"), &json!("acme.com")));
    let acme_id = acme["id"].as_str().expect("id");
    let other = created(&app, &token, "/v1/organizations", json!({"name": "Other"})).await;

    let ada =
        created(&app, &token, "/v1/contacts", json!({"name": "Ada", "email": "a@x.io", "organization_id": acme_id}))
            .await;
    assert_eq!(ada["organization_id"], acme_id);
    let bob = created(&app, &token, "/v1/contacts", json!({"name": "Bob", "email": "b@x.io"})).await;
    let by_org =
        app.call_as(&token, "alpha", Method::GET, &format!("/v1/contacts?organization_id={acme_id}"), None).await;
    assert_eq!(ids(&by_org.body), vec![ada["id"].as_str().expect("id")]);
    let by_other = format!("/v1/contacts?organization_id={}", other["id"].as_str().expect("id"));
    assert_eq!(ids(&app.call_as(&token, "alpha", Method::GET, &by_other, None).await.body), Vec::<String>::new());
    assert_eq!(ids(&app.call_as(&token, "alpha", Method::GET, "/v1/contacts", None).await.body).len(), 2);

    let deal = created(
        &app,
        &token,
        "/v1/deals",
        json!({"title": "Renewal", "contact_id": ada["id"], "organization_id": acme_id, "amount": "1250.50", "currency": "eur"}),
    )
    .await;
    assert_eq!(
        (&deal["stage"], &deal["amount"], &deal["currency"]),
        (&json!("lead"), &json!("1250.50"), &json!("EUR"))
    );
    let won = created(
        &app,
        &token,
        "/v1/deals",
        json!({"title": "Pilot", "contact_id": bob["id"], "stage": "won", "amount": "0.0001", "currency": "JPY"}),
    )
    .await;
    let deal_path = format!("/v1/deals/{}", deal["id"].as_str().expect("id"));
    let moved = app
        .call_as(
            &token,
            "alpha",
            Method::PATCH,
            &deal_path,
            Some(json!({"stage": "proposal", "amount": "99999999999999.9999"})),
        )
        .await;
    assert_eq!((moved.status, &moved.body["stage"]), (StatusCode::OK, &json!("proposal")), "{}", moved.body);
    assert_eq!(moved.body["amount"], "99999999999999.9999", "exact, never a float");
    let stage = |s: &str| format!("/v1/deals?stage={s}");
    assert_eq!(
        ids(&app.call_as(&token, "alpha", Method::GET, &stage("won"), None).await.body),
        vec![won["id"].as_str().expect("id")]
    );
    assert_eq!(
        ids(&app.call_as(&token, "alpha", Method::GET, &stage("proposal"), None).await.body),
        vec![deal["id"].as_str().expect("id")]
    );
    assert_eq!(ids(&app.call_as(&token, "alpha", Method::GET, &stage("lead"), None).await.body), Vec::<String>::new());
    app.call_as(&token, "alpha", Method::GET, &stage("closed"), None)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid_query");
    let page = app.call_as(&token, "alpha", Method::GET, "/v1/deals?limit=1", None).await;
    let cursor = page.body["next_cursor"].as_str().expect("more");
    let rest = app.call_as(&token, "alpha", Method::GET, &format!("/v1/deals?limit=1&cursor={cursor}"), None).await;
    assert_eq!(ids(&rest.body), vec![won["id"].as_str().expect("id")]);
    assert_eq!(rest.body["next_cursor"], Value::Null);

    // A contact with deals cannot go; deleting the organization detaches contacts and deals.
    let ada_path = format!("/v1/contacts/{}", ada["id"].as_str().expect("id"));
    app.call_as(&token, "alpha", Method::DELETE, &ada_path, None)
        .await
        .assert_problem(StatusCode::CONFLICT, "contact_in_use");
    let org_path = format!("/v1/organizations/{acme_id}");
    assert_eq!(app.call_as(&token, "alpha", Method::DELETE, &org_path, None).await.status, StatusCode::NO_CONTENT);
    app.call_as(&token, "alpha", Method::GET, &org_path, None).await.assert_problem(StatusCode::NOT_FOUND, "not_found");
    let ada_now = app.call_as(&token, "alpha", Method::GET, &ada_path, None).await;
    assert_eq!(ada_now.body["organization_id"], Value::Null);
    let deal_now = app.call_as(&token, "alpha", Method::GET, &deal_path, None).await;
    assert_eq!((&deal_now.body["organization_id"], &deal_now.body["title"]), (&Value::Null, &json!("Renewal")));
    assert_eq!(app.call_as(&token, "alpha", Method::DELETE, &deal_path, None).await.status, StatusCode::NO_CONTENT);
    app.call_as(&token, "alpha", Method::GET, &deal_path, None)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn bad_organization_and_deal_input_is_a_4xx_problem() {
    let app = spawn_app().await;
    let t = app.create_tenant("alpha").await;
    let token = app.owner_token(&t).await;
    let contact = created(&app, &token, "/v1/contacts", json!({"name": "Ada", "email": "a@x.io"})).await;
    let deal = |amount: Value, currency: &str| json!({"title": "T", "contact_id": contact["id"], "amount": amount, "currency": currency});
    let cases = [
        ("/v1/organizations", json!({"name": ""}), 422, "validation_failed"),
        ("/v1/organizations", json!({"name": "X", "domain": "https://x.io/"}), 422, "validation_failed"),
        ("/v1/organizations", json!({"name": "X", "vat": "1"}), 422, "invalid_body"),
        ("/v1/deals", deal(json!(12.5), "EUR"), 422, "invalid_body"),
        ("/v1/deals", deal(json!("12.34567"), "EUR"), 422, "validation_failed"),
        ("/v1/deals", deal(json!("-5"), "EUR"), 422, "validation_failed"),
        ("/v1/deals", deal(json!("1e9"), "EUR"), 422, "validation_failed"),
        ("/v1/deals", deal(json!("10"), "EURO"), 422, "validation_failed"),
        ("/v1/deals", deal(json!("10"), "XYZ"), 422, "validation_failed"),
        (
            "/v1/deals",
            json!({"title": "T", "contact_id": "nope", "amount": "1", "currency": "EUR"}),
            422,
            "invalid_body",
        ),
        (
            "/v1/deals",
            json!({"title": "T", "contact_id": contact["id"], "amount": "1", "currency": "EUR", "stage": "closed"}),
            422,
            "invalid_body",
        ),
    ];
    for (path, body, status, code) in cases {
        let r = app.call_as(&token, "alpha", Method::POST, path, Some(body.clone())).await;
        r.assert_problem(StatusCode::from_u16(status).expect("status"), code);
    }
    let r = app.call_as(&token, "alpha", Method::GET, "/v1/contacts?organization_id=nope", None).await;
    r.assert_problem(StatusCode::BAD_REQUEST, "invalid_query");
    let r = app.call_as(&token, "alpha", Method::GET, "/v1/deals/not-a-uuid", None).await;
    r.assert_problem(StatusCode::BAD_REQUEST, "invalid_path");
}
