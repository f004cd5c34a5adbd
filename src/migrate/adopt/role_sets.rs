//! Who may read and who may write an adopted table's rows, as the flags give them and the
//! registry keeps them (one order, no repeats).

use super::AdoptError;
use crate::domain::Role;

/// Who may read and who may write an adopted table's rows (kept in the registry for the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSets {
    pub read: Vec<Role>,
    pub write: Vec<Role>,
}

impl Default for RoleSets {
    /// Read: every role. Write: every role but the auditor, who only ever reads.
    fn default() -> Self {
        RoleSets { read: Role::ALL.to_vec(), write: vec![Role::Owner, Role::Admin, Role::Manager, Role::Member] }
    }
}

/// Role names from the command line (`owner,admin`), each checked; in `Role::ALL` order,
/// without repeats, so that the same set is always stored the same way.
pub fn parse_roles(names: &[String]) -> Result<Vec<Role>, AdoptError> {
    let mut roles = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let role = Role::parse(name).map_err(|_| AdoptError::UnknownRole(name.to_string()))?;
        roles.push(role);
    }
    if roles.is_empty() {
        return Err(AdoptError::UnknownRole(String::new()));
    }
    Ok(Role::ALL.into_iter().filter(|r| roles.contains(r)).collect())
}

pub(super) fn role_names(roles: &[Role]) -> Vec<String> {
    roles.iter().map(|r| r.as_str().to_string()).collect()
}

/// `owner,admin`, as the flags take them.
pub(super) fn role_list(roles: &[Role]) -> String {
    role_names(roles).join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_lists_are_checked_and_kept_in_one_order() {
        let names = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(parse_roles(&names("member, owner,owner")).expect("valid"), vec![Role::Owner, Role::Member]);
        let err = parse_roles(&names("owner,superuser")).expect_err("unknown");
        assert!(err.to_string().contains("\"superuser\""), "{err}");
        assert!(parse_roles(&names(" , ")).is_err());
    }
}
