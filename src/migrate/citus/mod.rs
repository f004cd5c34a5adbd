//! Scale-out on Citus: what `migrate` does when the citus extension is installed (platform
//! tables become reference tables, tenant tables are distributed by `tenant_id`, colocated),
//! and the start-up check that the tenant setting reaches the workers. Admin/owner and
//! app-role connections only; never on the request path.

use std::collections::BTreeSet;

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

use super::operator::OPERATOR_HISTORY;
use super::{POLICY_HISTORY, SCHEMA_HISTORY};
use crate::catalog::{Table as CatalogTable, read_tables};
use crate::roles::{AUDIT_SEAL_QUEUE, OUTBOX_QUEUE};

mod audit;
mod operator;
mod outbox;

pub use audit::{DELEGATED_FUNCTIONS, prepare_audit_log};
pub use operator::{apply_operator_migrations, run_placing_tables};
use outbox::OUTBOX_CITUS_FUNCTIONS;

/// Platform tables (no RLS: read across tenants by the audit and jobs roles' definers only)
/// that are nevertheless distributed by `tenant_id`, colocated with the tenant tables, and not
/// reference tables: they are written by triggers on the tenant tables' shards, inside the
/// transaction of the change, and a trigger on a shard may only reach shards on its own node
/// (Citus refuses a write to a reference table there: it would have to reach every node).
pub const SHARDED_PLATFORM_TABLES: &[&str] = &[AUDIT_SEAL_QUEUE, OUTBOX_QUEUE];

/// How a table of schema `public` is placed on Citus, from `pg_dist_partition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A plain PostgreSQL table on the coordinator.
    Local,
    /// A citus local table (added to Citus metadata, still on the coordinator only): what
    /// Citus makes of a new table with a foreign key to a reference table.
    CitusLocal,
    /// Hash-distributed by the named column.
    Distributed {
        by_tenant_id: bool,
    },
    Reference,
}

/// A foreign key, as `pg_get_constraintdef` prints it, between two tables of `public`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    pub table: String,
    pub name: String,
    pub references: String,
    pub definition: String,
}

/// What `distribute` will do, computed from the catalog alone (a pure function of it, so it
/// is tested without Citus).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DistributionPlan {
    /// Platform tables (no tenant_id, or named in PLATFORM_TABLES) to make reference tables.
    pub reference: Vec<String>,
    /// Tenant tables (and `SHARDED_PLATFORM_TABLES`) to distribute by tenant_id, in this
    /// order, all colocated.
    pub distribute: Vec<String>,
    /// Of those, the ones that are reference tables now (placed by an earlier version): made
    /// local again first (`undistribute_table`), then distributed.
    pub undistribute: Vec<String>,
    /// An already distributed tenant table to colocate with; None: the first of `distribute`
    /// starts the colocation group.
    pub colocate_with: Option<String>,
    /// Foreign keys touching a table that changes: dropped before, added again after (Citus
    /// cannot convert one end of a foreign key at a time).
    pub foreign_keys: Vec<Rekey>,
    /// Tenant tables already distributed by something other than tenant_id, or platform
    /// tables distributed at all: left alone and reported, never changed silently.
    pub misplaced: Vec<String>,
}

impl DistributionPlan {
    pub fn is_empty(&self) -> bool {
        self.reference.is_empty() && self.distribute.is_empty()
    }
}

/// A foreign key to drop before the tables change and add back after, with the definition
/// it gets back (see `citus_compatible_definition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rekey {
    pub key: ForeignKey,
    pub add_back: String,
    /// True when `add_back` lost an ON DELETE SET NULL / SET DEFAULT action.
    pub relaxed: bool,
}

/// A table in the plan's input: its name, whether it is tenant-owned (verify's rule: has
/// tenant_id and is not in PLATFORM_TABLES) and where it is now.
#[derive(Debug, Clone)]
pub struct PlannedTable {
    pub name: String,
    pub tenant: bool,
    pub placement: Placement,
}

