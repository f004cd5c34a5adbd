//! Contacts: `GET|POST /v1/contacts`, `GET|PATCH|DELETE /v1/contacts/{id}`. Every statement
//! runs in the request's tenant transaction and also filters on `tenant_id = $1`: RLS is the
//! guarantee, the explicit filter is the index path. Another tenant's id is simply not found.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::db::TenantScope;
use crate::db::{HotStatement, Literal};
use crate::domain::{ContactId, ContactName, Email, OrganizationId, Permission, Phone};
use crate::http::context::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::error_codes::ErrorCode;
use crate::http::extract::{Json, Path, Query};
use crate::http::pagination::Keyset;

#[derive(Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Contact {
    pub id: ContactId,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub organization_id: Option<OrganizationId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContactPage {
    pub items: Vec<Contact>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "UUID_CURSOR_PATTERN")]
    cursor: Option<String>,
    /// Only the contacts of this organization.
    organization_id: Option<OrganizationId>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContact {
    #[schema(pattern = "TEXT_PATTERN", max_length = 200)]
    name: String,
    #[schema(pattern = "EMAIL_PATTERN", max_length = 254)]
    email: String,
    #[schema(pattern = "PHONE_PATTERN", max_length = 40)]
    phone: Option<String>,
    organization_id: Option<OrganizationId>,
}

/// Fields to change; absent fields stay as they are, `"phone": null` clears the phone.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactPatch {
    #[schema(pattern = "TEXT_PATTERN", max_length = 200)]
    name: Option<String>,
    #[schema(pattern = "EMAIL_PATTERN", max_length = 254)]
    email: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = "PHONE_PATTERN", max_length = 40)]
    phone: Option<Option<String>>,
    /// `null` detaches the contact from its organization.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<OrganizationId>)]
    organization_id: Option<Option<OrganizationId>>,
}

/// Distinguishes `"phone": null` (Some(None)) from an absent field (None, via `default`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// List contacts in creation order (keyset pagination on the uuid v7 id).
#[utoipa::path(get, path = "/v1/contacts", tag = "contacts", params(ListParams), security(("bearer" = [])),
    responses((status = 200, body = ContactPage), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn list_contacts(
    scope: TenantScope,
    principal: Principal,
    Query(params): Query<ListParams>,
) -> Result<Json<ContactPage>, ApiError> {
    principal.require(Permission::ReadContacts)?;
    let page = Keyset::parse(params.limit, params.cursor.as_deref())?;
    let (limit, after) = (page.limit, page.after);
    if let Some(organization) = params.organization_id {
        return list_of_organization(&scope, organization, limit, after).await.map(Json);
    }
    let mut items: Vec<Contact> = scope
        .read_once(
            &LIST_CONTACTS,
            &[
                Literal::Uuid(scope.tenant_id().0),
                after.map_or(Literal::Null, Literal::Uuid),
                Literal::Int(i64::from(limit) + 1),
            ],
        )
        .await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|c| c.id.to_string())
    } else {
        None
    };
    Ok(Json(ContactPage { items, next_cursor }))
}

/// Create a contact.
#[utoipa::path(post, path = "/v1/contacts", tag = "contacts", request_body = NewContact, security(("bearer" = [])),
    responses((status = 201, body = Contact),
              (status = 422, description = "`validation_failed`, or `invalid_reference`: the organization is not this tenant's (missing and foreign look the same)",
                  body = Problem, content_type = "application/problem+json")))]
pub async fn create_contact(
    scope: TenantScope,
    principal: Principal,
    Json(body): Json<NewContact>,
) -> Result<(StatusCode, Json<Contact>), ApiError> {
    principal.require(Permission::WriteContacts)?;
    let name = ContactName::parse(&body.name).map_err(ApiError::validation)?;
    let email = Email::parse(&body.email).map_err(ApiError::validation)?;
    let phone = body.phone.as_deref().map(Phone::parse).transpose().map_err(ApiError::validation)?;
    let mut tx = scope.begin().await?;
    let contact = sqlx::query_as!(
        Contact,
        r#"INSERT INTO contacts (tenant_id, id, name, email, phone, organization_id) VALUES ($1, $2, $3, $4, $5, $6)
           RETURNING id AS "id: ContactId", name, email, phone, organization_id AS "organization_id: OrganizationId",
                     created_at, updated_at"#,
        scope.tenant_id().0,
        ContactId::new_v7().0,
        name.as_str(),
        email.as_str(),
        phone.as_ref().map(Phone::as_str),
        body.organization_id.map(|o| o.0),
    )
    .fetch_one(tx.conn())
    .await
    .map_err(|e| ApiError::from_write(e, |_| None))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(contact)))
}

/// Keyset page: `$2` is the last id of the previous page or NULL, `$3` the limit plus one.
pub const LIST_CONTACTS: HotStatement = HotStatement {
    name: "rg_list_contacts",
    params: "uuid, uuid, bigint",
    sql: "SELECT id, name, email, phone, organization_id, created_at, updated_at FROM contacts
           WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
};

