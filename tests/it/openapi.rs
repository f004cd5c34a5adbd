//! The OpenAPI document promises every status an operation answers: each operation is called
//! the ways the layers refuse (no token, another content type, a malformed body), and what it
//! answers must be among the statuses the document lists for it.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::Value;

use crate::support::spawn_app_with;

/// Every (method, path template, operation) in the document.
fn operations(spec: &Value) -> Vec<(Method, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            if let Ok(method) = method.to_uppercase().parse::<Method>() {
                out.push((method, path.clone(), operation.clone()));
            }
        }
    }
    out
}

/// The template with every `{parameter}` filled with a uuid that names nothing.
fn concrete(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some((before, after)) = rest.split_once('{') {
        out.push_str(before);
        out.push_str("01a20000-0000-7000-8000-000000000000");
        rest = after.split_once('}').map_or("", |(_, r)| r);
    }
    out + rest
}

fn documents(operation: &Value, status: StatusCode) -> bool {
    operation["responses"].get(status.as_str()).is_some()
}

#[tokio::test]
async fn every_refusal_of_the_layers_is_a_documented_status_of_the_operation() {
    // Rate limits off: hundreds of refusals from one address would otherwise be refused as such
    // (429, documented everywhere, but then nothing else would be exercised).
    let app = spawn_app_with(|c| c.rate_limits = false).await;
    let tenant = app.create_tenant("acme").await;
    let token = app.owner_token(&tenant).await;
    let spec = app.call(Method::GET, "/openapi.json", &[], None).await.body;
    let ops = operations(&spec);
    assert!(ops.len() > 30, "{} operations", ops.len());
    let mut checked = 0;
    for (method, template, operation) in &ops {
        let path = concrete(template);
        let id = format!("{method} {template}");
        let bearer = operation["security"].as_array().is_some_and(|s| !s.is_empty());
        if bearer && template.starts_with("/v1/") {
            // No token.
            let r = app.call(method.clone(), &path, &[("x-tenant", "acme")], None).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{id}: {}", r.body);
            assert!(documents(operation, r.status), "{id} answers 401 undocumented");
            for status in [StatusCode::FORBIDDEN, StatusCode::TOO_MANY_REQUESTS, StatusCode::SERVICE_UNAVAILABLE] {
                assert!(documents(operation, status), "{id} does not document {status}");
            }
            checked += 1;
        }
        if template.starts_with("/v1/") {
            // No tenant named.
            let r = app.call(method.clone(), &path, &[], None).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{id}: {}", r.body);
            assert!(documents(operation, r.status), "{id} answers 400 undocumented");
            // An unknown tenant.
            let r = app.call(method.clone(), &path, &[("x-tenant", "nobody")], None).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{id}: {}", r.body);
            assert!(documents(operation, r.status), "{id} answers 404 undocumented");
        }
        if operation.get("requestBody").is_some() && template.starts_with("/v1/") {
            let auth = format!("Bearer {token}");
            let headers = [("x-tenant", "acme"), ("authorization", auth.as_str())];
            // Another content type, then a body that is not JSON.
            let r = app.send_raw(method.clone(), &path, &headers, Some("text/plain"), Body::from("{}")).await;
            assert!(documents(operation, r.status), "{id} answers {} undocumented: {}", r.status, r.body);
            let r = app.send_raw(method.clone(), &path, &headers, Some("application/json"), Body::from("{")).await;
            assert!(documents(operation, r.status), "{id} answers {} undocumented: {}", r.status, r.body);
            for status in [StatusCode::PAYLOAD_TOO_LARGE, StatusCode::UNSUPPORTED_MEDIA_TYPE] {
                assert!(documents(operation, status), "{id} does not document {status}");
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} operations checked");
    // Both forms of the export are documented.
    let export = &spec["paths"]["/v1/audit-events/export"]["get"]["responses"]["200"]["content"];
    assert!(export.get("application/x-ndjson").is_some() && export.get("text/csv").is_some(), "{export}");
}

#[tokio::test]
async fn api_answers_are_never_cached_and_only_the_docs_may_run_scripts() {
    let app = spawn_app_with(|_| {}).await;
    let tenant = app.create_tenant("acme").await;
    let token = app.owner_token(&tenant).await;
    let header = |r: &crate::support::TestResponse, name: &str| {
        r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
    };
    let api_csp = "default-src 'none'; frame-ancestors 'none'";
    let answers = [
        app.call_as(&token, "acme", Method::GET, "/v1/contacts", None).await,
        app.call_as(&token, "acme", Method::GET, "/v1/contacts/01a20000-0000-7000-8000-000000000000", None).await,
        app.call(Method::GET, "/v1/me", &[("x-tenant", "acme")], None).await,
        app.call(Method::GET, "/platform/v1/tenants", &[], None).await,
    ];
    for r in &answers {
        assert_eq!(header(r, "cache-control"), "no-store", "{}: {}", r.status, r.body);
        assert_eq!(header(r, "content-security-policy"), api_csp, "{}", r.status);
    }
    for path in ["/healthz", "/openapi.json"] {
        let r = app.call(Method::GET, path, &[], None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(header(&r, "content-security-policy"), api_csp, "{path}");
    }
    let docs = app.call(Method::GET, "/docs/", &[], None).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(header(&docs, "content-security-policy").contains("script-src 'self'"), "the docs page runs its script");
}

/// The layers outside the API sub-routers answer paths under `/v1/` and `/platform/` too: an
/// unknown route, an ambiguous request, a request that outlives its timeout. Their problem
/// documents must not be cached either.
#[tokio::test]
async fn error_answers_of_the_outer_layers_are_never_cached_either() {
    use axum::http::Request;
    let app = spawn_app_with(|_| {}).await;
    app.create_tenant("acme").await;
    let ambiguous = |path: &str| {
        Request::builder()
            .method(Method::GET)
            .uri(path)
            .header("host", "localhost")
            .header("x-tenant", "acme")
            .header("x-tenant", "globex")
            .body(Body::empty())
            .expect("request")
    };
    let cases = [
        (
            "an unknown path under /v1/",
            app.call(Method::GET, "/v1/no-such-route", &[("x-tenant", "acme")], None).await,
            StatusCode::NOT_FOUND,
            "route_not_found",
        ),
        (
            "an unknown path under /platform/",
            app.call(Method::GET, "/platform/v1/no-such-route", &[], None).await,
            StatusCode::NOT_FOUND,
            "route_not_found",
        ),
        (
            "an ambiguous request to /v1/",
            app.send(ambiguous("/v1/contacts")).await,
            StatusCode::BAD_REQUEST,
            "ambiguous_request",
        ),
        (
            "an ambiguous request to /platform/",
            app.send(ambiguous("/platform/v1/tenants")).await,
            StatusCode::BAD_REQUEST,
            "ambiguous_request",
        ),
    ];
    // A login hashes for tens of milliseconds: past a 1 ms request timeout.
    let impatient = spawn_app_with(|c| c.request_timeout_ms = 1).await;
    let tenant = impatient.create_tenant("acme").await;
    let login = serde_json::json!({"email": tenant.owner_email, "password": "not the password"});
    let timed_out = impatient.call(Method::POST, "/v1/auth/login", &[("x-tenant", "acme")], Some(login)).await;
    let cases = cases.into_iter().chain([(
        "a request past its timeout",
        timed_out,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    )]);
    for (case, r, status, code) in cases {
        assert_eq!(r.status, status, "{case}: {}", r.body);
        r.assert_problem(status, code);
        let cache_control = r.headers.get("cache-control").and_then(|v| v.to_str().ok());
        assert_eq!(cache_control, Some("no-store"), "{case}");
    }
}

/// The error catalogue feeds the document: `Problem.code` is exactly its enum, and every code an
/// operation can answer is named, with its meaning, under one of the statuses it comes with.
#[tokio::test]
async fn the_document_lists_every_error_code_of_the_catalogue_under_its_status() {
    use rowguard::http::error_codes::ErrorCode;
    let app = spawn_app_with(|_| {}).await;
    let spec = app.call(Method::GET, "/openapi.json", &[], None).await.body;
    let listed: Vec<&str> = spec["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("an ErrorCode enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let catalogue: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(listed, catalogue);
    assert_eq!(
        spec["components"]["schemas"]["Problem"]["properties"]["code"]["$ref"],
        "#/components/schemas/ErrorCode"
    );
    let mut missing = Vec::new();
    for code in ErrorCode::ALL {
        // Not an answer of any operation: the fallbacks for statuses no layer should produce, a
        // method no operation has, and the purge's refusal (the purge is a CLI command).
        if matches!(
            code,
            ErrorCode::Internal | ErrorCode::BadRequest | ErrorCode::MethodNotAllowed | ErrorCode::TenantNotDeleted
        ) {
            continue;
        }
        let named = operations(&spec).iter().any(|(_, _, operation)| {
            code.statuses().iter().any(|status| {
                operation["responses"][status.to_string()]["description"]
                    .as_str()
                    .is_some_and(|d| d.contains(&format!("`{code}`")))
            })
        });
        if !named {
            missing.push(code.as_str());
        }
    }
    assert!(missing.is_empty(), "codes no operation documents: {missing:?}");
}

/// What the service is known to answer, operation by operation (read off the handlers and the
/// layers in front of them): each (operation, status, code) must be named in the document, under
/// that operation and status. Unlike the enum above, which is generated from the catalogue, this
/// can fail: a handler that starts answering a code its annotation does not name is caught once
/// its row is here.
#[tokio::test]
async fn the_document_names_each_code_an_operation_is_known_to_answer() {
    let app = spawn_app_with(|_| {}).await;
    let spec = app.call(Method::GET, "/openapi.json", &[], None).await.body;
    let known: &[(&str, &str, u16, &str)] = &[
        ("post", "/v1/auth/login", 400, "invalid_text"),
        ("post", "/v1/auth/login", 401, "invalid_credentials"),
        ("post", "/v1/auth/login", 429, "rate_limited"),
        ("post", "/v1/auth/refresh", 401, "invalid_refresh_token"),
        ("post", "/v1/auth/refresh", 401, "refresh_token_reused"),
        ("post", "/v1/auth/logout", 401, "invalid_refresh_token"),
        ("post", "/v1/auth/logout-all", 401, "missing_token"),
        ("get", "/v1/me", 401, "invalid_token"),
        ("post", "/v1/me/password", 403, "wrong_password"),
        ("post", "/v1/me/password", 429, "rate_limited"),
        ("get", "/v1/users", 400, "invalid_cursor"),
        ("get", "/v1/users", 403, "forbidden"),
        ("post", "/v1/users", 403, "forbidden"),
        ("post", "/v1/users", 409, "email_taken"),
        ("post", "/v1/users", 422, "validation_failed"),
        ("patch", "/v1/users/{id}", 404, "not_found"),
        ("patch", "/v1/users/{id}", 409, "last_owner"),
        ("delete", "/v1/users/{id}", 409, "last_owner"),
        ("get", "/v1/contacts", 400, "invalid_cursor"),
        ("get", "/v1/contacts", 404, "tenant_not_found"),
        ("get", "/v1/contacts", 400, "tenant_required"),
        ("get", "/v1/contacts", 403, "tenant_suspended"),
        ("post", "/v1/contacts", 422, "validation_failed"),
        ("post", "/v1/contacts", 422, "invalid_reference"),
        ("get", "/v1/contacts/{id}", 400, "invalid_path"),
        ("get", "/v1/contacts/{id}", 404, "not_found"),
        ("patch", "/v1/contacts/{id}", 422, "invalid_reference"),
        ("delete", "/v1/contacts/{id}", 409, "contact_in_use"),
        ("post", "/v1/deals", 422, "invalid_reference"),
        ("patch", "/v1/deals/{id}", 422, "invalid_reference"),
        ("get", "/v1/audit-events", 400, "invalid_cursor"),
        ("get", "/v1/audit-events", 400, "invalid_query"),
        ("get", "/v1/audit-events/export", 400, "invalid_query"),
        ("get", "/v1/audit-events/export", 429, "export_limit"),
        ("get", "/v1/audit-events/verify", 400, "invalid_query"),
        ("post", "/v1/webhooks", 409, "webhook_limit"),
        ("post", "/v1/webhooks", 422, "webhook_url_refused"),
        ("post", "/v1/webhooks", 422, "unknown_event_type"),
        ("patch", "/v1/webhooks/{id}", 422, "webhook_url_refused"),
        ("get", "/v1/webhooks/{id}/deliveries", 400, "invalid_cursor"),
        ("post", "/v1/webhooks/{id}/deliveries/{delivery}/redeliver", 409, "webhook_pending"),
        ("get", "/readyz", 503, "not_ready"),
        ("get", "/metrics", 401, "metrics_token_required"),
        ("post", "/platform/v1/auth/login", 400, "invalid_text"),
        ("post", "/platform/v1/auth/login", 401, "invalid_credentials"),
        ("post", "/platform/v1/signup", 404, "signup_disabled"),
        ("post", "/platform/v1/signup", 409, "slug_taken"),
        ("get", "/platform/v1/tenants", 400, "invalid_cursor"),
        ("get", "/platform/v1/tenants", 503, "platform_unavailable"),
        ("post", "/platform/v1/tenants", 409, "slug_taken"),
        ("post", "/platform/v1/tenants", 409, "domain_taken"),
        ("patch", "/platform/v1/tenants/{slug}", 409, "tenant_deleted"),
        ("post", "/platform/v1/tenants/{slug}/domains", 409, "domain_taken"),
        ("post", "/platform/v1/tenants/{slug}/domains", 409, "tenant_deleted"),
    ];
    let mut missing = Vec::new();
    for (method, path, status, code) in known {
        let operation = &spec["paths"][path][method];
        assert!(operation.is_object(), "the document has no {method} {path}");
        let description = operation["responses"][status.to_string()]["description"].as_str().unwrap_or_default();
        if !description.contains(&format!("`{code}`")) {
            missing.push(format!("{method} {path} {status} `{code}`: {description:?}"));
        }
    }
    assert!(missing.is_empty(), "answers the document does not name:\n{}", missing.join("\n"));
}

#[test]
fn docs_list_the_error_codes_of_the_catalogue() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).expect("docs/api.md");
    let table = rowguard::http::error_codes::markdown_table();
    assert!(
        docs.contains(&table),
        "docs/api.md's error table differs from src/http/error_codes.rs; it should read:\n{table}"
    );
}

/// Every e-mail field of every request body that `Email::parse` reads is documented with its
/// rule, so a client (or a fuzzer) is told exactly what the service accepts. (A login's e-mail
/// is not parsed: any text is a wrong one.)
#[tokio::test]
async fn every_email_field_documents_the_parsers_pattern() {
    let app = spawn_app_with(|_| {}).await;
    let spec = app.call(Method::GET, "/openapi.json", &[], None).await.body;
    let mut emails = Vec::new();
    for (name, schema) in spec["components"]["schemas"].as_object().expect("schemas") {
        let request = schema["additionalProperties"] == Value::Bool(false);
        let Some(properties) = schema["properties"].as_object().filter(|_| request && !name.contains("Login")) else {
            continue;
        };
        for (field, property) in properties.iter().filter(|(f, _)| f.ends_with("email")) {
            assert_eq!(property["pattern"].as_str(), Some(rowguard::domain::EMAIL_PATTERN), "{name}.{field}");
            emails.push(format!("{name}.{field}"));
        }
    }
    assert!(emails.len() >= 4, "only {emails:?} are request e-mail fields");
}

/// A rule used by several schemas is named in their attributes and kept once beside its parser
/// (`http::openapi::resolve_patterns`): each field and parameter below carries its parser's
/// rule, and no name is left in the document.
#[tokio::test]
async fn schemas_and_parameters_carry_their_parsers_rules() {
    use rowguard::domain::{
        AMOUNT_PATTERN, Currency, EMAIL_PATTERN, PHONE_PATTERN, SLUG_PATTERN, TEXT_PATTERN, WEB_DOMAIN_PATTERN,
    };
    use rowguard::http::pagination::UUID_CURSOR_PATTERN;
    let app = spawn_app_with(|_| {}).await;
    let spec = app.call(Method::GET, "/openapi.json", &[], None).await.body;
    let currency = Currency::pattern();
    let fields: &[(&str, &str, &str)] = &[
        ("SignupRequest", "slug", SLUG_PATTERN),
        ("NewTenantRequest", "slug", SLUG_PATTERN),
        ("SignupRequest", "name", TEXT_PATTERN),
        ("NewTenantRequest", "name", TEXT_PATTERN),
        ("TenantPatch", "name", TEXT_PATTERN),
        ("NewContact", "name", TEXT_PATTERN),
        ("ContactPatch", "name", TEXT_PATTERN),
        ("NewOrganization", "name", TEXT_PATTERN),
        ("OrganizationPatch", "name", TEXT_PATTERN),
        ("NewDeal", "title", TEXT_PATTERN),
        ("DealPatch", "title", TEXT_PATTERN),
        ("NewContact", "email", EMAIL_PATTERN),
        ("NewContact", "phone", PHONE_PATTERN),
        ("ContactPatch", "phone", PHONE_PATTERN),
        ("NewOrganization", "domain", WEB_DOMAIN_PATTERN),
        ("OrganizationPatch", "domain", WEB_DOMAIN_PATTERN),
        ("NewDeal", "amount", AMOUNT_PATTERN),
        ("DealPatch", "amount", AMOUNT_PATTERN),
        ("NewDeal", "currency", &currency),
        ("DealPatch", "currency", &currency),
    ];
    for (schema, field, rule) in fields {
        let pattern = spec["components"]["schemas"][schema]["properties"][field]["pattern"].as_str();
        assert_eq!(pattern, Some(*rule), "{schema}.{field}");
    }
    let cursors = [
        ("/v1/users", UUID_CURSOR_PATTERN),
        ("/v1/contacts", UUID_CURSOR_PATTERN),
        ("/v1/organizations", UUID_CURSOR_PATTERN),
        ("/v1/deals", UUID_CURSOR_PATTERN),
        ("/platform/v1/tenants", SLUG_PATTERN),
    ];
    for (path, rule) in cursors {
        let parameters = spec["paths"][path]["get"]["parameters"].as_array().expect("parameters");
        let cursor = parameters.iter().find(|p| p["name"] == "cursor").expect("a cursor parameter");
        assert_eq!(cursor["schema"]["pattern"].as_str(), Some(rule), "GET {path} cursor");
    }
    let document = spec.to_string();
    assert!(!document.contains("_PATTERN\""), "a pattern name is left unresolved");
}
