//! Tenant export and import: a round trip under a new slug gives the same API reads, the
//! same logins and a verifiable audit chain, and nothing of another tenant travels along.

use axum::http::{Method, StatusCode};
use rowguard::domain::Slug;
use rowguard::platform::PlatformConn;
use rowguard::platform::transfer;
use serde_json::{Value, json};

use crate::support::spawn_app;

#[tokio::test]
async fn an_exported_tenant_imported_under_a_new_slug_answers_the_same_reads() {
    let app = spawn_app().await;
    let source = app.create_tenant("alpha").await;
    let other = app.create_tenant("bravo").await;
    let token = app.owner_token(&source).await;
    let other_token = app.owner_token(&other).await;
    for i in 0..5 {
        let body = json!({"name": format!("Contact {i}"), "email": format!("c{i}@alpha.io"), "phone": "+1 555 0100"});
        let r = app.call_as(&token, "alpha", Method::POST, "/v1/contacts", Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    app.call_as(
        &other_token,
        "bravo",
        Method::POST,
        "/v1/contacts",
        Some(json!({"name": "Not alpha's", "email": "b@b.io"})),
    )
    .await;
    let before = app.call_as(&token, "alpha", Method::GET, "/v1/contacts", None).await;

    let mut platform = PlatformConn::connect(&app.superuser_url()).await.expect("platform");
    let mut file = Vec::new();
    let mut exported = Vec::new();
    let header = transfer::export(&mut platform, &Slug::parse("alpha").expect("slug"), &mut file, &mut |p| {
        exported.push((p.rows, p.total))
    })
    .await
    .expect("export");
    assert_eq!(header.tables.get("contacts"), Some(&5));
    // Progress counts every row once, up to the header's total, which is every line but the header.
    let total: u64 = header.tables.values().sum();
    assert_eq!(exported.first(), Some(&(0, total)));
    assert_eq!(exported.last(), Some(&(total, total)));
    assert_eq!(file.iter().filter(|b| **b == b'\n').count() as u64, total + 1);
    let text = String::from_utf8(file.clone()).expect("utf-8");
    assert!(!text.contains("Not alpha's"), "another tenant's row was exported");

    let mut imported = (0, 0);
    let (new_id, counts) =
        transfer::import(&mut platform, file.as_slice(), &Slug::parse("alpha-copy").expect("slug"), &mut |p| {
            imported = (p.rows, p.total)
        })
        .await
        .expect("import");
    assert_eq!(imported, (total, total));
    assert_ne!(new_id, source.id);
    assert_eq!(counts.get("contacts"), Some(&5));

    // The same owner logs in with the same password on the copy, and reads the same contacts.
    let login = app
        .call(
            Method::POST,
            "/v1/auth/login",
            &[("x-tenant", "alpha-copy")],
            Some(json!({"email": source.owner_email, "password": source.owner_password})),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let copy_token = login.body["access_token"].as_str().expect("token").to_string();
    let after = app.call_as(&copy_token, "alpha-copy", Method::GET, "/v1/contacts", None).await;
    assert_eq!(after.body["items"], before.body["items"]);

    // The chain was re-based onto the new tenant and still verifies; its last event says so.
    let verify = app.call_as(&copy_token, "alpha-copy", Method::GET, "/v1/audit-events/verify", None).await;
    assert_eq!(verify.body["valid"], true, "{}", verify.body);
    let last = app.call_as(&copy_token, "alpha-copy", Method::GET, "/v1/audit-events?action=tenant.import", None).await;
    let event: &Value = &last.body["items"][0];
    assert_eq!((event["action"].as_str(), event["actor_type"].as_str()), (Some("tenant.import"), Some("operator")));
    assert_eq!(event["details"]["source_slug"], "alpha");

    // Importing twice under the same slug is refused and leaves nothing half-made.
    let again =
        transfer::import(&mut platform, file.as_slice(), &Slug::parse("alpha-copy").expect("slug"), &mut |_| {}).await;
    assert!(again.is_err());
}

#[tokio::test]
async fn a_damaged_export_imports_nothing() {
    let app = spawn_app().await;
    app.create_tenant("alpha").await;
    let mut platform = PlatformConn::connect(&app.superuser_url()).await.expect("platform");
    let mut file = Vec::new();
    transfer::export(&mut platform, &Slug::parse("alpha").expect("slug"), &mut file, &mut |_| {})
        .await
        .expect("export");
    let mut text = String::from_utf8(file).expect("utf-8");
    text.push_str("{\"table\": \"tenants\", \"row\": {}}\n");
    let err = transfer::import(&mut platform, text.as_bytes(), &Slug::parse("beta").expect("slug"), &mut |_| {}).await;
    assert!(err.is_err());
    let exists = platform.tenant_exists(&Slug::parse("beta").expect("slug")).await.expect("exists");
    assert!(!exists, "a failed import must leave no tenant behind");
}
