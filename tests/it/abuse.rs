//! One tenant, or nobody at all, cannot take the service from everyone else: password
//! guessing (operators and tenant users) slows to a crawl whatever the spelling of the
//! account, anonymous traffic cannot spend a tenant's quota, hostile Host headers cost no
//! lookup and no memory, and an operator-login flood leaves tenant logins their own hashing.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::json;
use sqlx::Executor;

use crate::rate_limits::{assert_rate_limited, header_number};
use crate::support::{TestApp, create_operator, from_peer, spawn_app};

async fn operator_login_from(app: &TestApp, peer: &str, email: &str, password: &str) -> crate::support::TestResponse {
    let body = json!({"email": email, "password": password});
    app.send(from_peer(peer, Method::POST, "/platform/v1/auth/login", &[], Some(body))).await
}

#[tokio::test]
async fn guessing_an_operator_password_is_refused_per_account_and_then_even_the_right_one_waits() {
    let app = spawn_app().await;
    let op = create_operator(&app, "root@rowguard.test").await;
    // Three wrong guesses from three addresses (so no per-address limit is involved) ...
    for (i, peer) in ["192.0.2.1", "192.0.2.2", "192.0.2.3"].into_iter().enumerate() {
        let r = operator_login_from(&app, peer, &op.email, &format!("guess-{i}")).await;
        r.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    // ... and the account is locked for everyone, whatever the spelling of its e-mail.
    for (peer, email) in [("192.0.2.4", op.email.clone()), ("192.0.2.5", op.email.to_uppercase())] {
        let r = operator_login_from(&app, peer, &email, &op.password).await;
        assert_rate_limited(&r);
        assert!(header_number(&r, "retry-after").is_some_and(|s| (1..=60).contains(&s)), "{:?}", r.headers);
    }
    // Another operator is not held up by it.
    let other = create_operator(&app, "other@rowguard.test").await;
    let r = operator_login_from(&app, "192.0.2.6", &other.email, &other.password).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn operator_logins_are_limited_per_client_address_whatever_account_they_name() {
    let app = spawn_app().await;
    let mut refused_at = None;
    for i in 0..30 {
        let r = operator_login_from(&app, "198.51.100.7", &format!("nobody{i}@rowguard.test"), "x").await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_rate_limited(&r);
            refused_at = Some(i);
            break;
        }
        r.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    // Ten attempts, then one per 6 s.
    assert!(refused_at.is_some_and(|i| (10..=12).contains(&i)), "refused at {refused_at:?}");
    // Another address is not affected.
    let r = operator_login_from(&app, "198.51.100.8", "nobody@rowguard.test", "x").await;
    r.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
}

#[tokio::test]
async fn an_operator_login_flood_does_not_queue_tenant_logins_behind_it() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("steady").await;
    // Forty wrong operator logins at once, each from its own address (a botnet: no
    // per-address limit stops them), each costing an argon2 verification.
    let flood = (0..40).map(|i| {
        let app = &app;
        async move {
            let r =
                operator_login_from(app, &format!("203.0.113.{}", i + 1), &format!("x{i}@rowguard.test"), "x").await;
            assert!(
                r.status == StatusCode::UNAUTHORIZED || r.status == StatusCode::SERVICE_UNAVAILABLE,
                "{} {}",
                r.status,
                r.body
            );
            Instant::now()
        }
    });
    let tenant_login = async {
        // Once the flood is queued up on the platform's hashing budget ...
        tokio::time::sleep(Duration::from_millis(150)).await;
        let started = Instant::now();
        let r = app.login("steady", &tenant.owner_email, &tenant.owner_password).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        (started, Instant::now())
    };
    let (flood_done, (started, done)) = tokio::join!(futures_util::future::join_all(flood), tenant_login);
    // ... a tenant login runs on its own budget: it does not wait for the flood's forty
    // hashes, only shares the CPU with the one operator hash running at a time.
    let overtaken = flood_done.iter().filter(|at| **at > started && **at < done).count();
    assert!(overtaken < 10, "{overtaken} operator logins finished while one tenant login waited");
    assert!(flood_done.iter().filter(|at| **at > done).count() >= 10, "the flood was over before the tenant login ran");
}

#[tokio::test]
async fn anonymous_requests_cannot_spend_a_tenants_quota() {
    let app = spawn_app().await;
    let victim = app.create_tenant("victim").await;
    // A small quota that refills slowly, so that anything spending it would show.
    let mut su = app.superuser_connection().await;
    su.execute("UPDATE tenants SET rate_limit_per_second = 1, rate_limit_burst = 10 WHERE slug = 'victim'")
        .await
        .expect("quota");
    let token = app.owner_token(&victim).await;
    // Twenty anonymous requests a second from each of five addresses, for two seconds.
    for round in 0..2 {
        for peer in ["198.51.100.10", "198.51.100.11", "198.51.100.12", "198.51.100.13", "198.51.100.14"] {
            for _ in 0..20 {
                let r = app.send(from_peer(peer, Method::GET, "/v1/contacts", &[("x-tenant", "victim")], None)).await;
                assert!(
                    r.status == StatusCode::UNAUTHORIZED || r.status == StatusCode::TOO_MANY_REQUESTS,
                    "round {round}: {}",
                    r.status
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The tenant's own users still have the whole quota: 200 anonymous requests spent none.
    let r = app.call_as(&token, "victim", Method::GET, "/v1/contacts", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(header_number(&r, "ratelimit-limit"), Some(10));
    assert_eq!(header_number(&r, "ratelimit-remaining"), Some(9));
    // Nor do logins spend it, right or wrong (three would leave at most 6).
    for _ in 0..3 {
        app.login("victim", &victim.owner_email, "wrong")
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    let r = app.call_as(&token, "victim", Method::GET, "/v1/contacts", None).await;
    assert!(header_number(&r, "ratelimit-remaining").is_some_and(|n| n >= 8), "{:?}", r.headers);
}

#[tokio::test]
async fn a_token_of_another_tenant_counts_as_unauthenticated_per_address() {
    let app = spawn_app().await;
    app.create_tenant("victim").await;
    let attacker = app.create_tenant("attacker").await;
    let token = app.owner_token(&attacker).await;
    let auth = format!("Bearer {token}");
    let mut refused_at = None;
    for i in 0..40 {
        let headers = [("x-tenant", "victim"), ("authorization", auth.as_str())];
        let r = app.send(from_peer("198.51.100.20", Method::GET, "/v1/contacts", &headers, None)).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_rate_limited(&r);
            refused_at = Some(i);
            break;
        }
        r.assert_problem(StatusCode::FORBIDDEN, "tenant_mismatch");
    }
    assert!(refused_at.is_some_and(|i| (30..=32).contains(&i)), "refused at {refused_at:?}");
}

/// The e-mail of an account, spelled so that PostgreSQL's `lower()` may fold it onto the
/// plain spelling (U+0130, LATIN CAPITAL LETTER I WITH DOT ABOVE, for `i`).
const PLAIN: &str = "vivian@locked.test";
const DOTTED: &str = "v\u{130}vian@locked.test";

#[tokio::test]
async fn login_limits_key_on_the_account_the_database_finds_not_on_the_spelling() {
    let app = spawn_app().await;
    let t = app.create_tenant("locked").await;
    let owner = app.owner_token(&t).await;
    let body = json!({"email": PLAIN, "password": "vivian-password-1", "role": "member"});
    let r = app.call_as(&owner, "locked", Method::POST, "/v1/users", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let mut su = app.superuser_connection().await;
    let folds: bool = sqlx::query_scalar("SELECT lower($1) = lower($2)")
        .bind(DOTTED)
        .bind(PLAIN)
        .fetch_one(&mut su)
        .await
        .expect("lower");

    // Five wrong guesses with the dotted spelling, each from its own address.
    for i in 0..5 {
        let body = json!({"email": DOTTED, "password": format!("guess-{i}")});
        let peer = format!("192.0.2.{}", 20 + i);
        let r = app.send(from_peer(&peer, Method::POST, "/v1/auth/login", &[("x-tenant", "locked")], Some(body))).await;
        r.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    let body = json!({"email": PLAIN, "password": "vivian-password-1"});
    let r =
        app.send(from_peer("192.0.2.40", Method::POST, "/v1/auth/login", &[("x-tenant", "locked")], Some(body))).await;
    if folds {
        // The database finds Vivian under both spellings: one account, one budget.
        assert_rate_limited(&r);
    } else {
        // The database tells them apart: the guesses named no account, and Vivian is free.
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
}

#[tokio::test]
async fn wrong_current_passwords_spend_the_same_budget_as_failed_logins() {
    let app = spawn_app().await;
    let t = app.create_tenant("locked").await;
    let token = app.owner_token(&t).await;
    let change = |current: &str| json!({"current_password": current, "new_password": "a-brand-new-password"});
    for i in 0..5 {
        let r =
            app.call_as(&token, "locked", Method::POST, "/v1/me/password", Some(change(&format!("guess-{i}")))).await;
        r.assert_problem(StatusCode::FORBIDDEN, "wrong_password");
    }
    // Even the right current password waits now, and so does a login with it.
    let r = app.call_as(&token, "locked", Method::POST, "/v1/me/password", Some(change(&t.owner_password))).await;
    assert_rate_limited(&r);
    let body = json!({"email": t.owner_email, "password": t.owner_password});
    let r =
        app.send(from_peer("192.0.2.77", Method::POST, "/v1/auth/login", &[("x-tenant", "locked")], Some(body))).await;
    assert_rate_limited(&r);
}

#[tokio::test]
async fn hostile_host_headers_cost_no_lookup_and_no_cache_entry() {
    let app = spawn_app().await;
    let t = app.create_tenant("known").await;
    let token = app.owner_token(&t).await;
    let auth = format!("Bearer {token}");
    let (entries_before, _) = app.ctx.tenants.size();
    // 150 requests, each with a 300 KB Host and a valid X-Tenant: refused as malformed.
    let huge = format!("{}.example.com", "a".repeat(300 * 1024));
    for i in 0..150 {
        let host = format!("{i}{huge}");
        let headers = [("host", host.as_str()), ("x-tenant", "known"), ("authorization", auth.as_str())];
        let r = app
            .send(from_peer(&format!("198.51.100.{}", 30 + i % 100), Method::GET, "/v1/contacts", &headers, None))
            .await;
        r.assert_problem(StatusCode::BAD_REQUEST, "invalid_host");
    }
    // A 300 KB X-Tenant cannot be a slug: unknown, without a lookup.
    let long_slug = "a".repeat(300 * 1024);
    let r = app.call(Method::GET, "/v1/contacts", &[("x-tenant", &long_slug)], None).await;
    r.assert_problem(StatusCode::NOT_FOUND, "tenant_not_found");
    let (entries_after, weight) = app.ctx.tenants.size();
    assert_eq!(entries_after, entries_before, "hostile names reached the cache");
    assert!(weight < 64 * 1024, "the cache weighs {weight} bytes");
}

#[tokio::test]
async fn unknown_hosts_are_charged_to_the_address_even_when_x_tenant_resolves() {
    let app = spawn_app().await;
    let t = app.create_tenant("known").await;
    let token = app.owner_token(&t).await;
    let auth = format!("Bearer {token}");
    let mut refused_at = None;
    for i in 0..40 {
        let host = format!("random-{i}.example.com");
        let headers = [("host", host.as_str()), ("x-tenant", "known"), ("authorization", auth.as_str())];
        let r = app.send(from_peer("198.51.100.200", Method::GET, "/v1/contacts", &headers, None)).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_rate_limited(&r);
            refused_at = Some(i);
            break;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    // Thirty lookups in vain, then refused before any more.
    assert!(refused_at.is_some_and(|i| (30..=32).contains(&i)), "refused at {refused_at:?}");
    // The tenant's registered names still cost nothing from another address.
    let headers = [("host", "known.localhost"), ("authorization", auth.as_str())];
    let r = app.send(from_peer("198.51.100.201", Method::GET, "/v1/contacts", &headers, None)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