/// The plan. Refinery's history tables stay local to the coordinator (only `migrate` and
/// `/readyz` read them, never with another table).
pub fn plan(tables: &[PlannedTable], foreign_keys: &[ForeignKey]) -> DistributionPlan {
    let mut out = DistributionPlan::default();
    for t in tables {
        if [SCHEMA_HISTORY, POLICY_HISTORY, OPERATOR_HISTORY].contains(&t.name.as_str()) {
            continue;
        }
        let sharded = t.tenant || SHARDED_PLATFORM_TABLES.contains(&t.name.as_str());
        match (sharded, t.placement) {
            (true, Placement::Distributed { by_tenant_id: true }) => {
                if out.colocate_with.is_none() {
                    out.colocate_with = Some(t.name.clone());
                }
            }
            (false, Placement::Reference) => {}
            (true, Placement::Local | Placement::CitusLocal) => out.distribute.push(t.name.clone()),
            (true, Placement::Reference) if !t.tenant => {
                out.undistribute.push(t.name.clone());
                out.distribute.push(t.name.clone());
            }
            (false, Placement::Local | Placement::CitusLocal) => out.reference.push(t.name.clone()),
            (true, _) | (false, Placement::Distributed { .. }) => out.misplaced.push(t.name.clone()),
        }
    }
    let changing: BTreeSet<&str> = out.reference.iter().chain(&out.distribute).map(String::as_str).collect();
    let tenant: BTreeSet<&str> = tables.iter().filter(|t| t.tenant).map(|t| t.name.as_str()).collect();
    out.foreign_keys = foreign_keys
        .iter()
        .filter(|fk| changing.contains(fk.table.as_str()) || changing.contains(fk.references.as_str()))
        .map(|fk| {
            // Between two tenant tables the key includes tenant_id (invariant 1), and that is
            // where Citus refuses the SET NULL / SET DEFAULT actions.
            let (add_back, relaxed) = if tenant.contains(fk.table.as_str()) && tenant.contains(fk.references.as_str()) {
                citus_compatible_definition(&fk.definition)
            } else {
                (fk.definition.clone(), false)
            };
            Rekey { key: fk.clone(), add_back, relaxed }
        })
        .collect();
    out
}

/// Citus refuses `ON DELETE SET NULL` / `SET DEFAULT` on a foreign key that includes the
/// distribution column — even PostgreSQL 15's `SET NULL (organization_id)`, which would never
/// touch tenant_id. Between tenant tables such a key is added back without the action (NO
/// ACTION), and the service detaches the children itself before deleting the parent (as
/// `delete_organization` does). Returns the definition to use and whether it was changed.
pub fn citus_compatible_definition(definition: &str) -> (String, bool) {
    let Some(start) = definition.find(" ON DELETE SET ") else { return (definition.to_string(), false) };
    let rest = &definition[start + " ON DELETE SET ".len()..];
    let action_len = if rest.starts_with("NULL") {
        4
    } else if rest.starts_with("DEFAULT") {
        7
    } else {
        return (definition.to_string(), false);
    };
    let mut rest = &rest[action_len..];
    // The column list of PostgreSQL 15's `SET NULL (a, b)`.
    if let Some(columns) = rest.strip_prefix(" (")
        && let Some(end) = columns.find(')')
    {
        rest = &columns[end + 1..];
    }
    (format!("{}{}", &definition[..start], rest), true)
}

/// What `distribute` did.
#[derive(Debug, Default)]
pub struct CitusReport {
    pub reference: Vec<String>,
    pub distributed: Vec<String>,
    /// Foreign keys added back without their ON DELETE SET NULL / SET DEFAULT action.
    pub relaxed_foreign_keys: Vec<String>,
    /// Functions of `public` newly propagated to the workers.
    pub functions: Vec<String>,
    pub misplaced: Vec<String>,
}

