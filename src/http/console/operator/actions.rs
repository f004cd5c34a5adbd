//! What an operator changes on a tenant: status, plan, rate-limit override, domains, deletion.
//! Each posts a CSRF-checked form and redirects back to the tenant's page.

use super::*;

#[derive(Deserialize)]
pub struct StatusForm {
    status: String,
}

/// Suspend or resume (to active or trial; deletion has its own form).
pub async fn change_status(
    Operator { id }: Operator,
    Platform(mut platform): Platform,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<StatusForm>,
) -> Result<Response, ApiError> {
    let status = parse_status(&form.status)?;
    if status == TenantStatus::Deleted {
        return Err(ApiError::bad_request(ErrorCode::InvalidBody, "delete a tenant with the delete form"));
    }
    let (slug, _) = summary(&mut platform, &slug).await?;
    platform.change_tenant(&slug, TenantChange { status: Some(status), ..TenantChange::default() }).await?;
    tracing::info!(tenant = %slug, operator = %id, status = status.as_str(), "tenant status changed from the console");
    Ok(Redirect::to(&format!("/console/platform/tenants/{slug}")).into_response())
}

#[derive(Deserialize)]
pub struct PlanForm {
    plan: Plan,
}

pub async fn change_plan(
    Operator { id }: Operator,
    Platform(mut platform): Platform,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<PlanForm>,
) -> Result<Response, ApiError> {
    let (slug, _) = summary(&mut platform, &slug).await?;
    platform.change_tenant(&slug, TenantChange { plan: Some(form.plan), ..TenantChange::default() }).await?;
    tracing::info!(tenant = %slug, operator = %id, plan = form.plan.as_str(), "tenant plan changed from the console");
    Ok(Redirect::to(&format!("/console/platform/tenants/{slug}")).into_response())
}

#[derive(Deserialize)]
pub struct RateLimitForm {
    per_second: Option<String>,
    burst: Option<String>,
    /// Present: remove the override (the plan's quota again).
    clear: Option<String>,
}

impl RateLimitForm {
    /// The override asked for (None: clear it), or 422 naming the field that is wrong.
    fn parse(&self) -> Result<Option<RateLimitOverride>, ApiError> {
        if self.clear.is_some() {
            return Ok(None);
        }
        let number = |field: &'static str, v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|n| (1..=RATE_LIMIT_MAX).contains(n))
                .ok_or_else(|| {
                    ApiError::validation(Invalid::new(field, format!("a whole number from 1 to {RATE_LIMIT_MAX}")))
                })
        };
        Ok(Some(RateLimitOverride {
            per_second: number("per_second", &self.per_second)?,
            burst: number("burst", &self.burst)?,
        }))
    }
}

/// Set or clear the tenant's rate-limit override: the platform's `set_rate_limit`, which
/// records `tenant.rate_limit_change` in the tenant's audit log as a plan change is recorded.
pub async fn change_rate_limit(
    Operator { id }: Operator,
    Platform(mut platform): Platform,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<RateLimitForm>,
) -> Result<Response, ApiError> {
    let limit = form.parse()?;
    let (slug, _) = summary(&mut platform, &slug).await?;
    platform.set_rate_limit(&slug, limit).await?;
    tracing::info!(tenant = %slug, operator = %id, ?limit, "tenant rate limit changed from the console");
    Ok(Redirect::to(&format!("/console/platform/tenants/{slug}")).into_response())
}

#[derive(Deserialize)]
pub struct DomainForm {
    domain: String,
    /// Present (a ticked box): make it the primary domain.
    primary: Option<String>,
}

/// What to do with a domain (`domains::*` in the platform API, the same platform functions).
#[derive(Debug, Clone, Copy)]
pub enum DomainAction {
    Add,
    Remove,
    MakePrimary,
}

async fn change_domain(
    ctx: &ApiContext,
    id: crate::domain::OperatorId,
    platform: &mut PlatformConn,
    slug: &str,
    form: DomainForm,
    action: DomainAction,
) -> Result<Response, ApiError> {
    use crate::domain::DomainName;
    let (slug, _) = summary(platform, slug).await?;
    let found = match action {
        DomainAction::Add => {
            let domain = DomainName::parse(&form.domain)
                .and_then(|d| d.outside_base(&ctx.base_domain))
                .map_err(ApiError::validation)?;
            platform.add_domain(&slug, &domain, form.primary.is_some()).await?;
            true
        }
        DomainAction::Remove | DomainAction::MakePrimary => {
            let domain = DomainName::parse(&form.domain).map_err(|_| ApiError::not_found("domain"))?;
            match action {
                DomainAction::Remove => platform.remove_domain(&slug, &domain).await?,
                _ => platform.set_primary_domain(&slug, &domain).await?,
            }
        }
    };
    if !found {
        return Err(ApiError::not_found("domain"));
    }
    tracing::info!(tenant = %slug, operator = %id, domain = %form.domain, ?action, "tenant domain changed from the console");
    Ok(Redirect::to(&format!("/console/platform/tenants/{slug}")).into_response())
}

pub async fn add_domain(
    State(ctx): State<ApiContext>,
    Operator { id }: Operator,
    Platform(mut platform): Platform,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<DomainForm>,
) -> Result<Response, ApiError> {
    change_domain(&ctx, id, &mut platform, &slug, form, DomainAction::Add).await
}

pub async fn remove_domain(
    State(ctx): State<ApiContext>,
    Operator { id }: Operator,
    Platform(mut platform): Platform,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<DomainForm>,
) -> Result<Response, ApiError> {
    change_domain(&ctx, id, &mut platform, &slug, form, DomainAction::Remove).await
}

pub async fn make_primary_domain(
    State(ctx): State<ApiContext>,
    Operator { id }: Operator,
    Platform(mut platform): Platform,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<DomainForm>,
) -> Result<Response, ApiError> {
    change_domain(&ctx, id, &mut platform, &slug, form, DomainAction::MakePrimary).await
}

#[derive(Deserialize)]
pub struct DeleteForm {
    confirm: String,
}

/// Delete and purge, only when the slug was typed exactly.
pub async fn delete(
    Operator { id }: Operator,
    Platform(mut platform): Platform,
    Path(slug): Path<String>,
    CsrfForm(form): CsrfForm<DeleteForm>,
) -> Result<Response, ApiError> {
    let (slug, _) = summary(&mut platform, &slug).await?;
    if form.confirm.trim() != slug.as_str() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ValidationFailed,
            format!("nothing was deleted: type the slug ({slug}) exactly to confirm"),
        ));
    }
    let purged = platform.delete_tenant(&slug).await?;
    let rows: u64 = purged.iter().map(|(_, n)| n).sum();
    tracing::info!(tenant = %slug, operator = %id, rows, "tenant deleted and purged from the console");
    Ok(Redirect::to("/console/platform/").into_response())
}
