//! Checking one tenant's written rows before commit: counts against the source's, every
//! reference inside the tenant, and every row as stored against the row as planned.

use sqlx::AssertSqlSafe;
use uuid::Uuid;

use super::plan::Plan;
use super::*;

/// Before commit: the tenant's rows per table equal the source's `count(*)`, every reference
/// lands on a row of THIS tenant (checked with the tenant in the join, on top of the composite
/// foreign keys), and as many references are set as the source had.
pub(super) async fn verify(tx: &mut TenantTx<'_>, plan: &Plan) -> Result<Vec<Problem>, sqlx::Error> {
    let tenant = tx.tenant();
    let row: (i64, i64, i64, i64, i64) = sqlx::query!(
        r#"SELECT (SELECT count(*) FROM users WHERE tenant_id = $1) AS "users!",
                (SELECT count(*) FROM organizations WHERE tenant_id = $1) AS "organizations!",
                (SELECT count(*) FROM contacts WHERE tenant_id = $1) AS "contacts!",
                (SELECT count(*) FROM deals WHERE tenant_id = $1) AS "deals!",
                (SELECT count(*) FROM import_id_map WHERE tenant_id = $1) AS "id_map!""#,
        tenant.0
    )
    .fetch_one(tx.conn())
    .await
    .map(|r| (r.users, r.organizations, r.contacts, r.deals, r.id_map))?;
    let target: BTreeMap<&str, i64> =
        [("users", row.0), ("organizations", row.1), ("contacts", row.2), ("deals", row.3)].into_iter().collect();
    let mut problems = Vec::new();
    for (resource, table, source) in &plan.source_counts {
        let got = target.get(resource).copied().unwrap_or(0);
        if got != *source {
            problems.push(Problem::new(
                table,
                None,
                format!("count mismatch: the source has {source} rows, rowguard {resource} has {got}"),
            ));
        }
    }
    let mapped = plan.map.target_ids.len() as i64 + 1;
    if row.4 != mapped {
        problems.push(Problem::new("import_id_map", None, format!("{} ids mapped, {mapped} expected", row.4)));
    }
    let refs: (i64, i64, i64, i64, i64, i64) = sqlx::query!(
        r#"SELECT
           (SELECT count(*) FROM contacts c WHERE c.tenant_id = $1 AND c.organization_id IS NOT NULL) AS "a!",
           (SELECT count(*) FROM contacts c WHERE c.tenant_id = $1 AND c.organization_id IS NOT NULL AND NOT EXISTS
               (SELECT FROM organizations o WHERE o.tenant_id = c.tenant_id AND o.id = c.organization_id)) AS "b!",
           (SELECT count(*) FROM deals d WHERE d.tenant_id = $1) AS "c!",
           (SELECT count(*) FROM deals d WHERE d.tenant_id = $1 AND NOT EXISTS
               (SELECT FROM contacts c WHERE c.tenant_id = d.tenant_id AND c.id = d.contact_id)) AS "d!",
           (SELECT count(*) FROM deals d WHERE d.tenant_id = $1 AND d.organization_id IS NOT NULL) AS "e!",
           (SELECT count(*) FROM deals d WHERE d.tenant_id = $1 AND d.organization_id IS NOT NULL AND NOT EXISTS
               (SELECT FROM organizations o WHERE o.tenant_id = d.tenant_id AND o.id = d.organization_id)) AS "f!""#,
        tenant.0
    )
    .fetch_one(tx.conn())
    .await
    .map(|r| (r.a, r.b, r.c, r.d, r.e, r.f))?;
    let expected = [
        ("contacts.organization_id", plan.contacts.organizations.iter().flatten().count() as i64, refs.0, refs.1),
        ("deals.contact_id", plan.deals.contacts.len() as i64, refs.2, refs.3),
        ("deals.organization_id", plan.deals.organizations.iter().flatten().count() as i64, refs.4, refs.5),
    ];
    for (column, want, set, dangling) in expected {
        if set != want || dangling != 0 {
            let table = column.split('.').next().unwrap_or(column);
            problems.push(Problem::new(
                table,
                None,
                format!("{column}: {set} references set ({want} expected), {dangling} not within this tenant"),
            ));
        }
    }
    problems.extend(compare_rows(tx, plan).await?);
    Ok(problems)
}

