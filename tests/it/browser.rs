//! The console in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromedriver) against the real server on a loopback port. It signs in as an auditor,
//! filters, opens an event and verifies; the session cookie carried to another tenant's host is
//! refused; a member is refused; a form stripped of its CSRF token is refused; an operator
//! suspends and resumes a tenant, sets its rate-limit override and sees its row counts and the
//! health panel's routes. Times read in the browser's zone (UTC+5:30) with UTC on hover. Every
//! main page is looked at 1280×800 and at a phone's 390×844 — it must fit the width — and its
//! screenshots go to docs/console/, so the documentation shows the console as it is.
//!
//! Without chromium and chromedriver the test says so loudly and passes, unless
//! ROWGUARD_BROWSER_TESTS=required (CI sets it), when it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::{TestApp, create_operator, spawn_app};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The viewer's time zone in the browser, and its offset from UTC.
const VIEWER_ZONE: &str = "Asia/Kolkata";
const VIEWER_OFFSET_MINUTES: i64 = 330;

/// chromedriver, stopped when the test ends (it started it; nothing else is touched).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

/// Whether the browser test can run here; if not, say why, loudly, or fail when required.
fn browser_available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER].into_iter().filter(|p| !Path::new(p).exists()).collect();
    if missing.is_empty() {
        return true;
    }
    let required = std::env::var("ROWGUARD_BROWSER_TESTS").is_ok_and(|v| v == "required");
    let notice = format!(
        "\n\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! THE CONSOLE'S BROWSER TEST DID NOT RUN: {} missing.\n\
         !!! Install it: apt-get install -y chromium chromium-driver\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n",
        missing.join(" and ")
    );
    assert!(!required, "ROWGUARD_BROWSER_TESTS=required: {notice}");
    eprintln!("{notice}");
    false
}

async fn start_browser() -> (Driver, Client) {
    let port = free_port();
    // The browser's zone is one a machine is unlikely to be in (UTC+5:30), so a time shown
    // in it cannot be mistaken for UTC; chromium takes it from its environment.
    let driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .env("TZ", VIEWER_ZONE)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver(driver);
    let profile = crate::support::scratch_dir("chromium-profile");
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,800", "--hide-scrollbars", "--force-device-scale-factor=1", "--lang=en-US",
                // Every *.localhost name (the tenants' hosts) to the loopback server, IPv4.
                "--host-resolver-rules=MAP localhost 127.0.0.1, MAP *.localhost 127.0.0.1",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let capabilities = capabilities.as_object().cloned().expect("an object");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return (driver, client),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("chromedriver did not start a session: {e}"),
        }
    }
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console");
    std::fs::create_dir_all(&dir).expect("docs/console");
    dir
}

/// The page at 1280×800 and at a phone's width (390×844), as `name`.png and `name`-phone.png.
/// At each size the page must fit the screen's width (wide tables scroll inside their own box,
/// never the whole page) and show its heading.
async fn screenshots(client: &Client, name: &str) {
    for (suffix, width, height) in [("", 1280, 800), ("-phone", 390, 844)] {
        client.set_window_size(width, height).await.expect("window size");
        let fit = client
            .execute(
                "const d = document.documentElement; const h = document.querySelector('h1'); \
                 return [d.scrollWidth, d.clientWidth, window.innerWidth, h ? h.getBoundingClientRect().right : -1];",
                vec![],
            )
            .await
            .expect("measure the page");
        let [scroll, client_width, inner, heading] =
            [0, 1, 2, 3].map(|i| fit[i].as_f64().unwrap_or_else(|| panic!("{name}: measures {fit}")));
        assert!(
            inner <= f64::from(width) && inner > f64::from(width) * 0.8,
            "{name}{suffix}: viewport {inner} at {width}"
        );
        assert!(scroll <= client_width, "{name}{suffix}: the page is {scroll}px wide in a {client_width}px screen");
        assert!(heading > 0.0 && heading <= client_width, "{name}{suffix}: the heading is not on screen ({heading})");
        let png = client.screenshot().await.expect("screenshot");
        std::fs::write(screenshots_dir().join(format!("{name}{suffix}.png")), png).expect("write screenshot");
    }
    client.set_window_size(1280, 800).await.expect("window size");
}

async fn fill(client: &Client, name: &str, value: &str) {
    let field = client.find(Locator::Css(&format!("[name=\"{name}\"]"))).await.expect("field");
    field.clear().await.expect("clear");
    field.send_keys(value).await.expect("type");
}

