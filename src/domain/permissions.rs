//! The permission matrix: which role may do what inside a tenant, in one table, and the one
//! check against it, `Role::require`. Handlers ask it through `Principal::require(Permission::X)`,
//! the membership rules (`db::users`, owners-only changes) directly; no other code decides access.

use serde::Serialize;

use super::Role;

/// Something a request may need to be allowed to do. Writing a resource means creating,
/// changing and deleting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    ReadUsers,
    ManageUsers,
    /// Create an owner, or change or remove one: only owners, so that an admin cannot take
    /// over the tenant by promoting itself or removing the owners.
    ManageOwners,
    ReadContacts,
    WriteContacts,
    ReadOrganizations,
    WriteOrganizations,
    ReadDeals,
    WriteDeals,
    ReadAuditLog,
    /// Webhook subscriptions, their secrets and delivery logs.
    ManageWebhooks,
}

use Permission::*;
use Role::{Admin, Auditor, Manager, Member, Owner};

/// The matrix itself: each permission with the roles that hold it. docs/api.md prints it as a
/// table, and a test fails when the two disagree.
const MATRIX: &[(Permission, &[Role])] = &[
    (ReadUsers, &[Owner, Admin, Manager, Auditor]),
    (ManageUsers, &[Owner, Admin]),
    (ManageOwners, &[Owner]),
    (ReadContacts, &[Owner, Admin, Manager, Member, Auditor]),
    (WriteContacts, &[Owner, Admin, Manager, Member]),
    (ReadOrganizations, &[Owner, Admin, Manager, Member, Auditor]),
    (WriteOrganizations, &[Owner, Admin, Manager]),
    (ReadDeals, &[Owner, Admin, Manager, Member, Auditor]),
    (WriteDeals, &[Owner, Admin, Manager, Member]),
    (ReadAuditLog, &[Owner, Admin, Auditor]),
    (ManageWebhooks, &[Owner, Admin]),
];

impl Permission {
    pub const ALL: [Permission; 11] = [
        ReadUsers,
        ManageUsers,
        ManageOwners,
        ReadContacts,
        WriteContacts,
        ReadOrganizations,
        WriteOrganizations,
        ReadDeals,
        WriteDeals,
        ReadAuditLog,
        ManageWebhooks,
    ];

    /// The stable name (`read_users`, …), as in docs/api.md and in 403 answers.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadUsers => "read_users",
            ManageUsers => "manage_users",
            ManageOwners => "manage_owners",
            ReadContacts => "read_contacts",
            WriteContacts => "write_contacts",
            ReadOrganizations => "read_organizations",
            WriteOrganizations => "write_organizations",
            ReadDeals => "read_deals",
            WriteDeals => "write_deals",
            ReadAuditLog => "read_audit_log",
            ManageWebhooks => "manage_webhooks",
        }
    }
}

impl Role {
    /// Whether this role holds `permission` (the matrix above; an unlisted permission is denied).
    pub fn can(self, permission: Permission) -> bool {
        MATRIX.iter().any(|(p, roles)| *p == permission && roles.contains(&self))
    }

    /// The permission check: Ok when this role meets `need` (a permission of the matrix, or an
    /// adopted table's role sets), else the refusal naming both.
    pub fn require(self, need: impl Requirement) -> Result<(), Lacking> {
        if need.allows(self) { Ok(()) } else { Err(Lacking { role: self, missing: need.describe() }) }
    }
}

/// A role refused what it needed (`Role::require`); answered as 403 `forbidden`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {} role does not have {missing}", .role.as_str())]
pub struct Lacking {
    pub role: Role,
    /// What was missing, as `Requirement::describe` names it (`the manage_owners permission`).
    pub missing: String,
}

/// What `Principal::require` checks: a permission of the matrix, or reading or writing the rows
/// of one adopted table (its role sets, from the registry `tables adopt` keeps). One check for
/// both, so an adopted table is held to the same rule as a built-in one.
pub trait Requirement {
    fn allows(&self, role: Role) -> bool;
    /// How a 403 names what was missing.
    fn describe(&self) -> String;
}

impl Requirement for Permission {
    fn allows(&self, role: Role) -> bool {
        role.can(*self)
    }

    fn describe(&self) -> String {
        format!("the {} permission", self.as_str())
    }
}

/// Reading (`write` false) or writing an adopted table's rows: allowed to the roles its
/// registry row lists.
#[derive(Debug, Clone, Copy)]
pub struct TableAccess<'a> {
    pub table: &'a str,
    pub write: bool,
    pub roles: &'a [Role],
}

impl Requirement for TableAccess<'_> {
    fn allows(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    fn describe(&self) -> String {
        format!("{} access to table {}", if self.write { "write" } else { "read" }, self.table)
    }
}

/// The matrix as the Markdown table docs/api.md shows.
pub fn markdown_table() -> String {
    let mut out = String::from("| permission |");
    for role in Role::ALL {
        out.push_str(&format!(" {} |", role.as_str()));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(Role::ALL.len()));
    for permission in Permission::ALL {
        out.push_str(&format!("\n| `{}` |", permission.as_str()));
        for role in Role::ALL {
            out.push_str(if role.can(permission) { " ✓ |" } else { " – |" });
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_permission_has_exactly_one_row_and_owners_hold_all() {
        for permission in Permission::ALL {
            assert_eq!(MATRIX.iter().filter(|(p, _)| *p == permission).count(), 1, "{permission:?}");
            assert!(Role::Owner.can(permission), "owners hold {permission:?}");
        }
        assert_eq!(MATRIX.len(), Permission::ALL.len());
    }

    #[test]
    fn auditors_only_read() {
        for permission in [ManageUsers, ManageOwners, WriteContacts, WriteOrganizations, WriteDeals] {
            assert!(!Role::Auditor.can(permission), "{permission:?}");
        }
    }
}
