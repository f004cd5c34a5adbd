//! The statements adopt's refusals suggest: keys and foreign keys rewritten to lead with
//! tenant_id (invariant 1), names quoted only where a person would have to.

use crate::migrate::quote_ident;

/// `(id)` → `tenant_id, id`; a list that has tenant_id already is moved to lead with it.
pub(super) fn with_tenant_id(columns: &[String]) -> String {
    std::iter::once("tenant_id")
        .chain(columns.iter().map(String::as_str).filter(|c| *c != "tenant_id"))
        .map(quote_ident_if_needed)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A foreign key as it must be to carry the tenant: tenant_id paired with the target's
/// tenant_id, then every other column with the column it references now, in order. A column
/// that stood where the target's tenant_id is (`(other_tenant, client_id) REFERENCES clients
/// (tenant_id, id)`) drops out, since tenant_id takes its place: `(tenant_id, client_id)
/// REFERENCES clients (tenant_id, id)`. A target without tenant_id in the key gets it first
/// (its key must become `(tenant_id, …)` too). Returns both column lists.
pub(super) fn tenant_foreign_key(columns: &[String], ref_columns: &[String]) -> (String, String) {
    let rest: Vec<(&str, &str)> = columns
        .iter()
        .zip(ref_columns)
        .map(|(c, r)| (c.as_str(), r.as_str()))
        .filter(|(_, r)| *r != "tenant_id")
        .collect();
    // tenant_id paired with another column of the target: the column that should reference it
    // is not in the key, so it is left for the reader to name.
    let from = rest.iter().map(|(c, _)| if *c == "tenant_id" { "…".to_string() } else { quote_ident_if_needed(c) });
    let to = rest.iter().map(|(_, r)| quote_ident_if_needed(r));
    let list = |names: Vec<String>| names.join(", ");
    (
        list(std::iter::once("tenant_id".to_string()).chain(from).collect()),
        list(std::iter::once("tenant_id".to_string()).chain(to).collect()),
    )
}

pub(super) fn carries_tenant_id(columns: &[String]) -> bool {
    columns.iter().any(|c| c == "tenant_id")
}

/// A column name as a person would type it: bare when it is a plain lower-case identifier.
fn quote_ident_if_needed(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain { name.to_string() } else { quote_ident(name) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suggested_key_leads_with_tenant_id() {
        let cols = |s: &[&str]| s.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        assert_eq!(with_tenant_id(&cols(&["id"])), "tenant_id, id");
        assert_eq!(with_tenant_id(&cols(&["id", "tenant_id"])), "tenant_id, id");
        assert_eq!(with_tenant_id(&cols(&["Project Id"])), "tenant_id, \"Project Id\"");
    }

    #[test]
    fn a_suggested_foreign_key_pairs_tenant_id_with_tenant_id_and_keeps_the_rest_aligned() {
        let cols = |s: &[&str]| s.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let table = [
            // (columns, referenced columns) → (suggested columns, suggested referenced columns)
            (&["parent_id"][..], &["id"][..], "tenant_id, parent_id", "tenant_id, id"),
            (&["other_tenant", "client_id"], &["tenant_id", "id"], "tenant_id, client_id", "tenant_id, id"),
            (&["client_id", "other_tenant"], &["id", "tenant_id"], "tenant_id, client_id", "tenant_id, id"),
            (&["a", "b"], &["x", "y"], "tenant_id, a, b", "tenant_id, x, y"),
            (&["tenant_id", "owner"], &["id", "tenant_id"], "tenant_id, …", "tenant_id, id"),
            (&["Client Id"], &["id"], "tenant_id, \"Client Id\"", "tenant_id, id"),
        ];
        for (columns, references, from, to) in table {
            let (c, r) = tenant_foreign_key(&cols(columns), &cols(references));
            assert_eq!((c.as_str(), r.as_str()), (from, to), "{columns:?} → {references:?}");
            assert_eq!(c.split(", ").count(), r.split(", ").count(), "as many columns on both sides");
        }
    }
}
