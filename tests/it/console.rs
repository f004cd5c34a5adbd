//! The browser console over HTTP, as a browser would use it (cookies kept, forms posted with
//! the CSRF token the page gave out): the auditor's pages on a tenant's host, the operator's on
//! the bare host, and the refusals — a member, another tenant's session, a forged form.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::{TestApp, TestResponse, TestTenant, create_operator, spawn_app, spawn_app_with};

/// A browser on one host: its cookie jar, and requests that send it.
struct Browser<'a> {
    app: &'a TestApp,
    host: String,
    cookies: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp, host: &str) -> Browser<'a> {
        Browser { app, host: host.to_string(), cookies: BTreeMap::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn absorb(&mut self, r: &TestResponse) {
        for value in r.headers.get_all("set-cookie") {
            let text = value.to_str().expect("ascii cookie");
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
    }

    async fn get(&mut self, path: &str) -> TestResponse {
        let cookie = self.cookie_header();
        let r = self.app.call(Method::GET, path, &[("host", &self.host), ("cookie", &cookie)], None).await;
        self.absorb(&r);
        r
    }

    /// As `get`, without taking the answer's cookies.
    async fn get_as_is(&self, path: &str) -> TestResponse {
        let cookie = self.cookie_header();
        self.app.call(Method::GET, path, &[("host", &self.host), ("cookie", &cookie)], None).await
    }

    /// Post `fields` as a form, exactly as given (no CSRF token added).
    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> TestResponse {
        let cookie = self.cookie_header();
        let body = serde_urlencoded::to_string(fields).expect("form");
        let headers = [("host", self.host.as_str()), ("cookie", cookie.as_str())];
        let r = self
            .app
            .send_raw(Method::POST, path, &headers, Some("application/x-www-form-urlencoded"), Body::from(body))
            .await;
        self.absorb(&r);
        r
    }

    fn csrf(&self) -> String {
        self.cookies.get("rowguard_csrf").cloned().expect("the console set a CSRF cookie")
    }
}

/// The tenant API's answer to `GET /v1/contacts` once it is `status` (registry changes reach
/// the resolution cache through a NOTIFY, within milliseconds).
async fn api_answers(app: &TestApp, token: &str, tenant: &str, status: StatusCode) -> TestResponse {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let r = app.call_as(token, tenant, Method::GET, "/v1/contacts", None).await;
        if r.status == status || std::time::Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn html(r: &TestResponse) -> &str {
    r.body.as_str().unwrap_or("")
}

fn location(r: &TestResponse) -> &str {
    r.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn tenant_host(slug: &str) -> String {
    format!("{slug}.localhost:8080")
}

/// Open the sign-in page (which sets the CSRF cookie) and sign in.
async fn auditor_signs_in<'a>(
    app: &'a TestApp,
    slug: &str,
    email: &str,
    password: &str,
) -> (Browser<'a>, TestResponse) {
    let mut browser = Browser::new(app, &tenant_host(slug));
    let page = browser.get("/console/audit/login").await;
    assert_eq!(page.status, StatusCode::OK, "{}", html(&page));
    let csrf = browser.csrf();
    let r = browser.post("/console/audit/session", &[("csrf", &csrf), ("email", email), ("password", password)]).await;
    (browser, r)
}

async fn operator_signs_in(app: &TestApp) -> Browser<'_> {
    let op = create_operator(app, &format!("ops-{}@rowguard.test", uuid::Uuid::now_v7().simple())).await;
    let mut browser = Browser::new(app, "localhost:8080");
    assert_eq!(browser.get("/console/platform/login").await.status, StatusCode::OK);
    let csrf = browser.csrf();
    let r = browser
        .post("/console/platform/session", &[("csrf", &csrf), ("email", &op.email), ("password", &op.password)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", html(&r));
    assert!(browser.cookies.contains_key("rowguard_operator"));
    assert_ne!(browser.csrf(), csrf, "signing in rotates the CSRF token");
    browser
}

/// A contact created and renamed by the owner: a `contact.update` event with a diff.
async fn contact_renamed(app: &TestApp, tenant: &TestTenant) -> String {
    let owner = app.owner_token(tenant).await;
    let created = app
        .call_as(
            &owner,
            &tenant.slug,
            Method::POST,
            "/v1/contacts",
            Some(json!({"name": "Ada Byron", "email": "ada@example.com"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().expect("id").to_string();
    let path = format!("/v1/contacts/{id}");
    let renamed = app.call_as(&owner, &tenant.slug, Method::PATCH, &path, Some(json!({"name": "Ada Lovelace"}))).await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    let events = app.call_as(&owner, &tenant.slug, Method::GET, "/v1/audit-events?action=contact.update", None).await;
    events.body["items"][0]["id"].as_str().expect("the update's event").to_string()
}

#[tokio::test]
async fn auditor_signs_in_sees_events_filters_opens_the_diff_and_verifies() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let auditor = app.create_user(&acme, "auditor").await;
    let event_id = contact_renamed(&app, &acme).await;

    let (mut browser, signed_in) = auditor_signs_in(&app, "acme", &auditor.email, &auditor.password).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER, "{}", html(&signed_in));
    assert_eq!(location(&signed_in), "/console/audit/");
    let session = signed_in
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("rowguard_console="));
    let session = session.expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console/"] {
        assert!(session.contains(attribute), "{session}");
    }

    let list = browser.get("/console/audit/").await;
    assert_eq!(list.status, StatusCode::OK, "{}", html(&list));
    assert!(list.headers["content-type"].to_str().expect("ascii").starts_with("text/html"));
    let csp = list.headers["content-security-policy"].to_str().expect("ascii");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    for shown in ["contact.create", "contact.update", "auth.login", "<svg"] {
        assert!(html(&list).contains(shown), "the list shows {shown}");
    }

    let filtered = browser.get("/console/audit/?action=contact.update&outcome=success&actor=&from=&to=").await;
    assert_eq!(filtered.status, StatusCode::OK, "{}", html(&filtered));
    assert!(html(&filtered).contains(&format!("/console/audit/events/{event_id}")));
    assert!(!html(&filtered).contains("contact.create"), "the filter leaves other actions out");
    let bad = browser.get("/console/audit/?actor=not-a-uuid").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(html(&bad).contains("actor"), "a readable page: {}", html(&bad));

    let event = browser.get(&format!("/console/audit/events/{event_id}")).await;
    assert_eq!(event.status, StatusCode::OK, "{}", html(&event));
    for shown in ["Ada Byron", "Ada Lovelace", "owner", "Request id"] {
        assert!(html(&event).contains(shown), "the event page shows {shown}");
    }
    let missing = browser.get(&format!("/console/audit/events/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let verify = browser.get("/console/audit/verify").await;
    assert_eq!(verify.status, StatusCode::OK, "{}", html(&verify));
    assert!(html(&verify).contains("Intact"), "{}", html(&verify));
    assert!(html(&verify).contains("Latest signed tree head"));

    let csv = browser.get("/console/audit/export?format=csv").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers["content-disposition"].to_str().expect("ascii").contains("audit-acme.csv"));
    assert!(html(&csv).contains("contact.update"));

    // Signing out clears the session: the next page sends the browser to sign in.
    let csrf = browser.csrf();
    let out = browser.post("/console/audit/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(!browser.cookies.contains_key("rowguard_console"));
    let after = browser.get("/console/audit/").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&after), "/console/audit/login");
}

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
async fn operator_suspends_a_tenant_its_api_answers_tenant_suspended_and_resumes_it() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let mut operator = operator_signs_in(&app).await;

    let list = operator.get("/console/platform/").await;
    assert_eq!(list.status, StatusCode::OK, "{}", html(&list));
    assert!(html(&list).contains("/console/platform/tenants/acme"));
    let search = operator.get("/console/platform/?q=nomatch&status=").await;
    assert!(html(&search).contains("No tenants match"), "{}", html(&search));

    let csrf = operator.csrf();
    let suspended =
        operator.post("/console/platform/tenants/acme/status", &[("csrf", &csrf), ("status", "suspended")]).await;
    assert_eq!(suspended.status, StatusCode::SEE_OTHER, "{}", html(&suspended));
    let refused = api_answers(&app, &owner, "acme", StatusCode::FORBIDDEN).await;
    refused.assert_problem(StatusCode::FORBIDDEN, "tenant_suspended");
    assert!(html(&operator.get("/console/platform/tenants/acme").await).contains("Resume"));

    let resumed =
        operator.post("/console/platform/tenants/acme/status", &[("csrf", &csrf), ("status", "active")]).await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER, "{}", html(&resumed));
    assert_eq!(api_answers(&app, &owner, "acme", StatusCode::OK).await.status, StatusCode::OK);
    let plan = operator.post("/console/platform/tenants/acme/plan", &[("csrf", &csrf), ("plan", "pro")]).await;
    assert_eq!(plan.status, StatusCode::SEE_OTHER, "{}", html(&plan));

    // A custom domain: added (the tenant answers on it), then removed.
    let added = operator
        .post(
            "/console/platform/tenants/acme/domains",
            &[("csrf", &csrf), ("domain", "crm.acme-corp.example"), ("primary", "yes")],
        )
        .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", html(&added));
    assert!(html(&operator.get("/console/platform/tenants/acme").await).contains("crm.acme-corp.example"));
    let auth = format!("Bearer {owner}");
    let on_domain =
        app.call(Method::GET, "/v1/me", &[("host", "crm.acme-corp.example"), ("authorization", &auth)], None).await;
    assert_eq!(on_domain.status, StatusCode::OK, "{}", on_domain.body);
    let under_base =
        operator.post("/console/platform/tenants/acme/domains", &[("csrf", &csrf), ("domain", "x.localhost")]).await;
    assert_eq!(under_base.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", html(&under_base));
    let removed = operator
        .post("/console/platform/tenants/acme/domains/remove", &[("csrf", &csrf), ("domain", "crm.acme-corp.example")])
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", html(&removed));
    assert!(!html(&operator.get("/console/platform/tenants/acme").await).contains("crm.acme-corp.example"));

    // Each change is in the tenant's own audit log, as the platform API's are.
    let events = app.call_as(&owner, "acme", Method::GET, "/v1/audit-events?resource_type=tenant", None).await;
    let actions: Vec<&str> =
        events.body["items"].as_array().expect("items").iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        ["tenant.domain_remove", "tenant.domain_add", "tenant.plan_change", "tenant.resume", "tenant.suspend"]
    );
    // By the operator, named by id, with the console request's id.
    let items = events.body["items"].as_array().expect("items");
    assert!(items.iter().all(|e| e["actor_type"] == "operator"), "{}", events.body);
    assert!(
        items.iter().all(|e| e["actor_id"].is_string() && e["actor_id"] == items[0]["actor_id"]),
        "{}",
        events.body
    );
    assert!(items.iter().all(|e| e["request_id"].is_string()), "{}", events.body);

    let verify = operator.get("/console/platform/tenants/acme/verify").await;
    assert_eq!(verify.status, StatusCode::OK, "{}", html(&verify));
    assert!(html(&verify).contains("Intact"));
    let policies = operator.get("/console/platform/policies").await;
    assert_eq!(policies.status, StatusCode::OK, "{}", html(&policies));
    assert!(html(&policies).contains("No findings"), "{}", html(&policies));
    let health = operator.get("/console/platform/health").await;
    assert!(html(&health).contains("Ready"), "{}", html(&health));

    // Delete wants the slug typed exactly.
    let typo = operator.post("/console/platform/tenants/acme/delete", &[("csrf", &csrf), ("confirm", "acm")]).await;
    assert_eq!(typo.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", html(&typo));
    assert_eq!(app.call_as(&owner, "acme", Method::GET, "/v1/contacts", None).await.status, StatusCode::OK);
    let deleted = operator.post("/console/platform/tenants/acme/delete", &[("csrf", &csrf), ("confirm", "acme")]).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", html(&deleted));
    let gone = api_answers(&app, &owner, "acme", StatusCode::NOT_FOUND).await;
    gone.assert_problem(StatusCode::NOT_FOUND, "tenant_not_found");
}

#[tokio::test]
async fn the_console_index_sends_each_host_to_its_console() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let tenant = app.call(Method::GET, "/console/", &[("host", "acme.localhost")], None).await;
    assert_eq!(location(&tenant), "/console/audit/");
    let bare = app.call(Method::GET, "/console/", &[("host", "localhost")], None).await;
    assert_eq!(location(&bare), "/console/platform/");
    let css = app.call(Method::GET, "/console/static/console.css", &[], None).await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.headers["content-type"], "text/css; charset=utf-8");
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
async fn a_console_session_is_never_renewed_and_sign_out_everywhere_cuts_off_a_copied_cookie() {
    use base64::Engine;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let auditor = app.create_user(&acme, "auditor").await;
    let (browser, _) = auditor_signs_in(&app, "acme", &auditor.email, &auditor.password).await;
    let token = browser.cookies.get("rowguard_console").cloned().expect("a session");

    // An aged token (issued two minutes ago, as any API token of the user could be) is served
    // as it is but never exchanged for a fresher one: the session ends when its token does.
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).expect("payload"))
        .expect("base64");
    let mut claims: serde_json::Value = serde_json::from_slice(&payload).expect("claims");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    claims["iat"] = json!(now - 120);
    claims["exp"] = json!(now + 780);
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = jsonwebtoken::decode_header(&token).expect("header").kid;
    let signing = EncodingKey::from_ed_pem(crate::support::signing_key_pem().as_bytes()).expect("key");
    let older = jsonwebtoken::encode(&header, &claims, &signing).expect("sign");
    let mut aged = Browser { app: &app, host: tenant_host("acme"), cookies: browser.cookies.clone() };
    aged.cookies.insert("rowguard_console".into(), older.clone());
    let page = aged.get_as_is("/console/audit/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", html(&page));
    assert!(!set_cookies(&page).iter().any(|c| c.starts_with("rowguard_console=")), "no renewal");

    // "Sign out everywhere" from one browser ends every session of the user: a copy of the
    // cookie kept elsewhere (here: the aged token) is refused from then on.
    let mut signed_in = Browser { app: &app, host: tenant_host("acme"), cookies: browser.cookies.clone() };
    assert!(html(&signed_in.get("/console/audit/").await).contains("Sign out everywhere"));
    let csrf = signed_in.csrf();
    let out = signed_in.post("/console/audit/logout", &[("csrf", &csrf), ("everywhere", "1")]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let mut refused = false;
    for _ in 0..50 {
        let copied = aged.get_as_is("/console/audit/").await;
        if copied.status != StatusCode::OK {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refused, "the copied cookie still works after sign out everywhere");
}

fn set_cookies(r: &TestResponse) -> Vec<String> {
    r.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect()
}

#[tokio::test]
async fn the_operator_sees_policies_verify_findings_of_the_live_database() {
    use sqlx::Executor;
    let app = spawn_app().await;
    let mut operator = operator_signs_in(&app).await;
    assert!(html(&operator.get("/console/platform/policies").await).contains("No findings"));
    let mut su = app.superuser_connection().await;
    su.execute("ALTER TABLE contacts NO FORCE ROW LEVEL SECURITY").await.expect("weaken");
    let page = operator.get("/console/platform/policies").await;
    assert_eq!(page.status, StatusCode::OK, "{}", html(&page));
    assert!(html(&page).contains("rls-not-forced") && html(&page).contains("contacts"), "{}", html(&page));
}

/// `access.denied` events in the tenant's log, as its owner reads them.
async fn access_denied_events(app: &TestApp, owner: &str, tenant: &str) -> Vec<serde_json::Value> {
    let r = app.call_as(owner, tenant, Method::GET, "/v1/audit-events?action=access.denied", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["items"].as_array().cloned().expect("items")
}

#[tokio::test]
async fn a_first_visit_without_a_cookie_goes_to_sign_in_and_records_no_refusal() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;

    for path in
        ["/console/audit/", "/console/audit/verify", "/console/audit/events/0190a5f0-0000-7000-8000-000000000000"]
    {
        let mut stranger = Browser::new(&app, &tenant_host("acme"));
        let first = stranger.get(path).await;
        assert_eq!(first.status, StatusCode::SEE_OTHER, "{path}: {}", html(&first));
        assert_eq!(location(&first), "/console/audit/login", "{path}");
    }
    let mut operator = Browser::new(&app, "localhost:8080");
    let first = operator.get("/console/platform/").await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", html(&first));
    assert_eq!(location(&first), "/console/platform/login");
    assert_eq!(access_denied_events(&app, &owner, "acme").await, Vec::<serde_json::Value>::new());

    // A cookie that carries a token the API refuses is a refusal like any other, recorded.
    let mut forged = Browser::new(&app, &tenant_host("acme"));
    forged.cookies.insert("rowguard_console".into(), "not.a.token".into());
    let refused = forged.get("/console/audit/").await;
    assert_eq!(location(&refused), "/console/audit/login");
    let events = access_denied_events(&app, &owner, "acme").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["details"]["path"], "/console/audit/");
}

