//! `GET /.well-known/jwks.json`: the public keys that verify access tokens (Ed25519 OKP JWKs by
//! key id), so other services can verify our tokens and follow a key rotation.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::http::ApiContext;

/// The JWK set: the signing key first, then every key still accepted for verification.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "operations",
    responses((status = 200, description = "RFC 7517 JWK set", content_type = "application/json")))]
pub async fn jwks(State(ctx): State<ApiContext>) -> impl IntoResponse {
    // Cacheable for a few minutes: a rotation lists the new key before it signs anything.
    ([(header::CACHE_CONTROL, "public, max-age=300")], axum::Json(ctx.keys.jwks()))
}
