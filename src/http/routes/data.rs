//! The adopted tables over HTTP: `GET|POST /v1/data/{table}`, `GET|PATCH|DELETE
//! /v1/data/{table}/{id}`. A handler finds the table in the current snapshot of the catalog
//! (`data::Tables`; anything else is 404 `unknown_table`), checks the caller's role against the
//! table's role sets with the one `require`, checks every value against its column's type, and
//! runs one statement built by `data::sql` in the request's tenant transaction. Rows are answered
//! as the JSON PostgreSQL makes of them, without tenant_id.

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;

use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::AssertSqlSafe;

use crate::data::{Column, Scalar, Schema, Table, sql, values};
use crate::db::{Literal, TenantScope};
use crate::domain::TableAccess;
use crate::http::ApiContext;
use crate::http::context::Principal;
use crate::http::error::ApiError;
use crate::http::error_codes::ErrorCode;
use crate::http::extract::{Json, Path};

/// Parameters `GET /v1/data/{table}` reads itself; every other one is a filter on a column.
const RESERVED: [&str; 3] = ["limit", "cursor", "select"];
const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

/// List a table's rows in key order, a keyset page at a time.
pub async fn list_rows(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let schema = ctx.data.snapshot();
    let table = served(&schema, &name)?;
    principal.require(TableAccess { table: &table.name, write: false, roles: &table.read })?;
    let key = key_of(table)?;
    let params = ListParams::parse(table, key, query.as_deref().unwrap_or(""))?;
    let statement = sql::list(table, key, &params.filters.iter().map(|(c, _)| *c).collect::<Vec<_>>(), &params.select);
    let mut q = sqlx::query_as::<_, (String, String)>(AssertSqlSafe(statement))
        .bind(scope.tenant_id().0)
        .bind(params.cursor.as_deref())
        .bind(params.limit + 1);
    for (_, value) in &params.filters {
        q = q.bind(value.as_str());
    }
    let mut tx = scope.begin().await?;
    let mut rows = q.fetch_all(tx.conn()).await.map_err(|e| statement_error(&ctx, table, e))?;
    tx.commit().await?;
    let next_cursor = if rows.len() > params.limit as usize {
        rows.truncate(params.limit as usize);
        rows.last().map(|(k, _)| k.clone())
    } else {
        None
    };
    let items: Vec<&str> = rows.iter().map(|(_, row)| row.as_str()).collect();
    let body = format!(
        "{{\"items\":[{}],\"next_cursor\":{}}}",
        items.join(","),
        serde_json::to_string(&next_cursor).unwrap_or_else(|_| "null".into())
    );
    Ok(json_text(StatusCode::OK, body))
}

/// One row by its key.
pub async fn get_row(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let schema = ctx.data.snapshot();
    let table = served(&schema, &name)?;
    principal.require(TableAccess { table: &table.name, write: false, roles: &table.read })?;
    let key = key_named(table, &id)?;
    // Integer and uuid keys take the one-message read (their literals cannot carry SQL).
    if let Some(literal) = literal_key(key, &id) {
        let (params, statement) = sql::get_prepared(table, key);
        let args = [Literal::Uuid(scope.tenant_id().0), literal];
        let rows: Vec<(String,)> =
            scope.read_once_adhoc(&params, &statement, &args).await.map_err(|e| statement_error(&ctx, table, e))?;
        return rows.into_iter().next().map(|(r,)| json_text(StatusCode::OK, r)).ok_or_else(|| not_found(table));
    }
    let mut tx = scope.begin().await?;
    let row: Option<String> = sqlx::query_scalar(AssertSqlSafe(sql::get(table, key)))
        .bind(scope.tenant_id().0)
        .bind(&id)
        .fetch_optional(tx.conn())
        .await
        .map_err(|e| statement_error(&ctx, table, e))?;
    tx.commit().await?;
    row.map(|r| json_text(StatusCode::OK, r)).ok_or_else(|| not_found(table))
}

