//! The adopted tables in the OpenAPI document: per served table, `/v1/data/{table}` and
//! `/v1/data/{table}/{id}` with row, new-row, patch and page schemas derived from the catalog.
//! Built from the current `Schema` whenever its generation changes (no restart), and merged
//! into the document of the built-in routes (`http::openapi_json`).

use serde_json::{Map, Value, json};

use super::schema::{Column, Scalar, Schema, Table};
use super::values::describe;
use crate::http::error_codes::ErrorCode;

/// Add every served table's paths and schemas to `document` (the built-in document as JSON).
pub fn merge_into(document: &mut Value, schema: &Schema) {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for table in schema.tables.values().filter(|t| t.not_served.is_none()) {
        let Some(key) = table.key_column() else { continue };
        let base = component_name(&table.name);
        schemas.insert(base.clone(), row_schema(table));
        // A page's rows hold only the `select`ed columns when it names some.
        let mut selected = row_schema(table);
        if let Some(o) = selected.as_object_mut() {
            o.remove("required");
            o.insert(
                "description".into(),
                json!(format!("A row of {}: the `select`ed columns, else all.", table.name)),
            );
        }
        schemas.insert(format!("{base}.selected"), selected);
        schemas.insert(format!("{base}.new"), write_schema(table, true));
        schemas.insert(format!("{base}.patch"), write_schema(table, false));
        schemas.insert(
            format!("{base}.page"),
            json!({
                "type": "object",
                "required": ["items", "next_cursor"],
                "properties": {
                    "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{base}.selected")}},
                    "next_cursor": {"type": ["string", "null"],
                        "description": "Pass as `cursor` for the next page; null on the last page."}
                }
            }),
        );
        let reference = |suffix: &str| json!({"$ref": format!("#/components/schemas/{base}{suffix}")});
        let tag = format!("data: {}", table.name);
        let mut list_params = vec![
            query_param("limit", json!({"type": "integer", "minimum": 1, "maximum": 100}), "Page size (default 20)."),
            query_param("cursor", key_schema(key), "`next_cursor` of the previous page."),
            json!({"name": "select", "in": "query", "required": false, "style": "form", "explode": false,
                "schema": {"type": "array", "minItems": 1,
                    "items": {"type": "string", "enum": table.columns.iter().map(|c| &c.name).collect::<Vec<_>>()}},
                "description": "The columns to answer with, comma-separated (default: all)."}),
        ];
        for column in table.filterable.iter().filter_map(|c| table.column(c)) {
            if !["limit", "cursor", "select"].contains(&column.name.as_str()) {
                list_params.push(query_param(&column.name, scalar_schema(column), "Only rows with this value."));
            }
        }
        let collection = format!("/v1/data/{}", table.name);
        paths.insert(
            collection.clone(),
            json!({
                "get": operation(&tag, &format!("List {} (keyset pages in key order)", table.name), list_params, None,
                    ("200", reference(".page")), &[400, 401, 403, 404, 429, 503]),
                "post": operation(&tag, &format!("Create a row of {}", table.name), vec![], Some(reference(".new")),
                    ("201", reference("")), &[400, 401, 403, 404, 409, 413, 415, 422, 429, 503]),
            }),
        );
        let id = vec![json!({"name": "id", "in": "path", "required": true, "schema": key_schema(key),
            "description": format!("The row's {}.", key.name)})];
        paths.insert(
            format!("{collection}/{{id}}"),
            json!({
                "get": operation(&tag, &format!("One row of {}", table.name), id.clone(), None,
                    ("200", reference("")), &[400, 401, 403, 404, 429, 503]),
                "patch": operation(&tag, &format!("Change some columns of a row of {}", table.name), id.clone(),
                    Some(reference(".patch")), ("200", reference("")), &[400, 401, 403, 404, 409, 413, 415, 422, 429, 503]),
                "delete": operation(&tag, &format!("Delete a row of {}", table.name), id, None,
                    ("204", Value::Null), &[400, 401, 403, 404, 409, 429, 503]),
            }),
        );
    }
    generic_paths(&mut paths);
    if let Some(doc_paths) = document.get_mut("paths").and_then(Value::as_object_mut) {
        doc_paths.extend(paths);
    }
    if let Some(components) = document
        .get_mut("components")
        .and_then(Value::as_object_mut)
        .and_then(|c| c.get_mut("schemas"))
        .and_then(Value::as_object_mut)
    {
        components.extend(schemas);
    }
}

