//! Rate limits: per tenant after authentication (the plan's quota, or the override on the
//! tenant's registry row; only authenticated requests spend it, so nobody can spend another
//! tenant's quota), per client IP for requests that name no tenant or an unknown one, per
//! (tenant, client IP) for what is not authenticated (login, refresh, logout, failed bearer
//! tokens), per account on failed password checks (tenant users and operators, with backoff),
//! and per client IP on operator login and signup. State is in-process.
//!
//! Why governor's keyed limiters and not tower_governor: tower_governor holds ONE quota per
//! layer (per-key quotas are governor issue #193), answers 500 when it cannot key a request,
//! and truncates Retry-After to whole seconds (so it can say 0). Here every distinct quota
//! (each plan's, each override's) gets its own keyed limiter, keyed by tenant id; the per-IP
//! limits use the same machinery so every refusal is the same 429 problem document with a
//! rounded-up Retry-After and RateLimit headers. A request we cannot key is keyed by a stand-in
//! (never refused with a 500). `prune` (run every minute) drops state that has fully recovered,
//! so many tenants or many client addresses do not grow memory without bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateSnapshot;

use crate::domain::Plan;
use crate::domain::TenantId;
use crate::http::ApiContext;
use crate::http::context::{ClientAddr, RequestContext, ResolvedTenant};
use crate::http::error::ApiError;
use crate::http::error_codes::ErrorCode;
pub use crate::limits::{Account, Limit, Refusal};
use crate::limits::{AccountGate, FailureLimiter, Keyed, PRUNE_EARLY_AT, ceil_secs, keyed};
use crate::metrics::RateLimited;

/// Requests that fail tenant resolution (no tenant, unknown, suspended): after this many from
/// one address, one more per second. Only failures count, so a client whose tenant resolves
/// is never held to it.
const UNRESOLVED: Limit = Limit { replenish_every: Duration::from_secs(1), burst: NonZeroU32::new(30).unwrap() };
/// Login attempts from one address to one tenant, successful or not: a burst, then one per 3 s.
const LOGIN_PER_CLIENT: (Duration, u32) = (Duration::from_secs(3), 20);
/// Refresh and logout from one address to one tenant: each costs a lookup and carries no
/// bearer token, so they are held per address like login, less tightly (clients refresh
/// routinely, and an office shares one address).
const SESSIONS_PER_CLIENT: (Duration, u32) = (Duration::from_secs(1), 60);
/// Bearer requests that fail authentication (no, bad, expired or another tenant's token),
/// per (tenant, address): thirty, then one a second. Only failures count.
const UNAUTHENTICATED_PER_CLIENT: Limit =
    Limit { replenish_every: Duration::from_secs(1), burst: NonZeroU32::new(30).unwrap() };
/// Failed password checks per account (whatever the address): five, then one per 20 s,
/// doubling while the failures go on — guessing a password gets slow, while the account's
/// owner can still log in between attempts.
const LOGIN_FAILURES_PER_ACCOUNT: (Duration, u32) = (Duration::from_secs(20), 5);
/// Operator logins from one address: fewer than tenant logins (an operator account opens
/// every tenant), then one per 6 s.
const OPERATOR_LOGIN_PER_CLIENT: (Duration, u32) = (Duration::from_secs(6), 10);
/// Failed operator logins per account: three, then one per minute, doubling.
const OPERATOR_FAILURES_PER_ACCOUNT: (Duration, u32) = (Duration::from_secs(60), 3);
/// Signups from one address that got as far as hashing a password and creating (or trying to
/// create) a tenant; refused ones (invalid slug, bad e-mail) cost nothing and do not count.
const SIGNUP_PER_CLIENT: (Duration, u32) = (Duration::from_secs(60), 5);

