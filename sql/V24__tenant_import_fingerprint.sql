-- What an imported tenant's source looked like when it was imported (`rowguard import schemas`):
-- a SHA-256 over, per mapped source table, its row count and the sum of a 64-bit hash of every
-- row's text (src/import/source.rs, `fingerprint`). A re-run compares it with the source as it
-- is now and reports a tenant whose source changed since instead of skipping it in silence.
-- NULL for tenants imported before this column existed (and for tenants not imported at all).
ALTER TABLE tenants ADD COLUMN import_fingerprint text;
