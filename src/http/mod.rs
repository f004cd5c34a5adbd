//! The HTTP surface: `ApiContext` (the state every handler shares) and `router()`, which
//! lists every layer once, in request order, outermost first.

pub mod client_ip;
pub mod console;
pub mod context;
pub mod error;
pub mod error_codes;
pub mod extract;
pub mod header_timer;
pub mod layers;
pub mod openapi;
pub mod pagination;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::audit::AuditSigner;
use crate::auth::{JwtKeys, PasswordHasher};
use crate::http::error_codes::ErrorCode;
use error::ApiError;
use layers::gate::{Gate, TenantGateLayer};
use layers::tenant::TenantCache;

/// Shared by every handler and layer. One pointer: every `from_fn_with_state` layer and
/// every `State` extraction clones it, several times per request, so a clone must be one
/// reference-count increment, not one per field (measured: cloning and dropping a context of
/// a dozen `Arc`s was 3% of all CPU in the get-by-id benchmark).
#[derive(Clone)]
pub struct ApiContext(Arc<ApiState>);

impl std::ops::Deref for ApiContext {
    type Target = ApiState;

    fn deref(&self) -> &ApiState {
        &self.0
    }
}

impl From<ApiState> for ApiContext {
    fn from(state: ApiState) -> ApiContext {
        ApiContext(Arc::new(state))
    }
}

/// What `ApiContext` points to.
pub struct ApiState {
    /// The database, as only extractors, health and metrics may open it (`extract::Door`).
    pub door: extract::Door,
    pub tenants: Arc<TenantCache>,
    /// The adopted tables `/v1/data` serves, as last read from the catalog.
    pub data: Arc<crate::data::Tables>,
    /// Current role, status and session cut-off per user, for the auth layer (ASVS 8.3.2).
    pub users: layers::auth::UserStates,
    pub keys: Arc<JwtKeys>,
    /// Login, refresh, logout and password changes (`auth::sessions`).
    pub sessions: Arc<crate::auth::sessions::Sessions>,
    /// argon2 for tenant users (login, password changes, new users).
    pub hasher: PasswordHasher,
    /// argon2 for operators and signup: a budget of its own, so a flood of operator logins
    /// cannot starve tenant logins of hashing slots, nor the other way round.
    pub platform_hasher: PasswordHasher,
    pub base_domain: Arc<str>,
    /// Per-tenant, per-address and login rate limits (per instance).
    pub rate_limits: Arc<layers::rate_limit::RateLimits>,
    /// Proxies whose forwarding headers name the client (`client_ip`).
    pub trusted_proxies: Arc<client_ip::TrustedProxies>,
    /// Send Strict-Transport-Security (off in development: the embedded database).
    pub hsts: bool,
    /// Signs audit checkpoints.
    pub audit: Arc<AuditSigner>,
    pub access_sampler: Arc<layers::audit::AccessSampler>,
    /// The platform login's pool (`rowguard_platform_login`) for `/platform/v1`; None: 503.
    /// It opens any tenant (`PlatformConn::tenant_tx`): tenant routes' handlers leave it alone.
    pub platform: Option<crate::platform::PlatformDb>,
    /// Self-service signup (`POST /platform/v1/signup`) is on.
    pub signup: bool,
    /// The browser console (`/console/`), unless ROWGUARD_CONSOLE=false.
    pub console: Option<console::ConsoleSettings>,
    /// Audit exports running at once, per tenant and on this instance.
    pub exports: Arc<routes::audit_export::ExportSlots>,
    /// What `/metrics` exposes.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The bearer token `/metrics` wants, if any (ROWGUARD_METRICS_TOKEN).
    pub metrics_token: Option<Arc<str>>,
    /// The outbox's worker loop on this instance (ROWGUARD_WORKERS > 0), stopped after the
    /// last request when the service shuts down.
    pub workers: Option<Arc<crate::jobs::Workers>>,
    /// Webhooks may target http:// and local addresses (ROWGUARD_WEBHOOK_ALLOW_LOCAL).
    pub webhooks_allow_local: bool,
}