/// Read the plan's input from the catalog: verify's table list (the one definition of a
/// tenant table), each table's placement, and the foreign keys between tables of `public`.
pub async fn read_plan(conn: &mut PgConnection) -> Result<DistributionPlan, sqlx::Error> {
    // The kinds as Citus itself tells them apart (metadata_cache.c, IsCitusTableTypeInternal):
    // no partition column and two-phase-commit replication is a reference table; no
    // partition column, no colocation group is a citus local table.
    let placements: Vec<(String, String)> =
        if crate::backend::Backend::detect(conn).await? == crate::backend::Backend::Citus {
            sqlx::query_as(
                "SELECT c.relname::text,
                    CASE WHEN p.partmethod = 'h' AND column_to_column_name(p.logicalrelid, p.partkey) = 'tenant_id'
                              THEN 'by-tenant'
                         WHEN p.partmethod = 'n' AND p.repmodel = 't' THEN 'reference'
                         WHEN p.partmethod = 'n' AND p.colocationid = 0 THEN 'citus-local'
                         ELSE 'other' END
               FROM pg_dist_partition p
               JOIN pg_class c ON c.oid = p.logicalrelid
              WHERE c.relnamespace = 'public'::regnamespace",
            )
            .fetch_all(&mut *conn)
            .await?
        } else {
            Vec::new()
        };
    let tables: Vec<PlannedTable> = read_tables(&mut *conn)
        .await?
        .into_iter()
        .map(|t: CatalogTable| {
            let placement = match placements.iter().find(|(name, _)| *name == t.name).map(|(_, kind)| kind.as_str()) {
                None => Placement::Local,
                Some("by-tenant") => Placement::Distributed { by_tenant_id: true },
                Some("reference") => Placement::Reference,
                Some("citus-local") => Placement::CitusLocal,
                Some(_) => Placement::Distributed { by_tenant_id: false },
            };
            PlannedTable { tenant: t.is_tenant(), name: t.name, placement }
        })
        .collect();
    let foreign_keys: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT c.relname::text, con.conname::text, t.relname::text, pg_get_constraintdef(con.oid)
           FROM pg_constraint con
           JOIN pg_class c ON c.oid = con.conrelid
           JOIN pg_class t ON t.oid = con.confrelid
          WHERE con.contype = 'f' AND c.relnamespace = 'public'::regnamespace
            AND t.relnamespace = 'public'::regnamespace
          ORDER BY 1, 2",
    )
    .fetch_all(&mut *conn)
    .await?;
    let foreign_keys: Vec<ForeignKey> = foreign_keys
        .into_iter()
        .map(|(table, name, references, definition)| ForeignKey { table, name, references, definition })
        .collect();
    Ok(plan(&tables, &foreign_keys))
}