#[tokio::test]
async fn signing_out_without_a_live_session_still_clears_the_cookie_and_redirects() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let auditor = app.create_user(&acme, "auditor").await;
    let cleared = |r: &TestResponse, name: &str| {
        set_cookies(r).iter().any(|c| c.starts_with(&format!("{name}=;")) && c.contains("Max-Age=0"))
    };

    // No session cookie at all (expired and dropped by the browser), a CSRF cookie from a page.
    let mut browser = Browser::new(&app, &tenant_host("acme"));
    browser.get("/console/audit/login").await;
    let csrf = browser.csrf();
    let out = browser.post("/console/audit/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", html(&out));
    assert_eq!(location(&out), "/console/audit/login?signed_out=1");
    assert!(cleared(&out, "rowguard_console"), "{:?}", set_cookies(&out));

    // A session that has ended elsewhere ("sign out everywhere"): its cookie is cleared too.
    let (mut first, _) = auditor_signs_in(&app, "acme", &auditor.email, &auditor.password).await;
    let mut second = Browser { app: &app, host: tenant_host("acme"), cookies: first.cookies.clone() };
    let csrf = first.csrf();
    let everywhere = first.post("/console/audit/logout", &[("csrf", &csrf), ("everywhere", "1")]).await;
    assert_eq!(everywhere.status, StatusCode::SEE_OTHER);
    let mut stale = None;
    for _ in 0..50 {
        let r = second.post("/console/audit/logout", &[("csrf", &csrf)]).await;
        if cleared(&r, "rowguard_console") {
            stale = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let stale = stale.expect("the ended session's sign-out clears its cookie");
    assert_eq!(stale.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&stale), "/console/audit/login?signed_out=1");

    // Without the CSRF token nothing is cleared: another site cannot sign anyone out.
    let (mut signed_in, _) = auditor_signs_in(&app, "acme", &auditor.email, &auditor.password).await;
    let forged = signed_in.post("/console/audit/logout", &[("csrf", &"0".repeat(64))]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", html(&forged));
    assert!(!cleared(&forged, "rowguard_console"));
    assert_eq!(signed_in.get("/console/audit/").await.status, StatusCode::OK, "still signed in");

    // The operator's sign-out likewise.
    let mut operator = Browser::new(&app, "localhost:8080");
    operator.get("/console/platform/login").await;
    let csrf = operator.csrf();
    operator.cookies.insert("rowguard_operator".into(), "expired.or.forged".into());
    let out = operator.post("/console/platform/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", html(&out));
    assert_eq!(location(&out), "/console/platform/login");
    assert!(cleared(&out, "rowguard_operator"), "{:?}", set_cookies(&out));
}

#[tokio::test]
async fn the_cookies_secure_flag_follows_the_explicit_setting_over_the_default() {
    use rowguard::config::Config;
    let mut config = Config::for_tests(std::path::PathBuf::new());
    let table = [
        (None, None, false),
        (Some("postgres://x"), None, true),
        (None, Some(true), true),
        (Some("postgres://x"), Some(false), false),
    ];
    for (database_url, setting, secure) in table {
        config.database_url = database_url.map(str::to_string);
        config.console_secure_cookies = setting;
        assert_eq!(config.console_secure_cookies(), secure, "DATABASE_URL {database_url:?}, setting {setting:?}");
    }

    let app = spawn_app_with(|config| config.console_secure_cookies = Some(true)).await;
    app.create_tenant("acme").await;
    let page = app.call(Method::GET, "/console/audit/login", &[("host", "acme.localhost")], None).await;
    let csrf = set_cookies(&page).into_iter().find(|c| c.starts_with("rowguard_csrf=")).expect("a CSRF cookie");
    assert!(csrf.contains("; Secure"), "{csrf}");
    let plain = spawn_app().await;
    plain.create_tenant("acme").await;
    let page = plain.call(Method::GET, "/console/audit/login", &[("host", "acme.localhost")], None).await;
    let csrf = set_cookies(&page).into_iter().find(|c| c.starts_with("rowguard_csrf=")).expect("a CSRF cookie");
    assert!(!csrf.contains("Secure"), "development default: {csrf}");
}

/// The status of the first tenant API answer whose `RateLimit-Limit` (the burst) is `burst`.
async fn quota_of_next_answer(app: &TestApp, token: &str, burst: &str) -> StatusCode {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = app.call_as(token, "acme", Method::GET, "/v1/contacts", None).await;
        if r.headers.get("ratelimit-limit").is_some_and(|v| v == burst) {
            return r.status;
        }
        assert!(std::time::Instant::now() < deadline, "never announced a burst of {burst}: {:?}", r.headers);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn operator_changes_the_rate_limit_override_and_the_tenant_is_held_to_it() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    let mut operator = operator_signs_in(&app).await;
    let page = operator.get("/console/platform/tenants/acme").await;
    assert!(html(&page).contains("20 requests/s, burst 100 (from the free plan)"), "{}", html(&page));
    let path = "/console/platform/tenants/acme/rate-limit";

    // Refused without the token, and for values the registry does not take; nothing changes.
    let forged = operator.post(path, &[("per_second", "1"), ("burst", "2")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", html(&forged));
    let csrf = operator.csrf();
    for (per_second, burst) in [("0", "2"), ("1", "abc"), ("1", "1000001"), ("", "2")] {
        let bad = operator.post(path, &[("csrf", &csrf), ("per_second", per_second), ("burst", burst)]).await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{per_second}/{burst}: {}", html(&bad));
    }
    assert!(html(&operator.get("/console/platform/tenants/acme").await).contains("(from the free plan)"));

    let set = operator.post(path, &[("csrf", &csrf), ("per_second", "1"), ("burst", "2")]).await;
    assert_eq!(set.status, StatusCode::SEE_OTHER, "{}", html(&set));
    let page = operator.get("/console/platform/tenants/acme").await;
    assert!(html(&page).contains("1 requests/s, burst 2 (override)"), "{}", html(&page));
    // The tenant's API is held to it at once (the registry's NOTIFY reaches the cache): its
    // answers announce a burst of 2, and the third request in a row is refused.
    assert_eq!(quota_of_next_answer(&app, &owner, "2").await, StatusCode::OK);
    let statuses = [
        app.call_as(&owner, "acme", Method::GET, "/v1/contacts", None).await.status,
        app.call_as(&owner, "acme", Method::GET, "/v1/contacts", None).await.status,
    ];
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");

    let clear = operator.post(path, &[("csrf", &csrf), ("clear", "1")]).await;
    assert_eq!(clear.status, StatusCode::SEE_OTHER, "{}", html(&clear));
    assert!(html(&operator.get("/console/platform/tenants/acme").await).contains("(from the free plan)"));
    assert_eq!(quota_of_next_answer(&app, &owner, "100").await, StatusCode::OK);

    // Both changes are in the tenant's own audit log, before and after, as a plan change is.
    let events =
        app.call_as(&owner, "acme", Method::GET, "/v1/audit-events?action=tenant.rate_limit_change", None).await;
    let items = events.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{}", events.body);
    let (cleared, set) = (&items[0]["details"], &items[1]["details"]);
    assert_eq!(set["before"], json!({"rate_limit_per_second": null, "rate_limit_burst": null}));
    assert_eq!(set["after"], json!({"rate_limit_per_second": 1, "rate_limit_burst": 2}));
    assert_eq!(cleared["after"], json!({"rate_limit_per_second": null, "rate_limit_burst": null}));
    assert_eq!(items[0]["actor_type"], "operator");
    assert_eq!(items[0]["resource_id"], acme.id.to_string());
}

#[tokio::test]
async fn the_tenants_list_counts_each_tenants_rows_in_its_own_transaction() {
    use sqlx::Row;
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    contact_renamed(&app, &acme).await;
    let owner = app.owner_token(&acme).await;
    for i in 0..3 {
        let body = json!({"name": format!("Contact {i}"), "email": format!("c{i}@example.com")});
        assert_eq!(
            app.call_as(&owner, "acme", Method::POST, "/v1/contacts", Some(body)).await.status,
            StatusCode::CREATED
        );
    }
    // What the counts must be, read by the superuser (which bypasses RLS) table by table.
    let mut su = app.superuser_connection().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
          JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relrowsecurity AND c.relforcerowsecurity",
    )
    .fetch_all(&mut su)
    .await
    .expect("tables");
    let audit_tables = [
        "audit_events",
        "audit_chain_heads",
        "audit_checkpoints",
        "audit_tree_nodes",
        "audit_tree_leaves",
        "audit_tree_state",
        "audit_tree_heads",
    ];
    let mut expected = std::collections::HashMap::new();
    for tenant in [&acme, &globex] {
        let mut data = 0;
        for table in tables.iter().filter(|t| !audit_tables.contains(&t.as_str())) {
            let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table} WHERE tenant_id = $1")))
                .bind(tenant.id)
                .fetch_one(&mut su)
                .await
                .expect("count")
                .get(0);
            data += n;
        }
        expected.insert(tenant.slug.clone(), data);
    }
    assert!(expected["acme"] >= 5 && expected["globex"] >= 1, "{expected:?}");
    assert_ne!(expected["acme"], expected["globex"]);

    let mut operator = operator_signs_in(&app).await;
    let list = operator.get("/console/platform/").await;
    assert_eq!(list.status, StatusCode::OK, "{}", html(&list));
    // Each row holds its own tenant's count: acme's rows are not in globex's and vice versa.
    for slug in ["acme", "globex"] {
        let row = html(&list)
            .split("<tr>")
            .find(|r| r.contains(&format!("/console/platform/tenants/{slug}\"")))
            .expect("the tenant's row");
        assert!(row.contains(&format!("<td class=\"num rows\">{}</td>", expected[slug])), "{slug} {expected:?}: {row}");
    }
    let page = operator.get("/console/platform/tenants/acme").await;
    assert!(html(&page).contains("<td><code>contacts</code></td><td class=\"num\">4</td>"), "{}", html(&page));
}

#[tokio::test]
async fn the_health_panel_shows_request_rate_and_p99_by_route_and_no_tenant() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    for _ in 0..5 {
        assert_eq!(app.call_as(&owner, "acme", Method::GET, "/v1/contacts", None).await.status, StatusCode::OK);
    }
    let mut operator = operator_signs_in(&app).await;
    let health = operator.get("/console/platform/health").await;
    assert_eq!(health.status, StatusCode::OK, "{}", html(&health));
    let page = html(&health);
    let row = page.split("<tr>").find(|r| r.contains("<code>/v1/contacts</code>")).expect("a row for /v1/contacts");
    assert!(row.contains("<td>GET</td><td class=\"num\">5</td>"), "{row}");
    assert!(row.contains(" ms</td>"), "a p99 in milliseconds: {row}");
    assert!(page.contains("p99") && page.contains("Per second"), "{page}");
    assert!(!page.contains("acme") && !page.contains(&acme.id.to_string()), "no tenant named on the panel");
    let metrics = app.call(Method::GET, "/metrics", &[], None).await;
    let text = metrics.body.as_str().unwrap_or_default().to_string();
    assert!(text.contains("rowguard_http_request_duration_seconds_bucket"), "{text}");
    assert!(!text.contains("acme") && !text.contains(&acme.id.to_string()) && !text.contains("tenant="), "{text}");
}

