//! Planning one tenant: its registry entry (slug, name, domains) and every row of its schema,
//! validated as the API would (e-mail addresses as Django stored them: `ImportedEmail`) and
//! given new ids, column by column, with the id map.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::{ContextV7, Timestamp, Uuid};

use super::*;

pub(super) struct TenantHead {
    pub(super) id: TenantId,
    pub(super) slug: Slug,
    pub(super) name: String,
    /// `active`, or `suspended` for a tenant the source registry marks inactive.
    pub(super) status: TenantStatus,
    pub(super) import_source: String,
    /// The source's fingerprint in the snapshot the rows were read from.
    pub(super) fingerprint: String,
    pub(super) schema: String,
    pub(super) domains: Vec<(String, bool)>,
}

/// A tenant's rows, validated and given new ids, column by column.
#[derive(Default)]
pub(super) struct Plan {
    pub(super) users: UserRows,
    pub(super) organizations: OrganizationRows,
    pub(super) contacts: ContactRows,
    pub(super) deals: DealRows,
    pub(super) map: IdMap,
    /// `count(*)` per source table, from the snapshot the rows came from.
    pub(super) source_counts: Vec<(&'static str, String, i64)>,
}

#[derive(Default)]
pub(super) struct UserRows {
    pub(super) ids: Vec<Uuid>,
    pub(super) emails: Vec<String>,
    pub(super) hashes: Vec<String>,
    pub(super) roles: Vec<&'static str>,
    pub(super) statuses: Vec<&'static str>,
    /// From the mapped source columns, else the import's time (see `Stamps`).
    pub(super) created: Vec<DateTime<Utc>>,
    pub(super) updated: Vec<DateTime<Utc>>,
}

#[derive(Default)]
pub(super) struct OrganizationRows {
    pub(super) ids: Vec<Uuid>,
    pub(super) names: Vec<String>,
    pub(super) domains: Vec<Option<String>>,
    /// From the mapped source columns, else the import's time (see `Stamps`).
    pub(super) created: Vec<DateTime<Utc>>,
    pub(super) updated: Vec<DateTime<Utc>>,
}

#[derive(Default)]
pub(super) struct ContactRows {
    pub(super) ids: Vec<Uuid>,
    pub(super) names: Vec<String>,
    pub(super) emails: Vec<String>,
    pub(super) phones: Vec<Option<String>>,
    pub(super) organizations: Vec<Option<Uuid>>,
    /// From the mapped source columns, else the import's time (see `Stamps`).
    pub(super) created: Vec<DateTime<Utc>>,
    pub(super) updated: Vec<DateTime<Utc>>,
}

#[derive(Default)]
pub(super) struct DealRows {
    pub(super) ids: Vec<Uuid>,
    pub(super) titles: Vec<String>,
    pub(super) contacts: Vec<Uuid>,
    pub(super) organizations: Vec<Option<Uuid>>,
    pub(super) stages: Vec<&'static str>,
    pub(super) amounts: Vec<String>,
    pub(super) currencies: Vec<String>,
    /// From the mapped source columns, else the import's time (see `Stamps`).
    pub(super) created: Vec<DateTime<Utc>>,
    pub(super) updated: Vec<DateTime<Utc>>,
}

#[derive(Default)]
pub(super) struct IdMap {
    pub(super) resources: Vec<&'static str>,
    pub(super) source_ids: Vec<String>,
    pub(super) target_ids: Vec<Uuid>,
}

/// A row's creation and update times: the mapped source columns (read right after the
/// resource's other fields, as ISO 8601), else the import's time; an update time defaults to
/// the creation time. The creation time also makes the row's new uuid v7, so rowguard's lists,
/// which run in id order, keep the source's creation order.
struct Stamps {
    now: DateTime<Utc>,
    /// Rows come in creation order; within one millisecond the context keeps ids increasing.
    context: ContextV7,
}

impl Stamps {
    fn new() -> Stamps {
        Stamps { now: Utc::now(), context: ContextV7::new() }
    }

