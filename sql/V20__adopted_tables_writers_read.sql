-- Whoever may write an adopted table's rows may read them (`rowguard tables adopt` refuses
-- anything else). The API answers a POST or PATCH with the row it wrote, so a role allowed to
-- write but not to read would get rows back that it may not read. `tables adopt` checks this
-- before it writes the registry; the CHECK holds it for every other way in.
--
-- Registries written before adopt checked it may hold rows that break it, and ADD CONSTRAINT
-- would then fail and stop the whole migration. Such rows are fixed first, by widening the
-- read set: the roles that could write keep doing so (narrowing the write set instead would
-- silently break clients that write today), and reading what one may already change reveals
-- no more than the answers to those writes did. In the fixed role order of src/domain/role.rs,
-- as `tables adopt` stores sets, so the next adopt finds the same set and changes nothing.
-- Run `rowguard tables list` afterwards to see the sets.
--
-- The registry is a reference table on Citus: UPDATE and a CHECK added by ALTER TABLE both
-- propagate to every node.
UPDATE rowguard_adopted_tables
   SET read_roles = ARRAY(SELECT r FROM unnest(ARRAY['owner', 'admin', 'manager', 'member', 'auditor'])
                                        WITH ORDINALITY AS o(r, i)
                           WHERE r = ANY (read_roles || write_roles) ORDER BY i),
       updated_at = now()
 WHERE NOT write_roles <@ read_roles;

ALTER TABLE rowguard_adopted_tables
    ADD CONSTRAINT rowguard_adopted_tables_writers_read CHECK (write_roles <@ read_roles);