/// The statement comparing a built-in table's rows of tenant `$1` with the planned ones (`$2`…
/// as arrays, read by `planned`) as multisets, every column: (rows that differ either way,
/// the smallest differing id).
fn compare_sql(table: &str, planned: &str, stored: &str) -> String {
    format!(
        "WITH planned AS ({planned}),
              stored AS (SELECT {stored} FROM {table} WHERE tenant_id = $1),
              differ AS ((TABLE planned EXCEPT ALL TABLE stored) UNION ALL (TABLE stored EXCEPT ALL TABLE planned))
         SELECT count(*), (SELECT id FROM differ ORDER BY id LIMIT 1) FROM differ"
    )
}

/// Every built-in row as stored — all its columns, after whatever the database did on the way
/// in — equals the row the plan made of the source (`--all-tables` compares the other tables
/// as it fills them). A difference names the table and the first row's source id.
async fn compare_rows(tx: &mut TenantTx<'_>, plan: &Plan) -> Result<Vec<Problem>, sqlx::Error> {
    let tenant = tx.tenant();
    let (u, o, c, d) = (&plan.users, &plan.organizations, &plan.contacts, &plan.deals);
    let users = compare_sql(
        "users",
        "SELECT * FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[],
                              $8::timestamptz[]) AS p(id, email, password_hash, role, status, created_at, updated_at)",
        "id, email, password_hash, role, status, created_at, updated_at",
    );
    let users: (i64, Option<Uuid>) = sqlx::query_as(AssertSqlSafe(users))
        .bind(tenant)
        .bind(&u.ids)
        .bind(&u.emails)
        .bind(&u.hashes)
        .bind(&u.roles)
        .bind(&u.statuses)
        .bind(&u.created)
        .bind(&u.updated)
        .fetch_one(tx.conn())
        .await?;
    let organizations = compare_sql(
        "organizations",
        "SELECT * FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[])
                    AS p(id, name, domain, created_at, updated_at)",
        "id, name, domain, created_at, updated_at",
    );
    let organizations: (i64, Option<Uuid>) = sqlx::query_as(AssertSqlSafe(organizations))
        .bind(tenant)
        .bind(&o.ids)
        .bind(&o.names)
        .bind(&o.domains)
        .bind(&o.created)
        .bind(&o.updated)
        .fetch_one(tx.conn())
        .await?;
    let contacts = compare_sql(
        "contacts",
        "SELECT * FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[], $6::uuid[], $7::timestamptz[],
                              $8::timestamptz[]) AS p(id, name, email, phone, organization_id, created_at, updated_at)",
        "id, name, email, phone, organization_id, created_at, updated_at",
    );
    let contacts: (i64, Option<Uuid>) = sqlx::query_as(AssertSqlSafe(contacts))
        .bind(tenant)
        .bind(&c.ids)
        .bind(&c.names)
        .bind(&c.emails)
        .bind(&c.phones)
        .bind(&c.organizations)
        .bind(&c.created)
        .bind(&c.updated)
        .fetch_one(tx.conn())
        .await?;
    let deals = compare_sql(
        "deals",
        "SELECT i AS id, t, c, o, s, a::numeric, cur, ca, ua
           FROM UNNEST($2::uuid[], $3::text[], $4::uuid[], $5::uuid[], $6::text[], $7::text[], $8::text[],
                       $9::timestamptz[], $10::timestamptz[]) AS u(i, t, c, o, s, a, cur, ca, ua)",
        "id, title, contact_id, organization_id, stage, amount, currency::text, created_at, updated_at",
    );
    let deals: (i64, Option<Uuid>) = sqlx::query_as(AssertSqlSafe(deals))
        .bind(tenant)
        .bind(&d.ids)
        .bind(&d.titles)
        .bind(&d.contacts)
        .bind(&d.organizations)
        .bind(&d.stages)
        .bind(&d.amounts)
        .bind(&d.currencies)
        .bind(&d.created)
        .bind(&d.updated)
        .fetch_one(tx.conn())
        .await?;
    let mut problems = Vec::new();
    for (resource, (differing, first)) in
        [("users", users), ("organizations", organizations), ("contacts", contacts), ("deals", deals)]
    {
        if differing == 0 {
            continue;
        }
        let table = plan.source_counts.iter().find(|(r, _, _)| *r == resource).map_or(resource, |(_, t, _)| t.as_str());
        let source_id =
            first.and_then(|id| plan.map.target_ids.iter().position(|t| *t == id)).map(|i| &plan.map.source_ids[i]);
        problems.push(Problem::new(
            table,
            source_id.map(String::as_str),
            format!("{differing} row(s) of {resource} as stored differ from the rows made of the source"),
        ));
    }
    Ok(problems)
}