/// Every limiter of one instance.
pub struct RateLimits {
    enabled: bool,
    clock: DefaultClock,
    /// One keyed limiter per distinct quota in use: the three plans', and each override's.
    /// A tenant whose quota changes is simply keyed in another limiter from then on.
    tenants: RwLock<HashMap<Limit, Arc<Keyed<TenantId>>>>,
    unresolved: FailureLimiter<IpAddr>,
    login_per_client: Keyed<(TenantId, IpAddr)>,
    sessions_per_client: Keyed<(TenantId, IpAddr)>,
    unauthenticated: FailureLimiter<(TenantId, IpAddr)>,
    account_failures: FailureLimiter<Account>,
    operator_login_per_client: Keyed<IpAddr>,
    operator_failures: FailureLimiter<Account>,
    signup_per_client: FailureLimiter<IpAddr>,
}

impl RateLimits {
    pub fn new(enabled: bool) -> RateLimits {
        let plans = [Plan::Free, Plan::Pro, Plan::Enterprise]
            .map(|plan| (Limit::for_plan(plan), Arc::new(keyed(Limit::for_plan(plan)))));
        let limit = |(period, burst): (Duration, u32)| Limit::one_per(period, burst);
        RateLimits {
            enabled,
            clock: DefaultClock::default(),
            tenants: RwLock::new(plans.into_iter().collect()),
            unresolved: FailureLimiter::new(UNRESOLVED),
            login_per_client: keyed(limit(LOGIN_PER_CLIENT)),
            sessions_per_client: keyed(limit(SESSIONS_PER_CLIENT)),
            unauthenticated: FailureLimiter::new(UNAUTHENTICATED_PER_CLIENT),
            account_failures: FailureLimiter::with_backoff(limit(LOGIN_FAILURES_PER_ACCOUNT)),
            operator_login_per_client: keyed(limit(OPERATOR_LOGIN_PER_CLIENT)),
            operator_failures: FailureLimiter::with_backoff(limit(OPERATOR_FAILURES_PER_ACCOUNT)),
            signup_per_client: FailureLimiter::new(limit(SIGNUP_PER_CLIENT)),
        }
    }