#[tokio::test]
async fn times_are_utc_text_for_the_script_to_localise_under_the_strict_policy() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let auditor = app.create_user(&acme, "auditor").await;
    contact_renamed(&app, &acme).await;
    let (mut browser, _) = auditor_signs_in(&app, "acme", &auditor.email, &auditor.password).await;
    let list = browser.get("/console/audit/").await;
    let page = html(&list);
    // Without script: UTC text, and the same in the title; the datetime for the script.
    let time = page.split("<time ").nth(1).expect("a time element");
    let (attributes, rest) = time.split_once('>').expect("a tag");
    let text = rest.split_once("</time>").expect("its end").0;
    assert!(text.ends_with(" UTC") && attributes.contains(&format!("title=\"{text}\"")), "{attributes} {text}");
    assert!(attributes.contains("datetime=\"20"), "{attributes}");
    assert!(page.contains("<script src=\"/console/static/console.js\" defer></script>"), "{page}");
    assert!(!page.contains("<script>"), "no inline script");
    let csp = list.headers["content-security-policy"].to_str().expect("ascii");
    assert!(csp.contains("script-src 'self';") && !csp.contains("unsafe"), "{csp}");
    let js = app.call(Method::GET, "/console/static/console.js", &[], None).await;
    assert_eq!(js.status, StatusCode::OK);
    assert_eq!(js.headers["content-type"], "text/javascript; charset=utf-8");
    assert!(js.body.as_str().unwrap_or_default().contains("toLocaleString"));
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