/// Carry out the plan on `conn` (already `SET ROLE` to the owner), in one transaction: drop
/// the foreign keys that touch a changing table, make reference tables, distribute tenant
/// tables colocated, add the keys back, then propagate every function of `public` that Citus
/// has not (those taking a table's row type, such as `audit_canonical(audit_events)`, cannot
/// be propagated before their table is distributed, and the audit trigger on the workers'
/// shards calls them).
///
/// `citus.enable_unsafe_triggers`: every tenant table carries `audit_row_change`, and Citus
/// refuses to distribute a table with triggers without it. The trigger runs on the worker
/// holding the row's shard and writes `audit_events` / `audit_chain_heads` for the same
/// tenant, whose shards are colocated on that same worker, so the writes stay in the
/// transaction (verified by hand; docs/citus.md).
pub async fn distribute(conn: &mut PgConnection) -> Result<CitusReport, sqlx::Error> {
    let plan = read_plan(conn).await?;
    let mut report = CitusReport { misplaced: plan.misplaced.clone(), ..CitusReport::default() };
    let mut tx = conn.begin().await?;
    tx.execute("SET LOCAL citus.enable_unsafe_triggers = on; SET LOCAL citus.multi_shard_modify_mode = 'sequential'")
        .await?;
    if !plan.is_empty() {
        for rekey in &plan.foreign_keys {
            let fk = &rekey.key;
            let sql = format!("ALTER TABLE public.{} DROP CONSTRAINT {}", quote(&fk.table), quote(&fk.name));
            tx.execute(AssertSqlSafe(sql)).await?;
        }
        for table in &plan.undistribute {
            sqlx::query("SELECT undistribute_table($1::regclass)")
                .bind(format!("public.{}", quote(table)))
                .execute(&mut *tx)
                .await?;
        }
        for table in &plan.reference {
            sqlx::query("SELECT create_reference_table($1::regclass)")
                .bind(format!("public.{}", quote(table)))
                .execute(&mut *tx)
                .await?;
            report.reference.push(table.clone());
        }
        let mut anchor = plan.colocate_with.clone();
        for table in &plan.distribute {
            let colocate = anchor.as_ref().map(|a| format!("public.{}", quote(a))).unwrap_or_else(|| "none".into());
            sqlx::query("SELECT create_distributed_table($1::regclass, 'tenant_id', colocate_with => $2)")
                .bind(format!("public.{}", quote(table)))
                .bind(colocate)
                .execute(&mut *tx)
                .await?;
            anchor.get_or_insert_with(|| table.clone());
            report.distributed.push(table.clone());
        }
        for rekey in &plan.foreign_keys {
            let sql = format!(
                "ALTER TABLE public.{} ADD CONSTRAINT {} {}",
                quote(&rekey.key.table),
                quote(&rekey.key.name),
                rekey.add_back
            );
            tx.execute(AssertSqlSafe(sql)).await?;
            if rekey.relaxed {
                report.relaxed_foreign_keys.push(format!("{}.{}", rekey.key.table, rekey.key.name));
            }
        }
    }
    if tenant_tables_distributed(&mut tx).await? {
        prepare_audit_log(&mut tx).await?;
        for function in OUTBOX_CITUS_FUNCTIONS {
            tx.execute(*function).await?;
        }
        // `force_delegation`: the sealer calls the seal and the head's recording in one
        // transaction (`db::sealing`), and only so does Citus still run them on the worker.
        for (function, argument) in DELEGATED_FUNCTIONS {
            sqlx::query(
                "SELECT create_distributed_function($1::regprocedure, distribution_arg_name => $2,
                                                    colocate_with => 'audit_events', force_delegation => true)",
            )
            .bind(function)
            .bind(argument)
            .execute(&mut *tx)
            .await?;
        }
        for (definition, function, grantee) in TENANT_WORKER_HELPERS {
            tx.execute(*definition).await?;
            sqlx::query(
                "SELECT create_distributed_function($1::regprocedure, distribution_arg_name => 'p_tenant',
                                                    colocate_with => 'audit_events', force_delegation => true)",
            )
            .bind(function)
            .execute(&mut *tx)
            .await?;
            tx.execute(AssertSqlSafe(format!("REVOKE EXECUTE ON FUNCTION public.{function} FROM PUBLIC"))).await?;
            tx.execute(AssertSqlSafe(format!("GRANT EXECUTE ON FUNCTION public.{function} TO {grantee}"))).await?;
        }
        // `audit_append_for` and `audit_import_for` (sql/V27), force-delegated: run on the
        // tenant's worker even inside a transaction block, over the connection the transaction
        // uses there, so the audit role's write and the caller's statements around it stay on
        // one connection.
        for function in ["audit_append_for(uuid,text,text,text,text,jsonb,text)", "audit_import_for(uuid,jsonb)"] {
            sqlx::query(
                "SELECT create_distributed_function($1::regprocedure, distribution_arg_name => 'p_tenant',
                                                    colocate_with => 'audit_events', force_delegation => true)",
            )
            .bind(function)
            .execute(&mut *tx)
            .await?;
        }
    }
    let functions: Vec<String> = sqlx::query_scalar(
        "SELECT p.oid::regprocedure::text FROM pg_proc p
          WHERE p.pronamespace = 'public'::regnamespace AND p.prokind = 'f'
            AND NOT EXISTS (SELECT FROM pg_dist_object o
                             WHERE o.classid = 'pg_proc'::regclass AND o.objid = p.oid)
          ORDER BY 1",
    )
    .fetch_all(&mut *tx)
    .await?;
    // Citus creates a function on the workers as its owner: the audit and jobs roles own their
    // definers and may not create in `public` (sql/V21, V25 take CREATE back after handing them
    // over), so they get it for this transaction's propagation and lose it again (a grant on
    // the schema is propagated to every node like the functions).
    let owners: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT pg_get_userbyid(p.proowner)::text FROM pg_proc p
          WHERE p.oid::regprocedure::text = ANY($1)
            AND NOT has_schema_privilege(p.proowner, 'public', 'CREATE')",
    )
    .bind(&functions)
    .fetch_all(&mut *tx)
    .await?;
    for owner in &owners {
        tx.execute(AssertSqlSafe(format!("GRANT CREATE ON SCHEMA public TO {}", quote(owner)))).await?;
    }
    for function in functions {
        sqlx::query("SELECT create_distributed_function($1::regprocedure)").bind(&function).execute(&mut *tx).await?;
        report.functions.push(function);
    }
    for owner in &owners {
        tx.execute(AssertSqlSafe(format!("REVOKE CREATE ON SCHEMA public FROM {}", quote(owner)))).await?;
    }
    plan_afresh_where_the_shards_are(&mut tx).await?;
    tx.commit().await?;
    Ok(report)
}

