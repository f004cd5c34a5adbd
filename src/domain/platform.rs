//! Platform-side newtypes: operator ids, a tenant's lifecycle status and plan, custom domain
//! names, and the slugs no tenant may take. Parsed at the edge like every other domain type.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Invalid, Slug};

/// An operator account (platform API), never a tenant user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct OperatorId(pub Uuid);

impl OperatorId {
    pub fn new_v7() -> Self {
        OperatorId(Uuid::now_v7())
    }
}

impl fmt::Display for OperatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a tenant is in its life. `Deleted` is final: its rows are purged when it is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    Trial,
    Active,
    Suspended,
    Deleted,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Trial => "trial",
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
            TenantStatus::Deleted => "deleted",
        }
    }

    pub fn parse(raw: &str) -> Result<TenantStatus, Invalid> {
        [TenantStatus::Trial, TenantStatus::Active, TenantStatus::Suspended, TenantStatus::Deleted]
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| Invalid::new("status", "must be one of trial, active, suspended, deleted"))
    }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The commercial plan (V1__tenants.sql's CHECK names the same three); it picks the default
/// rate-limit quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Free,
    Pro,
    Enterprise,
}

impl Plan {
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Pro => "pro",
            Plan::Enterprise => "enterprise",
        }
    }

    pub fn parse(raw: &str) -> Result<Plan, Invalid> {
        [Plan::Free, Plan::Pro, Plan::Enterprise]
            .into_iter()
            .find(|p| p.as_str() == raw)
            .ok_or_else(|| Invalid::new("plan", "must be one of free, pro, enterprise"))
    }
}

/// Labels that name the service itself, or that people would mistake for it. A tenant on
/// `www.{base}` or `api.{base}` could phish its visitors, and the platform may need them.
pub const RESERVED_SLUGS: &[&str] = &[
    "www",
    "api",
    "admin",
    "administrator",
    "platform",
    "app",
    "apps",
    "docs",
    "static",
    "assets",
    "cdn",
    "mail",
    "email",
    "smtp",
    "imap",
    "pop",
    "ftp",
    "ns",
    "ns1",
    "ns2",
    "dns",
    "mx",
    "root",
    "system",
    "support",
    "help",
    "status",
    "billing",
    "login",
    "auth",
    "oauth",
    "sso",
    "signup",
    "register",
    "dashboard",
    "console",
    "internal",
    "rowguard",
    "localhost",
    "test",
    "dev",
    "staging",
    "prod",
    "metrics",
    "health",
    "security",
    "blog",
    "webmail",
];

/// A slug a new tenant may take: a valid DNS label that is not reserved.
pub fn parse_unreserved_slug(raw: &str) -> Result<Slug, Invalid> {
    let slug = Slug::parse(raw)?;
    if RESERVED_SLUGS.contains(&slug.as_str()) {
        return Err(Invalid::new("slug", format!("{:?} is reserved", slug.as_str())));
    }
    Ok(slug)
}

/// A tenant's display name: 1–200 characters after trimming, no control characters (the
/// CHECK on `tenants.name` says the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(raw: &str) -> Result<TenantName, Invalid> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(Invalid::new("name", "must be 1 to 200 characters, without control characters"));
        }
        Ok(TenantName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A tenant's custom domain in the one form host matching compares: lower case, no trailing
/// dot, at least two labels, each a DNS label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainName(String);

impl DomainName {
    pub fn parse(raw: &str) -> Result<DomainName, Invalid> {
        let d = raw.trim().trim_end_matches('.').to_ascii_lowercase();
        let ok = !d.is_empty()
            && d.len() <= 253
            && d.contains('.')
            && d.split('.').all(|l| Slug::parse(l).is_ok_and(|s| s.as_str() == l));
        if !ok {
            return Err(Invalid::new("domain", "must be a domain name such as crm.example.com"));
        }
        Ok(DomainName(d))
    }

    /// Refuse names under the base domain: `{label}.{base}` already names tenant `label`, so
    /// such a domain could never resolve as a custom domain (or would shadow a slug).
    pub fn outside_base(self, base_domain: &str) -> Result<DomainName, Invalid> {
        let base = base_domain.trim_end_matches('.').to_ascii_lowercase();
        if self.0 == base || self.0.ends_with(&format!(".{base}")) {
            return Err(Invalid::new("domain", format!("must not be {base} or under it; tenants have those")));
        }
        Ok(self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_slugs_are_refused_and_others_pass() {
        for reserved in ["www", "API", "admin", "platform", "app", "docs", "static", "mail"] {
            assert!(parse_unreserved_slug(reserved).is_err(), "{reserved} must be reserved");
        }
        for ok in ["acme", "globex", "t0001", "www2", "apiary"] {
            assert!(parse_unreserved_slug(ok).is_ok(), "{ok} must be allowed");
        }
        assert!(parse_unreserved_slug("-bad").is_err());
    }

    #[test]
    fn domain_names_are_normalised_and_kept_out_of_the_base_domain() {
        assert_eq!(DomainName::parse("CRM.Acme.example.").map(|d| d.0), Ok("crm.acme.example".to_string()));
        for bad in ["", "localhost", "a..b", "-a.b", "a b.c", "a_b.c", "ümlaut.de"] {
            assert!(DomainName::parse(bad).is_err(), "{bad:?}");
        }
        let under = |d: &str| DomainName::parse(d).and_then(|d| d.outside_base("example.com"));
        assert!(under("acme.example.com").is_err());
        assert!(under("example.com").is_err());
        assert!(under("crm.acme.com").is_ok());
        assert!(under("notexample.com").is_ok());
    }
}