/// A tenant access token for `token`'s claims with `exp` in the past (signed with the test key).
fn expired_copy(token: &str) -> String {
    use base64::Engine;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).expect("payload"))
        .expect("base64");
    let mut claims: serde_json::Value = serde_json::from_slice(&payload).expect("claims");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    claims["iat"] = json!(now - 7200);
    claims["exp"] = json!(now - 3600);
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = jsonwebtoken::decode_header(token).expect("header").kid;
    let signing = EncodingKey::from_ed_pem(crate::support::signing_key_pem().as_bytes()).expect("key");
    jsonwebtoken::encode(&header, &claims, &signing).expect("sign")
}

#[tokio::test]
async fn an_ended_session_says_so_and_sign_in_returns_to_the_page_but_never_off_the_console() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let auditor = app.create_user(&acme, "auditor").await;
    let (mut browser, _) = auditor_signs_in(&app, "acme", &auditor.email, &auditor.password).await;
    let token = browser.cookies.get("rowguard_console").cloned().expect("a session");
    browser.cookies.insert("rowguard_console".into(), expired_copy(&token));

    let here = "/console/audit/?action=contact.update&outcome=success";
    let ended = browser.get(here).await;
    assert_eq!(ended.status, StatusCode::SEE_OTHER, "{}", html(&ended));
    let to_sign_in = location(&ended).to_string();
    assert_eq!(
        to_sign_in,
        "/console/audit/login?expired=1&next=%2Fconsole%2Faudit%2F%3Faction%3Dcontact.update%26outcome%3Dsuccess"
    );
    let form = browser.get(&to_sign_in).await;
    assert_eq!(form.status, StatusCode::OK, "{}", html(&form));
    assert!(html(&form).contains("Your session ended; sign in again"), "{}", html(&form));
    assert!(
        html(&form).contains("name=\"next\" value=\"/console/audit/?action=contact.update&amp;outcome=success\""),
        "{}",
        html(&form)
    );
    let csrf = browser.csrf();
    let back = browser
        .post(
            "/console/audit/session",
            &[("csrf", &csrf), ("email", &auditor.email), ("password", &auditor.password), ("next", here)],
        )
        .await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", html(&back));
    assert_eq!(location(&back), here);

    // Anywhere else is not a place to return to: sign-in lands on the console's first page,
    // and the sign-in page does not carry it.
    for elsewhere in ["//evil.example/", "https://evil.example/console/audit/", "/console/audit/\\evil", "/console//x"]
    {
        let page = browser
            .get(&format!("/console/audit/login?{}", serde_urlencoded::to_string([("next", elsewhere)]).expect("q")))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{elsewhere}");
        assert!(!html(&page).contains("name=\"next\""), "{elsewhere}: {}", html(&page));
        let csrf = browser.csrf();
        let signed_in = browser
            .post(
                "/console/audit/session",
                &[("csrf", &csrf), ("email", &auditor.email), ("password", &auditor.password), ("next", elsewhere)],
            )
            .await;
        assert_eq!(signed_in.status, StatusCode::SEE_OTHER, "{elsewhere}: {}", html(&signed_in));
        assert_eq!(location(&signed_in), "/console/audit/", "{elsewhere}");
    }
    // A first visit (no session at all) is sent to the plain sign-in page, with no notice.
    let mut stranger = Browser::new(&app, &tenant_host("acme"));
    assert_eq!(location(&stranger.get("/console/audit/verify").await), "/console/audit/login");
}

