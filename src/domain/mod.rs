//! Domain newtypes that parse at the edge ("parse, don't validate"): once a value of these
//! types exists it is valid, so nothing past the HTTP layer checks it again.

mod crm;
mod email;
mod ids;
pub mod permissions;
mod platform;
mod role;
mod slug;
mod text;
mod text_column;
pub mod webhook_events;

pub use crm::{
    AMOUNT_PATTERN, Amount, Currency, DealStage, DealTitle, OrganizationName, WEB_DOMAIN_PATTERN, WebDomain,
};
pub use email::{EMAIL_PATTERN, Email, ImportedEmail};
pub use ids::{ContactId, DealId, OrganizationId, TenantId, UserId};
pub use permissions::{Permission, Requirement, TableAccess};
pub use platform::{DomainName, OperatorId, Plan, RESERVED_SLUGS, TenantName, TenantStatus, parse_unreserved_slug};
pub use role::{Role, UserStatus};
pub use slug::{SLUG_PATTERN, Slug};
pub use text::{ContactName, NewPassword, PHONE_PATTERN, Phone, TEXT_PATTERN};

/// Why a value was refused; the message is shown to the client as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Invalid { field, message: message.into() }
    }
}