/// The hot path's one statement (sent with `read_once`); the benchmark's database ceiling
/// sends exactly this.
pub const GET_CONTACT: HotStatement = HotStatement {
    name: "rg_get_contact",
    params: "uuid, uuid",
    sql: "SELECT id, name, email, phone, organization_id, created_at, updated_at FROM contacts WHERE tenant_id = $1 AND id = $2",
};

/// One contact.
#[utoipa::path(get, path = "/v1/contacts/{id}", tag = "contacts", params(("id" = ContactId, Path)), security(("bearer" = [])),
    responses((status = 200, body = Contact), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_contact(
    scope: TenantScope,
    principal: Principal,
    Path(id): Path<ContactId>,
) -> Result<Json<Contact>, ApiError> {
    principal.require(Permission::ReadContacts)?;
    let args = [Literal::Uuid(scope.tenant_id().0), Literal::Uuid(id.0)];
    let contact = scope.read_once::<Contact>(&GET_CONTACT, &args).await?.into_iter().next();
    contact.map(Json).ok_or_else(|| ApiError::not_found("contact"))
}

/// Change some fields of a contact.
#[utoipa::path(patch, path = "/v1/contacts/{id}", tag = "contacts", params(("id" = ContactId, Path)), request_body = ContactPatch,
    security(("bearer" = [])),
    responses((status = 200, body = Contact), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "`validation_failed`, or `invalid_reference`: the organization is not this tenant's (missing and foreign look the same)",
                  body = Problem, content_type = "application/problem+json")))]
pub async fn update_contact(
    scope: TenantScope,
    principal: Principal,
    Path(id): Path<ContactId>,
    Json(patch): Json<ContactPatch>,
) -> Result<Json<Contact>, ApiError> {
    principal.require(Permission::WriteContacts)?;
    let name = patch.name.as_deref().map(ContactName::parse).transpose().map_err(ApiError::validation)?;
    let email = patch.email.as_deref().map(Email::parse).transpose().map_err(ApiError::validation)?;
    let phone = match patch.phone {
        Some(Some(raw)) => Some(Some(Phone::parse(&raw).map_err(ApiError::validation)?)),
        Some(None) => Some(None),
        None => None,
    };
    let (set_phone, new_phone) = (phone.is_some(), phone.flatten());
    let mut tx = scope.begin().await?;
    let contact = sqlx::query_as!(
        Contact,
        r#"UPDATE contacts
              SET name = COALESCE($3, name),
                  email = COALESCE($4, email),
                  phone = CASE WHEN $5 THEN $6 ELSE phone END,
                  organization_id = CASE WHEN $7 THEN $8 ELSE organization_id END,
                  updated_at = now()
            WHERE tenant_id = $1 AND id = $2
           RETURNING id AS "id: ContactId", name, email, phone, organization_id AS "organization_id: OrganizationId",
                     created_at, updated_at"#,
        scope.tenant_id().0,
        id.0,
        name.as_ref().map(ContactName::as_str),
        email.as_ref().map(Email::as_str),
        set_phone,
        new_phone.as_ref().map(Phone::as_str),
        patch.organization_id.is_some(),
        patch.organization_id.flatten().map(|o| o.0),
    )
    .fetch_optional(tx.conn())
    .await
    .map_err(|e| ApiError::from_write(e, |_| None))?;
    tx.commit().await?;
    contact.map(Json).ok_or_else(|| ApiError::not_found("contact"))
}

/// Delete a contact.
#[utoipa::path(delete, path = "/v1/contacts/{id}", tag = "contacts", params(("id" = ContactId, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "`contact_in_use`: deals name this contact", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_contact(
    scope: TenantScope,
    principal: Principal,
    Path(id): Path<ContactId>,
) -> Result<StatusCode, ApiError> {
    principal.require(Permission::WriteContacts)?;
    let mut tx = scope.begin().await?;
    let deleted = sqlx::query!("DELETE FROM contacts WHERE tenant_id = $1 AND id = $2", scope.tenant_id().0, id.0)
        .execute(tx.conn())
        .await
        .map_err(|e| match &e {
            // Deals name their contact; deleting it would orphan them.
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::ContactInUse,
                "the contact still has deals; delete or move them first",
            ),
            _ => ApiError::from(e),
        })?
        .rows_affected();
    tx.commit().await?;
    if deleted == 0 {
        return Err(ApiError::not_found("contact"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The `?organization_id=` page: bound parameters on the (tenant_id, organization_id, id) index.
async fn list_of_organization(
    scope: &TenantScope,
    organization: OrganizationId,
    limit: u32,
    after: Option<uuid::Uuid>,
) -> Result<ContactPage, ApiError> {
    let mut tx = scope.begin().await?;
    let mut items = sqlx::query_as!(
        Contact,
        r#"SELECT id AS "id: ContactId", name, email, phone, organization_id AS "organization_id: OrganizationId",
                  created_at, updated_at
             FROM contacts
            WHERE tenant_id = $1 AND organization_id = $2 AND ($3::uuid IS NULL OR id > $3) ORDER BY id LIMIT $4"#,
        scope.tenant_id().0,
        organization.0,
        after,
        i64::from(limit) + 1,
    )
    .fetch_all(tx.conn())
    .await?;
    tx.commit().await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|c| c.id.to_string())
    } else {
        None
    };
    Ok(ContactPage { items, next_cursor })
}