/// Create a row; columns with defaults (identity, serial, DEFAULT) may be left out.
pub async fn create_row(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
    Path(name): Path<String>,
    Json(body): Json<Body>,
) -> Result<Response, ApiError> {
    let schema = ctx.data.snapshot();
    let table = served(&schema, &name)?;
    require_write(&principal, table)?;
    let columns = checked_columns(table, &body)?;
    if let Some(missing) = table.columns.iter().find(|c| c.required() && !body.contains_key(&c.name)) {
        return Err(ApiError::validation_of(format!("{} is required", missing.name)));
    }
    let mut tx = scope.begin().await?;
    tx.check_deferred_keys_at_commit();
    let row: String = sqlx::query_scalar(AssertSqlSafe(sql::insert(table, &columns)))
        .bind(scope.tenant_id().0)
        .bind(record(&body))
        .fetch_one(tx.conn())
        .await
        .map_err(|e| write_error(&ctx, table, e, false))?;
    tx.commit().await.map_err(|e| write_error(&ctx, table, e, false))?;
    Ok(json_text(StatusCode::CREATED, row))
}

/// Change the columns the body names; the others stay as they are.
pub async fn update_row(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
    Path((name, id)): Path<(String, String)>,
    Json(body): Json<Body>,
) -> Result<Response, ApiError> {
    let schema = ctx.data.snapshot();
    let table = served(&schema, &name)?;
    require_write(&principal, table)?;
    let key = key_named(table, &id)?;
    let columns = checked_columns(table, &body)?;
    let mut tx = scope.begin().await?;
    tx.check_deferred_keys_at_commit();
    let statement = if columns.is_empty() { sql::get(table, key) } else { sql::update(table, key, &columns) };
    let mut q = sqlx::query_scalar::<_, String>(AssertSqlSafe(statement)).bind(scope.tenant_id().0).bind(&id);
    if !columns.is_empty() {
        q = q.bind(record(&body));
    }
    let row = q.fetch_optional(tx.conn()).await.map_err(|e| write_error(&ctx, table, e, false))?;
    tx.commit().await.map_err(|e| write_error(&ctx, table, e, false))?;
    row.map(|r| json_text(StatusCode::OK, r)).ok_or_else(|| not_found(table))
}

/// Delete a row.
pub async fn delete_row(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let schema = ctx.data.snapshot();
    let table = served(&schema, &name)?;
    require_write(&principal, table)?;
    let key = key_named(table, &id)?;
    let mut tx = scope.begin().await?;
    tx.check_deferred_keys_at_commit();
    let deleted = sqlx::query(AssertSqlSafe(sql::delete(table, key)))
        .bind(scope.tenant_id().0)
        .bind(&id)
        .execute(tx.conn())
        .await
        .map_err(|e| write_error(&ctx, table, e, true))?
        .rows_affected();
    tx.commit().await.map_err(|e| write_error(&ctx, table, e, true))?;
    if deleted == 0 {
        return Err(not_found(table));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The key as a literal `read_once` may render: a checked integer or uuid, re-rendered from
/// its parsed value; None for text keys (bound instead).
fn literal_key(key: &Column, id: &str) -> Option<Literal> {
    match key.scalar {
        Scalar::Int2 | Scalar::Int4 | Scalar::Int8 => id.parse().ok().map(Literal::Int),
        Scalar::Uuid => uuid::Uuid::try_parse(id).ok().map(Literal::Uuid),
        _ => None,
    }
}

/// Writing a row answers with the row, so a writer must be a reader too (`tables adopt` keeps
/// the write set inside the read set; this holds whatever the registry says).
fn require_write(principal: &Principal, table: &Table) -> Result<(), ApiError> {
    principal.require(TableAccess { table: &table.name, write: false, roles: &table.read })?;
    principal.require(TableAccess { table: &table.name, write: true, roles: &table.write })
}

/// The table, if it is adopted and served.
fn served<'s>(schema: &'s Schema, name: &str) -> Result<&'s Table, ApiError> {
    let table = schema.tables.get(name).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::UnknownTable, format!("no adopted table {name:?} is served"))
    })?;
    match &table.not_served {
        Some(why) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownTable,
            format!("table {name} is adopted but not served over HTTP: {why}"),
        )),
        None => Ok(table),
    }
}

fn key_of(table: &Table) -> Result<&Column, ApiError> {
    table.key_column().ok_or_else(|| ApiError::internal(format!("served table {} has no key column", table.name)))
}

/// The key column, with `id` (from the path) checked against its type: 400 `invalid_path`.
fn key_named<'t>(table: &'t Table, id: &str) -> Result<&'t Column, ApiError> {
    let key = key_of(table)?;
    values::check_text(key, id).map_err(|why| ApiError::bad_request(ErrorCode::InvalidPath, why))?;
    Ok(key)
}

