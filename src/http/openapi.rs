//! The answers every operation can give whatever its handler does, added to the OpenAPI
//! document from what the operation is: a tenant route (resolution can refuse it), a bearer
//! route (authentication and the tenant's quota can), one that reads a body (the extractor
//! can), one with a path parameter, and any route (an unavailable database, the request
//! timeout), each answer's codes described from the error catalogue (`error_codes`). Each operation's own `responses(...)` list what only its handler answers; an
//! answer listed there is left as it is. With this, a client generated from the document (or a
//! fuzzer checking conformance) meets no status it was not told about.

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{Content, OpenApi, Ref, RefOr};

use super::error_codes::ErrorCode;

/// What a route is, for the answers it can give.
struct Route<'a> {
    path: &'a str,
    operation: &'a mut Operation,
}

impl Route<'_> {
    fn tenant(&self) -> bool {
        self.path.starts_with("/v1/")
    }

    fn platform(&self) -> bool {
        self.path.starts_with("/platform/v1/")
    }

    fn bearer(&self) -> bool {
        self.operation.security.as_ref().is_some_and(|s| !s.is_empty())
    }

    fn reads_body(&self) -> bool {
        self.operation.request_body.is_some()
    }

    fn pages(&self) -> bool {
        self.operation
            .parameters
            .as_ref()
            .is_some_and(|ps| ps.iter().any(|p| matches!(p, RefOr::T(p) if p.name == "cursor")))
    }

    fn has_path_parameter(&self) -> bool {
        self.path.contains('{')
    }

    /// Add `status` with a problem document carrying one of `codes` (each described from the
    /// catalogue), unless the operation already documents it.
    fn answers(&mut self, status: u16, codes: &[ErrorCode], note: &str) {
        let key = status.to_string();
        debug_assert!(codes.iter().all(|c| c.statuses().contains(&status)), "{status}: {codes:?}");
        let described = |codes: &mut dyn Iterator<Item = &ErrorCode>| -> Vec<String> {
            codes.map(|c| format!("`{c}`: {}", c.meaning())).collect()
        };
        // Documented by the handler: add the codes its description does not name yet.
        if let Some(documented) = self.operation.responses.responses.get_mut(&key) {
            if let RefOr::T(response) = documented {
                let named = |c: &&ErrorCode| response.description.contains(&format!("`{c}`"));
                let mut unnamed = codes.iter().filter(|c| !named(c)).peekable();
                if unnamed.peek().is_some() {
                    let mut what = described(&mut unnamed);
                    if !response.description.is_empty() {
                        what.insert(0, response.description.clone());
                    }
                    response.description = what.join("; ");
                }
            }
            return;
        }
        let mut what = described(&mut codes.iter());
        if !note.is_empty() {
            what.push(note.to_string());
        }
        let problem = Content::new(Some(RefOr::Ref(Ref::from_schema_name("Problem"))));
        let response =
            ResponseBuilder::new().description(what.join("; ")).content("application/problem+json", problem).build();
        self.operation.responses.responses.insert(key, RefOr::T(response));
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Document the answers of the layers and extractors on every operation of `api`.
pub fn document_common_answers(api: &mut OpenApi) {
    use ErrorCode as E;
    for (path, item) in api.paths.paths.iter_mut() {
        for operation in operations(item) {
            let mut route = Route { path, operation };
            if route.tenant() {
                route.answers(
                    400,
                    &[
                        E::TenantRequired,
                        E::InvalidHost,
                        E::InvalidHeader,
                        E::TenantAmbiguous,
                        E::AmbiguousRequest,
                        E::InvalidQuery,
                        E::MalformedJson,
                        E::InvalidText,
                    ],
                    "",
                );
                route.answers(403, &[E::TenantSuspended, E::CorsOriginNotAllowed, E::TenantMismatch, E::Forbidden], "");
                route.answers(404, &[E::TenantNotFound], "an unknown or deleted tenant");
                route.answers(
                    429,
                    &[E::RateLimited],
                    "too many requests naming no known tenant from this address, or (bearer routes) the tenant's quota; `Retry-After` says when to retry",
                );
            }
            if route.bearer() {
                route.answers(
                    401,
                    &[E::MissingToken, E::InvalidAuthorization, E::InvalidToken, E::TokenExpired, E::SessionRevoked],
                    "",
                );
                route.answers(403, &[E::Forbidden, E::TenantMismatch], "");
                route.answers(429, &[E::RateLimited], "a quota is spent; `Retry-After` says when to retry");
            }
            if route.platform() {
                route.answers(404, &[E::RouteNotFound], "the platform API answers on the bare host only");
                route.answers(429, &[E::RateLimited], "`Retry-After` says when to retry");
                route.answers(503, &[E::PlatformUnavailable], "");
            }
            if route.pages() {
                route.answers(400, &[E::InvalidCursor], "");
            }
            if route.has_path_parameter() {
                route.answers(400, &[E::InvalidPath], "");
                route.answers(404, &[E::NotFound], "");
            }
            if route.reads_body() {
                route.answers(400, &[E::MalformedJson, E::InvalidBody, E::InvalidText], "");
                route.answers(413, &[E::BodyTooLarge], "");
                route.answers(415, &[E::UnsupportedMediaType, E::UnsupportedContentEncoding], "");
                route.answers(422, &[E::InvalidBody, E::ValidationFailed, E::InvalidValue], "");
            }
            route.answers(
                503,
                &[E::Unavailable, E::Busy],
                "also when the request outlives its timeout; `Retry-After` says when",
            );
        }
    }
}

/// `/openapi.json`: the built-in routes' document with the adopted tables merged in
/// (`data::openapi`), built again whenever the tables were read again — no restart.
#[derive(Clone)]
pub struct Document {
    base: std::sync::Arc<serde_json::Value>,
    tables: std::sync::Arc<crate::data::Tables>,
    /// The last document made, with the generation of the tables it was made from.
    made: std::sync::Arc<std::sync::Mutex<Option<(u64, bytes::Bytes)>>>,
}

impl Document {
    pub fn new(api: &OpenApi, tables: std::sync::Arc<crate::data::Tables>) -> Document {
        let base = serde_json::to_value(api).unwrap_or_default();
        Document { base: std::sync::Arc::new(base), tables, made: Default::default() }
    }

    pub fn current(&self) -> axum::response::Response {
        use axum::response::IntoResponse;
        let schema = self.tables.snapshot();
        let cached = self.made.lock().ok().and_then(|m| m.clone()).filter(|(g, _)| *g == schema.generation);
        let bytes = match cached {
            Some((_, bytes)) => bytes,
            None => {
                let mut document = (*self.base).clone();
                crate::data::openapi::merge_into(&mut document, &schema);
                let bytes = bytes::Bytes::from(document.to_string());
                if let Ok(mut made) = self.made.lock() {
                    *made = Some((schema.generation, bytes.clone()));
                }
                bytes
            }
        };
        ([(axum::http::header::CONTENT_TYPE, "application/json")], bytes).into_response()
    }
}