/// The routes themselves, for any table name: what a table that is not (or no longer) adopted
/// answers, and the shape every adopted table's own paths above refine.
fn generic_paths(paths: &mut Map<String, Value>) {
    let tag = "data";
    let table = json!({"name": "table", "in": "path", "required": true, "schema": {"type": "string"},
        "description": "An adopted table (`rowguard tables list`); each has its own paths in this document."});
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"},
        "description": "The row's key: the primary key's column after tenant_id."});
    let row = json!({"type": "object", "description": "A row, without tenant_id."});
    let page = json!({"type": "object", "required": ["items", "next_cursor"], "properties": {
        "items": {"type": "array", "items": row.clone()}, "next_cursor": {"type": ["string", "null"]}}});
    let list = vec![
        table.clone(),
        query_param("limit", json!({"type": "integer", "minimum": 1, "maximum": 100}), "Page size (default 20)."),
        query_param("cursor", json!({"type": "string"}), "`next_cursor` of the previous page."),
        query_param("select", json!({"type": "string", "minLength": 1}), "Comma-separated columns to answer with."),
    ];
    let one = vec![table.clone(), id];
    paths.insert(
        "/v1/data/{table}".into(),
        json!({
            "get": operation(tag, "List an adopted table's rows", list, None, ("200", page), &[400, 401, 403, 404, 429, 503]),
            "post": operation(tag, "Create a row of an adopted table", vec![table], Some(row.clone()),
                ("201", row.clone()), &[400, 401, 403, 404, 409, 413, 415, 422, 429, 503]),
        }),
    );
    paths.insert(
        "/v1/data/{table}/{id}".into(),
        json!({
            "get": operation(tag, "One row of an adopted table", one.clone(), None, ("200", row.clone()),
                &[400, 401, 403, 404, 429, 503]),
            "patch": operation(tag, "Change some columns of a row", one.clone(), Some(row.clone()), ("200", row),
                &[400, 401, 403, 404, 409, 413, 415, 422, 429, 503]),
            "delete": operation(tag, "Delete a row", one, None, ("204", Value::Null), &[400, 401, 403, 404, 409, 429, 503]),
        }),
    );
}

/// A component name OpenAPI accepts (`[A-Za-z0-9._-]`), from a table name.
fn component_name(table: &str) -> String {
    let safe: String =
        table.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    format!("data.{safe}")
}

fn query_param(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description})
}