/// Limits the router enforces, from `Config`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
    /// How long a client may take to send a request's headers (slowloris), and to start the
    /// next request on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// Client connections served at once.
    pub max_connections: usize,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "rowguard", description = "Multi-tenant API with tenant isolation enforced by PostgreSQL Row-Level Security. \
        Tenant routes take the tenant from the host ({slug}.{base domain} or a custom domain) or an X-Tenant header."),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "users"), (name = "contacts"), (name = "organizations"), (name = "deals"), (name = "audit"),
        (name = "webhooks", description = "Signed deliveries of the tenant's data changes to its own HTTPS endpoints (Standard Webhooks), \
            with retries and a delivery log. Owners and admins."),
        (name = "operations"),
        (name = "platform", description = "Operators (not tenant-scoped): tenants, their lifecycle and domains. \
            Bare host only; tokens from /platform/v1/auth/login, refused on tenant routes."))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// Every route with its documentation and its route-specific layers. The tenant API (`/v1`) and
/// the platform API (`/platform/v1`) are sub-routers, each with its own layer stack, merged
/// rather than nested: a nested router wrapped in layers is an opaque service, so every request
/// would be routed twice (prefix, then path) — measured at ~2% of get-by-id's throughput
/// (BENCHMARKS.md) for no separation that merging does not already give. Tenant routes resolve
/// the tenant; all of them but login, refresh and logout also authenticate.
fn api_routes(ctx: &ApiContext) -> OpenApiRouter<ApiContext> {
    let authenticated = OpenApiRouter::new()
        .routes(routes!(routes::me::me))
        .routes(routes!(routes::me::change_password))
        .routes(routes!(routes::auth::logout_all))
        .routes(routes!(routes::users::list_users, routes::users::create_user))
        .routes(routes!(routes::users::get_user, routes::users::update_user, routes::users::delete_user))
        .routes(routes!(routes::organizations::list_organizations, routes::organizations::create_organization))
        .routes(routes!(
            routes::organizations::get_organization,
            routes::organizations::update_organization,
            routes::organizations::delete_organization
        ))
        .routes(routes!(routes::deals::list_deals, routes::deals::create_deal))
        .routes(routes!(routes::deals::get_deal, routes::deals::update_deal, routes::deals::delete_deal))
        .routes(routes!(routes::contacts::list_contacts, routes::contacts::create_contact))
        .routes(routes!(
            routes::contacts::get_contact,
            routes::contacts::update_contact,
            routes::contacts::delete_contact
        ))
        // Adopted tables: documented per table from the catalog (`data::openapi`), not here.
        .route("/v1/data/{table}", get(routes::data::list_rows).post(routes::data::create_row))
        .route(
            "/v1/data/{table}/{id}",
            get(routes::data::get_row).patch(routes::data::update_row).delete(routes::data::delete_row),
        )
        .routes(routes!(routes::webhooks::list_webhooks, routes::webhooks::create_webhook))
        .routes(routes!(
            routes::webhooks::get_webhook,
            routes::webhooks::update_webhook,
            routes::webhooks::delete_webhook
        ))
        .routes(routes!(routes::webhooks::rotate_secret))
        .routes(routes!(routes::webhooks::list_deliveries))
        .routes(routes!(routes::webhooks::redeliver))
        .routes(routes!(routes::audit::list_events))
        .routes(routes!(routes::audit_export::export_events))
        .routes(routes!(routes::audit::verify_events))
        .routes(routes!(routes::audit::list_checkpoints, routes::audit::create_checkpoint))
        .routes(routes!(routes::audit_log::head))
        .routes(routes!(routes::audit_log::proof))
        .routes(routes!(routes::audit_log::consistency))
        // One gate per group (`layers::gate`): the per-address limit on unresolved requests,
        // resolution, then the refusal recorder around authentication (an address that keeps
        // failing it is refused before its token is read) and the tenant's quota (only an
        // authenticated request spends it, so nobody can spend another tenant's).
        .route_layer(TenantGateLayer::new(ctx.clone(), Gate::Bearer));
    // Refresh and logout present a refresh token in the body, not a bearer token (the access
    // token has usually expired by then); the tenant still comes from resolution.
    let sessions = OpenApiRouter::new()
        .routes(routes!(routes::auth::refresh))
        .routes(routes!(routes::auth::logout))
        .route_layer(TenantGateLayer::new(ctx.clone(), Gate::Sessions));
    let login = OpenApiRouter::new()
        .routes(routes!(routes::auth::login))
        .route_layer(TenantGateLayer::new(ctx.clone(), Gate::Login));
    let tenant_api = OpenApiRouter::new().merge(login).merge(sessions).merge(authenticated);
    // CORS wraps the tenant API whole: `layer`, not `route_layer`, so that a preflight (OPTIONS,
    // which no route handles) reaches it and is answered there; other requests get the
    // resolved tenant's origins. The 405 fallback is set first so that the layer wraps it (the
    // router-wide one set later only replaces fallbacks still at their default).
    let (tenant_router, tenant_doc) = tenant_api.split_for_parts();
    let tenant_router = tenant_router
        .method_not_allowed_fallback(method_not_allowed)
        .layer(layers::cors::PerTenantCorsLayer::new(ctx.clone()))
        .layer(no_store());
    let tenant_api = OpenApiRouter::with_openapi(tenant_doc).merge(OpenApiRouter::from(tenant_router));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::health::healthz))
        .routes(routes!(routes::health::readyz))
        .routes(routes!(routes::jwks::jwks))
        .routes(routes!(routes::audit_keys::audit_keys))
        .routes(routes!(routes::metrics::metrics))
        .merge(tenant_api)
        .merge(platform_routes(ctx))
}

