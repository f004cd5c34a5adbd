//! `GET /.well-known/audit-keys.json`: the public key that signs every tenant's tree heads,
//! readable without a token, on any host. An auditor or an outside witness fetches it once,
//! keeps it, and from then on checks heads and proofs without asking the service to vouch for
//! itself (a head served with its own key proves nothing against a rewritten log; a head
//! checked against a key pinned last month does).
//!
//! The key comes in two spellings: as an RFC 8037 JWK (OKP, Ed25519), and as the C2SP
//! verifier key (`<name>+<key id>+<base64 key>`) that signed-note tooling reads. Both name the
//! same 32 bytes; the log's name is the prefix of every tenant's origin line.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::ApiContext;

#[derive(Serialize, ToSchema)]
pub struct AuditKeys {
    /// The signing key as a JWK set (one key today; a rotation would list the old key too).
    pub keys: Vec<AuditJwk>,
    /// The name heads are signed as; a tenant's log is `<log_name>/<tenant id>`.
    pub log_name: String,
    /// The same key as a C2SP verifier key, for signed-note tooling.
    pub verifier_key: String,
}

#[derive(Serialize, ToSchema)]
pub struct AuditJwk {
    pub kty: &'static str,
    pub crv: &'static str,
    /// The Ed25519 public key, base64url without padding.
    pub x: String,
    pub kid: String,
    #[serde(rename = "use")]
    pub key_use: &'static str,
    pub alg: &'static str,
}

/// The audit log's public signing key.
#[utoipa::path(get, path = "/.well-known/audit-keys.json", tag = "audit",
    responses((status = 200, body = AuditKeys)))]
pub async fn audit_keys(State(ctx): State<ApiContext>) -> impl IntoResponse {
    let signer = &ctx.audit;
    let keys = AuditKeys {
        keys: vec![AuditJwk {
            kty: "OKP",
            crv: "Ed25519",
            x: URL_SAFE_NO_PAD.encode(signer.verifying_key().to_bytes()),
            kid: signer.key_id().to_string(),
            key_use: "sig",
            alg: "EdDSA",
        }],
        log_name: signer.log_name().to_string(),
        verifier_key: signer.verifier_key(),
    };
    ([(header::CACHE_CONTROL, "public, max-age=300")], axum::Json(keys))
}