#[tokio::test]
async fn later_event_pages_link_to_the_newest_keeping_filters_and_actors_are_shown_and_linked() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let owner = app.owner_token(&acme).await;
    for i in 0..52 {
        let body = json!({"name": format!("Contact {i}"), "email": format!("c{i}@example.com")});
        let created = app.call_as(&owner, "acme", Method::POST, "/v1/contacts", Some(body)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }
    let events = app.call_as(&owner, "acme", Method::GET, "/v1/audit-events?action=contact.create&limit=1", None).await;
    let owner_id = events.body["items"][0]["actor_id"].as_str().expect("the owner's id").to_string();
    let (mut browser, _) = auditor_signs_in(&app, "acme", &acme.owner_email, &acme.owner_password).await;

    let first = browser.get("/console/audit/?action=contact.create&outcome=success").await;
    assert_eq!(first.status, StatusCode::OK, "{}", html(&first));
    assert!(!html(&first).contains("Newest events"), "the first page is the newest");
    let short = &owner_id.replace('-', "")[24..];
    let by_actor = format!("href=\"/console/audit/?actor={owner_id}\"");
    assert!(html(&first).contains(&by_actor) && html(&first).contains(short), "{}", html(&first));
    let older = html(&first)
        .split("href=\"")
        .filter_map(|s| s.split('"').next())
        .find(|href| href.contains("cursor="))
        .expect("a link to older events")
        .replace("&amp;", "&");
    let second = browser.get(&older).await;
    assert_eq!(second.status, StatusCode::OK, "{}", html(&second));
    assert!(
        html(&second).contains(
            "href=\"/console/audit/?action=contact.create&amp;outcome=success\" rel=\"first\">← Newest events"
        ),
        "{}",
        html(&second)
    );
    let filtered = browser.get(&format!("/console/audit/?actor={owner_id}")).await;
    assert_eq!(filtered.status, StatusCode::OK, "{}", html(&filtered));
}