/// `/platform/v1`: no tenant resolution, the bare host only; all but login and signup need an
/// operator's platform token.
fn platform_routes(ctx: &ApiContext) -> OpenApiRouter<ApiContext> {
    use routes::platform::{audit_log, auth, domains, signup, tenants};
    let operators = OpenApiRouter::new()
        .routes(routes!(tenants::list_tenants, tenants::create_tenant))
        .routes(routes!(tenants::get_tenant, tenants::update_tenant, tenants::delete_tenant))
        .routes(routes!(domains::add_domain))
        .routes(routes!(domains::remove_domain))
        .routes(routes!(domains::set_primary_domain))
        .routes(routes!(audit_log::head))
        .routes(routes!(audit_log::proof))
        .routes(routes!(audit_log::consistency))
        .route_layer(from_fn_with_state(ctx.clone(), layers::platform_auth::authenticate_operator));
    let login = OpenApiRouter::new()
        .routes(routes!(auth::operator_login))
        .route_layer(from_fn_with_state(ctx.clone(), layers::rate_limit::limit_operator_login));
    let signup = OpenApiRouter::new()
        .routes(routes!(signup::signup))
        .route_layer(from_fn_with_state(ctx.clone(), layers::rate_limit::limit_signup));
    let platform = OpenApiRouter::new()
        .merge(login)
        .merge(signup)
        .merge(operators)
        .route_layer(from_fn_with_state(ctx.clone(), layers::platform_auth::bare_host_only));
    let (router, doc) = platform.split_for_parts();
    let router = router.method_not_allowed_fallback(method_not_allowed).layer(no_store());
    OpenApiRouter::with_openapi(doc).merge(OpenApiRouter::from(router))
}

/// `Cache-Control: no-store` on every answer of the router it wraps (the tenant and platform
/// APIs, whose answers carry tenant data and tokens).
fn no_store() -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(
        header::CACHE_CONTROL,
        HeaderValue::from_static(layers::security_headers::NO_STORE),
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotAllowed, "the route does not accept this method")
}

pub fn router(ctx: ApiContext, limits: Limits) -> Router {
    let (routes, mut api) = api_routes(&ctx).split_for_parts();
    openapi::document_common_answers(&mut api);
    openapi::resolve_patterns(&mut api);
    let data_routes = ["/v1/data/{table}", "/v1/data/{table}/{id}"];
    ctx.metrics.register_routes(api.paths.paths.keys().map(String::as_str).chain(data_routes));
    let document = openapi::Document::new(&api, Arc::clone(&ctx.data));
    let edge = layers::edge::EdgeLayer::new(ctx.clone());
    // The console is a sub-router with its own layers (`console::routes`); switched off, its
    // paths are simply not routed (the 404 fallback below).
    let console = match ctx.console {
        Some(_) => console::routes(&ctx),
        None => Router::new(),
    };
    Router::new()
        .merge(routes)
        .merge(console)
        // The document itself is an API answer (the API's policy); the page that renders it
        // gets the docs policy.
        .route("/openapi.json", get(move || std::future::ready(document.current())))
        .merge(Router::from(SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from("/openapi.json"))).layer(
            SetResponseHeaderLayer::overriding(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(layers::security_headers::DOCS_CSP),
            ),
        ))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, ErrorCode::RouteNotFound, "no such route") })
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(ctx)
        .layer(
            ServiceBuilder::new()
                // Request id, observation, problem documents and security headers, in that
                // order, as one service (`layers::edge`).
                .layer(edge)
                .layer(layers::request_shape::RefuseAmbiguousLayer)
                .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, limits.request_timeout))
                .layer(DefaultBodyLimit::max(limits.body_limit_bytes)),
        )
}
