//! The importer's mapping file (TOML): where a schema-per-tenant source keeps its tenant
//! registry, domains and rows, column by column. Parsing only; the catalog check is `source`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// The whole mapping. `examples/django-tenants.toml` documents every key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub tenants: TenantRegistry,
    pub domains: DomainTable,
    #[serde(default)]
    pub slugs: SlugRule,
    pub users: Option<UsersMap>,
    pub organizations: Option<OrganizationsMap>,
    pub contacts: Option<ContactsMap>,
    pub deals: Option<DealsMap>,
    /// `--all-tables`: which other tables of the tenant schemas to leave out or to bring anyway.
    #[serde(default)]
    pub all_tables: AllTablesMap,
}

/// `[all_tables]`: `skip` leaves more tables out; `keep` brings one of Django's own tables
/// (`super::schema::DJANGO_INTERNAL`) that is otherwise left out.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllTablesMap {
    #[serde(default)]
    pub skip: Vec<String>,
    #[serde(default)]
    pub keep: Vec<String>,
}

fn public() -> String {
    "public".into()
}

fn public_only() -> Vec<String> {
    vec!["public".into()]
}

/// The tenant registry (django-tenants' `TenantMixin` model), in a shared schema.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRegistry {
    #[serde(default = "public")]
    pub schema: String,
    pub table: String,
    /// The primary key, which the domain table's tenant reference points at.
    pub id: String,
    pub schema_name: String,
    pub name: String,
    /// Registry rows not to import: django-tenants' own public tenant, by default.
    #[serde(default = "public_only")]
    pub skip_schemas: Vec<String>,
    /// A boolean column of the tenant model: false (or NULL) imports the tenant `suspended`,
    /// so nobody can log in to it until an operator resumes it. Absent: every tenant active.
    pub is_active: Option<String>,
    /// A status column of the tenant model, with `inactive_statuses`: a tenant whose status
    /// is one of them (compared trimmed, case-insensitively) is imported `suspended`.
    pub status: Option<String>,
    #[serde(default)]
    pub inactive_statuses: Vec<String>,
}

/// The domain table (django-tenants' `DomainMixin` model).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainTable {
    #[serde(default = "public")]
    pub schema: String,
    pub table: String,
    pub domain: String,
    /// The column referencing the registry's `id`.
    pub tenant: String,
    pub is_primary: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlugSource {
    /// The schema name, lower-cased, `_` turned into `-`.
    #[default]
    Schema,
    /// The first label of the tenant's primary domain.
    PrimaryDomain,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlugRule {
    #[serde(default)]
    pub from: SlugSource,
    /// Explicit slugs by schema name, for the tenants whose rule gives a clash or an invalid
    /// slug. Checked like any other slug.
    #[serde(default)]
    pub overrides: BTreeMap<String, String>,
}

/// One column, or several whose non-empty values are joined with a space
/// (`["first_name", "last_name"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Columns {
    One(String),
    Many(Vec<String>),
}

impl Columns {
    pub fn names(&self) -> Vec<&str> {
        match self {
            Columns::One(c) => vec![c.as_str()],
            Columns::Many(cs) => cs.iter().map(String::as_str).collect(),
        }
    }
}