fn operation(
    tag: &str,
    summary: &str,
    parameters: Vec<Value>,
    body: Option<Value>,
    (status, success): (&str, Value),
    problems: &[u16],
) -> Value {
    let mut responses = Map::new();
    let ok = if success.is_null() {
        json!({"description": "Done."})
    } else {
        json!({"description": "The answer.", "content": {"application/json": {"schema": success}}})
    };
    responses.insert(status.to_string(), ok);
    for problem in problems {
        let codes: Vec<String> = CODES
            .iter()
            .filter(|c| c.statuses().contains(problem))
            .map(|c| format!("`{}`: {}", c.as_str(), c.meaning()))
            .collect();
        responses.insert(
            problem.to_string(),
            json!({"description": codes.join("; "),
                   "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}),
        );
    }
    let mut op = json!({"tags": [tag], "summary": summary, "parameters": parameters, "responses": responses,
        "security": [{"bearer": []}]});
    if let Some(body) = body {
        op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": body}}});
    }
    op
}

/// The codes the generic API answers with: its own, and those of the layers every tenant route
/// passes (resolution, authentication, the quota, the body extractor).
const CODES: &[ErrorCode] = &[
    ErrorCode::AmbiguousRequest,
    ErrorCode::TenantRequired,
    ErrorCode::InvalidHost,
    ErrorCode::InvalidHeader,
    ErrorCode::TenantAmbiguous,
    ErrorCode::InvalidPath,
    ErrorCode::InvalidQuery,
    ErrorCode::InvalidCursor,
    ErrorCode::InvalidText,
    ErrorCode::MalformedJson,
    ErrorCode::MissingToken,
    ErrorCode::InvalidAuthorization,
    ErrorCode::InvalidToken,
    ErrorCode::TokenExpired,
    ErrorCode::SessionRevoked,
    ErrorCode::Forbidden,
    ErrorCode::TenantMismatch,
    ErrorCode::TenantSuspended,
    ErrorCode::CorsOriginNotAllowed,
    ErrorCode::TenantNotFound,
    ErrorCode::NotFound,
    ErrorCode::UnknownTable,
    ErrorCode::UniqueViolation,
    ErrorCode::RowInUse,
    ErrorCode::BodyTooLarge,
    ErrorCode::UnsupportedMediaType,
    ErrorCode::UnsupportedContentEncoding,
    ErrorCode::ValidationFailed,
    ErrorCode::InvalidBody,
    ErrorCode::InvalidReference,
    ErrorCode::CheckViolation,
    ErrorCode::InvalidValue,
    ErrorCode::RateLimited,
    ErrorCode::Unavailable,
];

fn row_schema(table: &Table) -> Value {
    let properties: Map<String, Value> = table.columns.iter().map(|c| (c.name.clone(), column_schema(c))).collect();
    let required: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    json!({"type": "object", "properties": properties, "required": required,
        "description": format!("A row of {} (tenant_id is never shown).", table.name)})
}

fn write_schema(table: &Table, insert: bool) -> Value {
    let writable: Vec<&Column> = table.columns.iter().filter(|c| c.writable()).collect();
    let properties: Map<String, Value> = writable.iter().map(|c| (c.name.clone(), column_schema(c))).collect();
    let mut schema = json!({"type": "object", "properties": properties, "additionalProperties": false});
    if insert {
        let required: Vec<&str> = writable.iter().filter(|c| c.required()).map(|c| c.name.as_str()).collect();
        schema["required"] = json!(required);
    }
    schema
}

fn key_schema(key: &Column) -> Value {
    scalar_schema(key)
}

fn column_schema(column: &Column) -> Value {
    let scalar = scalar_schema(column);
    // Array elements may be null whatever the column says.
    let mut schema = if column.array { json!({"type": "array", "items": nullable(scalar)}) } else { scalar };
    if !column.not_null {
        schema = nullable(schema);
    }
    schema
}

/// `schema` or null.
fn nullable(schema: Value) -> Value {
    match schema.get("type") {
        Some(Value::String(_)) => {
            let mut schema = schema;
            schema["type"] = json!([schema["type"].clone(), "null"]);
            if let Some(values) = schema.get_mut("enum").and_then(Value::as_array_mut) {
                values.push(Value::Null);
            }
            schema
        }
        Some(_) => schema,
        None if schema.as_object().is_some_and(|o| o.contains_key("oneOf")) => {
            let mut schema = schema;
            if let Some(options) = schema["oneOf"].as_array_mut() {
                options.push(json!({"type": "null"}));
            }
            schema
        }
        // Any JSON (json/jsonb): null included already.
        None => schema,
    }
}

/// A string without NUL characters.
const NO_NUL: &str = r"^[^\u0000]*$";

fn scalar_schema(column: &Column) -> Value {
    let mut schema = match &column.scalar {
        Scalar::Int2 => json!({"type": "integer", "minimum": i16::MIN, "maximum": i16::MAX}),
        Scalar::Int4 => json!({"type": "integer", "format": "int32"}),
        Scalar::Int8 => json!({"type": "integer", "format": "int64"}),
        Scalar::Numeric { .. } => json!({"oneOf": [
            {"type": "string", "pattern": r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)$"},
            {"type": "integer"}
        ]}),
        Scalar::Float4 | Scalar::Float8 => json!({"type": "number"}),
        Scalar::Bool => json!({"type": "boolean"}),
        // PostgreSQL's text holds no NUL character (refused before it gets there).
        Scalar::Text { max: Some(n) } => json!({"type": "string", "maxLength": n, "pattern": NO_NUL}),
        Scalar::Text { max: None } | Scalar::Other => json!({"type": "string", "pattern": NO_NUL}),
        Scalar::Uuid => json!({"type": "string", "format": "uuid"}),
        Scalar::Date => json!({"type": "string", "format": "date"}),
        Scalar::Timestamptz => json!({"type": "string", "format": "date-time"}),
        Scalar::Timestamp => json!({"type": "string"}),
        Scalar::Jsonb | Scalar::Json => json!({}),
        Scalar::Enum(labels) => json!({"type": "string", "enum": labels}),
    };
    schema["description"] = json!(format!("{}; PostgreSQL type {}", describe(&column.scalar), column.cast));
    schema
}
