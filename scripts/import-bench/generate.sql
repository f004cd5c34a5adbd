-- A django-tenants-shaped source for timing `rowguard import schemas --all-tables`
-- (BENCHMARKS.md, "Whole-schema import"): the registry and domains in public, and per tenant
-- schema the tables Django's auth and a small CRM app would make, with Django's deferrable
-- foreign keys. Per schema: auth_user 2 rows, crm_organization 5, crm_contact 100, crm_deal 20,
-- crm_tag 5, crm_task 100, crm_task_tags 60, crm_note 10 (302 rows over 8 tables).
--
--   createdb src && psql -v tenants=1000 -f scripts/import-bench/generate.sql src
--   rowguard import schemas --source postgres:///src?host=... \
--       --mapping examples/django-tenants.toml --all-tables
--
-- Every user's password is one fixed PBKDF2-SHA256-shaped hash that matches no password: the
-- import copies hashes, it does not check them. One transaction per tenant (\gexec).
\set ON_ERROR_STOP on
\if :{?tenants}
\else
\set tenants 1000
\endif

CREATE TABLE customers_client (
    id serial PRIMARY KEY, schema_name varchar(63) NOT NULL UNIQUE, name varchar(100) NOT NULL,
    created_on date NOT NULL DEFAULT now());
CREATE TABLE customers_domain (
    id serial PRIMARY KEY, domain varchar(253) NOT NULL UNIQUE, is_primary boolean NOT NULL,
    tenant_id integer NOT NULL REFERENCES customers_client (id) DEFERRABLE INITIALLY DEFERRED);
INSERT INTO customers_client (schema_name, name) VALUES ('public', 'Public');