    /// Prune every minute for as long as the limits are in use (a weak reference, so a
    /// dropped context — a finished test — ends the task).
    pub fn spawn_pruning(self: &Arc<Self>) {
        let weak: Weak<RateLimits> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            every.tick().await;
            loop {
                every.tick().await;
                match weak.upgrade() {
                    Some(limits) => limits.prune(),
                    None => return,
                }
            }
        });
    }

    /// Forget keys whose state is indistinguishable from fresh, and limiters of overrides no
    /// tenant uses any more.
    pub fn prune(&self) {
        if let Ok(mut tenants) = self.tenants.write() {
            let plans = [Plan::Free, Plan::Pro, Plan::Enterprise].map(Limit::for_plan);
            tenants.retain(|limit, limiter| {
                limiter.retain_recent();
                limiter.shrink_to_fit();
                plans.contains(limit) || !limiter.is_empty()
            });
        }
        self.unresolved.prune();
        self.unauthenticated.prune();
        self.account_failures.prune();
        self.operator_failures.prune();
        self.signup_per_client.prune();
        for limiter in [&self.login_per_client, &self.sessions_per_client] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        self.operator_login_per_client.retain_recent();
        self.operator_login_per_client.shrink_to_fit();
    }

    /// For what answers before routing (CORS preflights): the refusal an address has earned by
    /// failing to name a tenant, if any.
    pub fn unresolved_refusal(&self, ip: IpAddr) -> Option<Refusal> {
        if !self.enabled {
            return None;
        }
        self.unresolved.refused(&key_ip(ip))
    }

    /// Count one request from `ip` that named no known tenant.
    pub fn record_unresolved(&self, ip: IpAddr) {
        if self.enabled {
            self.unresolved.record_failure(key_ip(ip), &self.clock);
        }
    }

    /// Keys held across all limiters (for tests and metrics).
    pub fn tracked_keys(&self) -> usize {
        let tenants: usize = self.tenants.read().map(|t| t.values().map(|l| l.len()).sum()).unwrap_or(0);
        tenants
            + self.unresolved.tracked()
            + self.unauthenticated.tracked()
            + self.account_failures.tracked()
            + self.operator_failures.tracked()
            + self.login_per_client.len()
            + self.sessions_per_client.len()
            + self.operator_login_per_client.len()
            + self.signup_per_client.tracked()
    }

    fn failures_for(&self, account: &Account) -> &FailureLimiter<Account> {
        match account {
            Account::User(..) | Account::UnknownUser(..) => &self.account_failures,
            Account::Operator(_) | Account::UnknownOperator(_) => &self.operator_failures,
        }
    }

    /// Whether `account` must wait before its password is checked again.
    pub fn account_refused(&self, account: &Account) -> Option<Refusal> {
        if !self.enabled {
            return None;
        }
        self.failures_for(account).refused(account)
    }

    /// Count one failed password check against `account` (login, operator login, the current
    /// password of a password change).
    pub fn record_account_failure(&self, account: Account) {
        if self.enabled {
            self.failures_for(&account).record_failure(account, &self.clock);
        }
    }

    /// Bearer routes, before authentication: the refusal an address has earned for `tenant`
    /// by failing to authenticate, if any, answered before the token is even read.
    pub fn unauthenticated_refusal(&self, tenant: TenantId, ip: IpAddr) -> Option<Refusal> {
        if !self.enabled {
            return None;
        }
        self.unauthenticated.refused(&(tenant, key_ip(ip)))
    }

    /// Count one bearer request to `tenant` from `ip` that failed authentication.
    pub fn record_unauthenticated(&self, tenant: TenantId, ip: IpAddr) {
        if self.enabled {
            self.unauthenticated.record_failure((tenant, key_ip(ip)), &self.clock);
        }
    }

    fn tenant_limiter(&self, limit: Limit) -> Arc<Keyed<TenantId>> {
        if let Some(limiter) = self.tenants.read().ok().and_then(|t| t.get(&limit).cloned()) {
            return limiter;
        }
        match self.tenants.write() {
            Ok(mut tenants) => Arc::clone(tenants.entry(limit).or_insert_with(|| Arc::new(keyed(limit)))),
            // A poisoned map still must not fail the request: a private limiter admits it.
            Err(_) => Arc::new(keyed(limit)),
        }
    }

    /// Spend one request of `tenant`'s quota.
    pub fn check_tenant(&self, tenant: &ResolvedTenant) -> Result<Allowance, Refusal> {
        let limit = match tenant.rate_limit {
            Some(o) => Limit::per_second(o.per_second, o.burst),
            None => Limit::for_plan(tenant.plan),
        };
        let limiter = self.tenant_limiter(limit);
        let outcome = limiter.check_key(&tenant.id);
        if limiter.len() >= PRUNE_EARLY_AT {
            limiter.retain_recent();
        }
        self.outcome(outcome, limit)
    }

    fn outcome(
        &self,
        outcome: Result<StateSnapshot, governor::NotUntil<<DefaultClock as Clock>::Instant>>,
        limit: Limit,
    ) -> Result<Allowance, Refusal> {
        match outcome {
            Ok(snapshot) => Ok(Allowance { remaining: snapshot.remaining_burst_capacity(), limit }),
            Err(not_until) => Err(Refusal { wait: not_until.wait_time_from(self.clock.now()), limit }),
        }
    }
}

/// What is left of a quota after an admitted request.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    pub remaining: u32,
    pub limit: Limit,
}

fn set_number(headers: &mut HeaderMap, name: &'static str, value: u64) {
    headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
}

/// RateLimit headers (draft-ietf-httpapi-ratelimit-headers): the burst, what is left of it,
/// seconds until it is full again, and the policy as `burst;w=window`.
fn rate_limit_headers(headers: &mut HeaderMap, limit: Limit, remaining: u32, reset_secs: u64) {
    set_number(headers, "ratelimit-limit", u64::from(limit.burst.get()));
    set_number(headers, "ratelimit-remaining", u64::from(remaining));
    set_number(headers, "ratelimit-reset", reset_secs);
    let policy = format!("{};w={}", limit.burst.get(), limit.window_secs());
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.insert(HeaderName::from_static("ratelimit-policy"), value);
    }
}

/// The 429 problem document, with Retry-After in whole seconds (never 0) and RateLimit headers.
pub fn too_many_requests(refusal: Refusal, detail: &str) -> Response {
    let retry_after = ceil_secs(refusal.wait);
    let mut response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, detail).into_response();
    let headers = response.headers_mut();
    set_number(headers, "retry-after", retry_after);
    rate_limit_headers(headers, refusal.limit, 0, retry_after);
    response
}

