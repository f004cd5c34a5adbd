//! Rate limits over the real router and database: a noisy tenant is refused while its
//! neighbour is served, quota changes apply without a restart, unresolved and login floods
//! are limited per client address, and forwarding headers count only from trusted proxies.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::json;
use sqlx::Executor;

use crate::support::{TestApp, TestResponse, from_peer, spawn_app, spawn_app_with};

pub fn header_number(r: &TestResponse, name: &str) -> Option<u64> {
    r.headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// A 429 problem document with a Retry-After of at least one whole second and RateLimit headers.
#[track_caller]
pub fn assert_rate_limited(r: &TestResponse) {
    r.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry_after = header_number(r, "retry-after").expect("Retry-After in whole seconds");
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    assert_eq!(header_number(r, "ratelimit-remaining"), Some(0));
    assert!(header_number(r, "ratelimit-limit").is_some_and(|n| n >= 1));
    assert!(r.headers.get("ratelimit-policy").is_some());
    // Refusals carry the security headers like every other answer.
    assert_eq!(r.headers.get("x-content-type-options").map(|v| v.as_bytes()), Some(&b"nosniff"[..]));
}

async fn set_quota(app: &TestApp, slug: &str, sql_set: &str) {
    let mut su = app.superuser_connection().await;
    su.execute(sqlx::AssertSqlSafe(format!("UPDATE tenants SET {sql_set} WHERE slug = '{slug}'")))
        .await
        .expect("quota");
}

#[tokio::test]
async fn a_noisy_tenant_is_refused_while_its_neighbour_is_served() {
    let app = spawn_app().await;
    let noisy = app.create_tenant("noisy").await;
    let quiet = app.create_tenant("quiet").await;
    // A small override for the noisy tenant; the quiet one is on the pro plan (burst 500).
    set_quota(&app, "noisy", "rate_limit_per_second = 1, rate_limit_burst = 5").await;
    set_quota(&app, "quiet", "plan = 'pro'").await;
    let noisy_token = app.owner_token(&noisy).await;
    let quiet_token = app.owner_token(&quiet).await;

    let (mut noisy_ok, mut noisy_refused) = (0, 0);
    for round in 0..40 {
        let r = app.call_as(&noisy_token, "noisy", Method::GET, "/v1/contacts", None).await;
        match r.status {
            StatusCode::OK => noisy_ok += 1,
            _ => {
                assert_rate_limited(&r);
                assert_eq!(header_number(&r, "ratelimit-limit"), Some(5));
                noisy_refused += 1;
            }
        }
        let r = app.call_as(&quiet_token, "quiet", Method::GET, "/v1/contacts", None).await;
        assert_eq!(r.status, StatusCode::OK, "the quiet tenant was refused in round {round}: {}", r.body);
        assert_eq!(header_number(&r, "ratelimit-limit"), Some(500));
        assert!(header_number(&r, "ratelimit-remaining").is_some());
    }
    // Burst 5 (login does not spend it), one more per second of the test at most.
    assert!(noisy_ok <= 5 + 3, "noisy tenant admitted {noisy_ok} times");
    assert!(noisy_refused >= 30, "noisy tenant refused only {noisy_refused} times");

    // The refusals are in the noisy tenant's audit log, sampled (at most 20 a minute, together
    // with other refusals), and none in the quiet tenant's.
    let mut su = app.superuser_connection().await;
    let count = |tenant: rowguard::domain::TenantId| {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'access.rate_limited'",
        )
        .bind(tenant)
    };
    let noisy_logged = count(noisy.id).fetch_one(&mut su).await.expect("count");
    let quiet_logged = count(quiet.id).fetch_one(&mut su).await.expect("count");
    assert!((1..=20).contains(&noisy_logged), "{noisy_logged} refusals recorded for {noisy_refused}");
    assert_eq!(quiet_logged, 0);
}