    /// (created, updated, new id) for a row whose times are fields `at` and `at + 1`.
    fn of(&self, row: &[Option<String>], at: usize) -> Result<(DateTime<Utc>, DateTime<Utc>, Uuid), String> {
        let parse = |i: usize, column: &str| {
            field(row, i)
                .map(|v| {
                    DateTime::parse_from_rfc3339(v)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|e| format!("{column}: {v:?} is not a time ({e})"))
                })
                .transpose()
        };
        let created = parse(at, "created_at")?;
        let updated = parse(at + 1, "updated_at")?.or(created);
        let id = match created {
            // Before 1970 is not a uuid v7 time: such rows sort first, as they should.
            Some(t) => Uuid::new_v7(Timestamp::from_unix(
                &self.context,
                u64::try_from(t.timestamp()).unwrap_or(0),
                t.timestamp_subsec_nanos(),
            )),
            None => Uuid::now_v7(),
        };
        Ok((created.unwrap_or(self.now), updated.unwrap_or(self.now), id))
    }
}

/// Field `i` of a row, trimmed, empty as None.
pub(super) fn field(row: &[Option<String>], i: usize) -> Option<&str> {
    row.get(i).and_then(|v| v.as_deref()).map(str::trim).filter(|v| !v.is_empty())
}

/// PostgreSQL's boolean text (`true`/`false`), and the usual spellings of other types.
pub(super) fn truthy(value: Option<&str>) -> bool {
    matches!(value.map(str::to_ascii_lowercase).as_deref(), Some("true" | "t" | "1" | "yes" | "y" | "on"))
}

impl Plan {
    pub(super) fn counts(&self) -> Counts {
        Counts {
            users: self.users.ids.len() as u64,
            organizations: self.organizations.ids.len() as u64,
            contacts: self.contacts.ids.len() as u64,
            deals: self.deals.ids.len() as u64,
            other_tables: 0,
        }
    }