fn key_ip(ip: IpAddr) -> IpAddr {
    ClientAddr(ip).limit_key()
}

/// The client's address as the per-address limits key it (`ClientAddr::limit_key`), from the
/// request's context.
pub(crate) fn client_ip(request: &Request) -> IpAddr {
    RequestContext::of(request.extensions()).map_or(ClientAddr::UNKNOWN, |c| c.client()).limit_key()
}

/// Right after authentication (`gate`): spend one request of the tenant's quota. Only an
/// authenticated request gets here, so only the tenant's own users spend its quota. Ok(None)
/// when limits are off; Ok(allowance) to be reported on the answer (`quota_headers`); the 429
/// (recorded, sampled, in the audit log) when the quota is spent.
pub(crate) async fn spend_tenant_quota(
    ctx: &ApiContext,
    context: &RequestContext,
    method: &Method,
    path: &str,
) -> Result<Option<Allowance>, Response> {
    if !ctx.rate_limits.enabled {
        return Ok(None);
    }
    let Some(tenant) = context.tenant() else {
        // Mis-ordered steps would land here; never a 500 for it, so key by address instead.
        return match refuse_unresolved(ctx, context.client()) {
            Some(refusal) => Err(refusal),
            None => Ok(None),
        };
    };
    match ctx.rate_limits.check_tenant(tenant) {
        Ok(allowance) => Ok(Some(allowance)),
        Err(refusal) => {
            ctx.metrics.rate_limited(RateLimited::Tenant(tenant.plan));
            Box::pin(super::audit::record_throttled(ctx, context, method, path, "tenant")).await;
            Err(too_many_requests(refusal, "this tenant has used its request quota; retry later"))
        }
    }
}

/// The RateLimit headers of an admitted request's answer, unless an inner, stricter limit
/// answered: its headers are the ones that matter then.
pub(crate) fn quota_headers(response: &mut Response, allowance: Allowance) {
    if response.headers().contains_key("ratelimit-limit") {
        return;
    }
    let reset =
        ceil_secs(allowance.limit.replenish_every * (allowance.limit.burst.get().saturating_sub(allowance.remaining)));
    rate_limit_headers(response.headers_mut(), allowance.limit, allowance.remaining, reset);
}

/// In front of tenant resolution (`gate`): an address whose requests keep failing to name a
/// tenant (random hosts, unknown slugs) is refused before resolution looks anything up.
/// Resolution itself counts the failures (`tenant::resolve_into`).
pub(crate) fn refuse_unresolved(ctx: &ApiContext, client: ClientAddr) -> Option<Response> {
    let refusal = ctx.rate_limits.unresolved_refusal(client.0)?;
    ctx.metrics.rate_limited(RateLimited::Unresolved);
    Some(too_many_requests(refusal, "too many requests naming no known tenant from this address; retry later"))
}

/// Login, refresh and logout: every attempt per (tenant, client address) (`gate`). The
/// per-account limit on failures is the login's own (`routes::auth::login`): it keys on the
/// account the database found, which only the handler knows.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PerAddress {
    Login,
    Sessions,
}

/// The 429 (recorded, sampled, in the audit log) when the address has used its attempts for
/// the request's tenant.
pub(crate) async fn refuse_per_tenant_address(
    ctx: &ApiContext,
    context: &RequestContext,
    method: &Method,
    path: &str,
    which: PerAddress,
) -> Option<Response> {
    if !ctx.rate_limits.enabled {
        return None;
    }
    let limits = &ctx.rate_limits;
    let tenant = context.tenant()?.id; // no tenant: the tenant steps answer that
    let ip = context.client().limit_key();
    let (limiter, quota, metric, label, detail) = match which {
        PerAddress::Login => (
            &limits.login_per_client,
            LOGIN_PER_CLIENT,
            RateLimited::LoginPerAddress,
            "login_per_address",
            "too many login attempts from this address; retry later",
        ),
        PerAddress::Sessions => (
            &limits.sessions_per_client,
            SESSIONS_PER_CLIENT,
            RateLimited::SessionsPerAddress,
            "sessions_per_address",
            "too many session requests from this address; retry later",
        ),
    };
    let limit = Limit::one_per(quota.0, quota.1);
    let refusal = limits.outcome(limiter.check_key(&(tenant, ip)), limit).err()?;
    ctx.metrics.rate_limited(metric);
    Box::pin(super::audit::record_throttled(ctx, context, method, path, label)).await;
    Some(too_many_requests(refusal, detail))
}