#[tokio::test]
async fn a_failed_verify_reads_as_a_sentence_linking_the_event() {
    use sqlx::{Acquire, Executor};
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let event_id = contact_renamed(&app, &acme).await;
    let owner = app.owner_token(&acme).await;
    let events = app.call_as(&owner, "acme", Method::GET, "/v1/audit-events?action=contact.update", None).await;
    assert_eq!(events.body["items"][0]["id"], event_id.as_str());
    let seq = events.body["items"][0]["seq"].as_i64().expect("seq");
    let mut su = app.superuser_connection().await;
    // Verify re-hashes sealed events: the tampered one must be in the tree first (on a loaded
    // Citus cluster the sealer can be seconds behind).
    crate::support::wait_until_sealed(&mut su).await;
    let mut tx = su.begin().await.expect("begin");
    tx.execute("SET LOCAL session_replication_role = replica").await.expect("replica");
    tx.execute(sqlx::AssertSqlSafe(format!(
        "UPDATE audit_events SET details = '{{\"forged\": true}}' WHERE id = '{event_id}'"
    )))
    .await
    .expect("tamper");
    tx.commit().await.expect("commit");

    let (mut browser, _) = auditor_signs_in(&app, "acme", &acme.owner_email, &acme.owner_password).await;
    let page = browser.get("/console/audit/verify").await;
    assert_eq!(page.status, StatusCode::OK, "{}", html(&page));
    let text = html(&page);
    assert!(text.contains("does not verify"), "{text}");
    assert!(
        text.contains(&format!("<a href=\"/console/audit/?cursor={}\">event {seq}</a>: ", seq + 1)),
        "the failure names and links its event: {text}"
    );
    assert!(!text.contains("&quot;reason&quot;") && !text.contains("\"reason\""), "no raw JSON: {text}");
    let linked = browser.get(&format!("/console/audit/?cursor={}", seq + 1)).await;
    assert!(html(&linked).contains(&format!("/console/audit/events/{event_id}")), "the link shows the event");
}

