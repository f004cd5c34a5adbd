//! The answers every operation can give whatever its handler does, added to the OpenAPI
//! document from what the operation is: a tenant route (resolution can refuse it), a bearer
//! route (authentication and the tenant's quota can), one that reads a body (the extractor
//! can), one with a path parameter, and any route (an unavailable database, the request
//! timeout). Each operation's own `responses(...)` list what only its handler answers; an
//! answer listed there is left as it is. With this, a client generated from the document (or a
//! fuzzer checking conformance) meets no status it was not told about.

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{Content, OpenApi, Ref, RefOr};

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

    fn has_path_parameter(&self) -> bool {
        self.path.contains('{')
    }

    /// Add `status` with a problem document described by `what`, unless already documented.
    fn answers(&mut self, status: &str, what: &str) {
        if self.operation.responses.responses.contains_key(status) {
            return;
        }
        let problem = Content::new(Some(RefOr::Ref(Ref::from_schema_name("Problem"))));
        let response = ResponseBuilder::new().description(what).content("application/problem+json", problem).build();
        self.operation.responses.responses.insert(status.to_string(), RefOr::T(response));
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
    for (path, item) in api.paths.paths.iter_mut() {
        for operation in operations(item) {
            let mut route = Route { path, operation };
            if route.tenant() {
                route.answers(
                    "400",
                    "`tenant_required` (no host or X-Tenant names a tenant), `invalid_host`, `tenant_ambiguous`, \
                     `ambiguous_request` (a repeated Host, X-Tenant, Authorization, Content-Type, Content-Encoding or \
                     Origin header), `invalid_query`, `malformed_json`, `invalid_text` (a NUL byte)",
                );
                route.answers("403", "`tenant_suspended`; on bearer routes also `tenant_mismatch` and `forbidden`");
                route.answers("404", "`tenant_not_found` (unknown or deleted tenant)");
                route.answers(
                    "429",
                    "`rate_limited`: too many requests naming no known tenant from this address, or (bearer routes) \
                     the tenant's quota; `Retry-After` says when to retry",
                );
            }
            if route.bearer() {
                route.answers(
                    "401",
                    "`missing_token`, `invalid_authorization`, `invalid_token`, `token_expired` or \
                     `session_revoked`",
                );
                route.answers("403", "`forbidden` (the role lacks the permission) or `tenant_mismatch`");
                route.answers("429", "`rate_limited`: a quota is spent; `Retry-After` says when to retry");
            }
            if route.platform() {
                route.answers("404", "`route_not_found`: the platform API answers on the bare host only");
                route.answers("429", "`rate_limited`; `Retry-After` says when to retry");
            }
            if route.has_path_parameter() {
                route.answers("400", "`invalid_path`: a path parameter that does not parse");
            }
            if route.reads_body() {
                route.answers("400", "`malformed_json`, `invalid_text` (a NUL byte)");
                route.answers("413", "`body_too_large`");
                route.answers(
                    "415",
                    "`unsupported_media_type` (not application/json) or `unsupported_content_encoding`",
                );
                route.answers("422", "`invalid_body` (wrong types, unknown fields) or `validation_failed`");
            }
            route.answers(
                "503",
                "`unavailable` (the database cannot be reached), `busy`, or `timeout`; `Retry-After` says when",
            );
        }
    }
}
