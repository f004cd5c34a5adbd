//! `ApiError`: the only error type handlers and layers return. It maps itself to an RFC 9457
//! `application/problem+json` document with a stable `code` and the request id. A last layer
//! (`problem_documents`) also turns any other error response — from axum or tower-http — into
//! one, so nothing plain-text ever leaks out.

use std::future::Future;

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::Invalid;
use crate::http::error_codes::ErrorCode;

pub const PROBLEM_JSON: &str = "application/problem+json";
/// Retry-After on a 503: long enough for a restarting PostgreSQL or a drained pool, short
/// enough that a client does not sit out a blip.
const RETRY_UNAVAILABLE_SECS: &str = "2";

tokio::task_local! {
    /// The request id of the request being served, for problem documents built deep inside.
    /// Shared bytes, cloned per request without copying; made a string only for an error.
    static REQUEST_ID: HeaderValue;
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub detail: String,
}

/// The body of every error answer.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type; `about:blank` plus `code` is all clients need.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable error code (`tenant_mismatch`, `validation_failed`, …).
    pub code: ErrorCode,
    pub request_id: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> ApiError {
        debug_assert!(code.statuses().contains(&status.as_u16()), "{code} is not catalogued with {status}");
        ApiError { status, code, detail: detail.into() }
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn validation(invalid: Invalid) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::ValidationFailed, invalid.to_string())
    }

    /// 422 `validation_failed` with a detail made here (a column's name and what it takes).
    pub fn validation_of(detail: String) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::ValidationFailed, detail)
    }

    pub fn bad_request(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unauthorized(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    pub fn forbidden(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, code, detail)
    }

    pub fn internal(what: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %what, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "the server failed to handle the request")
    }

    /// A default error for a bare status some layer answered with.
    fn for_status(status: StatusCode) -> ApiError {
        let (code, detail) = match status {
            StatusCode::NOT_FOUND => (ErrorCode::RouteNotFound, "no such route"),
            StatusCode::METHOD_NOT_ALLOWED => (ErrorCode::MethodNotAllowed, "the route does not accept this method"),
            StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::BodyTooLarge, "the request body is too large"),
            StatusCode::SERVICE_UNAVAILABLE => (ErrorCode::Unavailable, "the service is temporarily unavailable"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                (ErrorCode::UnsupportedMediaType, "expected Content-Type: application/json")
            }
            s if s.is_server_error() => (ErrorCode::Internal, "the server failed to handle the request"),
            _ => (ErrorCode::BadRequest, "the request could not be handled"),
        };
        // Not `new`: a status no layer should produce falls back to `bad_request` or
        // `internal` whatever the catalogue lists for them.
        ApiError { status, code, detail: detail.into() }
    }

    fn problem(&self) -> Problem {
        Problem {
            kind: "about:blank".into(),
            title: self.status.canonical_reason().unwrap_or("Error").into(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code,
            request_id: REQUEST_ID.try_with(|id| id.to_str().unwrap_or_default().to_string()).ok(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        // Every 503 is a "try again shortly" (the database is down or restarting, the pool or a
        // hashing budget is exhausted, a request timed out): say when, so clients back off
        // instead of retrying at once.
        if self.status == StatusCode::SERVICE_UNAVAILABLE && !response.headers().contains_key(header::RETRY_AFTER) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_UNAVAILABLE_SECS));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> ApiError {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    "the database is unavailable; try again",
                )
            }
            // The server is there but cannot serve now: shutting down or starting (57P0x), out
            // of connections (53xxx), a statement or lock timeout (57014, 55P03), a lost
            // connection (08xxx). Retrying later is the right answer, not a 500.
            sqlx::Error::Database(ref db)
                if db.code().is_some_and(|c| {
                    c.starts_with("57") || c.starts_with("53") || c.starts_with("08") || c == "55P03"
                }) =>
            {
                tracing::warn!(error = %e, "database cannot serve now");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    "the database is unavailable; try again",
                )
            }
            // Data exceptions (class 22) come from values a request carried that PostgreSQL
            // refuses: a NUL byte in text (22021), a `\u0000` in JSON (22P05), a number out
            // of range (22003). The input is at fault, so a 4xx, never a 500.
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| c == "22021" || c == "22P05") => {
                ApiError::bad_request(
                    ErrorCode::InvalidText,
                    "text must not contain NUL bytes or characters the database cannot store",
                )
            }
            // A key checked at commit (declared DEFERRABLE INITIALLY DEFERRED, as Django
            // declares them, on a table of the operator's) that a delete here broke: a row of
            // that table still references the deleted one. Writes that set a reference are
            // answered by `from_write` or the table's own mapping before they get here.
            sqlx::Error::Database(ref db) if db.is_foreign_key_violation() => {
                let constraint = violated_constraint(db.constraint(), db.message());
                ApiError::new(
                    StatusCode::CONFLICT,
                    ErrorCode::RowInUse,
                    format!(
                        "rows of {} still reference this row (foreign key {constraint}); delete or change them first",
                        referencing_table(db.table(), db.message())
                    ),
                )
            }
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| c.starts_with("22")) => {
                tracing::warn!(error = %e, "the database refused a value");
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorCode::InvalidValue,
                    "a value is out of the range the database accepts",
                )
            }
            e => ApiError::internal(e),
        }
    }
}