#[tokio::test]
async fn a_quota_change_takes_effect_without_a_restart() {
    let app = spawn_app().await;
    let t = app.create_tenant("shifty").await;
    let token = app.owner_token(&t).await;
    let r = app.call_as(&token, "shifty", Method::GET, "/v1/contacts", None).await;
    assert_eq!(header_number(&r, "ratelimit-limit"), Some(100), "free plan: {:?}", r.headers);

    // Lower it: the registry's NOTIFY drops the cached tenant, and the next requests are
    // held to the new quota.
    set_quota(&app, "shifty", "rate_limit_per_second = 1, rate_limit_burst = 2").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = app.call_as(&token, "shifty", Method::GET, "/v1/contacts", None).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_rate_limited(&r);
            assert_eq!(header_number(&r, "ratelimit-limit"), Some(2));
            break;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(Instant::now() < deadline, "the lowered quota never applied");
        // Slower than the free plan's refill, so only the new quota can refuse.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Raise it: back to the plan, now enterprise.
    set_quota(&app, "shifty", "rate_limit_per_second = NULL, rate_limit_burst = NULL, plan = 'enterprise'").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = app.call_as(&token, "shifty", Method::GET, "/v1/contacts", None).await;
        if r.status == StatusCode::OK && header_number(&r, "ratelimit-limit") == Some(2000) {
            break;
        }
        assert!(Instant::now() < deadline, "the raised quota never applied: {} {:?}", r.status, r.headers);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn requests_naming_no_known_tenant_are_limited_per_client_address() {
    let app = spawn_app().await;
    let t = app.create_tenant("known").await;
    let mut refused_at = None;
    for i in 0..40 {
        let slug = format!("random-{i}");
        let r = app.send(from_peer("198.51.100.1", Method::GET, "/v1/contacts", &[("x-tenant", &slug)], None)).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_rate_limited(&r);
            refused_at = Some(i);
            break;
        }
        r.assert_problem(StatusCode::NOT_FOUND, "tenant_not_found");
    }
    // Thirty, then refused (one more per second of test time may come back meanwhile).
    assert!(refused_at.is_some_and(|i| (30..=32).contains(&i)), "refused at {refused_at:?}");
    // The refusal comes before resolution, whatever the request names.
    let r = app.send(from_peer("198.51.100.1", Method::GET, "/v1/contacts", &[("x-tenant", "known")], None)).await;
    assert_rate_limited(&r);
    // Other addresses are not affected, nor are resolved requests counted against them.
    let r = app.send(from_peer("198.51.100.2", Method::GET, "/v1/contacts", &[("x-tenant", "random-x")], None)).await;
    r.assert_problem(StatusCode::NOT_FOUND, "tenant_not_found");
    for i in 0..40 {
        let r = app.send(from_peer("198.51.100.3", Method::GET, "/v1/contacts", &[("x-tenant", "known")], None)).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            // Only the limit on unauthenticated requests per (tenant, address) may refuse it:
            // thirty failures, then one a second.
            assert_rate_limited(&r);
            assert_eq!(header_number(&r, "ratelimit-limit"), Some(30));
            assert!(i >= 30, "refused after {i} unauthenticated requests");
        } else {
            r.assert_problem(StatusCode::UNAUTHORIZED, "missing_token");
        }
    }
    // None of that spent the tenant's own quota: its owner still has the whole burst.
    let token = app.owner_token(&t).await;
    let r = app.call_as(&token, "known", Method::GET, "/v1/contacts", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(header_number(&r, "ratelimit-remaining"), Some(99));
}

#[tokio::test]
async fn forwarding_headers_count_only_from_trusted_proxies() {
    let app = spawn_app_with(|c| {
        c.trusted_proxies = vec![rowguard::http::client_ip::parse_trusted_proxy("10.0.0.0/8").expect("net")]
    })
    .await;
    let unresolved = |peer: &'static str, xff: &'static str| {
        from_peer(peer, Method::GET, "/v1/contacts", &[("x-tenant", "nobody"), ("x-forwarded-for", xff)], None)
    };
    // Through the proxy, as client 203.0.113.5, until refused.
    let mut refused = false;
    for _ in 0..31 {
        let r = app.send(unresolved("10.0.0.1", "203.0.113.5")).await;
        refused = r.status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(refused, "the client named by a trusted proxy was never limited");
    // The same proxy for another client: that client has its own allowance.
    app.send(unresolved("10.0.0.1", "203.0.113.6")).await.assert_problem(StatusCode::NOT_FOUND, "tenant_not_found");
    // Another proxy hop of ours in between changes nothing: still 203.0.113.5.
    assert_rate_limited(&app.send(unresolved("10.0.0.2", "203.0.113.5, 10.0.0.1")).await);
    // A client that is not a proxy cannot borrow (or spend) someone else's address.
    let r = app.send(unresolved("198.51.100.9", "203.0.113.5")).await;
    r.assert_problem(StatusCode::NOT_FOUND, "tenant_not_found");
}

#[tokio::test]
async fn login_is_limited_per_account_and_per_client_address() {
    let app = spawn_app().await;
    let t = app.create_tenant("locked").await;
    let login = |peer: &'static str, email: &str, password: &str| {
        from_peer(
            peer,
            Method::POST,
            "/v1/auth/login",
            &[("x-tenant", "locked")],
            Some(json!({"email": email, "password": password})),
        )
    };
    // Five wrong passwords for the owner, from five addresses: then even the right one waits.
    for (i, peer) in ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"].into_iter().enumerate() {
        let r = app.send(login(peer, &t.owner_email, &format!("wrong-{i}"))).await;
        r.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    let r = app.send(login("192.0.2.6", &t.owner_email.to_uppercase(), &t.owner_password)).await;
    assert_rate_limited(&r);
    assert!(header_number(&r, "retry-after").is_some_and(|s| (1..=20).contains(&s)));
    // Another account of the tenant is not held up by it.
    let r = app.send(login("192.0.2.6", "someone@locked.test", "whatever")).await;
    r.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");

    // One address: twenty attempts, then refused, whichever account it names.
    let started = Instant::now();
    let mut refused_at = None;
    for i in 0..40 {
        let r = app.send(login("192.0.2.50", &format!("user{i}@locked.test"), "x")).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_rate_limited(&r);
            refused_at = Some(i);
            break;
        }
        r.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    // Twenty, then refused; one more attempt comes back every 3 s the loop took.
    let refills = (started.elapsed().as_secs() / 3) as usize;
    assert!(refused_at.is_some_and(|i| (20..=21 + refills).contains(&i)), "refused at {refused_at:?}");
}

#[tokio::test]
async fn requests_without_a_socket_address_are_limited_not_failed() {
    // In-process calls carry no ConnectInfo; a forwarding header cannot be believed then.
    let app = spawn_app().await;
    let r = app
        .call(Method::GET, "/v1/contacts", &[("x-tenant", "nobody"), ("x-forwarded-for", "not, an, address")], None)
        .await;
    r.assert_problem(StatusCode::NOT_FOUND, "tenant_not_found");
    let r = app.call(Method::GET, "/v1/contacts", &[("forwarded", "for=\"[garbage\"")], None).await;
    r.assert_problem(StatusCode::BAD_REQUEST, "tenant_required");
}
