//! What the console refuses: a wrong password, a member, another tenant's session, a form
//! without its CSRF token, a console switched off, and a path it does not know.

use axum::http::{Method, StatusCode};

use super::{Browser, access_denied_events, auditor_signs_in, html, operator_signs_in, tenant_host};
use crate::support::{spawn_app, spawn_app_with};

#[tokio::test]
async fn a_wrong_password_shows_the_form_again_and_a_member_gets_a_403_page() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let member = app.create_user(&acme, "member").await;

    let (_, wrong) = auditor_signs_in(&app, "acme", &member.email, "not-the-password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(html(&wrong).contains("The e-mail or password is wrong"));

    let (mut browser, refused) = auditor_signs_in(&app, "acme", &member.email, &member.password).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", html(&refused));
    assert!(html(&refused).contains("cannot read the audit log"), "{}", html(&refused));
    assert!(!browser.cookies.contains_key("rowguard_console"), "no session for a member");
    assert_eq!(browser.get("/console/audit/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn tenant_a_console_session_is_refused_on_tenant_b_host() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    let auditor = app.create_user(&acme, "auditor").await;
    let (browser, signed_in) = auditor_signs_in(&app, "acme", &auditor.email, &auditor.password).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER, "{}", html(&signed_in));

    // The same cookies replayed to globex's host, as a stolen cookie would be.
    let mut elsewhere = Browser { app: &app, host: tenant_host("globex"), cookies: browser.cookies.clone() };
    let refused = elsewhere.get("/console/audit/").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", html(&refused));
    assert!(html(&refused).contains("tenant_mismatch"), "{}", html(&refused));
    // The operator console does not answer on a tenant's host at all.
    assert_eq!(elsewhere.get("/console/platform/login").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn console_posts_without_or_with_a_wrong_csrf_token_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let mut operator = operator_signs_in(&app).await;
    let path = "/console/platform/tenants/acme/status";

    let missing = operator.post(path, &[("status", "suspended")]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN, "{}", html(&missing));
    let wrong = "0".repeat(64);
    let forged = operator.post(path, &[("csrf", &wrong), ("status", "suspended")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", html(&forged));
    assert!(html(&forged).contains("CSRF"), "{}", html(&forged));
    let owner = app.owner_token(&acme).await;
    let still = app.call_as(&owner, "acme", Method::GET, "/v1/contacts", None).await;
    assert_eq!(still.status, StatusCode::OK, "the tenant was not suspended: {}", still.body);

    // Sign-in forms need it too (login CSRF): a browser without the cookie is refused.
    let auditor = app.create_user(&acme, "auditor").await;
    let mut stranger = Browser::new(&app, &tenant_host("acme"));
    let r = stranger
        .post("/console/audit/session", &[("csrf", &wrong), ("email", &auditor.email), ("password", &auditor.password)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", html(&r));
    assert!(!stranger.cookies.contains_key("rowguard_console"));
}

#[tokio::test]
async fn console_off_answers_404_everywhere() {
    let app = spawn_app_with(|config| config.console = false).await;
    app.create_tenant("acme").await;
    for (host, path) in [
        ("localhost", "/console/"),
        ("acme.localhost", "/console/audit/login"),
        ("localhost", "/console/platform/login"),
        ("localhost", "/console/static/console.css"),
    ] {
        let r = app.call(Method::GET, path, &[("host", host)], None).await;
        r.assert_problem(StatusCode::NOT_FOUND, "route_not_found");
    }
}

#[tokio::test]
async fn an_unknown_console_path_is_a_page_not_the_apis_json() {
    let app = spawn_app().await;
    for (host, path) in
        [("localhost:8080", "/console/platform/nosuch"), ("acme.localhost:8080", "/console/audit/nosuch")]
    {
        let r = app.send_raw(Method::GET, path, &[("host", host)], None, axum::body::Body::empty()).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert!(r.content_type().starts_with("text/html"), "{path}: {}", r.content_type());
        assert!(
            r.body.as_str().is_some_and(|b| b.contains("route_not_found") && b.contains("/console/")),
            "{}",
            r.body
        );
    }
}

#[tokio::test]
async fn a_members_refused_sign_in_is_recorded_as_a_refusal_with_its_reason() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let member = app.create_user(&acme, "member").await;

    let (_, refused) = auditor_signs_in(&app, "acme", &member.email, &member.password).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", html(&refused));
    let denied = access_denied_events(&app, &owner, "acme").await;
    let ours: Vec<_> = denied.iter().filter(|e| e["actor_id"] == member.id.as_str()).collect();
    assert_eq!(ours.len(), 1, "one refusal, as the member: {denied:?}");
    assert_eq!(ours[0]["outcome"], "denied");
    assert_eq!(ours[0]["details"]["path"], "/console/audit/session");
    let reason = ours[0]["details"]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("member") && reason.contains("read_audit_log"), "{reason}");
}
