//! The catalogue of error codes: every `code` a problem document can carry, the statuses it
//! comes with and what it means. `ApiError` takes only these; the OpenAPI document lists them
//! as the `code` enum of `Problem` and under each status an operation documents
//! (`openapi::document_common_answers`), so the document cannot drift from what is answered.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};

macro_rules! error_codes {
    ($($variant:ident = $code:literal, [$($status:literal),+], $meaning:literal;)+) => {
        /// A stable, machine-readable error code (see the module comment).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $(#[doc = $meaning] $variant,)+
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)+ }
            }

            /// The statuses this code is answered with.
            pub fn statuses(self) -> &'static [u16] {
                match self { $(ErrorCode::$variant => &[$($status),+],)+ }
            }

            pub fn meaning(self) -> &'static str {
                match self { $(ErrorCode::$variant => $meaning,)+ }
            }
        }
    };
}

error_codes! {
    AmbiguousRequest = "ambiguous_request", [400], "the request could be read more than one way: a Host, X-Tenant, Authorization, Content-Type, Content-Encoding or Origin header given twice, or a target naming another host than Host";
    BadRequest = "bad_request", [400], "the request could not be handled";
    BodyTooLarge = "body_too_large", [413], "the request body is larger than the limit";
    Busy = "busy", [503], "too many password checks are in progress";
    CheckViolation = "check_violation", [422], "a value breaks a CHECK constraint of an adopted table (the detail names it)";
    ContactInUse = "contact_in_use", [409], "the contact is still referenced by a deal";
    CorsOriginNotAllowed = "cors_origin_not_allowed", [403], "the Origin is not on the tenant's CORS list";
    DomainTaken = "domain_taken", [409], "another tenant already has this domain";
    EmailTaken = "email_taken", [409], "a user of this tenant (or an operator) already has this e-mail";
    ExportLimit = "export_limit", [429], "too many audit exports are running";
    Forbidden = "forbidden", [403], "the role lacks the permission the operation needs";
    Internal = "internal", [500], "the server failed to handle the request";
    InvalidAuthorization = "invalid_authorization", [401], "the Authorization header is not a bearer token";
    InvalidBody = "invalid_body", [400, 422], "the body is unreadable (400) or not an object of the expected shape (422)";
    InvalidCredentials = "invalid_credentials", [401], "the e-mail or password is wrong";
    InvalidCursor = "invalid_cursor", [400], "the paging cursor is not one this API issued";
    InvalidHeader = "invalid_header", [400], "a header value is malformed";
    InvalidHost = "invalid_host", [400], "the Host header is not a valid host name";
    InvalidPath = "invalid_path", [400], "a path parameter is malformed (not a uuid, say)";
    InvalidQuery = "invalid_query", [400], "a query parameter is malformed or unknown";
    InvalidReference = "invalid_reference", [422], "a referenced row does not exist in this tenant";
    InvalidRefreshToken = "invalid_refresh_token", [401], "the refresh token is not valid";
    InvalidText = "invalid_text", [400], "text that PostgreSQL cannot store (a NUL byte, say)";
    InvalidToken = "invalid_token", [401], "the access token is not valid";
    InvalidValue = "invalid_value", [422], "a value is out of the range the database accepts";
    LastOwner = "last_owner", [409], "the tenant's last active owner cannot be demoted, deactivated or removed";
    MalformedJson = "malformed_json", [400], "the body is not JSON";
    MethodNotAllowed = "method_not_allowed", [405], "the route does not accept this method";
    MetricsTokenRequired = "metrics_token_required", [401], "/metrics wants its bearer token";
    MissingToken = "missing_token", [401], "the route needs a bearer token";
    NotFound = "not_found", [404], "no such resource in this tenant";
    NotReady = "not_ready", [503], "/readyz: the database cannot be reached, its migration history cannot be read, or it lacks a migration this binary needs";
    NotSealed = "not_sealed", [409], "the audit event is committed but not in the tenant's Merkle tree yet (sealing follows within about a second); retry";
    PlatformUnavailable = "platform_unavailable", [503], "the platform API is not configured on this instance";
    RateLimited = "rate_limited", [429], "a rate limit was reached; see Retry-After";
    RefreshTokenReused = "refresh_token_reused", [401], "a rotated refresh token was presented again; its login is ended";
    RowInUse = "row_in_use", [409], "rows of another table still reference this row (the detail names the foreign key)";
    RouteNotFound = "route_not_found", [404], "no such route";
    SessionRevoked = "session_revoked", [401], "the token's sessions were ended (logout-all, password change, deactivation)";
    SignupDisabled = "signup_disabled", [404], "self-service signup is off";
    SlugTaken = "slug_taken", [409], "another tenant already has this slug";
    TenantDeleted = "tenant_deleted", [409], "the tenant is deleted; it cannot change any more";
    TenantNotDeleted = "tenant_not_deleted", [409], "only a deleted tenant's registry entry can be purged";
    TenantAmbiguous = "tenant_ambiguous", [400], "the host and X-Tenant name different tenants";
    TenantMismatch = "tenant_mismatch", [403], "the token belongs to another tenant";
    TenantNotFound = "tenant_not_found", [404], "no such tenant";
    TenantRequired = "tenant_required", [400], "the request names no tenant";
    TenantSuspended = "tenant_suspended", [403], "the tenant is suspended";
    TokenExpired = "token_expired", [401], "the access token has expired";
    Unavailable = "unavailable", [503], "the database is unavailable; retry later";
    UniqueViolation = "unique_violation", [409], "another row of this tenant already has these values for a unique key (the detail names it)";
    UnknownEventType = "unknown_event_type", [422], "a webhook names an event type no table emits (`<resource>.created|updated|deleted`, `<resource>.*` or `*`)";
    UnknownTable = "unknown_table", [404], "no adopted table of this name is served (or the table is not served over HTTP: `rowguard tables list` says why)";
    UnsupportedContentEncoding = "unsupported_content_encoding", [415], "the body's Content-Encoding is not accepted";
    UnsupportedMediaType = "unsupported_media_type", [415], "expected Content-Type: application/json";
    ValidationFailed = "validation_failed", [422], "a field failed validation";
    WebhookLimit = "webhook_limit", [409], "the tenant has as many webhook subscriptions as it may (50); delete one first";
    WebhookPending = "webhook_pending", [409], "the message is still queued to be sent or retried; nothing to redeliver";
    WebhookUrlRefused = "webhook_url_refused", [422], "the webhook URL is refused: not https://, carrying credentials, or a host that is (or resolves to) a loopback, private or link-local address";
    WrongPassword = "wrong_password", [403], "the current password is wrong";
}

/// The catalogue as the Markdown table docs/api.md shows (a test keeps them equal).
pub fn markdown_table() -> String {
    let mut out = String::from("| code | status | meaning |\n|---|---|---|\n");
    for code in ErrorCode::ALL {
        let statuses: Vec<String> = code.statuses().iter().map(u16::to_string).collect();
        out.push_str(&format!("| `{code}` | {} | {} |\n", statuses.join(", "), code.meaning()));
    }
    out
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ErrorCode, D::Error> {
        let text = String::deserialize(d)?;
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code {text:?}")))
    }
}

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .description(Some(
                "Stable, machine-readable error code; the statuses each comes with are listed under each answer.",
            ))
            .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
            .into()
    }
}

impl utoipa::ToSchema for ErrorCode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert!(code.as_str().chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{code}");
            let json = serde_json::to_string(code).expect("serialise");
            let back: ErrorCode = serde_json::from_str(&json).expect("deserialise");
            assert_eq!(back, *code);
            assert!(code.statuses().iter().all(|s| (400..600).contains(s)), "{code}");
        }
    }
}