#[tokio::test]
async fn policy_findings_show_code_as_code_and_row_counts_name_the_tables_left_out() {
    use sqlx::Executor;
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let mut operator = operator_signs_in(&app).await;
    let list = operator.get("/console/platform/").await;
    assert!(!html(&list).contains("Not counted"), "nothing is left out of a sound catalog: {}", html(&list));
    let mut su = app.superuser_connection().await;
    su.execute("ALTER TABLE contacts NO FORCE ROW LEVEL SECURITY").await.expect("weaken");

    let page = operator.get("/console/platform/policies").await;
    assert_eq!(page.status, StatusCode::OK, "{}", html(&page));
    assert!(html(&page).contains("<code>ALTER TABLE contacts FORCE ROW LEVEL SECURITY</code>"), "{}", html(&page));
    let table = html(&page).split("<tbody>").nth(1).unwrap_or("");
    assert!(!table.contains('`'), "no literal backticks: {table}");

    let list = operator.get("/console/platform/").await;
    assert_eq!(list.status, StatusCode::OK, "{}", html(&list));
    assert!(html(&list).contains("Not counted: 1 table is left out"), "{}", html(&list));
    let tenant = operator.get("/console/platform/tenants/acme").await;
    assert_eq!(tenant.status, StatusCode::OK, "{}", html(&tenant));
    assert!(html(&tenant).contains("Not counted: 1 table is left out"), "{}", html(&tenant));
    assert!(html(&tenant).contains("(<code>contacts</code>)"), "the tenant page names it: {}", html(&tenant));
}

/// WCAG 2.x relative luminance of `#rrggbb`.
fn luminance(hex: &str) -> f64 {
    let channel = |i: usize| {
        let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")) / 255.0;
        if c <= 0.03928 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
    };
    0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
}

#[tokio::test]
async fn the_focus_outline_has_at_least_3_to_1_contrast_with_the_page() {
    let app = spawn_app().await;
    let browser = Browser::new(&app, "localhost:8080");
    let css = browser.get_as_is("/console/static/console.css").await;
    let css = html(&css);
    let rule = css.lines().find(|l| l.contains(":focus") && l.contains("outline:")).expect("a focus rule");
    let colour = rule.split("solid ").nth(1).and_then(|r| r.get(..7)).expect("the outline's colour");
    let ratio = |a: f64, b: f64| (a.max(b) + 0.05) / (a.min(b) + 0.05);
    // The page's white, the header's and the notices' backgrounds.
    for background in ["#ffffff", "#f6f8fa", "#f3f8fe"] {
        let r = ratio(luminance(colour), luminance(background));
        assert!(r >= 3.0, "{colour} on {background}: {r:.2}:1");
    }
}
