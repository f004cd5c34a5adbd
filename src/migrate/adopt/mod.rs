//! `rowguard tables adopt`: make an operator's table with `tenant_id` a guarded tenant table,
//! held to the same invariants as the built-in ones. Reads the catalog, refuses what breaks
//! invariant 1, then writes (as the owner role) only what is missing. Never on the request path.
//!
//! What a guarded table gets, each step only when the catalog says it is not there yet:
//! ENABLE and FORCE ROW LEVEL SECURITY; the one tenant policy, shaped like `policies/*.sql`;
//! the `audit_row_change` trigger; DML grants to the app and platform roles (and USAGE on its
//! serial sequences), no TRUNCATE/REFERENCES/TRIGGER for the app role; an index
//! `(tenant_id, …)` under each composite foreign key; its row in `rowguard_adopted_tables`.
//! All in one transaction: the registry never names a table that is not guarded.
//!
//! Guarded is not the same as served: the HTTP API serves a table only when `data::schema`
//! can name its rows by one key column; adopt says so when it cannot (`Adopted::not_served`).

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

mod fixes;
mod role_sets;

pub use role_sets::{RoleSets, parse_roles};

use super::{LOCK_SPACE, MIGRATIONS, quote_ident, quote_literal};
use crate::catalog::read_tables;
use crate::domain::Role;
use crate::roles::{
    ADOPTED_TABLES_REGISTRY, APP_ROLE, BUILT_IN_TENANT_TABLES, OWNER_ROLE, PLATFORM_ROLE, PLATFORM_TABLES,
};
use fixes::{carries_tenant_id, tenant_foreign_key, with_tenant_id};
use role_sets::{role_list, role_names};

#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("unknown role {0:?}: roles are owner, admin, manager, member, auditor (comma-separated, at least one)")]
    UnknownRole(String),
    #[error("there is no table {0:?} in schema public")]
    NoSuchTable(String),
    #[error("{0} is one of rowguard's own tenant tables; its policies/ migration guards it already")]
    BuiltIn(String),
    #[error("{0} is a platform table (PLATFORM_TABLES), shared by all tenants, not a tenant table")]
    Platform(String),
    #[error(
        "the database has no {ADOPTED_TABLES_REGISTRY} yet (an older rowguard migrated it); run `rowguard migrate` first"
    )]
    NoRegistry,
    #[error("cannot adopt {table}:{}", problems.iter().map(|p| format!("\n  - {p}")).collect::<String>())]
    Refused { table: String, problems: Vec<String> },
    /// A role that may write but not read would get rows back from its writes (the API answers
    /// a POST or PATCH with the row), so every writer must also read.
    #[error(
        "cannot adopt {table}: {} may write its rows but not read them, and a write answers with the row written; \
         add them to --read-roles (`--read-roles {}`) or leave them out of --write-roles",
        role_list(.unreadable),
        role_list(.read_with_them)
    )]
    WritersCannotRead { table: String, unreadable: Vec<Role>, read_with_them: Vec<Role> },
}

/// One change adopt will make: what it is for, and the SQL that makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub what: String,
    pub sql: String,
}

/// What adopting one table takes: empty when it is adopted and guarded already.
#[derive(Debug, Clone)]
pub struct AdoptPlan {
    pub table: String,
    pub roles: RoleSets,
    pub steps: Vec<Step>,
}

impl AdoptPlan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The steps as one script, with a comment saying what each is for (`--dry-run`).
    pub fn script(&self) -> String {
        self.steps.iter().map(|s| format!("-- {}\n{};\n", s.what, s.sql)).collect::<Vec<_>>().join("\n")
    }
}

/// What `adopt` did: the plan, and whether it ran (false for a dry run or an empty plan).
#[derive(Debug)]
pub struct Adopted {
    pub plan: AdoptPlan,
    pub applied: bool,
    /// Why the HTTP API will not serve the (guarded) table, as `data::schema` decides it —
    /// a key of several columns after tenant_id, say. None when it is served, and for a dry run.
    pub not_served: Option<String>,
}