    /// Validate every row and assign new ids; every problem is pushed, none is fixed up.
    pub(super) fn build(mapping: &Mapping, data: &SourceData, schema: &str, problems: &mut Vec<Problem>) -> Plan {
        let mut plan = Plan::default();
        // New ids by resource and source id, to resolve references.
        let mut ids: HashMap<(&'static str, String), Uuid> = HashMap::new();
        let stamps = Stamps::new();
        // The row's new id (from its creation time) and its times; None after pushing a problem.
        let new_id = |plan: &mut Plan,
                      ids: &mut HashMap<(&'static str, String), Uuid>,
                      problems: &mut Vec<Problem>,
                      resource: &'static str,
                      table: &str,
                      row: &[Option<String>],
                      times_at: usize| {
            let source = field(row, 0);
            let Some(source) = source else {
                problems.push(Problem::new(table, None, "a row has no id"));
                return None;
            };
            let (created, updated, id) = match stamps.of(row, times_at) {
                Ok(stamped) => stamped,
                Err(message) => {
                    problems.push(Problem::new(table, Some(source), message));
                    return None;
                }
            };
            if ids.insert((resource, source.to_string()), id).is_some() {
                problems.push(Problem::new(table, Some(source), "the id appears twice"));
                return None;
            }
            plan.map.resources.push(resource);
            plan.map.source_ids.push(source.to_string());
            plan.map.target_ids.push(id);
            Some((id, created, updated))
        };
        let check =
            |problems: &mut Vec<Problem>, table: &str, row: Option<&str>, column: &str, result: Result<(), String>| {
                if let Err(message) = result {
                    problems.push(Problem::new(table, row, format!("{column}: {message}")));
                }
            };

        if let (Some(m), Some(rows)) = (&mapping.users, &data.users) {
            plan.source_counts.push(("users", rows.table.clone(), rows.count));
            let default_role = Role::parse(&m.default_role).unwrap_or(Role::Member);
            let mut seen = HashSet::new();
            for row in &rows.rows {
                let sid = field(row, 0);
                let email = field(row, 1).map(ImportedEmail::parse);
                let email = match email {
                    Some(Ok(e)) if seen.insert(e.as_str().to_lowercase()) => Ok(e),
                    Some(Ok(e)) => Err(format!("{e} is used by another user of this tenant (case-insensitively)")),
                    Some(Err(e)) => Err(e.to_string()),
                    None => Err("is empty; rowguard users log in by e-mail".into()),
                };
                let Some((id, created, updated)) = new_id(&mut plan, &mut ids, problems, "user", &rows.table, row, 6)
                else {
                    continue;
                };
                let email = match email {
                    Ok(e) => e,
                    Err(message) => {
                        check(problems, &rows.table, sid, &m.email, Err(message));
                        continue;
                    }
                };
                let role = if m.owner_if.is_some() && truthy(field(row, 4)) {
                    Role::Owner
                } else if m.admin_if.is_some() && truthy(field(row, 5)) {
                    Role::Admin
                } else {
                    let groups = sid.and_then(|s| data.user_groups.get(s));
                    groups
                        .and_then(|names| m.role_from_groups(names.iter().map(String::as_str)))
                        .unwrap_or(default_role)
                };
                let active = m.is_active.is_none() || truthy(field(row, 3));
                plan.users.ids.push(id);
                plan.users.created.push(created);
                plan.users.updated.push(updated);
                plan.users.emails.push(email.as_str().to_string());
                // Raw, untrimmed: a hash is compared byte for byte.
                plan.users.hashes.push(row.get(2).cloned().flatten().unwrap_or_default());
                plan.users.roles.push(role.as_str());
                plan.users.statuses.push(if active { "active" } else { "deactivated" });
            }
            plan.users.settle_owner(m, &rows.table, schema, problems);
        }

        if let (Some(m), Some(rows)) = (&mapping.organizations, &data.organizations) {
            plan.source_counts.push(("organizations", rows.table.clone(), rows.count));
            for row in &rows.rows {
                let sid = field(row, 0);
                let Some((id, created, updated)) =
                    new_id(&mut plan, &mut ids, problems, "organization", &rows.table, row, 3)
                else {
                    continue;
                };
                let name = OrganizationName::parse(field(row, 1).unwrap_or_default());
                let domain = field(row, 2).map(WebDomain::parse).transpose();
                match (name, domain) {
                    (Ok(name), Ok(domain)) => {
                        plan.organizations.ids.push(id);
                        plan.organizations.created.push(created);
                        plan.organizations.updated.push(updated);
                        plan.organizations.names.push(name.as_str().to_string());
                        plan.organizations.domains.push(domain.map(|d| d.as_str().to_string()));
                    }
                    (name, domain) => {
                        check(problems, &rows.table, sid, "name", name.map(|_| ()).map_err(|e| e.to_string()));
                        let column = m.domain.as_deref().unwrap_or("domain");
                        check(problems, &rows.table, sid, column, domain.map(|_| ()).map_err(|e| e.to_string()));
                    }
                }
            }
        }

        if let (Some(m), Some(rows)) = (&mapping.contacts, &data.contacts) {
            plan.source_counts.push(("contacts", rows.table.clone(), rows.count));
            for row in &rows.rows {
                let sid = field(row, 0);
                let Some((id, created, updated)) =
                    new_id(&mut plan, &mut ids, problems, "contact", &rows.table, row, 5)
                else {
                    continue;
                };
                let name = ContactName::parse(field(row, 1).unwrap_or_default()).map_err(|e| e.to_string());
                let email = ImportedEmail::parse(field(row, 2).unwrap_or_default()).map_err(|e| e.to_string());
                let phone = field(row, 3).map(Phone::parse).transpose().map_err(|e| e.to_string());
                let organization = resolve(&ids, "organization", field(row, 4));
                match (name, email, phone, organization) {
                    (Ok(name), Ok(email), Ok(phone), Ok(organization)) => {
                        plan.contacts.ids.push(id);
                        plan.contacts.created.push(created);
                        plan.contacts.updated.push(updated);
                        plan.contacts.names.push(name.as_str().to_string());
                        plan.contacts.emails.push(email.as_str().to_string());
                        plan.contacts.phones.push(phone.map(|p| p.as_str().to_string()));
                        plan.contacts.organizations.push(organization);
                    }
                    (name, email, phone, organization) => {
                        check(problems, &rows.table, sid, "name", name.map(|_| ()));
                        check(problems, &rows.table, sid, &m.email, email.map(|_| ()));
                        check(problems, &rows.table, sid, m.phone.as_deref().unwrap_or("phone"), phone.map(|_| ()));
                        let column = m.organization.as_deref().unwrap_or("organization");
                        check(problems, &rows.table, sid, column, organization.map(|_| ()));
                    }
                }
            }
        }

        if let (Some(m), Some(rows)) = (&mapping.deals, &data.deals) {
            plan.source_counts.push(("deals", rows.table.clone(), rows.count));
            for row in &rows.rows {
                let sid = field(row, 0);
                let Some((id, created, updated)) = new_id(&mut plan, &mut ids, problems, "deal", &rows.table, row, 7)
                else {
                    continue;
                };
                let title = DealTitle::parse(field(row, 1).unwrap_or_default()).map_err(|e| e.to_string());
                let contact = match resolve(&ids, "contact", field(row, 2)) {
                    Ok(Some(contact)) => Ok(contact),
                    Ok(None) => Err("is empty; every deal names a contact".to_string()),
                    Err(e) => Err(e),
                };
                let organization = resolve(&ids, "organization", field(row, 3));
                let stage = match field(row, 4) {
                    None => Ok(DealStage::Lead),
                    Some(raw) => {
                        let mapped = m.stages.get(raw).map(String::as_str).unwrap_or(raw);
                        DealStage::parse(&mapped.to_ascii_lowercase())
                            .map_err(|_| format!("{raw:?} is not a stage; map it in [deals] stages"))
                    }
                };
                let amount = field(row, 5)
                    .ok_or_else(|| "is empty".to_string())
                    .and_then(|a| Amount::parse(a).map_err(|e| e.to_string()));
                let currency = field(row, 6)
                    .or(m.default_currency.as_deref())
                    .ok_or_else(|| "is empty and there is no default_currency".to_string())
                    .and_then(|c| Currency::parse(&c.to_ascii_uppercase()).map_err(|e| e.to_string()));
                match (title, contact, organization, stage, amount, currency) {
                    (Ok(title), Ok(contact), Ok(organization), Ok(stage), Ok(amount), Ok(currency)) => {
                        plan.deals.ids.push(id);
                        plan.deals.created.push(created);
                        plan.deals.updated.push(updated);
                        plan.deals.titles.push(title.as_str().to_string());
                        plan.deals.contacts.push(contact);
                        plan.deals.organizations.push(organization);
                        plan.deals.stages.push(stage.as_str());
                        plan.deals.amounts.push(amount.as_str().to_string());
                        plan.deals.currencies.push(currency.as_str().to_string());
                    }
                    (title, contact, organization, stage, amount, currency) => {
                        check(problems, &rows.table, sid, "title", title.map(|_| ()));
                        check(problems, &rows.table, sid, &m.contact, contact.map(|_| ()));
                        let column = m.organization.as_deref().unwrap_or("organization");
                        check(problems, &rows.table, sid, column, organization.map(|_| ()));
                        check(problems, &rows.table, sid, m.stage.as_deref().unwrap_or("stage"), stage.map(|_| ()));
                        check(problems, &rows.table, sid, &m.amount, amount.map(|_| ()));
                        check(
                            problems,
                            &rows.table,
                            sid,
                            m.currency.as_deref().unwrap_or("currency"),
                            currency.map(|_| ()),
                        );
                    }
                }
            }
        }
        plan
    }
}

impl UserRows {
    /// The owner rule: the user `owner_email` names for this schema becomes `owner`; then the
    /// tenant must have an active owner, or it is not imported (a tenant nobody may manage
    /// would need an operator to repair it). Reported, never guessed.
    fn settle_owner(&mut self, m: &mapping::UsersMap, table: &str, schema: &str, problems: &mut Vec<Problem>) {
        if let Some(wanted) = m.owner_email.get(schema) {
            let found = self.emails.iter().position(|e| e.eq_ignore_ascii_case(wanted.trim()));
            match found {
                None => problems.push(Problem::new(
                    table,
                    None,
                    format!("[users] owner_email {wanted:?} for {schema} is not a user of this tenant"),
                )),
                Some(i) if self.statuses[i] != "active" => problems.push(Problem::new(
                    table,
                    None,
                    format!("[users] owner_email {wanted:?} for {schema} is an inactive user; name an active one"),
                )),
                Some(i) => self.roles[i] = Role::Owner.as_str(),
            }
            return;
        }
        let owners =
            self.roles.iter().zip(&self.statuses).filter(|(r, s)| **r == Role::Owner.as_str() && **s == "active");
        if owners.count() == 0 {
            let rule = m.owner_if.as_deref().map(|c| format!(" ({c} is true for no active user)")).unwrap_or_default();
            problems.push(Problem::new(
                table,
                None,
                format!(
                    "the tenant would have no active owner{rule}; name one in the mapping: \
                     [users] owner_email = {{ {schema} = \"…\" }}"
                ),
            ));
        }
    }
}

/// A reference by source id to a row imported earlier in this tenant; a dangling one is an
/// error, never silently dropped.
pub(super) fn resolve(
    ids: &HashMap<(&'static str, String), Uuid>,
    resource: &'static str,
    source: Option<&str>,
) -> Result<Option<Uuid>, String> {
    match source {
        None => Ok(None),
        Some(s) => ids
            .get(&(resource, s.to_string()))
            .copied()
            .map(Some)
            .ok_or_else(|| format!("references {resource} {s}, which is not in this tenant's source")),
    }
}
