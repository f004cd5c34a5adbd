//! Webhook subscriptions: `GET|POST /v1/webhooks`, `GET|PATCH|DELETE /v1/webhooks/{id}`,
//! `POST /v1/webhooks/{id}/rotate-secret`, the delivery log `GET /v1/webhooks/{id}/deliveries`
//! and `POST /v1/webhooks/{id}/deliveries/{delivery}/redeliver`. Owners and admins only
//! (`manage_webhooks`). The secret is shown once, when made (or rotated); deliveries are sent
//! by the outbox's workers (`jobs`), signed with it.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::db::TenantScope;
use crate::db::webhooks::{self, Change, Delivery, Redelivery, Webhook};
use crate::domain::Permission;
use crate::domain::webhook_events::EventTypes;
use crate::http::ApiContext;
use crate::http::context::Principal;
use crate::http::error::{ApiError, Problem};
use crate::http::error_codes::ErrorCode;
use crate::http::extract::{Json, Path, Query};
use crate::http::pagination::{Keyset, PageParams};
use crate::jobs::{signing, target};

/// How long a rotated-out secret keeps signing beside the new one.
const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookPage {
    pub items: Vec<Webhook>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A subscription just made or rotated, with its secret — shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_…`: the key that signs deliveries (Standard Webhooks). Not shown again.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    /// Pass as `cursor` to get older attempts; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveryParams {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[1-9][0-9]{0,17}$")]
    cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where deliveries are POSTed: https:// (http:// only in development), a public host.
    #[schema(max_length = 2048)]
    url: String,
    /// Event types: `contact.created`, `deal.*`, `bar_projects.updated`, `*`, …
    #[schema(min_items = 1, max_items = 50)]
    events: Vec<String>,
    #[schema(max_length = 500)]
    description: Option<String>,
}

/// Fields to change; absent fields stay as they are, `"description": null` clears it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    #[schema(max_length = 2048)]
    url: Option<String>,
    #[schema(min_items = 1, max_items = 50)]
    events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 500)]
    description: Option<Option<String>>,
    /// A disabled subscription gets no new deliveries (queued ones are still sent).
    enabled: Option<bool>,
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Redelivered {
    /// `queued`: the message goes out again with a fresh set of attempts.
    pub status: &'static str,
}

/// The URL, checked against the SSRF rules (`jobs::target`).
async fn checked_url(ctx: &ApiContext, url: &str) -> Result<String, ApiError> {
    match target::check(url, ctx.webhooks_allow_local).await {
        Ok(url) => Ok(url.to_string()),
        Err(e) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::WebhookUrlRefused, e.to_string())),
    }
}

fn checked_events(ctx: &ApiContext, events: &[String]) -> Result<Vec<String>, ApiError> {
    let schema = ctx.data.snapshot();
    EventTypes::parse(events, schema.tables.keys().map(String::as_str))
        .map(EventTypes::into_vec)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::UnknownEventType, e))
}

fn checked_description(description: Option<&str>) -> Result<Option<String>, ApiError> {
    match description {
        Some(d) if d.chars().count() > 500 || d.contains('\0') => {
            Err(ApiError::validation_of("description: at most 500 characters, no NUL".into()))
        }
        other => Ok(other.map(str::to_string)),
    }
}

/// List the tenant's webhook subscriptions.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", params(PageParams), security(("bearer" = [])),
    responses((status = 200, body = WebhookPage), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list_webhooks(
    scope: TenantScope,
    principal: Principal,
    Query(params): Query<PageParams>,
) -> Result<Json<WebhookPage>, ApiError> {
    principal.require(Permission::ManageWebhooks)?;
    let page = Keyset::parse(params.limit, params.cursor.as_deref())?;
    let mut tx = scope.begin().await?;
    let mut items = webhooks::list(&mut tx, page.after, page.fetch_limit()).await?;
    tx.commit().await?;
    let next_cursor = page.finish(&mut items, |w| w.id);
    Ok(Json(WebhookPage { items, next_cursor }))
}

/// Subscribe a URL to event types. The answer carries the signing secret, shown this once.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = NewWebhook, security(("bearer" = [])),
    responses((status = 201, body = WebhookWithSecret), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "`webhook_limit`: the tenant has 50 subscriptions", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "`webhook_url_refused`: not https://, credentials in the URL, or a loopback, private or link-local address; `unknown_event_type`; `validation_failed`",
               body = Problem, content_type = "application/problem+json")))]
pub async fn create_webhook(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
    Json(body): Json<NewWebhook>,
) -> Result<(StatusCode, Json<WebhookWithSecret>), ApiError> {
    principal.require(Permission::ManageWebhooks)?;
    let events = checked_events(&ctx, &body.events)?;
    let description = checked_description(body.description.as_deref())?;
    let url = checked_url(&ctx, &body.url).await?;
    let secret = signing::new_secret();
    let mut tx = scope.begin().await?;
    if webhooks::count(&mut tx).await? >= webhooks::MAX_PER_TENANT {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::WebhookLimit,
            format!("a tenant may have {} webhook subscriptions", webhooks::MAX_PER_TENANT),
        ));
    }
    let webhook = webhooks::create(&mut tx, &url, &events, description.as_deref(), &secret).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(WebhookWithSecret { webhook, secret })))
}

/// One webhook subscription (without its secret).
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Webhook), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_webhook(
    scope: TenantScope,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<Webhook>, ApiError> {
    principal.require(Permission::ManageWebhooks)?;
    let mut tx = scope.begin().await?;
    let webhook = webhooks::get(&mut tx, id).await?;
    tx.commit().await?;
    webhook.map(Json).ok_or_else(|| ApiError::not_found("webhook"))
}

/// Change a subscription's URL, event types, description or whether it is enabled.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path)),
    request_body = WebhookPatch, security(("bearer" = [])),
    responses((status = 200, body = Webhook), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "`webhook_url_refused`, `unknown_event_type` or `validation_failed`, as for a new subscription",
               body = Problem, content_type = "application/problem+json")))]
pub async fn update_webhook(
    State(ctx): State<ApiContext>,
    scope: TenantScope,
    principal: Principal,
    Path(id): Path<Uuid>,
    Json(patch): Json<WebhookPatch>,
) -> Result<Json<Webhook>, ApiError> {
    principal.require(Permission::ManageWebhooks)?;
    let events = patch.events.as_deref().map(|e| checked_events(&ctx, e)).transpose()?;
    let description = match &patch.description {
        Some(d) => Some(checked_description(d.as_deref())?),
        None => None,
    };
    let url = match &patch.url {
        Some(url) => Some(checked_url(&ctx, url).await?),
        None => None,
    };
    let change = Change { url, events, description, enabled: patch.enabled };
    let mut tx = scope.begin().await?;
    let webhook = webhooks::update(&mut tx, id, change).await?;
    tx.commit().await?;
    webhook.map(Json).ok_or_else(|| ApiError::not_found("webhook"))
}

/// Delete a subscription, with its queued deliveries and its delivery log.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_webhook(
    scope: TenantScope,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    principal.require(Permission::ManageWebhooks)?;
    let mut tx = scope.begin().await?;
    let deleted = webhooks::delete(&mut tx, id).await?;
    tx.commit().await?;
    if !deleted {
        return Err(ApiError::not_found("webhook"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A new signing secret, shown this once; the old one keeps signing beside it for 24 hours
/// (deliveries carry both signatures meanwhile), so receivers can switch without a gap.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks", params(("id" = Uuid, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = WebhookWithSecret), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn rotate_secret(
    scope: TenantScope,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<WebhookWithSecret>, ApiError> {
    principal.require(Permission::ManageWebhooks)?;
    let secret = signing::new_secret();
    let mut tx = scope.begin().await?;
    let webhook = webhooks::rotate(&mut tx, id, &secret, ROTATION_OVERLAP).await?;
    tx.commit().await?;
    let webhook = webhook.ok_or_else(|| ApiError::not_found("webhook"))?;
    Ok(Json(WebhookWithSecret { webhook, secret }))
}

/// The subscription's delivery log: every attempt, newest first, with the receiver's status.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = Uuid, Path), DeliveryParams),
    security(("bearer" = [])),
    responses((status = 200, body = DeliveryPage), (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn list_deliveries(
    scope: TenantScope,
    principal: Principal,
    Path(id): Path<Uuid>,
    Query(params): Query<DeliveryParams>,
) -> Result<Json<DeliveryPage>, ApiError> {
    principal.require(Permission::ManageWebhooks)?;
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(ErrorCode::InvalidQuery, "limit must be between 1 and 100"));
    }
    let before = match params.cursor.as_deref() {
        Some(c) => {
            Some(c.parse::<i64>().ok().filter(|n| *n > 0 && !c.starts_with(['0', '+'])).ok_or_else(|| {
                ApiError::bad_request(ErrorCode::InvalidCursor, "cursor is not one this API gave out")
            })?)
        }
        None => None,
    };
    let mut tx = scope.begin().await?;
    if webhooks::get(&mut tx, id).await?.is_none() {
        return Err(ApiError::not_found("webhook"));
    }
    let mut items = webhooks::deliveries(&mut tx, id, before, i64::from(limit) + 1).await?;
    tx.commit().await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|d| d.id.to_string())
    } else {
        None
    };
    Ok(Json(DeliveryPage { items, next_cursor }))
}

/// Send a logged message again (delivered, dead or discarded): it is queued with a fresh set
/// of attempts and the same `webhook-id`.
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery}/redeliver", tag = "webhooks",
    params(("id" = Uuid, Path), ("delivery" = i64, Path, minimum = 1)), security(("bearer" = [])),
    responses((status = 202, body = Redelivered), (status = 403, body = Problem, content_type = "application/problem+json"),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "`webhook_pending`: the message is still queued", body = Problem, content_type = "application/problem+json")))]
pub async fn redeliver(
    scope: TenantScope,
    principal: Principal,
    Path((id, delivery)): Path<(Uuid, i64)>,
) -> Result<(StatusCode, Json<Redelivered>), ApiError> {
    principal.require(Permission::ManageWebhooks)?;
    let mut tx = scope.begin().await?;
    let outcome = webhooks::redeliver(&mut tx, id, delivery).await?;
    tx.commit().await?;
    match outcome {
        Redelivery::Queued => Ok((StatusCode::ACCEPTED, Json(Redelivered { status: "queued" }))),
        Redelivery::AlreadyPending => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::WebhookPending,
            "the message is still queued to be sent or retried",
        )),
        Redelivery::NotFound => Err(ApiError::not_found("delivery")),
    }
}