/// Adopt `table` over `admin` (a connection that may act as the owner role). `roles` None:
/// keep the registry's sets, or the defaults for a new adoption. `dry_run`: plan, change
/// nothing. Holds the migration lock for its transaction, so it never interleaves with
/// `migrate` or another adopt.
pub async fn adopt(
    admin: &mut PgConnection,
    table: &str,
    read: Option<Vec<Role>>,
    write: Option<Vec<Role>>,
    dry_run: bool,
) -> Result<Adopted, AdoptError> {
    let table = table.strip_prefix("public.").unwrap_or(table);
    let backend = crate::backend::Backend::detect(&mut *admin).await?;
    let mut tx = admin.begin().await?;
    sqlx::query!("SELECT pg_advisory_xact_lock($1, $2)", LOCK_SPACE, MIGRATIONS).execute(&mut *tx).await?;
    // Expressions deparse the same way for everyone, and every name below resolves in public.
    tx.execute(AssertSqlSafe(format!("SET LOCAL search_path = public; SET LOCAL ROLE {OWNER_ROLE}"))).await?;
    if backend == crate::backend::Backend::Citus {
        // A table from `migrate --dir` is distributed already, and Citus refuses a trigger on a
        // distributed table without this: the audit trigger writes only its own tenant's
        // colocated shards, on the node it runs on (as `citus::distribute` argues).
        tx.execute("SET LOCAL citus.enable_unsafe_triggers = on").await?;
    }
    let plan = plan(&mut tx, table, read, write).await?;
    let applied = !dry_run && !plan.is_empty();
    if applied {
        // One statement per message: Citus replays a message's whole text on the shards.
        for step in &plan.steps {
            tx.execute(AssertSqlSafe(step.sql.clone())).await?;
        }
        // Running services serve the table (and its role sets) once this commits.
        sqlx::query!("SELECT pg_notify($1, $2)", crate::data::CHANGED_CHANNEL, &plan.table).execute(&mut *tx).await?;
    }
    // What the service will make of it, read the way the service reads it (never a second
    // copy of its rule), inside the transaction so an error here changes nothing.
    let not_served = if dry_run {
        None
    } else {
        crate::data::schema::load(&mut tx, 0).await?.tables.remove(&plan.table).and_then(|t| t.not_served)
    };
    if applied {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    // On Citus the adopted table joins the tenant tables' colocation group, distributed by
    // tenant_id as `migrate` distributes them (the same catalog-driven, idempotent step): left
    // on the coordinator, its audit trigger would write the tenant's log from there, and
    // Citus refuses that transaction's next statement on the tenant's shards as another role.
    if applied && backend == crate::backend::Backend::Citus {
        admin.execute(AssertSqlSafe(format!("SET ROLE {OWNER_ROLE}"))).await?;
        let distributed = crate::migrate::citus::distribute(&mut *admin).await;
        admin.execute("RESET ROLE").await?;
        distributed?;
    }
    Ok(Adopted { plan, applied, not_served })
}

/// A constraint of the table, with its columns by name.
#[derive(sqlx::FromRow)]
struct Constraint {
    name: String,
    kind: String,
    table: String,
    columns: Vec<String>,
    references: Option<String>,
    ref_columns: Vec<String>,
    definition: String,
}

/// A policy on the table, its expressions deparsed with search path `public`.
#[derive(sqlx::FromRow)]
struct PolicyRow {
    name: String,
    permissive: bool,
    /// `*` for ALL.
    command: String,
    to_public: bool,
    using_expr: Option<String>,
    check_expr: Option<String>,
}

impl PolicyRow {
    /// The policy adopt creates: permissive, for every command and role, on the tenant.
    fn is_ours(&self) -> bool {
        self.name == POLICY
            && self.permissive
            && self.command == "*"
            && self.to_public
            && self.using_expr.as_deref() == Some(TENANT_PREDICATE)
            && self.check_expr.as_deref() == Some(TENANT_PREDICATE)
    }
}

/// Read the catalog and work out the steps, or refuse. Runs in the caller's transaction.
pub async fn plan(
    conn: &mut PgConnection,
    table: &str,
    read: Option<Vec<Role>>,
    write: Option<Vec<Role>>,
) -> Result<AdoptPlan, AdoptError> {
    if BUILT_IN_TENANT_TABLES.contains(&table) {
        return Err(AdoptError::BuiltIn(table.to_string()));
    }
    if PLATFORM_TABLES.contains(&table) {
        return Err(AdoptError::Platform(table.to_string()));
    }
    let found: Option<(i64, String, String, bool, bool)> = sqlx::query_as(
        "SELECT c.oid::bigint, c.relkind::text, pg_get_userbyid(c.relowner)::text, c.relrowsecurity,
                c.relforcerowsecurity
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relname = $1",
    )
    .bind(table)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((oid, kind, owner, rls_enabled, rls_forced)) = found else {
        return Err(AdoptError::NoSuchTable(table.to_string()));
    };
    let registered: Option<(Vec<String>, Vec<String>)> = {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(ADOPTED_TABLES_REGISTRY)
            .fetch_one(&mut *conn)
            .await?;
        if !exists {
            return Err(AdoptError::NoRegistry);
        }
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT read_roles, write_roles FROM {ADOPTED_TABLES_REGISTRY} WHERE table_name = $1"
        )))
        .bind(table)
        .fetch_optional(&mut *conn)
        .await?
    };
    // The role sets: as given, else as registered, else the defaults; writers must read.
    let registered_sets = registered.as_ref().map(|(r, w)| RoleSets {
        read: Role::ALL.into_iter().filter(|x| r.iter().any(|n| n == x.as_str())).collect(),
        write: Role::ALL.into_iter().filter(|x| w.iter().any(|n| n == x.as_str())).collect(),
    });
    let base = registered_sets.clone().unwrap_or_default();
    let roles = RoleSets { read: read.unwrap_or(base.read), write: write.unwrap_or(base.write) };
    let unreadable: Vec<Role> = roles.write.iter().filter(|r| !roles.read.contains(r)).copied().collect();
    if !unreadable.is_empty() {
        let read_with_them =
            Role::ALL.into_iter().filter(|r| roles.read.contains(r) || unreadable.contains(r)).collect();
        return Err(AdoptError::WritersCannotRead { table: table.to_string(), unreadable, read_with_them });
    }
    let ident = quote_ident(table);
    let mut problems = Vec::new();

    if kind != "r" {
        let what = if kind == "p" { "a partitioned table (not supported yet)" } else { "not an ordinary table" };
        return Err(AdoptError::Refused { table: table.to_string(), problems: vec![format!("{table} is {what}")] });
    }
    if owner != OWNER_ROLE {
        problems.push(format!(
            "{table} is owned by {owner}; the owner role owns every guarded table (only it may enable and force \
             RLS, and the app role must never own one): `ALTER TABLE {ident} OWNER TO {OWNER_ROLE}`"
        ));
    }
    let tenant_id: Option<(String, bool)> = sqlx::query_as(
        "SELECT format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
          WHERE attrelid = $1::bigint::oid AND attname = 'tenant_id' AND NOT attisdropped",
    )
    .bind(oid)
    .fetch_optional(&mut *conn)
    .await?;
    match &tenant_id {
        None => problems.push(format!(
            "{table} has no tenant_id column; a tenant table carries `tenant_id uuid NOT NULL` (invariant 1)"
        )),
        Some((ty, _)) if ty != "uuid" => {
            problems.push(format!("{table}.tenant_id is {ty}; make it `tenant_id uuid NOT NULL`"))
        }
        Some((_, false)) => problems.push(format!(
            "{table}.tenant_id admits NULL, and a row without a tenant is nobody's: \
             `ALTER TABLE {ident} ALTER COLUMN tenant_id SET NOT NULL`"
        )),
        Some(_) => {}
    }
    // Without tenant_id every key check below would only say so again; with one (nullable or
    // of the wrong type), the keys are checked too, so one run names everything to change.
    if tenant_id.is_none() {
        return Err(AdoptError::Refused { table: table.to_string(), problems });
    }

    // Keys and foreign keys, both ways: outgoing to tenant tables, incoming from them.
    let constraints: Vec<Constraint> = sqlx::query_as(
        "SELECT con.conname::text AS name, con.contype::text AS kind, c.relname::text AS table,
                ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
                        JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i) AS columns,
                t.relname::text AS references,
                ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
                        JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i)
                  AS ref_columns,
                pg_get_constraintdef(con.oid) AS definition
           FROM pg_constraint con
           JOIN pg_class c ON c.oid = con.conrelid
           LEFT JOIN pg_class t ON t.oid = con.confrelid
          WHERE (con.conrelid = $1::bigint::oid AND con.contype IN ('p', 'u', 'f'))
             OR (con.confrelid = $1::bigint::oid AND con.contype = 'f' AND con.conrelid <> con.confrelid)
          ORDER BY con.contype, con.conname",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await?;
    let tables = read_tables(&mut *conn).await?;
    let is_tenant = |name: &str| name == table || tables.iter().any(|t| t.name == name && t.is_tenant());
    let leads = |columns: &[String]| columns.first().is_some_and(|c| c == "tenant_id");

    let primary = constraints.iter().find(|c| c.kind == "p" && c.table == table);
    match primary {
        None => problems.push(format!(
            "{table} has no primary key; give it one that leads with tenant_id: \
             `ALTER TABLE {ident} ADD PRIMARY KEY (tenant_id, id)`"
        )),
        Some(pk) if !leads(&pk.columns) => problems.push(format!(
            "primary key {} is ({}); a key is unique per tenant, so it must lead with tenant_id: \
             `ALTER TABLE {ident} DROP CONSTRAINT {}, ADD PRIMARY KEY ({})` (foreign keys to it become \
             (tenant_id, …) too)",
            pk.name,
            pk.columns.join(", "),
            quote_ident(&pk.name),
            with_tenant_id(&pk.columns)
        )),
        Some(_) => {}
    }
    // Unique indexes, whether or not a constraint made them (the primary key's is checked above).
    let unique_indexes: Vec<(String, bool, String)> = sqlx::query_as(
        "SELECT i.indexrelid::regclass::text, a.attname IS NOT DISTINCT FROM 'tenant_id',
                pg_get_indexdef(i.indexrelid)
           FROM pg_index i
           LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
          WHERE i.indrelid = $1::bigint::oid AND i.indisunique AND NOT i.indisprimary
          ORDER BY 1",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await?;
    for (index, leads_with_tenant, definition) in &unique_indexes {
        if *leads_with_tenant {
            continue;
        }
        let why = "so one tenant's value would block another's (and tell it the value exists)";
        match constraints.iter().find(|c| c.kind == "u" && c.table == table && &c.name == index) {
            Some(c) => problems.push(format!(
                "unique constraint {} ({}) does not lead with tenant_id, {why}; make it unique per tenant: \
                 `ALTER TABLE {ident} DROP CONSTRAINT {}, ADD UNIQUE ({})`",
                c.name,
                c.columns.join(", "),
                quote_ident(&c.name),
                with_tenant_id(&c.columns)
            )),
            None => problems.push(format!(
                "unique index {index} does not lead with tenant_id, {why}; drop it and create it again with \
                 tenant_id first ({definition})"
            )),
        }
    }
    for fk in constraints.iter().filter(|c| c.kind == "f") {
        let target = fk.references.clone().unwrap_or_default();
        let (from, to) = (&fk.table, &target);
        if !(is_tenant(from) && is_tenant(to)) {
            continue;
        }
        let carries_tenant = fk.columns.iter().zip(&fk.ref_columns).any(|(c, r)| c == "tenant_id" && r == "tenant_id");
        if !carries_tenant {
            let (columns, ref_columns) = tenant_foreign_key(&fk.columns, &fk.ref_columns);
            problems.push(format!(
                "foreign key {} on {from} ({}) does not match tenant_id to tenant_id; foreign-key checks ignore \
                 RLS, so it would let one tenant point at (and probe for) another tenant's {to} rows: make it \
                 FOREIGN KEY ({columns}) REFERENCES {to} ({ref_columns})",
                fk.name, fk.definition,
            ));
        }
    }

    // Policies: ours alone, or none yet. Any other permissive policy is OR-ed with it and widens
    // access; restrictive ones only narrow it and may stay.
    let policies: Vec<PolicyRow> = sqlx::query_as(
        "SELECT polname::text AS name, polpermissive AS permissive, polcmd::text AS command,
                polroles = '{0}'::oid[] AS to_public, pg_get_expr(polqual, polrelid) AS using_expr,
                pg_get_expr(polwithcheck, polrelid) AS check_expr
           FROM pg_policy WHERE polrelid = $1::bigint::oid ORDER BY 1",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await?;
    for p in policies.iter().filter(|p| p.permissive && !p.is_ours()) {
        problems.push(format!(
            "policy {} is not rowguard's tenant policy ({POLICY}: FOR ALL TO PUBLIC USING {TENANT_PREDICATE} WITH \
             CHECK {TENANT_PREDICATE}); permissive policies are OR-ed, so it would widen access: \
             `DROP POLICY {} ON {ident}`",
            p.name,
            quote_ident(&p.name)
        ));
    }
    if !problems.is_empty() {
        return Err(AdoptError::Refused { table: table.to_string(), problems });
    }

    let mut steps = Vec::new();
    if !rls_enabled {
        steps.push(Step {
            what: "row-level security: every query sees only the transaction's tenant (invariant 1)".into(),
            sql: format!("ALTER TABLE {ident} ENABLE ROW LEVEL SECURITY"),
        });
    }
    if !rls_forced {
        steps.push(Step {
            what: "forced, so the owner role is held to it too".into(),
            sql: format!("ALTER TABLE {ident} FORCE ROW LEVEL SECURITY"),
        });
    }
    if !policies.iter().any(PolicyRow::is_ours) {
        steps.push(Step {
            what: "the tenant policy, as for every built-in table (policies/*.sql; invariants 2 and 4)".into(),
            sql: format!(
                "CREATE POLICY {POLICY} ON {ident} USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = \
                 current_tenant())"
            ),
        });
    }

    // The audit trigger, with the key columns after tenant_id naming the row in each event.
    let triggers: Vec<(String, bool)> = sqlx::query_as(
        "SELECT t.tgname::text, t.tgenabled <> 'D' FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
          WHERE t.tgrelid = $1::bigint::oid AND p.proname = 'audit_row_change' AND NOT t.tgisinternal",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await?;
    if triggers.is_empty() {
        let key: Vec<String> = primary
            .map(|pk| pk.columns.iter().filter(|c| *c != "tenant_id").map(|c| quote_literal(c)).collect())
            .unwrap_or_default();
        let args = std::iter::once(quote_literal(table)).chain(key).collect::<Vec<_>>().join(", ");
        steps.push(Step {
            what: format!("audit every change in the same transaction, as resource {table:?} (invariant 6)"),
            sql: format!(
                "CREATE TRIGGER audit_row_change AFTER INSERT OR UPDATE OR DELETE ON {ident} FOR EACH ROW EXECUTE \
                 FUNCTION audit_row_change({args})"
            ),
        });
    } else if !triggers.iter().any(|(_, enabled)| *enabled) {
        let name = quote_ident(&triggers[0].0);
        steps.push(Step {
            what: "the audit trigger is there but disabled".into(),
            sql: format!("ALTER TABLE {ident} ENABLE TRIGGER {name}"),
        });
    }

    // Grants: DML for the app role (requests) and the platform role (export, import, purge).
    for role in [APP_ROLE, PLATFORM_ROLE] {
        let mut missing = Vec::new();
        for privilege in DML {
            let has: bool = sqlx::query_scalar("SELECT has_table_privilege($1::name, $2::bigint::oid, $3)")
                .bind(role)
                .bind(oid)
                .bind(privilege)
                .fetch_one(&mut *conn)
                .await?;
            if !has {
                missing.push(privilege);
            }
        }
        if !missing.is_empty() {
            steps.push(Step {
                what: format!("{role} may read and write rows (RLS decides which)"),
                sql: format!("GRANT {} ON {ident} TO {role}", missing.join(", ")),
            });
        }
    }
    // What the app role must not hold (`policies verify`: app-role-excess-privilege).
    let excess: Vec<(String, bool)> = sqlx::query_as(
        "SELECT g.privilege_type, g.grantee = 0
           FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) g
          WHERE c.oid = $1::bigint::oid AND g.privilege_type IN ('TRUNCATE', 'REFERENCES', 'TRIGGER')
            AND (g.grantee = 0 OR g.grantee = (SELECT oid FROM pg_roles WHERE rolname = $2))
          ORDER BY 2, 1",
    )
    .bind(oid)
    .bind(APP_ROLE)
    .fetch_all(&mut *conn)
    .await?;
    for (privilege, public) in excess {
        let from = if public { "PUBLIC" } else { APP_ROLE };
        steps.push(Step {
            what: format!("{from} must not hold {privilege} (it ignores or escapes RLS)"),
            sql: format!("REVOKE {privilege} ON {ident} FROM {from}"),
        });
    }
    // serial columns take their values from a sequence the inserting role must be allowed to
    // use (identity columns need no grant for that). The platform role also moves serial and
    // identity sequences past the ids a tenant import brought (`tenants import`: setval needs
    // UPDATE, reading the last value SELECT).
    let sequences: Vec<(String, bool, bool, bool)> = sqlx::query_as(
        "SELECT s.oid::regclass::text, d.deptype = 'i' OR has_sequence_privilege($2::name, s.oid, 'USAGE'),
                has_sequence_privilege($3::name, s.oid, 'USAGE'),
                has_sequence_privilege($3::name, s.oid, 'SELECT') AND has_sequence_privilege($3::name, s.oid, 'UPDATE')
           FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
          WHERE d.classid = 'pg_class'::regclass AND d.refobjid = $1::bigint::oid AND d.deptype IN ('a', 'i')
            AND s.relkind = 'S'
          ORDER BY 1",
    )
    .bind(oid)
    .bind(APP_ROLE)
    .bind(PLATFORM_ROLE)
    .fetch_all(&mut *conn)
    .await?;
    for (sequence, app, platform, platform_moves) in sequences {
        let to: Vec<&str> =
            [(app, APP_ROLE), (platform, PLATFORM_ROLE)].into_iter().filter(|(has, _)| !has).map(|(_, r)| r).collect();
        if !to.is_empty() {
            steps.push(Step {
                what: format!("inserts draw ids from {sequence}"),
                // regclass text is already quoted where it needs to be.
                sql: format!("GRANT USAGE ON SEQUENCE {sequence} TO {}", to.join(", ")),
            });
        }
        if !platform_moves {
            steps.push(Step {
                what: format!("a tenant import moves {sequence} past the ids it brought"),
                sql: format!("GRANT SELECT, UPDATE ON SEQUENCE {sequence} TO {PLATFORM_ROLE}"),
            });
        }
    }

    // An index under each composite foreign key: deleting a parent row (or a tenant's purge)
    // checks the children by these columns, tenant first, like every key here.
    let indexes: Vec<Vec<String>> = sqlx::query_scalar(
        "SELECT ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
                        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o)
           FROM pg_index i WHERE i.indrelid = $1::bigint::oid",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await?;
    for fk in constraints.iter().filter(|c| c.kind == "f" && c.table == table && carries_tenant_id(&c.columns)) {
        let covered = indexes.iter().any(|index| {
            index.len() >= fk.columns.len() && fk.columns.iter().all(|c| index[..fk.columns.len()].contains(c))
        });
        if !covered {
            let columns = with_tenant_id(&fk.columns);
            steps.push(Step {
                what: format!("an index for foreign key {} (tenant first)", fk.name),
                sql: format!("CREATE INDEX ON {ident} ({columns})"),
            });
        }
    }

    // The registry: the role sets worked out above.
    let literal_array = |roles: &[Role]| {
        format!("ARRAY[{}]::text[]", role_names(roles).iter().map(|r| quote_literal(r)).collect::<Vec<_>>().join(", "))
    };
    match registered_sets {
        None => steps.push(Step {
            what: format!(
                "record the adoption: read by {}, written by {}",
                role_names(&roles.read).join(", "),
                role_names(&roles.write).join(", ")
            ),
            sql: format!(
                "INSERT INTO {ADOPTED_TABLES_REGISTRY} (table_name, read_roles, write_roles) VALUES ({}, {}, {})",
                quote_literal(table),
                literal_array(&roles.read),
                literal_array(&roles.write)
            ),
        }),
        Some(current) if current != roles => steps.push(Step {
            what: format!(
                "change the role sets: read by {}, written by {}",
                role_names(&roles.read).join(", "),
                role_names(&roles.write).join(", ")
            ),
            sql: format!(
                "UPDATE {ADOPTED_TABLES_REGISTRY} SET read_roles = {}, write_roles = {}, updated_at = now() \
                 WHERE table_name = {}",
                literal_array(&roles.read),
                literal_array(&roles.write),
                quote_literal(table)
            ),
        }),
        Some(_) => {}
    }
    Ok(AdoptPlan { table: table.to_string(), roles, steps })
}

/// The policy every tenant table has, by name, and its predicate as PostgreSQL deparses it
/// with search path `public` (what `policies verify` recognises).
const POLICY: &str = "tenant_isolation";
const TENANT_PREDICATE: &str = "(tenant_id = current_tenant())";
const DML: [&str; 4] = ["SELECT", "INSERT", "UPDATE", "DELETE"];