/// Operator login, per client address, every attempt: operators have no tenant whose log
/// could record the refusal, so it goes to the service log.
pub async fn limit_operator_login(State(ctx): State<ApiContext>, request: Request, next: Next) -> Response {
    if !ctx.rate_limits.enabled {
        return next.run(request).await;
    }
    let ip = client_ip(&request);
    let limits = &ctx.rate_limits;
    let (period, burst) = OPERATOR_LOGIN_PER_CLIENT;
    let quota = Limit::one_per(period, burst);
    if let Err(refusal) = limits.outcome(limits.operator_login_per_client.check_key(&ip), quota) {
        ctx.metrics.rate_limited(RateLimited::PlatformPerAddress);
        tracing::warn!(client = %ip, "operator login refused: too many attempts from this address");
        return too_many_requests(refusal, "too many login attempts from this address; retry later");
    }
    next.run(request).await
}

/// Self-service signup, per client address: counted are the signups that did the expensive
/// part (an argon2 hash, a tenant insert), whether the slug was free or not.
pub async fn limit_signup(State(ctx): State<ApiContext>, request: Request, next: Next) -> Response {
    if !ctx.rate_limits.enabled {
        return next.run(request).await;
    }
    let ip = client_ip(&request);
    let limits = &ctx.rate_limits;
    if let Some(refusal) = limits.signup_per_client.refused(&ip) {
        ctx.metrics.rate_limited(RateLimited::PlatformPerAddress);
        tracing::warn!(client = %ip, "signup refused: too many from this address");
        return too_many_requests(refusal, "too many signups from this address; retry later");
    }
    let response = next.run(request).await;
    if response.status().is_success() || response.status() == StatusCode::CONFLICT {
        limits.signup_per_client.record_failure(ip, &limits.clock);
    }
    response
}

/// The 429 for an account whose failed password checks must wait.
pub fn account_refusal(refusal: Refusal) -> Response {
    too_many_requests(refusal, "too many failed password checks for this account; retry later")
}

impl AccountGate for RateLimits {
    fn refused(&self, account: &Account) -> Option<Refusal> {
        self.account_refused(account)
    }

    fn record_failure(&self, account: Account) {
        self.record_account_failure(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(ceil_secs(Duration::ZERO), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(999)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(key_ip(a), key_ip(b));
        assert_ne!(key_ip(a), key_ip(c));
        let v4: IpAddr = "192.0.2.1".parse().expect("ip");
        assert_eq!(key_ip(v4), v4);
    }

    #[test]
    fn a_tenant_over_its_quota_is_refused_and_pruning_forgets_recovered_state() {
        let limits = RateLimits::new(true);
        let tenant = ResolvedTenant {
            id: TenantId::new_v7(),
            slug: "t".into(),
            plan: Plan::Free,
            rate_limit: Some(crate::db::registry::RateLimitOverride { per_second: 1000, burst: 3 }),
            cors_allowed_origins: Arc::from([]),
        };
        for _ in 0..3 {
            assert!(limits.check_tenant(&tenant).is_ok());
        }
        let refusal = limits.check_tenant(&tenant).expect_err("over quota");
        assert!(refusal.wait <= Duration::from_millis(1));
        assert_eq!(limits.tracked_keys(), 1);
        std::thread::sleep(Duration::from_millis(10)); // 1000/s: the bucket is full again
        limits.prune();
        assert_eq!(limits.tracked_keys(), 0);
        // The override's limiter went with it; the plans' stay.
        assert_eq!(limits.tenants.read().map(|t| t.len()).unwrap_or(0), 3);
    }
}