impl ApiError {
    /// A write refused by a constraint the request itself can break. A foreign key → 422
    /// `invalid_reference`: keys are composite `(tenant_id, x_id)`, so another tenant's id fails
    /// exactly like a missing one and the answer cannot tell them apart. A unique index →
    /// `on_unique` with the index name. Anything else is the server's fault.
    pub fn from_write(e: sqlx::Error, on_unique: impl FnOnce(&str) -> Option<ApiError>) -> ApiError {
        if let sqlx::Error::Database(db) = &e {
            if db.is_foreign_key_violation() {
                let detail = match violated_constraint(db.constraint(), db.message()).as_str() {
                    c if c.contains("organization") => "organization_id does not name an organization of this tenant",
                    c if c.contains("contact") => "contact_id does not name a contact of this tenant",
                    _ => "a referenced id does not name a record of this tenant",
                };
                return ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidReference, detail);
            }
            if db.is_unique_violation()
                && let Some(mapped) = on_unique(&violated_constraint(db.constraint(), db.message()))
            {
                return mapped;
            }
        }
        ApiError::from(e)
    }
}

/// The name of the constraint a write broke, from an error's constraint field, or else from its
/// message. PostgreSQL fills the field; Citus passes a worker's error on without it (message,
/// detail, hint and context only), and the message names the shard's own constraint, the
/// table's name with `_{shard id}` appended (`users_email_unique_102008`). So without the field
/// the quoted name is taken from the message and a trailing `_{digits}` is removed. Empty when
/// neither says (a server whose `lc_messages` is not English, behind Citus).
pub(crate) fn violated_constraint(field: Option<&str>, message: &str) -> String {
    match field {
        Some(name) => name.to_string(),
        None => quoted_in_message(message, "constraint \"", true).unwrap_or_default(),
    }
}

/// The table whose rows still reference a deleted row, from an error's table field, or else
/// from its message (`update or delete on table "a" violates foreign key constraint "c" on
/// table "b"`: the last quoted table, `b`), without the shard suffix a Citus worker's message
/// carries; "another table" when neither says.
fn referencing_table(field: Option<&str>, message: &str) -> String {
    match field {
        Some(table) => table.to_string(),
        None => quoted_in_message(message, "on table \"", true).unwrap_or_else(|| "another table".to_string()),
    }
}

/// The name quoted after `lead` in a PostgreSQL error message (`constraint "`, `column "`,
/// `on table "`, the last one when it recurs): for errors a Citus worker passes on without
/// their fields (`violated_constraint`). `shard`: the name is a table's or a constraint's, to
/// which Citus appends the shard's `_{digits}`, removed here (a column's name is left whole).
pub(crate) fn quoted_in_message(message: &str, lead: &str, shard: bool) -> Option<String> {
    let (_, rest) = message.rsplit_once(lead)?;
    let quoted = rest.split_once('"').map_or(rest, |(name, _)| name);
    if !shard {
        return Some(quoted.to_string());
    }
    Some(match quoted.rsplit_once('_') {
        Some((base, shard)) if !base.is_empty() && !shard.is_empty() && shard.bytes().all(|b| b.is_ascii_digit()) => {
            base.to_string()
        }
        _ => quoted.to_string(),
    })
}

