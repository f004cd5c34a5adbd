//! Typed ids. A `TenantId` is the only thing ever rendered into SQL text (the `SET LOCAL`
//! that opens a tenant transaction), which is safe because a uuid cannot carry SQL.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered (v7) id, so keyset pagination by id follows creation order.
            pub fn new_v7() -> Self {
                $name(Uuid::now_v7())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A tenant, the unit of isolation.
    TenantId
);
uuid_id!(
    /// A user inside one tenant.
    UserId
);
uuid_id!(
    /// A contact inside one tenant.
    ContactId
);
uuid_id!(
    /// An organization inside one tenant.
    OrganizationId
);
uuid_id!(
    /// A deal inside one tenant.
    DealId
);
