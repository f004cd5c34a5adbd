//! Getting in and out: where the index sends each host, first visits, cookies and their
//! Secure flag, sessions never renewed, ended or signed out everywhere.

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::{Browser, access_denied_events, auditor_signs_in, html, location, tenant_host};
use crate::support::{TestResponse, spawn_app, spawn_app_with};

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
