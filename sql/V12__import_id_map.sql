-- Imports from schema-per-tenant databases (`rowguard import schemas`, issue 8).
--
-- import_id_map: tenant-owned (invariant 1). Every imported row's source id (of any type,
-- kept as text) next to the uuid it was given, so support staff can trace an old id to a new
-- one. Written only by the importer inside the tenant's transaction; resource 'tenant' maps
-- the source schema to the tenant itself.
CREATE TABLE import_id_map (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    resource    text NOT NULL CHECK (resource IN ('tenant', 'user', 'contact', 'organization', 'deal')),
    source_id   text NOT NULL CHECK (length(source_id) BETWEEN 1 AND 200),
    target_id   uuid NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, resource, source_id)
);
-- The other direction: which source row became this rowguard id.
CREATE INDEX import_id_map_target_idx ON import_id_map (tenant_id, target_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON import_id_map TO rowguard_app, rowguard_platform;

-- Which source tenant a rowguard tenant was imported from (`<source database>/<schema>`),
-- on the registry itself: a re-run must find already imported tenants before it knows their
-- ids, and import_id_map is hidden behind each tenant's RLS. Unique, so one source schema
-- can never become two tenants. The app role is not granted the column (it reads only what
-- tenant resolution needs).
ALTER TABLE tenants ADD COLUMN import_source text;
CREATE UNIQUE INDEX tenants_import_source_unique ON tenants (import_source) WHERE import_source IS NOT NULL;