fn member() -> String {
    "member".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersMap {
    /// A table inside each tenant schema.
    pub table: String,
    pub id: String,
    pub email: String,
    /// Django's `password` column: the hash, imported as is.
    pub password: String,
    /// A boolean column; false imports the user deactivated. Absent: everyone is active.
    pub is_active: Option<String>,
    /// A boolean column; true makes the user an `owner`.
    pub owner_if: Option<String>,
    /// A boolean column; true makes the user an `admin` (unless already an owner).
    pub admin_if: Option<String>,
    /// Everyone else's role.
    #[serde(default = "member")]
    pub default_role: String,
    /// The owner by tenant schema, by e-mail (`{ acme = "ceo@acme.example" }`): made `owner`
    /// whatever `owner_if` says. A tenant must end up with an active owner; one that would
    /// not (its owners were made with `create_user`, say) is not imported until named here.
    #[serde(default)]
    pub owner_email: BTreeMap<String, String>,
    /// A timestamp (or date) column: the row's `created_at` in rowguard, and the time its new
    /// id is made from, so lists in creation order keep the source's order. Absent: import time.
    pub created_at: Option<String>,
    /// A timestamp (or date) column: the row's `updated_at`. Absent: `created_at`.
    pub updated_at: Option<String>,
    /// Django groups to roles (`[users.groups]`, role = [group names]): a user in a listed
    /// group gets that role unless `owner_if`/`owner_email` made it owner or `admin_if` admin;
    /// in several, the first in the order owner, admin, manager, auditor, member.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// Django's group table and the user–group link table, in each tenant schema.
    #[serde(default = "auth_group")]
    pub group_table: String,
    #[serde(default = "auth_user_groups")]
    pub user_groups_table: String,
}

fn auth_group() -> String {
    "auth_group".into()
}

fn auth_user_groups() -> String {
    "auth_user_groups".into()
}

impl UsersMap {
    /// The role `groups` gives a user in `names` (Django group names, compared exactly).
    pub fn role_from_groups<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Option<crate::domain::Role> {
        use crate::domain::Role;
        [Role::Owner, Role::Admin, Role::Manager, Role::Auditor, Role::Member].into_iter().find(|role| {
            self.groups
                .get(role.as_str())
                .is_some_and(|listed| names.clone().into_iter().any(|n| listed.iter().any(|l| l == n)))
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganizationsMap {
    pub table: String,
    pub id: String,
    pub name: Columns,
    pub domain: Option<String>,
    /// A timestamp (or date) column: the row's `created_at` in rowguard, and the time its new
    /// id is made from, so lists in creation order keep the source's order. Absent: import time.
    pub created_at: Option<String>,
    /// A timestamp (or date) column: the row's `updated_at`. Absent: `created_at`.
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactsMap {
    pub table: String,
    pub id: String,
    pub name: Columns,
    pub email: String,
    pub phone: Option<String>,
    /// The column referencing an organization's source id.
    pub organization: Option<String>,
    /// A timestamp (or date) column: the row's `created_at` in rowguard, and the time its new
    /// id is made from, so lists in creation order keep the source's order. Absent: import time.
    pub created_at: Option<String>,
    /// A timestamp (or date) column: the row's `updated_at`. Absent: `created_at`.
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealsMap {
    pub table: String,
    pub id: String,
    pub title: Columns,
    /// The column referencing a contact's source id (required: a deal names a contact).
    pub contact: String,
    pub organization: Option<String>,
    pub stage: Option<String>,
    /// Source stage value → rowguard stage (lead, qualified, proposal, won, lost). Values not
    /// listed must already be one of those (compared lower-cased).
    #[serde(default)]
    pub stages: BTreeMap<String, String>,
    pub amount: String,
    pub currency: Option<String>,
    /// For a source without a currency column, or rows where it is empty.
    pub default_currency: Option<String>,
    /// A timestamp (or date) column: the row's `created_at` in rowguard, and the time its new
    /// id is made from, so lists in creation order keep the source's order. Absent: import time.
    pub created_at: Option<String>,
    /// A timestamp (or date) column: the row's `updated_at`. Absent: `created_at`.
    pub updated_at: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("cannot read the mapping file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the mapping file {path} is not valid: {message}")]
    Invalid { path: String, message: String },
}

impl Mapping {
    pub fn load(path: &Path) -> Result<Mapping, MappingError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| MappingError::Read { path: path.display().to_string(), source })?;
        Mapping::parse(&text).map_err(|message| MappingError::Invalid { path: path.display().to_string(), message })
    }

    /// Parse and check what can be checked without a database.
    pub fn parse(text: &str) -> Result<Mapping, String> {
        let mapping: Mapping = toml::from_str(text).map_err(|e| e.to_string())?;
        mapping.check()?;
        Ok(mapping)
    }

    fn check(&self) -> Result<(), String> {
        if self.users.is_none() && self.organizations.is_none() && self.contacts.is_none() && self.deals.is_none() {
            return Err("map at least one of [users], [organizations], [contacts], [deals]".into());
        }
        if self.deals.is_some() && self.contacts.is_none() {
            return Err("[deals] needs [contacts]: every deal names a contact".into());
        }
        if let Some(c) = &self.contacts
            && c.organization.is_some()
            && self.organizations.is_none()
        {
            return Err("[contacts] organization needs [organizations]".into());
        }
        if let Some(d) = &self.deals {
            if d.organization.is_some() && self.organizations.is_none() {
                return Err("[deals] organization needs [organizations]".into());
            }
            if d.currency.is_none() && d.default_currency.is_none() {
                return Err("[deals] needs a currency column or a default_currency".into());
            }
            if let Some(code) = &d.default_currency {
                crate::domain::Currency::parse(code).map_err(|e| format!("[deals] default_currency: {e}"))?;
            }
            for (from, to) in &d.stages {
                crate::domain::DealStage::parse(to).map_err(|e| format!("[deals] stages.{from}: {e}"))?;
            }
        }
        if let Some(u) = &self.users {
            crate::domain::Role::parse(&u.default_role).map_err(|e| format!("[users] default_role: {e}"))?;
            for role in u.groups.keys() {
                crate::domain::Role::parse(role).map_err(|e| format!("[users.groups] {role}: {e}"))?;
            }
        }
        match (&self.tenants.status, self.tenants.inactive_statuses.is_empty()) {
            (Some(_), true) => {
                return Err("[tenants] status needs inactive_statuses (the values that mean inactive)".into());
            }
            (None, false) => return Err("[tenants] inactive_statuses needs a status column".into()),
            _ => {}
        }
        for name in self.identifiers() {
            if name.is_empty() || name.len() > 63 {
                return Err(format!("{name:?} is not a PostgreSQL identifier (1 to 63 bytes)"));
            }
        }
        Ok(())
    }

    /// Every table and column name the mapping uses, for the plain sanity check above.
    fn identifiers(&self) -> Vec<&str> {
        let t = &self.tenants;
        let d = &self.domains;
        let mut names = vec![
            t.schema.as_str(),
            &t.table,
            &t.id,
            &t.schema_name,
            &t.name,
            &d.schema,
            &d.table,
            &d.domain,
            &d.tenant,
            &d.is_primary,
        ];
        names.extend([&t.is_active, &t.status].into_iter().flatten().map(String::as_str));
        for (table, columns) in self.resource_columns() {
            names.push(table);
            names.extend(columns);
        }
        names
    }

    /// Per mapped resource: the source table and every column it reads.
    pub fn resource_columns(&self) -> Vec<(&str, Vec<&str>)> {
        let mut out = Vec::new();
        if let Some(u) = &self.users {
            let mut cols = vec![u.id.as_str(), &u.email, &u.password];
            cols.extend(
                [&u.is_active, &u.owner_if, &u.admin_if, &u.created_at, &u.updated_at]
                    .into_iter()
                    .flatten()
                    .map(String::as_str),
            );
            out.push((u.table.as_str(), cols));
            if !u.groups.is_empty() {
                out.push((u.group_table.as_str(), vec!["id", "name"]));
                out.push((u.user_groups_table.as_str(), vec!["user_id", "group_id"]));
            }
        }
        if let Some(o) = &self.organizations {
            let mut cols = vec![o.id.as_str()];
            cols.extend(o.name.names());
            cols.extend([&o.domain, &o.created_at, &o.updated_at].into_iter().flatten().map(String::as_str));
            out.push((o.table.as_str(), cols));
        }
        if let Some(c) = &self.contacts {
            let mut cols = vec![c.id.as_str(), &c.email];
            cols.extend(c.name.names());
            cols.extend(
                [&c.phone, &c.organization, &c.created_at, &c.updated_at].into_iter().flatten().map(String::as_str),
            );
            out.push((c.table.as_str(), cols));
        }
        if let Some(d) = &self.deals {
            let mut cols = vec![d.id.as_str(), &d.contact, &d.amount];
            cols.extend(d.title.names());
            cols.extend(
                [&d.organization, &d.stage, &d.currency, &d.created_at, &d.updated_at]
                    .into_iter()
                    .flatten()
                    .map(String::as_str),
            );
            out.push((d.table.as_str(), cols));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../../examples/django-tenants.toml");
        let mapping = Mapping::parse(text).expect("examples/django-tenants.toml");
        assert_eq!(mapping.tenants.table, "customers_client");
        assert_eq!(mapping.tenants.skip_schemas, vec!["public".to_string()]);
        assert!(mapping.users.is_some() && mapping.deals.is_some());
    }

    #[test]
    fn mistakes_are_named() {
        let base = include_str!("../../examples/django-tenants.toml");
        let unknown = format!("{base}\n[extra]\nkey = 1\n");
        assert!(Mapping::parse(&unknown).is_err_and(|e| e.contains("extra")), "unknown sections are refused");
        let typo = base.replace("schema_name = ", "schema_nam = ");
        assert!(Mapping::parse(&typo).is_err_and(|e| e.contains("schema_nam")));
        let bad_role = base.replace("default_role = \"member\"", "default_role = \"boss\"");
        assert!(Mapping::parse(&bad_role).is_err_and(|e| e.contains("default_role")));
    }
}