CREATE FUNCTION pg_temp.make_tenant(n integer) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    s text := format('t%s', lpad(n::text, 5, '0'));
BEGIN
    INSERT INTO customers_client (schema_name, name) VALUES (s, format('Tenant %s', n));
    INSERT INTO customers_domain (domain, is_primary, tenant_id)
    VALUES (format('%s.example.com', s), true, currval('customers_client_id_seq'));
    EXECUTE format('CREATE SCHEMA %I', s);
    EXECUTE format('SET LOCAL search_path = %I', s);
    CREATE TABLE auth_user (
        id serial PRIMARY KEY, password varchar(128) NOT NULL, last_login timestamptz,
        is_superuser boolean NOT NULL, username varchar(150) NOT NULL UNIQUE,
        first_name varchar(150) NOT NULL, last_name varchar(150) NOT NULL, email varchar(254) NOT NULL,
        is_staff boolean NOT NULL, is_active boolean NOT NULL, date_joined timestamptz NOT NULL);
    CREATE TABLE crm_organization (
        id bigserial PRIMARY KEY, name varchar(200) NOT NULL, website_domain varchar(253));
    CREATE TABLE crm_contact (
        id bigserial PRIMARY KEY, first_name varchar(100) NOT NULL, last_name varchar(100) NOT NULL,
        email varchar(254) NOT NULL, phone varchar(40),
        organization_id bigint REFERENCES crm_organization (id) DEFERRABLE INITIALLY DEFERRED);
    CREATE TABLE crm_deal (
        id bigserial PRIMARY KEY, title varchar(200) NOT NULL, amount numeric(14, 2) NOT NULL,
        currency varchar(3) NOT NULL, stage varchar(20) NOT NULL,
        contact_id bigint NOT NULL REFERENCES crm_contact (id) DEFERRABLE INITIALLY DEFERRED,
        organization_id bigint REFERENCES crm_organization (id) DEFERRABLE INITIALLY DEFERRED);
    CREATE TABLE crm_tag (id bigserial PRIMARY KEY, name varchar(50) NOT NULL UNIQUE);
    CREATE TABLE crm_task (
        id bigserial PRIMARY KEY, title varchar(200) NOT NULL, due date, done boolean NOT NULL,
        details jsonb NOT NULL, created timestamptz NOT NULL,
        contact_id bigint NOT NULL REFERENCES crm_contact (id) DEFERRABLE INITIALLY DEFERRED,
        assignee_id integer REFERENCES auth_user (id) DEFERRABLE INITIALLY DEFERRED);
    CREATE INDEX ON crm_task (contact_id);
    CREATE INDEX ON crm_task (assignee_id);
    CREATE TABLE crm_task_tags (
        id bigserial PRIMARY KEY,
        task_id bigint NOT NULL REFERENCES crm_task (id) DEFERRABLE INITIALLY DEFERRED,
        tag_id bigint NOT NULL REFERENCES crm_tag (id) DEFERRABLE INITIALLY DEFERRED,
        UNIQUE (task_id, tag_id));
    CREATE TABLE crm_note (
        id bigserial PRIMARY KEY, body text NOT NULL, created timestamptz NOT NULL,
        contact_id bigint NOT NULL REFERENCES crm_contact (id) DEFERRABLE INITIALLY DEFERRED);

    INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff,
                           is_active, date_joined)
    VALUES ('pbkdf2_sha256$1000$benchsalt$3Rb1dQfSxWzv6gk1iiMFbJiY9pJ7S4c3fJ5UQZ1vY+Q=', true, 'owner',
            'Olena', 'Kovalenko', format('owner@%s.example.com', s), true, true, now() - interval '400 days'),
           ('pbkdf2_sha256$1000$benchsalt$3Rb1dQfSxWzv6gk1iiMFbJiY9pJ7S4c3fJ5UQZ1vY+Q=', false, 'agent',
            'Zoë', 'O''Brien', format('agent@%s.example.com', s), false, true, now() - interval '300 days');
    INSERT INTO crm_organization (name, website_domain)
    SELECT format('Org %s of %s', i, s), format('org%s.example.org', i) FROM generate_series(1, 5) i;
    INSERT INTO crm_contact (first_name, last_name, email, phone, organization_id)
    SELECT format('First%s', i), format('Last "%s" ✓', i), format('c%s@%s.example.net', i, s),
           CASE WHEN i % 3 = 0 THEN NULL ELSE format('+380 44 %s', 1000000 + i) END,
           CASE WHEN i % 4 = 0 THEN NULL ELSE 1 + i % 5 END
      FROM generate_series(1, 100) i;
    INSERT INTO crm_deal (title, amount, currency, stage, contact_id, organization_id)
    SELECT format('Deal %s', i), (i * 137.25)::numeric(14, 2), 'EUR',
           (ARRAY['new', 'negotiation', 'closed_won', 'closed_lost'])[1 + i % 4], 1 + (i * 7) % 100,
           CASE WHEN i % 2 = 0 THEN NULL ELSE 1 + i % 5 END
      FROM generate_series(1, 20) i;
    INSERT INTO crm_tag (name) SELECT format('tag %s', i) FROM generate_series(1, 5) i;
    INSERT INTO crm_task (title, due, done, details, created, contact_id, assignee_id)
    SELECT format('Task %s', i), DATE '2026-01-01' + i, i % 2 = 0,
           jsonb_build_object('n', i, 'note', format('l''été %s', i)),
           timestamptz '2025-06-01 10:00:00.123456+00' + i * interval '1 hour 1 microsecond',
           1 + i % 100, CASE WHEN i % 3 = 0 THEN NULL ELSE 1 + i % 2 END
      FROM generate_series(1, 100) i;
    INSERT INTO crm_task_tags (task_id, tag_id)
    SELECT 1 + (i / 5) * 2, 1 + i % 5 FROM generate_series(0, 59) i;
    INSERT INTO crm_note (body, created, contact_id)
    SELECT format('Note %s: called, left a message', i), now() - i * interval '1 day', 1 + i * 9
      FROM generate_series(1, 10) i;
END
$fn$;

SELECT format('SELECT pg_temp.make_tenant(%s)', n) FROM generate_series(1, :tenants) n \gexec
