//! The auditor's console on a tenant's host: the events list, its filters and pages, a
//! change's diff, the verify verdict, and how times and the focus outline are shown.

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::{Browser, auditor_signs_in, contact_renamed, html, location};
use crate::support::spawn_app;

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