async fn submit(client: &Client, form: &str) {
    client
        .find(Locator::Css(&format!("{form} button[type=submit]")))
        .await
        .expect("submit button")
        .click()
        .await
        .expect("click");
}

/// The page's text; empty while a navigation replaces the page under us.
async fn page_text(client: &Client) -> String {
    match client.find(Locator::Css("body")).await {
        Ok(body) => body.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Wait until the page's text holds `wanted` (after a click that navigates).
async fn wait_for_text(client: &Client, wanted: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = page_text(client).await;
        if text.contains(wanted) {
            return text;
        }
        assert!(Instant::now() < deadline, "the page never showed {wanted:?}; it shows:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sign_in(client: &Client, base: &str, email: &str, password: &str) {
    client.goto(&format!("{base}/console/")).await.expect("open the console");
    client.wait().for_element(Locator::Css("form.signin")).await.expect("the sign-in form");
    fill(client, "email", email).await;
    fill(client, "password", password).await;
    submit(client, "form.signin").await;
}

/// A tenant's API answer once it is `status` (registry changes reach the cache by NOTIFY).
async fn api_status_becomes(app: &TestApp, token: &str, status: StatusCode) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = app.call_as(token, "acme", Method::GET, "/v1/contacts", None).await;
        if r.status == status {
            return;
        }
        assert!(Instant::now() < deadline, "expected {status}, got {} {}", r.status, r.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every time on the page reads in the viewer's zone (UTC+5:30, named), and keeps the UTC
/// time in its title, shown on hover.
async fn times_are_local_with_utc_on_hover(client: &Client) {
    let times = client
        .execute(
            "return [...document.querySelectorAll('time')].map(t => [t.getAttribute('datetime'), t.textContent, t.title]);",
            vec![],
        )
        .await
        .expect("the page's times");
    let times = times.as_array().expect("a list");
    assert!(!times.is_empty(), "the page shows no time");
    for t in times {
        let [datetime, text, title] = [0, 1, 2].map(|i| t[i].as_str().expect("text").to_string());
        let utc = chrono::DateTime::parse_from_rfc3339(&datetime).expect("an RFC 3339 datetime").to_utc();
        assert_eq!(title, utc.format("%Y-%m-%d %H:%M:%S UTC").to_string(), "UTC on hover");
        let local = utc + chrono::Duration::minutes(VIEWER_OFFSET_MINUTES);
        let expected = local.format("%b %-d, %Y, %-I:%M:%S").to_string();
        assert!(text.starts_with(&expected) && text.ends_with("GMT+5:30"), "{text:?} is not {expected} GMT+5:30");
    }
}

/// The 24-hour chart's labels are readable at a desktop's and a phone's width (at least 11 px
/// as drawn, at most 24), and the "max N/h" label (the chart's last text) overlaps no bar: the
/// events here all fall in the current hour, so the newest bar is the tallest.
async fn chart_labels_are_readable(client: &Client) {
    for width in [1280, 390] {
        client.set_window_size(width, 844).await.expect("window size");
        let measured = client
            .execute(
                "const svg = document.querySelector('figure.chart svg');                  const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;                  const texts = [...svg.querySelectorAll('text')];                  const sizes = texts.map(t => parseFloat(t.getAttribute('font-size')) * scale);                  const max = texts[texts.length - 1].getBoundingClientRect();                  const hit = [...svg.querySelectorAll('rect')].filter(r => { const b = r.getBoundingClientRect();                    return b.left < max.right && b.right > max.left && b.top < max.bottom && b.bottom > max.top; });                  return [Math.min(...sizes), Math.max(...sizes), hit.length, texts[texts.length - 1].textContent];",
                vec![],
            )
            .await
            .expect("measure the chart");
        let (smallest, largest) = (measured[0].as_f64().unwrap_or(0.0), measured[1].as_f64().unwrap_or(0.0));
        assert!(
            smallest >= 11.0 && largest <= 24.0,
            "at {width}px the chart's labels are {smallest:.1} to {largest:.1} px"
        );
        assert_eq!(measured[2], 0, "at {width}px {} overlaps a bar", measured[3]);
    }
    client.set_window_size(1280, 800).await.expect("window size");
}

/// A tenant's rows in its data tables (every table with forced RLS but the audit log's), as
/// the superuser counts them past RLS.
async fn data_rows(app: &TestApp, tenant: rowguard::domain::TenantId) -> i64 {
    use sqlx::Row;
    let mut su = app.superuser_connection().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
          JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relrowsecurity AND c.relforcerowsecurity
            AND c.relname NOT LIKE 'audit\\_%'",
    )
    .fetch_all(&mut su)
    .await
    .expect("tables");
    let mut rows = 0;
    for table in tables {
        let count = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table} WHERE tenant_id = $1")))
            .bind(tenant)
            .fetch_one(&mut su)
            .await
            .expect("count");
        rows += count.get::<i64, _>(0);
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_headless_chromium() {
    if !browser_available() {
        return;
    }
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    let auditor = app.create_user(&acme, "auditor").await;
    let member = app.create_user(&acme, "member").await;
    let owner = app.owner_token(&acme).await;
    for (name, renamed) in [("Ada Byron", "Ada Lovelace"), ("Grace Murray", "Grace Hopper")] {
        let body = json!({"name": name, "email": format!("{}@example.com", name.replace(' ', ".").to_lowercase())});
        let created = app.call_as(&owner, "acme", Method::POST, "/v1/contacts", Some(body)).await;
        let path = format!("/v1/contacts/{}", created.body["id"].as_str().expect("id"));
        app.call_as(&owner, "acme", Method::PATCH, &path, Some(json!({"name": renamed}))).await;
    }
    app.call_as(&member.access_token, "acme", Method::GET, "/v1/audit-events", None).await; // a refusal
    let operator = create_operator(&app, "ops@rowguard.test").await;
    let config = rowguard::config::Config::for_tests(PathBuf::new());
    let (addr, _stop) = app.serve_tcp(rowguard::startup::limits(&config)).await;
    let tenant_base = format!("http://acme.localhost:{}", addr.port());
    let bare_base = format!("http://localhost:{}", addr.port());
    let globex_base = format!("http://globex.localhost:{}", addr.port());
    let (_driver, client) = start_browser().await;

    // The auditor: sign in, the list, a filter, an event with its diff, verify.
    client.goto(&format!("{tenant_base}/console/audit/login")).await.expect("sign-in page");
    screenshots(&client, "sign-in").await;
    sign_in(&client, &tenant_base, &auditor.email, &auditor.password).await;
    let text = wait_for_text(&client, "Last 24 hours").await;
    assert!(text.contains("contact.update") && text.contains("access.denied"), "{text}");
    times_are_local_with_utc_on_hover(&client).await;
    chart_labels_are_readable(&client).await;
    screenshots(&client, "auditor-events").await;
    fill(&client, "action", "contact.update").await;
    submit(&client, "form.filters").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client.current_url().await.expect("url").query().is_some_and(|q| q.contains("action=contact.update")) {
        assert!(Instant::now() < deadline, "the filter form did not submit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = wait_for_text(&client, "Events").await;
    assert!(!text.contains("contact.create"), "the filter leaves other actions out:\n{text}");
    client
        .find(Locator::Css("a[href^='/console/audit/events/']"))
        .await
        .expect("an event link")
        .click()
        .await
        .expect("open");
    let text = wait_for_text(&client, "Changes").await;
    assert!(text.contains("Before") && text.contains("After") && text.contains("Hopper"), "{text}");
    screenshots(&client, "auditor-event").await;
    client.find(Locator::LinkText("Verify")).await.expect("verify link").click().await.expect("verify");
    wait_for_text(&client, "Intact").await;
    screenshots(&client, "auditor-verify").await;

    // acme's session cookie carried to globex's host is refused, as an acme token is there.
    let mut stolen = client.get_named_cookie("rowguard_console").await.expect("the session cookie");
    client.goto(&format!("{globex_base}/console/audit/login")).await.expect("globex");
    wait_for_text(&client, "Sign in to globex").await;
    stolen.set_domain("globex.localhost");
    client.add_cookie(stolen).await.expect("plant the cookie");
    client.goto(&format!("{globex_base}/console/audit/")).await.expect("globex events");
    let text = wait_for_text(&client, "tenant_mismatch").await;
    assert!(text.contains("403"), "{text}");
    client.goto(&format!("{tenant_base}/console/audit/")).await.expect("back to acme");
    wait_for_text(&client, "Last 24 hours").await;
    client
        .find(Locator::Css("header form button[type=submit]"))
        .await
        .expect("sign out")
        .click()
        .await
        .expect("sign out");
    wait_for_text(&client, "You are signed out").await;

    // A member: refused with a page that says why.
    sign_in(&client, &tenant_base, &member.email, &member.password).await;
    let text = wait_for_text(&client, "cannot read the audit log").await;
    assert!(text.contains("403"), "{text}");

    // The operator: tenants, suspend (the tenant API answers 403), resume.
    client.goto(&format!("{bare_base}/console/platform/login")).await.expect("operator sign-in page");
    wait_for_text(&client, "Operator sign-in").await;
    screenshots(&client, "operator-sign-in").await;
    sign_in(&client, &bare_base, &operator.email, &operator.password).await;
    wait_for_text(&client, "Tenants").await;
    // Each tenant's rows, counted in its own transaction: acme has its users and contacts,
    // globex only its owner; the superuser's count (past RLS) says what each must be.
    let shown_rows = |slug: &'static str| {
        let client = client.clone();
        async move {
            let script = format!(
                "const a = document.querySelector(\"a[href='/console/platform/tenants/{slug}']\"); \
                 return a.closest('tr').querySelector('td.rows').textContent;"
            );
            let text = client.execute(&script, vec![]).await.expect("the row's count");
            text.as_str().expect("text").replace(',', "").parse::<i64>().expect("a number")
        }
    };
    assert_eq!(shown_rows("acme").await, data_rows(&app, acme.id).await);
    assert_eq!(shown_rows("globex").await, data_rows(&app, globex.id).await);
    assert!(shown_rows("acme").await > shown_rows("globex").await);
    screenshots(&client, "operator-tenants").await;
    client
        .find(Locator::Css("a[href='/console/platform/tenants/acme']"))
        .await
        .expect("acme")
        .click()
        .await
        .expect("open");
    wait_for_text(&client, "Suspend").await;
    // A form stripped of its CSRF token is refused and changes nothing.
    client
        .execute("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())", vec![])
        .await
        .expect("strip");
    client.find(Locator::Css("button.danger")).await.expect("suspend").click().await.expect("forged suspend");
    wait_for_text(&client, "CSRF token").await;
    assert_eq!(app.call_as(&owner, "acme", Method::GET, "/v1/contacts", None).await.status, StatusCode::OK);
    client.goto(&format!("{bare_base}/console/platform/tenants/acme")).await.expect("acme again");
    wait_for_text(&client, "Suspend").await;
    client.find(Locator::Css("button.danger")).await.expect("suspend").click().await.expect("suspend");
    wait_for_text(&client, "Resume").await;
    let refused = app.call_as(&owner, "acme", Method::GET, "/v1/contacts", None).await;
    if refused.status != StatusCode::FORBIDDEN {
        api_status_becomes(&app, &owner, StatusCode::FORBIDDEN).await;
    }
    app.call_as(&owner, "acme", Method::GET, "/v1/contacts", None)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "tenant_suspended");
    client
        .find(Locator::Css("form[action$='/status'] button[type=submit]"))
        .await
        .expect("resume")
        .click()
        .await
        .expect("resume");
    wait_for_text(&client, "Suspend").await;
    api_status_becomes(&app, &owner, StatusCode::OK).await;
    // A rate-limit override: set in the form, shown on the page, announced by the tenant's API.
    let text = page_text(&client).await;
    assert!(text.contains("20 requests/s, burst 100 (from the free plan)"), "{text}");
    fill(&client, "per_second", "5").await;
    fill(&client, "burst", "10").await;
    submit(&client, "form[aria-label='rate limit override']").await;
    wait_for_text(&client, "5 requests/s, burst 10 (override)").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = app.call_as(&owner, "acme", Method::GET, "/v1/contacts", None).await;
        if r.headers.get("ratelimit-limit").is_some_and(|v| v == "10") {
            break;
        }
        assert!(Instant::now() < deadline, "the tenant API never announced the override: {:?}", r.headers);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = wait_for_text(&client, "Use the plan's quota").await;
    assert!(text.contains("contacts") && text.contains("Rows"), "{text}");
    screenshots(&client, "operator-tenant").await;
    client.find(Locator::LinkText("Policies")).await.expect("policies").click().await.expect("policies");
    wait_for_text(&client, "No findings").await;
    screenshots(&client, "operator-policies").await;
    client.find(Locator::LinkText("Health")).await.expect("health").click().await.expect("health");
    wait_for_text(&client, "Ready").await;
    let text = wait_for_text(&client, "Requests by route").await;
    assert!(text.contains("/v1/contacts") && text.contains("p99") && text.contains(" ms"), "{text}");
    assert!(!text.contains("acme"), "no tenant on the health panel:\n{text}");
    screenshots(&client, "operator-health").await;
    client.close().await.expect("close the browser");
}
