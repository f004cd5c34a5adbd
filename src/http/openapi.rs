//! The answers every operation can give whatever its handler does, added to the OpenAPI
//! document from what the operation is: a tenant route (resolution can refuse it), a bearer
//! route (authentication and the tenant's quota can), one that reads a body (the extractor
//! can), one with a path parameter, and any route (an unavailable database, the request
//! timeout), each answer's codes described from the error catalogue (`error_codes`). Each
//! operation's own `responses(...)` list what only its handler answers; an answer listed there
//! is left as it is. With this, a client generated from the document (or a fuzzer checking
//! conformance) meets no status it was not told about.
//!
//! Also the parsers' rules as regular expressions (`resolve_patterns`): a schema names the rule
//! (`pattern = "SLUG_PATTERN"`) and gets the constant kept beside its parser.

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{AdditionalProperties, ArrayItems, Schema};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr};

use super::error_codes::ErrorCode;
use crate::domain::{
    AMOUNT_PATTERN, Currency, EMAIL_PATTERN, PHONE_PATTERN, SLUG_PATTERN, TEXT_PATTERN, WEB_DOMAIN_PATTERN,
};
use crate::http::pagination::UUID_CURSOR_PATTERN;

/// Text PostgreSQL can store (no NUL): a login's e-mail and password, which are not parsed.
const NUL_FREE_PATTERN: &str = r"^[^\x00]*$";

/// The regular expression a schema names by `pattern = "NAME"`. utoipa takes only a string
/// literal there, so a rule used in several schemas is named once and kept beside its parser
/// instead of copied into each; `resolve_patterns` puts it in.
fn named_pattern(name: &str) -> Option<String> {
    let pattern = match name {
        "AMOUNT_PATTERN" => AMOUNT_PATTERN,
        "CURRENCY_PATTERN" => return Some(Currency::pattern()),
        "EMAIL_PATTERN" => EMAIL_PATTERN,
        "NUL_FREE_PATTERN" => NUL_FREE_PATTERN,
        "PHONE_PATTERN" => PHONE_PATTERN,
        "SLUG_PATTERN" => SLUG_PATTERN,
        "TEXT_PATTERN" => TEXT_PATTERN,
        "UUID_CURSOR_PATTERN" => UUID_CURSOR_PATTERN,
        "WEB_DOMAIN_PATTERN" => WEB_DOMAIN_PATTERN,
        _ => return None,
    };
    Some(pattern.to_string())
}

/// Replace every named pattern in `api` (component schemas, parameters, bodies) with the rule it
/// names. A name that names nothing is a typo in a schema attribute: it panics while the router
/// is built, so every test that builds one fails.
pub fn resolve_patterns(api: &mut OpenApi) {
    fn resolve(schema: &mut RefOr<Schema>) {
        let RefOr::T(schema) = schema else { return };
        match schema {
            Schema::Object(object) => {
                if let Some(pattern) = object.pattern.as_mut().filter(|p| p.ends_with("_PATTERN")) {
                    *pattern = named_pattern(pattern).unwrap_or_else(|| {
                        panic!("pattern = {pattern:?} names no rule (http::openapi::named_pattern)")
                    });
                }
                object.properties.values_mut().for_each(resolve);
                if let Some(AdditionalProperties::RefOr(inner)) = object.additional_properties.as_deref_mut() {
                    resolve(inner);
                }
            }
            Schema::Array(array) => {
                if let ArrayItems::RefOrSchema(items) = &mut array.items {
                    resolve(items);
                }
            }
            Schema::OneOf(one) => one.items.iter_mut().for_each(resolve),
            Schema::AllOf(all) => all.items.iter_mut().for_each(resolve),
            Schema::AnyOf(any) => any.items.iter_mut().for_each(resolve),
            _ => {}
        }
    }
    fn resolve_content(content: &mut RefOr<Content>) {
        if let RefOr::T(Content { schema: Some(schema), .. }) = content {
            resolve(schema);
        }
    }
    if let Some(components) = api.components.as_mut() {
        components.schemas.values_mut().for_each(resolve);
    }
    for item in api.paths.paths.values_mut() {
        for operation in operations(item) {
            for parameter in operation.parameters.iter_mut().flatten() {
                if let RefOr::T(parameter) = parameter
                    && let Some(schema) = parameter.schema.as_mut()
                {
                    resolve(schema);
                }
            }
            if let Some(RefOr::T(body)) = operation.request_body.as_mut() {
                body.content.values_mut().for_each(resolve_content);
            }
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response.content.values_mut().for_each(resolve_content);
                }
            }
        }
    }
}

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
            // The outermost layers refuse an ambiguous request on every path.
            route.answers(400, &[E::AmbiguousRequest], "");
            // Busy: a password check's budget, spent only by tenant and platform routes.
            let unavailable: &[ErrorCode] =
                if route.tenant() || route.platform() { &[E::Unavailable, E::Busy] } else { &[E::Unavailable] };
            route.answers(503, unavailable, "also when the request outlives its timeout; `Retry-After` says when");
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

#[cfg(test)]
mod tests {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{ComponentsBuilder, OpenApiBuilder};

    use super::*;

    fn document_with_pattern(pattern: &str) -> OpenApi {
        let field = ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern));
        let schema = ObjectBuilder::new().property("slug", field);
        OpenApiBuilder::new().components(Some(ComponentsBuilder::new().schema("Named", schema).build())).build()
    }

    fn pattern_of(api: &OpenApi) -> Option<String> {
        let Some(RefOr::T(Schema::Object(named))) = api.components.as_ref().and_then(|c| c.schemas.get("Named")) else {
            return None;
        };
        match named.properties.get("slug") {
            Some(RefOr::T(Schema::Object(slug))) => slug.pattern.clone(),
            _ => None,
        }
    }

    #[test]
    fn a_named_pattern_becomes_its_rule_and_a_literal_stays() {
        let mut api = document_with_pattern("SLUG_PATTERN");
        resolve_patterns(&mut api);
        assert_eq!(pattern_of(&api).as_deref(), Some(SLUG_PATTERN));
        let mut api = document_with_pattern("^(jsonl|csv)$");
        resolve_patterns(&mut api);
        assert_eq!(pattern_of(&api).as_deref(), Some("^(jsonl|csv)$"));
    }

    #[test]
    #[should_panic(expected = "names no rule")]
    fn a_name_that_names_no_rule_is_refused() {
        resolve_patterns(&mut document_with_pattern("SLUGG_PATTERN"));
    }
}