/// The setting every function that Citus runs on a worker, next to a tenant's shards, carries:
/// the trigger functions of Citus tables and the delegated functions (a distribution argument).
/// It holds for everything such a function calls, however deep.
pub const WORKER_FUNCTION_SETTING: &str = "plan_cache_mode=force_custom_plan";

/// Give every function Citus runs beside a tenant's shards `plan_cache_mode =
/// force_custom_plan` (`WORKER_FUNCTION_SETTING`): the statements they run are planned for
/// each execution instead of reusing a generic plan.
///
/// Why: Citus 13.2.1, 13.2.2, 14.0.0 and 14.0.1 (since its #8371, "Don't use local plan cache
/// for multi shard queries") never find the local plan they cached for a reused plan whose shard
/// is pruned at execution (a statement keyed by a PL/pgSQL variable, such as the audit
/// trigger's `INSERT INTO audit_events … VALUES (ev.tenant_id, …)`) and executed on the local
/// shard: every execution plans the shard query again and appends the plan to the generic
/// plan's `CachedPlan` memory context, which lives as long as the backend (fixed by Citus PR
/// #8824, after those releases). Measured on the dev cluster (Citus 13.2.2): about 180 kB per audited
/// row in the worker backend (the seal-key trigger's `SELECT … FROM audit_events`, the
/// event's INSERT, the queue's INSERT), kept after COMMIT; the coordinator's connections to
/// the workers are cached, so a bulk load (the benchmark's fixture) grew a worker backend past
/// 3 GB and the kernel killed it. A custom plan is made and dropped per execution, Citus never
/// caches a local plan for it, and nothing accumulates. The cost: the coordinator-side
/// (distributed) planning of each statement again; the local plan for the shard was being made
/// on every execution anyway. The fixture loaded faster with it (the leak's allocations cost
/// more), and on a Citus with #8824 the setting can go.
///
/// Run by every `distribute`, last: a `CREATE OR REPLACE FUNCTION` (a later migration, or the
/// Citus variants above) drops the setting, and a function distributed by then carries an
/// `ALTER FUNCTION` to every node. Only functions missing it are altered.
async fn plan_afresh_where_the_shards_are(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    let functions: Vec<String> = sqlx::query_scalar(
        "SELECT p.oid::regprocedure::text FROM pg_proc p
          WHERE p.pronamespace = 'public'::regnamespace
            AND (EXISTS (SELECT FROM pg_trigger t JOIN pg_dist_partition d ON d.logicalrelid = t.tgrelid
                          WHERE t.tgfoid = p.oid AND NOT t.tgisinternal)
                 OR EXISTS (SELECT FROM pg_dist_object o
                             WHERE o.classid = 'pg_proc'::regclass AND o.objid = p.oid
                               AND o.distribution_argument_index IS NOT NULL))
            AND NOT coalesce($1 = ANY (p.proconfig), false)
          ORDER BY 1",
    )
    .bind(WORKER_FUNCTION_SETTING)
    .fetch_all(&mut *tx)
    .await?;
    for function in functions {
        // A signature as the catalog prints it (`regprocedure`), not input: printed so that it
        // names this function under the current search_path (schema-qualified when `public` is
        // not on it), so it is used as printed.
        tx.execute(AssertSqlSafe(format!("ALTER FUNCTION {function} SET plan_cache_mode = force_custom_plan"))).await?;
    }
    Ok(())
}

