//! Managing tenants: CRUD, bad requests answered 4xx, custom domains, the rate-limit
//! override, and signup.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{api_tenant, instance, new_tenant, operator_token, platform};
use crate::support::{TestResponse, spawn_app};

/// One row of a table-driven case list: (what, method, path, body, status, problem code).
type Case<'a> = (&'a str, Method, &'a str, Option<Value>, StatusCode, &'a str);

#[tokio::test]
async fn operators_create_list_get_and_patch_tenants() {
    let app = spawn_app().await;
    let token = operator_token(&app).await;
    let mut body = new_tenant("acme");
    body["domains"] = json!(["CRM.Acme.example."]);
    body["plan"] = json!("pro");
    let created = platform(&app, &token, Method::POST, "/platform/v1/tenants", Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!((created.body["status"].as_str(), created.body["plan"].as_str()), (Some("active"), Some("pro")));
    assert_eq!(created.body["domains"][0]["domain"], "crm.acme.example");
    assert_eq!(created.body["domains"][0]["is_primary"], true);
    // The owner was made in the same transaction: it can log in on the tenant's routes, also
    // through the custom domain.
    let login = json!({"email": "owner@acme.test", "password": "acme-owner-password"});
    let r = app.call(Method::POST, "/v1/auth/login", &[("host", "crm.acme.example")], Some(login)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    for slug in ["globex", "initech", "umbrella"] {
        api_tenant(&app, &token, slug).await;
    }
    // Keyset pages of two, in slug order, cover every tenant once.
    let mut seen = Vec::new();
    let mut path = "/platform/v1/tenants?limit=2".to_string();
    loop {
        let page = platform(&app, &token, Method::GET, &path, None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let items = page.body["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|t| t["slug"].as_str().unwrap_or_default().to_string()));
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/platform/v1/tenants?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["acme", "globex", "initech", "umbrella"]);

    let got = platform(&app, &token, Method::GET, "/platform/v1/tenants/ACME", None).await;
    assert_eq!((got.status, got.body["slug"].as_str()), (StatusCode::OK, Some("acme")), "{}", got.body);
    let patched = platform(
        &app,
        &token,
        Method::PATCH,
        "/platform/v1/tenants/globex",
        Some(json!({"plan": "enterprise", "status": "trial", "name": "Globex Inc"})),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(
        (patched.body["plan"].as_str(), patched.body["status"].as_str(), patched.body["name"].as_str()),
        (Some("enterprise"), Some("trial"), Some("Globex Inc"))
    );
    let trial = platform(&app, &token, Method::GET, "/platform/v1/tenants?status=trial", None).await;
    assert_eq!(trial.body["items"].as_array().map(Vec::len), Some(1), "{}", trial.body);
}

#[tokio::test]
async fn bad_tenant_requests_get_a_4xx_problem_never_a_5xx() {
    let app = spawn_app().await;
    let token = operator_token(&app).await;
    api_tenant(&app, &token, "acme").await;
    let with = |field: &str, value: Value| {
        let mut b = new_tenant("fresh");
        b[field] = value;
        b
    };
    let (conflict, unprocessable) = (StatusCode::CONFLICT, StatusCode::UNPROCESSABLE_ENTITY);
    let creates = [
        ("a taken slug", new_tenant("acme"), conflict, "slug_taken"),
        ("a reserved slug", new_tenant("www"), unprocessable, "validation_failed"),
        ("a slug that is no DNS label", with("slug", json!("a_b")), unprocessable, "validation_failed"),
        ("a bad owner e-mail", with("owner_email", json!("nope")), unprocessable, "validation_failed"),
        ("a short password", with("owner_password", json!("short")), unprocessable, "validation_failed"),
        ("an empty name", with("name", json!(" ")), unprocessable, "validation_failed"),
        ("a new tenant born suspended", with("status", json!("suspended")), unprocessable, "validation_failed"),
        ("an unknown plan", with("plan", json!("platinum")), unprocessable, "invalid_body"),
        ("a domain under the base domain", with("domains", json!(["x.localhost"])), unprocessable, "validation_failed"),
        ("an unknown field", with("owner", json!("x")), unprocessable, "invalid_body"),
    ];
    let mut cases: Vec<Case> = creates
        .into_iter()
        .map(|(case, body, status, code)| (case, Method::POST, "/platform/v1/tenants", Some(body), status, code))
        .collect();
    let not_found = StatusCode::NOT_FOUND;
    let tenant = "/platform/v1/tenants/acme";
    cases.extend([
        ("an unknown status", Method::PATCH, tenant, Some(json!({"status": "paused"})), unprocessable, "invalid_body"),
        ("a patch of nobody", Method::PATCH, "/platform/v1/tenants/nobody", Some(json!({})), not_found, "not_found"),
        ("an unknown tenant", Method::GET, "/platform/v1/tenants/nobody", None, not_found, "not_found"),
        ("an impossible slug", Method::GET, "/platform/v1/tenants/'%3B--", None, not_found, "not_found"),
        ("deleting nobody", Method::DELETE, "/platform/v1/tenants/nobody", None, not_found, "not_found"),
        (
            "a page size of zero",
            Method::GET,
            "/platform/v1/tenants?limit=0",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "a bad cursor",
            Method::GET,
            "/platform/v1/tenants?cursor=%20-",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
    ]);
    for (case, method, path, body, status, code) in cases {
        let r = platform(&app, &token, method, path, body).await;
        assert!(r.status == status && r.body["code"] == code, "{case}: {} {}", r.status, r.body);
        r.assert_problem(status, code);
    }
}

#[tokio::test]
async fn custom_domains_are_added_made_primary_removed_and_unique() {
    let app = spawn_app().await;
    let token = operator_token(&app).await;
    api_tenant(&app, &token, "acme").await;
    api_tenant(&app, &token, "globex").await;
    let domains = "/platform/v1/tenants/acme/domains";
    let add = |domain: &str, primary: bool| json!({"domain": domain, "primary": primary});

    let first = platform(&app, &token, Method::POST, domains, Some(add("crm.acme.example", false))).await;
    assert_eq!(
        (first.status, first.body["is_primary"].as_bool()),
        (StatusCode::CREATED, Some(true)),
        "the first is primary"
    );
    let second = platform(&app, &token, Method::POST, domains, Some(add("Sales.Acme.Example.", false))).await;
    assert_eq!((second.status, second.body["domain"].as_str()), (StatusCode::CREATED, Some("sales.acme.example")));
    assert_eq!(second.body["is_primary"], false);
    let login = json!({"email": "owner@acme.test", "password": "acme-owner-password"});
    let r = app.call(Method::POST, "/v1/auth/login", &[("host", "sales.acme.example:443")], Some(login.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "a new domain resolves at once: {}", r.body);

    let r =
        platform(&app, &token, Method::PUT, "/platform/v1/tenants/acme/domains/sales.acme.example/primary", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let got = platform(&app, &token, Method::GET, "/platform/v1/tenants/acme", None).await;
    let primaries: Vec<&str> = got.body["domains"]
        .as_array()
        .expect("domains")
        .iter()
        .filter(|d| d["is_primary"] == true)
        .filter_map(|d| d["domain"].as_str())
        .collect();
    assert_eq!(primaries, ["sales.acme.example"]);

    let (globex, conflict, unprocessable, missing) =
        ("/platform/v1/tenants/globex", StatusCode::CONFLICT, StatusCode::UNPROCESSABLE_ENTITY, StatusCode::NOT_FOUND);
    let globex_domains = format!("{globex}/domains");
    let globex_primary = format!("{globex}/domains/crm.acme.example/primary");
    let globex_remove = format!("{globex}/domains/crm.acme.example");
    let refusals: Vec<Case> = vec![
        (
            "another tenant's domain",
            Method::POST,
            &globex_domains,
            Some(add("CRM.acme.example", false)),
            conflict,
            "domain_taken",
        ),
        ("the same domain twice", Method::POST, domains, Some(add("crm.acme.example", true)), conflict, "domain_taken"),
        (
            "a name under the base",
            Method::POST,
            domains,
            Some(add("globex.localhost", false)),
            unprocessable,
            "validation_failed",
        ),
        (
            "no domain at all",
            Method::POST,
            domains,
            Some(add("not a domain", false)),
            unprocessable,
            "validation_failed",
        ),
        (
            "an unknown tenant",
            Method::POST,
            "/platform/v1/tenants/nobody/domains",
            Some(add("x.example", false)),
            missing,
            "not_found",
        ),
        ("primary of a domain it lacks", Method::PUT, &globex_primary, None, missing, "not_found"),
        ("removing another tenant's domain", Method::DELETE, &globex_remove, None, missing, "not_found"),
    ];
    for (case, method, path, body, status, code) in refusals {
        let r = platform(&app, &token, method, path, body).await;
        assert!(r.status == status && r.body["code"] == code, "{case}: {} {}", r.status, r.body);
        r.assert_problem(status, code);
    }

    let r = platform(&app, &token, Method::DELETE, "/platform/v1/tenants/acme/domains/sales.acme.example", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = platform(&app, &token, Method::DELETE, "/platform/v1/tenants/acme/domains/sales.acme.example", None).await;
    r.assert_problem(StatusCode::NOT_FOUND, "not_found");
    let r = app.call(Method::POST, "/v1/auth/login", &[("host", "sales.acme.example")], Some(login)).await;
    r.assert_problem(StatusCode::BAD_REQUEST, "tenant_required");
    // Released, so another tenant may take it now.
    let r = platform(
        &app,
        &token,
        Method::POST,
        "/platform/v1/tenants/globex/domains",
        Some(add("sales.acme.example", false)),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test]
async fn signup_is_off_by_default() {
    let app = spawn_app().await;
    let r = app.call(Method::POST, "/platform/v1/signup", &[], Some(new_tenant("newco"))).await;
    r.assert_problem(StatusCode::NOT_FOUND, "signup_disabled");
    let mut su = app.superuser_connection().await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants").fetch_one(&mut su).await.expect("count");
    assert_eq!(n, 0);
}

#[tokio::test]
async fn signup_when_on_creates_a_trial_tenant_and_refuses_reserved_and_invalid_slugs() {
    // The first instance is kept: dropping it drops the test's database (on PostgreSQL the drop
    // failed quietly while the second instance was connected; Citus's FORCE succeeds).
    let first = spawn_app().await;
    let app = instance(&first, |config| config.signup = true).await;
    for slug in ["www", "api", "admin", "platform", "app", "docs", "static", "mail", "WWW", "-x", "a.b", ""] {
        let r = app.call(Method::POST, "/platform/v1/signup", &[], Some(new_tenant(slug))).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{slug:?}: {}", r.body);
        r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    let r = app.call(Method::POST, "/platform/v1/signup", &[], Some(new_tenant("newco"))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!((r.body["slug"].as_str(), r.body["status"].as_str()), (Some("newco"), Some("trial")));
    let login = json!({"email": "owner@newco.test", "password": "newco-owner-password"});
    let r = app.call(Method::POST, "/v1/auth/login", &[("host", "newco.localhost")], Some(login)).await;
    assert_eq!(r.status, StatusCode::OK, "a trial tenant is served: {}", r.body);
    let r = app.call(Method::POST, "/platform/v1/signup", &[], Some(new_tenant("newco"))).await;
    r.assert_problem(StatusCode::CONFLICT, "slug_taken");
}

#[tokio::test]
async fn an_operator_sets_and_clears_a_tenants_rate_limit_override_through_the_api() {
    let app = spawn_app().await;
    let token = operator_token(&app).await;
    let acme = api_tenant(&app, &token, "acme").await;
    let owner = app.owner_token(&acme).await;
    let limit_of =
        |r: &TestResponse| r.headers.get("ratelimit-limit").and_then(|v| v.to_str().ok()).map(str::to_string);

    let body = json!({"rate_limit": {"per_second": 7, "burst": 9}});
    let r = platform(&app, &token, Method::PATCH, "/platform/v1/tenants/acme", Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["rate_limit"], json!({"per_second": 7, "burst": 9}));
    assert_eq!(r.body["status"], "active", "nothing else changed");
    // The tenant API announces the override (every instance hears the registry's change).
    let start = std::time::Instant::now();
    loop {
        let me = app.call_as(&owner, "acme", Method::GET, "/v1/me", None).await;
        if limit_of(&me).as_deref() == Some("9") {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "never announced: {:?}", me.headers);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for bad in [
        json!({"rate_limit": {"per_second": 0, "burst": 9}}),
        json!({"rate_limit": {"per_second": 5, "burst": 2_000_000}}),
    ] {
        platform(&app, &token, Method::PATCH, "/platform/v1/tenants/acme", Some(bad))
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    let r = platform(&app, &token, Method::PATCH, "/platform/v1/tenants/acme", Some(json!({"rate_limit": null}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body["rate_limit"].is_null(), "{}", r.body);
    // Both changes are in the tenant's log, by the operator.
    let log = app.call_as(&owner, "acme", Method::GET, "/v1/audit-events?action=tenant.rate_limit_change", None).await;
    let items = log.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{}", log.body);
    assert!(items.iter().all(|e| e["actor_type"] == "operator" && e["actor_id"].is_string()), "{}", log.body);
    assert_eq!(items[1]["details"]["after"]["rate_limit_burst"], 9);
}
