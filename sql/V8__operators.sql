-- Operator accounts for the platform API: a platform table (no tenant_id, no RLS), read and
-- written only by the platform role. The app role gets no grant at all, so no tenant request
-- can read an operator's password hash (DESIGN.md, Platform tables; invariant 5).

CREATE TABLE operators (
    id             uuid PRIMARY KEY,
    email          text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    -- argon2id PHC string; the plain password is never stored.
    password_hash  text NOT NULL,
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at     timestamptz NOT NULL DEFAULT now()
);
-- One account per address, whatever its case: login compares lower(email).
CREATE UNIQUE INDEX operators_email_unique ON operators (lower(email));

REVOKE ALL ON operators FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON operators TO rowguard_platform;