impl From<crate::auth::password::HashError> for ApiError {
    fn from(e: crate::auth::password::HashError) -> ApiError {
        match e {
            crate::auth::password::HashError::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Busy,
                "too many password checks are in progress; try again shortly",
            ),
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::auth::sessions::SessionError> for ApiError {
    fn from(e: crate::auth::sessions::SessionError) -> ApiError {
        use crate::auth::sessions::SessionError as E;
        let detail = e.to_string();
        match e {
            E::BadCredentials => ApiError::unauthorized(ErrorCode::InvalidCredentials, detail),
            E::NulInCredentials => ApiError::bad_request(ErrorCode::InvalidText, detail),
            E::WrongPassword => ApiError::forbidden(ErrorCode::WrongPassword, detail),
            E::InvalidRefreshToken => ApiError::unauthorized(ErrorCode::InvalidRefreshToken, detail),
            E::RefreshTokenReused => ApiError::unauthorized(ErrorCode::RefreshTokenReused, detail),
            // Handlers answer a throttled account with its wait (`account_refusal`); this is
            // the fallback for one that did not.
            E::Throttled(_) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, detail),
            E::Database(e) => e.into(),
            E::Hash(e) => e.into(),
            E::Key(e) => ApiError::internal(e),
        }
    }
}

impl From<crate::domain::permissions::Lacking> for ApiError {
    fn from(e: crate::domain::permissions::Lacking) -> ApiError {
        ApiError::forbidden(ErrorCode::Forbidden, e.to_string())
    }
}

impl From<crate::db::users::MembershipError> for ApiError {
    fn from(e: crate::db::users::MembershipError) -> ApiError {
        use crate::db::users::MembershipError as E;
        match e {
            E::NotFound => ApiError::not_found("user"),
            E::Lacks(lacking) => lacking.into(),
            E::LastOwner => ApiError::new(StatusCode::CONFLICT, ErrorCode::LastOwner, e.to_string()),
            E::Database(e) => e.into(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        match r {
            JsonRejection::JsonDataError(e) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidBody, e.body_text())
            }
            JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(ErrorCode::MalformedJson, e.body_text()),
            JsonRejection::MissingJsonContentType(_) => ApiError::for_status(StatusCode::UNSUPPORTED_MEDIA_TYPE),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE)
            }
            other => ApiError::bad_request(ErrorCode::InvalidBody, other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        ApiError::bad_request(ErrorCode::InvalidPath, r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::bad_request(ErrorCode::InvalidQuery, r.body_text())
    }
}

/// Outermost layer after the request id: makes the request id available to `ApiError`,
/// rewrites any error answer that is not already a problem document into one, and marks every
/// error answer `Cache-Control: no-store`. Here rather than on the API sub-routers alone: the
/// answers of the layers outside them (an unknown path under `/v1/`, an ambiguous request, the
/// request timeout) are no sub-router's, and no error is worth a cache's keeping anyway.
/// Run by the edge (`edge`) around everything inside it: `inner` answers with `request_id` at
/// hand for problem documents built deep inside; an error answer that is not a problem document
/// becomes one, and every error answer gets `Cache-Control: no-store`.
pub async fn problem_documents<F: Future<Output = Response>>(request_id: HeaderValue, inner: F) -> Response {
    REQUEST_ID
        .scope(request_id, async move {
            let response = inner.await;
            let status = response.status();
            if !(status.is_client_error() || status.is_server_error()) {
                return response;
            }
            // The console's refusals are pages saying the same as a problem document would
            // (`console::page::problem_page`): a browser shows them as they are.
            let is_problem = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
                v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()) || v.as_bytes().starts_with(b"text/html")
            });
            let mut response = if is_problem {
                response
            } else {
                let (mut parts, _) = response.into_parts();
                let replacement = ApiError::for_status(status).into_response();
                let (new_parts, body) = replacement.into_parts();
                for (name, value) in &new_parts.headers {
                    parts.headers.insert(name, value.clone());
                }
                parts.headers.remove(header::CONTENT_LENGTH);
                Response::from_parts(parts, Body::new(body))
            };
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(crate::http::layers::security_headers::NO_STORE),
            );
            response
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::{referencing_table, violated_constraint};

    #[test]
    fn the_referencing_table_comes_from_the_field_or_from_a_citus_workers_message() {
        assert_eq!(referencing_table(Some("deals"), ""), "deals");
        let citus = "update or delete on table \"contacts_102010\" violates foreign key constraint \
                     \"deals_tenant_id_contact_id_fkey_102012\" on table \"deals_102012\"";
        assert_eq!(referencing_table(None, citus), "deals");
        assert_eq!(referencing_table(None, "la clé étrangère est violée"), "another table");
    }

    #[test]
    fn the_constraint_comes_from_the_field_or_from_a_citus_workers_message() {
        let plain = "duplicate key value violates unique constraint \"users_email_unique\"";
        assert_eq!(violated_constraint(Some("users_email_unique"), plain), "users_email_unique");
        // The field wins even when the name ends in digits.
        assert_eq!(violated_constraint(Some("tenant_v2_2024"), "anything"), "tenant_v2_2024");
        // Citus: no field, the shard's name in the message.
        let citus = "duplicate key value violates unique constraint \"users_email_unique_102008\"";
        assert_eq!(violated_constraint(None, citus), "users_email_unique");
        let fk = "insert or update on table \"contacts_102010\" violates foreign key constraint \
                  \"contacts_tenant_id_organization_id_fkey_102010\"";
        assert_eq!(violated_constraint(None, fk), "contacts_tenant_id_organization_id_fkey");
        assert_eq!(violated_constraint(None, "doppelter Schlüsselwert verletzt Unique-Constraint »x«"), "");
        assert_eq!(violated_constraint(None, "constraint \"_123\""), "_123");
    }
}