fn not_found(table: &Table) -> ApiError {
    ApiError::not_found(&format!("row of {}", table.name))
}

/// A write's body: each value kept as the client wrote it, so json/jsonb columns get exactly
/// those digits and keys (a parsed `Value` would pass numbers through f64).
type Body = BTreeMap<String, Box<RawValue>>;

/// The body as one JSON object for `json_populate_record`, values as written.
fn record(body: &Body) -> String {
    let fields: Vec<String> = body
        .iter()
        .map(|(name, raw)| format!("{}:{}", serde_json::to_string(name).unwrap_or_default(), raw.get()))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// The columns a write body names, each checked: known, settable, of the right type. tenant_id
/// is never taken from a body (the request's tenant is the row's).
fn checked_columns<'t>(table: &'t Table, body: &Body) -> Result<Vec<&'t Column>, ApiError> {
    let mut columns = Vec::with_capacity(body.len());
    for (name, raw) in body {
        if name == "tenant_id" {
            return Err(ApiError::validation_of(
                "tenant_id is never taken from a body: a row belongs to the tenant of the request".to_string(),
            ));
        }
        let column = table.column(name).ok_or_else(|| {
            ApiError::validation_of(format!(
                "{} has no column {name:?}; its columns are {}",
                table.name,
                table.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?;
        if !column.writable() {
            return Err(ApiError::validation_of(format!(
                "{name} is set by the database (generated, or numbered by a sequence), never by a request"
            )));
        }
        // json/jsonb take any JSON, checked as text: parsing it here would refuse numbers
        // beyond a float's range that PostgreSQL keeps exactly.
        if matches!(column.scalar, Scalar::Json | Scalar::Jsonb) && !column.array {
            values::check_raw_json(column, raw.get()).map_err(ApiError::validation_of)?;
            columns.push(column);
            continue;
        }
        let value: Value = serde_json::from_str(raw.get())
            .map_err(|_| ApiError::validation_of(format!("{name} is not JSON this API can read")))?;
        values::check(column, &value).map_err(ApiError::validation_of)?;
        if table.key.as_deref() == Some(name.as_str()) && value.as_str() == Some("") {
            return Err(ApiError::validation_of(format!(
                "{name} is the key; an empty key could never be named in a path"
            )));
        }
        columns.push(column);
    }
    Ok(columns)
}

/// `?limit=&cursor=&select=a,b&column=value…`, each checked against the table.
struct ListParams<'t> {
    limit: i64,
    cursor: Option<String>,
    select: Vec<&'t Column>,
    filters: Vec<(&'t Column, String)>,
}

impl<'t> ListParams<'t> {
    fn parse(table: &'t Table, key: &Column, query: &str) -> Result<ListParams<'t>, ApiError> {
        let invalid = |detail: String| ApiError::bad_request(ErrorCode::InvalidQuery, detail);
        let mut seen = Vec::new();
        let mut params =
            ListParams { limit: DEFAULT_LIMIT, cursor: None, select: table.columns.iter().collect(), filters: vec![] };
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            // form_urlencoded replaces bytes that are not UTF-8 with U+FFFD; a value of that
            // kind was not what the client meant.
            if name.contains('\u{fffd}') || value.contains('\u{fffd}') {
                return Err(invalid(format!("{name} is not valid UTF-8 once percent-decoded")));
            }
            if seen.contains(&name) {
                return Err(invalid(format!("{name} is given twice")));
            }
            seen.push(name.clone());
            match name.as_ref() {
                "limit" => {
                    params.limit = value
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| invalid(format!("limit must be an integer from 1 to {MAX_LIMIT}")))?;
                }
                "cursor" => {
                    values::check_text(key, &value).map_err(|_| {
                        ApiError::bad_request(
                            ErrorCode::InvalidCursor,
                            "cursor is not a next_cursor this table gave out",
                        )
                    })?;
                    params.cursor = Some(value.into_owned());
                }
                "select" => {
                    let mut select = Vec::new();
                    for wanted in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        let column = table.column(wanted).ok_or_else(|| {
                            invalid(format!("select names {wanted:?}, not a column of {}", table.name))
                        })?;
                        if !select.iter().any(|c: &&Column| c.name == column.name) {
                            select.push(column);
                        }
                    }
                    if select.is_empty() {
                        return Err(invalid("select names no column".into()));
                    }
                    params.select = select;
                }
                column_name => {
                    let column = table.column(column_name).ok_or_else(|| {
                        invalid(format!(
                            "unknown parameter {column_name:?}: give limit, cursor, select, or a column to filter on ({})",
                            table.filterable.join(", ")
                        ))
                    })?;
                    if !table.filterable.iter().any(|f| f == column_name) || RESERVED.contains(&column_name) {
                        return Err(invalid(format!(
                            "{column_name} is not indexed, so it cannot be filtered on; filters: {}",
                            table.filterable.join(", ")
                        )));
                    }
                    values::check_text(column, &value).map_err(invalid)?;
                    params.filters.push((column, value.into_owned()));
                }
            }
        }
        Ok(params)
    }
}

/// A JSON body PostgreSQL already rendered.
fn json_text(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A read or write that failed. A statement the table no longer fits (a column dropped or
/// retyped since the snapshot) asks for the catalog to be read again and is 503: the next
/// attempt sees the table as it is.
fn statement_error(ctx: &ApiContext, table: &Table, e: sqlx::Error) -> ApiError {
    if let sqlx::Error::Database(db) = &e
        && db.code().is_some_and(|c| matches!(c.as_ref(), "42703" | "42P01" | "42804" | "42883" | "0A000"))
    {
        tracing::warn!(table = %table.name, error = %e, "adopted table changed under the snapshot; reading it again");
        ctx.data.request_reload();
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            format!("table {} changed; try again", table.name),
        );
    }
    ApiError::from(e)
}

/// A write refused by one of the table's constraints, named in the answer. A foreign key from
/// this table → 422 `invalid_reference` (keys are composite, so another tenant's row fails
/// exactly like a missing one); one into it (deleting a row others reference) → 409.
/// Also for COMMIT: a key declared `DEFERRABLE INITIALLY DEFERRED` (as Django declares every
/// key) is checked there, not at the statement.
fn write_error(ctx: &ApiContext, table: &Table, e: sqlx::Error, deleting: bool) -> ApiError {
    let sqlx::Error::Database(db) = &e else { return ApiError::from(e) };
    // Citus passes a worker's error on without its fields: names then come from the message.
    let constraint = crate::http::error::violated_constraint(db.constraint(), db.message());
    let listed = |cols: &[String]| cols.join(", ");
    match db.code().as_deref() {
        Some("23505") => {
            let columns = table.uniques.get(&constraint).map(|c| listed(c)).unwrap_or_else(|| {
                table.key.clone().filter(|_| constraint.ends_with("_pkey")).unwrap_or_else(|| constraint.clone())
            });
            ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::UniqueViolation,
                format!("another row of {} already has this {columns} (constraint {constraint})", table.name),
            )
        }
        Some("23503") => match table.foreign_keys.iter().find(|f| f.name == constraint).filter(|_| !deleting) {
            Some(fk) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::InvalidReference,
                format!(
                    "{} does not name a row of this tenant's {} (foreign key {constraint})",
                    listed(&fk.columns),
                    fk.references
                ),
            ),
            None => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::RowInUse,
                format!(
                    "rows of {} still reference this row (foreign key {constraint}); delete or change them first",
                    db.table()
                        .map(str::to_string)
                        .or_else(|| crate::http::error::quoted_in_message(db.message(), "on table \"", true))
                        .unwrap_or_else(|| "another table".into())
                ),
            ),
        },
        Some("23502") => {
            let column = db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .and_then(|pg| pg.column())
                .map(str::to_string)
                .or_else(|| crate::http::error::quoted_in_message(db.message(), "column \"", false))
                .unwrap_or_else(|| "a column".into());
            ApiError::validation_of(format!("{column} must not be null"))
        }
        Some("23514") => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::CheckViolation,
            format!("the row breaks check constraint {constraint} of {}", table.name),
        ),
        // A value only PostgreSQL could check (inet, interval, a date before year 1, …): its
        // message names the type and the value, never another tenant's data.
        // A sequence at its end is no value the request sent.
        Some("2200H") => ApiError::internal(e),
        Some(code) if code.starts_with("22") && !matches!(code, "22021" | "22P05") => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidValue,
            format!("{} refused a value: {}", table.name, db.message()),
        ),
        Some("23P01") => ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::UniqueViolation,
            format!("the row conflicts with another of {} (exclusion constraint {constraint})", table.name),
        ),
        _ => statement_error(ctx, table, e),
    }
}
