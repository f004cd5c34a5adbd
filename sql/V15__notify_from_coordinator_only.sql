-- Change notifications (tenant registry, users) are sent only where the service listens.
--
-- On plain PostgreSQL nothing changes: there is one node and it is the coordinator. On Citus
-- the triggers run on every shard placement: a write to a reference table (tenants,
-- tenant_domains) reaches every node in one two-phase commit, and PostgreSQL refuses to
-- PREPARE a transaction that has executed NOTIFY ("cannot PREPARE a transaction that has
-- executed LISTEN, UNLISTEN, or NOTIFY", seen on Citus 13.2). A NOTIFY on a worker would
-- also never reach the service, which LISTENs on the coordinator. So the functions notify
-- only on the coordinator (Citus group 0): the coordinator's own placement of a reference
-- table still announces registry changes; users' shards live on the workers, so on Citus
-- user changes are not announced across instances (README, Scale-out on Citus: the
-- instance that makes the change forgets at once, the others within the cache's TTL).
-- `citus_is_coordinator()` exists only with the extension, hence the dynamic call.
CREATE FUNCTION runs_on_coordinator() RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
    coordinator boolean := true;
BEGIN
    IF to_regprocedure('pg_catalog.citus_is_coordinator()') IS NOT NULL THEN
        EXECUTE 'SELECT pg_catalog.citus_is_coordinator()' INTO coordinator;
    END IF;
    RETURN coordinator;
END $$;

CREATE OR REPLACE FUNCTION notify_tenant_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF runs_on_coordinator() THEN
        PERFORM pg_notify('rowguard_tenant_changed', '');
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION notify_user_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF runs_on_coordinator() THEN
        PERFORM pg_notify('rowguard_user_changed', OLD.tenant_id::text || ':' || OLD.id::text);
    END IF;
    RETURN NULL;
END $$;