/// Whether `audit_events` is distributed (by tenant_id, as every tenant table is once the plan
/// is carried out): the audit log's Citus parts below need it.
async fn tenant_tables_distributed(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = 'public.audit_events'::regclass
                          AND partmethod = 'h')",
    )
    .fetch_one(conn)
    .await
}

/// Citus-only helpers called inside a transaction and run on the tenant's worker, over that
/// transaction's own connection there (`force_delegation`, keyed by `p_tenant`): (definition,
/// signature, who may call it). SECURITY INVOKER, pinned search_path.
const TENANT_WORKER_HELPERS: &[(&str, &str, &str)] = &[
    // `TenantTx::check_deferred_keys_at_commit`: the deferred checks are pending on the worker,
    // run there as the app role under the tenant's settings; reads nothing.
    (
        "CREATE OR REPLACE FUNCTION public.check_deferred_keys(p_tenant uuid) RETURNS void
             LANGUAGE plpgsql SET search_path = pg_catalog
             AS $$ BEGIN SET CONSTRAINTS ALL IMMEDIATE; END $$",
        "check_deferred_keys(uuid)",
        crate::roles::APP_ROLE,
    ),
    // The purge's hold on the tenant's sealer (`platform::purge`): the sealer's advisory lock is
    // the worker's on Citus, so the purge takes it there, inside its transaction.
    (
        "CREATE OR REPLACE FUNCTION public.audit_seal_lock_tenant(p_tenant uuid) RETURNS void
             LANGUAGE sql SET search_path = pg_catalog
             AS $$ SELECT pg_advisory_xact_lock(hashtextextended('rowguard.audit.seal/' || p_tenant::text, 0)) $$",
        "audit_seal_lock_tenant(uuid)",
        crate::roles::PLATFORM_ROLE,
    ),
];

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, tenant: bool, placement: Placement) -> PlannedTable {
        PlannedTable { name: name.into(), tenant, placement }
    }

    fn fk(table: &str, name: &str, references: &str) -> ForeignKey {
        ForeignKey { table: table.into(), name: name.into(), references: references.into(), definition: String::new() }
    }

    #[test]
    fn a_fresh_database_gets_reference_platform_tables_and_colocated_tenant_tables() {
        let tables = [
            table("contacts", true, Placement::Local),
            table("operators", false, Placement::Local),
            table(SCHEMA_HISTORY, false, Placement::Local),
            table("tenants", false, Placement::Local),
            table("tenant_domains", false, Placement::Local),
            table("users", true, Placement::Local),
        ];
        let plan = plan(&tables, &[fk("contacts", "c_t", "tenants"), fk("tenant_domains", "d_t", "tenants")]);
        assert_eq!(plan.reference, ["operators", "tenants", "tenant_domains"]);
        assert_eq!(plan.distribute, ["contacts", "users"]);
        assert_eq!(plan.colocate_with, None);
        assert_eq!(plan.foreign_keys.len(), 2);
        assert!(plan.misplaced.is_empty());
    }

    #[test]
    fn a_second_run_changes_nothing_and_a_new_table_joins_the_existing_group() {
        let done = [
            table("contacts", true, Placement::Distributed { by_tenant_id: true }),
            table("tenants", false, Placement::Reference),
            table(POLICY_HISTORY, false, Placement::Local),
        ];
        let again = plan(&done, &[fk("contacts", "c_t", "tenants")]);
        assert!(again.is_empty(), "{again:?}");
        assert!(again.foreign_keys.is_empty(), "keys between settled tables stay: {again:?}");

        let mut later = done.to_vec();
        // What Citus makes of a new table with a foreign key to a reference table.
        later.push(table("notes", true, Placement::CitusLocal));
        let next = plan(&later, &[fk("contacts", "c_t", "tenants"), fk("notes", "n_c", "contacts")]);
        assert_eq!(next.distribute, ["notes"]);
        assert_eq!(next.colocate_with.as_deref(), Some("contacts"));
        let keys: Vec<&ForeignKey> = next.foreign_keys.iter().map(|r| &r.key).collect();
        assert_eq!(keys, [&fk("notes", "n_c", "contacts")]);
    }

    #[test]
    fn only_keys_between_tenant_tables_lose_their_set_null_action() {
        let tables = [
            table("contacts", true, Placement::Local),
            table("organizations", true, Placement::Local),
            table("tenants", false, Placement::Local),
            table("tenant_domains", false, Placement::Local),
        ];
        let set_null = |table: &str, name: &str, references: &str| ForeignKey {
            definition: "FOREIGN KEY (tenant_id, x) REFERENCES t(tenant_id, id) ON DELETE SET NULL (x)".into(),
            ..fk(table, name, references)
        };
        let plan = plan(
            &tables,
            &[set_null("contacts", "c_o", "organizations"), set_null("tenant_domains", "d_t", "tenants")],
        );
        let relaxed: Vec<(&str, bool)> = plan.foreign_keys.iter().map(|r| (r.key.name.as_str(), r.relaxed)).collect();
        assert_eq!(relaxed, [("c_o", true), ("d_t", false)]);
        assert!(!plan.foreign_keys[0].add_back.contains("SET NULL"));
    }

    #[test]
    fn tables_placed_some_other_way_are_reported_not_changed() {
        let tables = [
            table("contacts", true, Placement::Distributed { by_tenant_id: false }),
            table("users", true, Placement::Reference),
            table("tenants", false, Placement::Distributed { by_tenant_id: false }),
        ];
        let plan = plan(&tables, &[]);
        assert!(plan.is_empty());
        assert_eq!(plan.misplaced, ["contacts", "users", "tenants"]);
    }

    #[test]
    fn set_null_and_set_default_actions_are_dropped_for_citus_and_nothing_else() {
        let cases = [
            (
                "FOREIGN KEY (tenant_id, organization_id) REFERENCES organizations(tenant_id, id) ON DELETE SET NULL \
                 (organization_id)",
                "FOREIGN KEY (tenant_id, organization_id) REFERENCES organizations(tenant_id, id)",
                true,
            ),
            (
                "FOREIGN KEY (tenant_id, x) REFERENCES t(tenant_id, id) ON DELETE SET DEFAULT DEFERRABLE",
                "FOREIGN KEY (tenant_id, x) REFERENCES t(tenant_id, id) DEFERRABLE",
                true,
            ),
            (
                "FOREIGN KEY (tenant_id, user_id) REFERENCES users(tenant_id, id) ON DELETE CASCADE",
                "FOREIGN KEY (tenant_id, user_id) REFERENCES users(tenant_id, id) ON DELETE CASCADE",
                false,
            ),
            (
                "FOREIGN KEY (a) REFERENCES t(id) ON UPDATE SET NULL",
                "FOREIGN KEY (a) REFERENCES t(id) ON UPDATE SET NULL",
                false,
            ),
        ];
        for (input, expected, changed) in cases {
            assert_eq!(citus_compatible_definition(input), (expected.to_string(), changed), "{input}");
        }
    }
}
