//! The names the isolation invariants are written in: the roles the migrations create and
//! grant to, and the classes of tables that are not ordinary tenant tables. Read by the
//! tenant door (`db`), migrations (`migrate`) and the catalog verifier (`catalog`) alike.

/// Role names fixed by the migrations' GRANTs (DESIGN.md invariant 5).
pub const OWNER_ROLE: &str = "rowguard_owner";
pub const APP_ROLE: &str = "rowguard_app";
pub const PLATFORM_ROLE: &str = "rowguard_platform";
/// The service's own login for the platform API: a NOSUPERUSER NOBYPASSRLS member of
/// `rowguard_platform`, so the service can write the registry without holding the admin URL,
/// and the app role that serves tenant requests never can.
pub const PLATFORM_LOGIN_ROLE: &str = "rowguard_platform_login";
/// Owns the audit log's append path (sql/V17): NOLOGIN, NOSUPERUSER, NOBYPASSRLS, held to RLS.
/// Only the owner role is its member, so nobody can speak as it; `audit_append` and the other
/// functions in `AUDIT_DEFINER_FUNCTIONS` run as it.
pub const AUDIT_ROLE: &str = "rowguard_audit";

/// Owns the outbox's scheduling side (sql/V25): NOLOGIN, NOSUPERUSER, NOBYPASSRLS, a member of
/// nothing. It alone writes `outbox_queue` (ids and times, no tenant data): through the trigger
/// that mirrors the outbox into it, and through `JOBS_DEFINER_FUNCTIONS`, which the workers call.
pub const JOBS_ROLE: &str = "rowguard_jobs";

/// The SECURITY DEFINER functions of the outbox the app role may execute: claim due items across
/// tenants (ids only; each item is then read and recorded in its tenant's transaction, under
/// RLS) and measure the backlog. Accepted by `policies verify` only while owned by `JOBS_ROLE`
/// with a pinned search_path, as the audit ones below are by `AUDIT_ROLE`.
pub const JOBS_DEFINER_FUNCTIONS: &[&str] =
    &["outbox_claim(uuid,uuid[],integer,integer,integer,integer)", "outbox_backlog()"];

/// The SECURITY DEFINER functions the app role may execute, by design: the audit log's one
/// append door, the checkpoint signer's head lock, and the tree's sealer (sql/V21: find the
/// tenants with unsealed events, seal a batch of tenants, keep their signed heads, measure the
/// backlog; `audit_seal` and `audit_record_head` run inside those, executable by nobody else). `policies verify` accepts them only
/// while they are owned by `AUDIT_ROLE` (which must stay NOSUPERUSER NOBYPASSRLS) and pin
/// their search_path; any other definer the app role can execute is a finding.
pub const AUDIT_DEFINER_FUNCTIONS: &[&str] = &[
    "audit_append(text,text,text,text,jsonb,text)",
    "audit_head_locked(uuid)",
    "audit_unsealed_tenants(integer)",
    "audit_unsealed_backlog()",
    "audit_seal_many(uuid[],integer)",
    "audit_record_heads(uuid[],bigint[],text[])",
    // The same for one tenant, which Citus runs on the worker holding its shards (sql/V26).
    "audit_seal_tenant(uuid,integer)",
    "audit_record_head_tenant(uuid,bigint,text)",
];
/// Audit tables the app role may read and never write: events are appended, and heads moved,
/// only by `audit_append` as `AUDIT_ROLE`, and the tree only by `audit_seal` and
/// `audit_record_head`. `policies verify` reports any write grant on them.
pub const AUDIT_LOG_TABLES: &[&str] = &[
    "audit_events",
    "audit_chain_heads",
    "audit_tree_nodes",
    "audit_tree_leaves",
    "audit_tree_state",
    "audit_tree_heads",
];

/// The audit log's Merkle tree (sql/V21), per tenant: written only by the sealer's definers.
pub const AUDIT_TREE_TABLES: &[&str] =
    &["audit_tree_nodes", "audit_tree_leaves", "audit_tree_state", "audit_tree_heads"];

/// Tables that carry tenant data but are not tenant-owned: read before a tenant is known,
/// written only by the platform role. Everything else with a `tenant_id` must have RLS.
/// `audit_unsealed` (sql/V21) holds tenant ids and transaction ids only — which tenants have
/// events waiting for the sealer — and is reached only through the audit role's definers.
/// `outbox_queue` (sql/V25) likewise: which outbox items of which tenant are due when, written
/// only by `JOBS_ROLE`.
pub const PLATFORM_TABLES: &[&str] = &["tenants", "tenant_domains", AUDIT_SEAL_QUEUE, OUTBOX_QUEUE];
/// Which outbox items wait, per tenant, and until when (sql/V25).
pub const OUTBOX_QUEUE: &str = "outbox_queue";
/// Which tenants have audit events waiting for the sealer (sql/V21).
pub const AUDIT_SEAL_QUEUE: &str = "audit_unsealed";

/// Tenant tables whose rows are not audited as data changes: the audit trail itself, and
/// session bookkeeping whose every use would otherwise flood the log (logins and refresh
/// reuse are recorded as access events instead). Every other tenant table must carry the
/// `audit_row_change` trigger; `policies verify` reports one that does not. `import_id_map`
/// is written once, by the importer, in the transaction whose single `tenant.import` event
/// records the whole import (a row-change event per mapped id would double the log for no
/// information). The outbox and the webhook delivery log are the bookkeeping of deliveries
/// (every attempt changes a row); the subscriptions themselves (`webhooks`) are audited.
pub const AUDIT_EXEMPT_TABLES: &[&str] = &[
    "audit_events",
    "audit_chain_heads",
    "audit_checkpoints",
    "audit_tree_nodes",
    "audit_tree_leaves",
    "audit_tree_state",
    "audit_tree_heads",
    "refresh_tokens",
    "import_id_map",
    "outbox",
    "webhook_deliveries",
];
/// Platform tables without `tenant_id` that the app role may not touch at all, not even read
/// (operators' password hashes). `policies verify` reports any grant on them to the app role.
pub const PLATFORM_PRIVATE_TABLES: &[&str] = &["operators"];

/// The tenant tables rowguard's own migrations create (guarded by `policies/`). Every other
/// tenant table is the operator's: adopted (`ADOPTED_TABLES_REGISTRY` names it) or waiting to
/// be. A test compares this list with a freshly migrated database.
pub const BUILT_IN_TENANT_TABLES: &[&str] = &[
    "audit_chain_heads",
    "audit_checkpoints",
    "audit_events",
    "audit_tree_heads",
    "audit_tree_leaves",
    "audit_tree_nodes",
    "audit_tree_state",
    "contacts",
    "deals",
    "import_id_map",
    "organizations",
    "outbox",
    "refresh_tokens",
    "users",
    "webhook_deliveries",
    "webhooks",
];

/// The registry of adopted tables (sql/V18): the app role reads it, only `tables adopt` writes it.
pub const ADOPTED_TABLES_REGISTRY: &str = "rowguard_adopted_tables";
