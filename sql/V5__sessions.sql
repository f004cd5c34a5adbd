-- Sessions (issue 3): opaque refresh tokens, stored only as SHA-256 hashes, and what the auth
-- layer needs to honour authorization changes on the next request (OWASP ASVS 8.3.2).

-- Access tokens issued before this instant are refused (logout-all, password change). The
-- epoch, not -infinity, so that every client library can decode the default.
ALTER TABLE users ADD COLUMN sessions_valid_after timestamptz NOT NULL DEFAULT 'epoch';

-- Refresh tokens: tenant-owned (invariant 1). A login starts a family; every refresh rotates
-- the presented token (rotated_at) and adds its successor to the same family. Presenting a
-- rotated token again means two parties hold it: the whole family is revoked and the reuse
-- is recorded (reused_at, revoked_reason = 'reuse_detected').
CREATE TABLE refresh_tokens (
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    id              uuid NOT NULL,
    user_id         uuid NOT NULL,
    family_id       uuid NOT NULL,
    token_hash      bytea NOT NULL CHECK (length(token_hash) = 32),
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    rotated_at      timestamptz,
    reused_at       timestamptz,
    revoked_at      timestamptz,
    revoked_reason  text CHECK (revoked_reason IN
                        ('logout', 'logout_all', 'reuse_detected', 'user_deactivated', 'password_changed')),
    PRIMARY KEY (tenant_id, id),
    -- Composite: foreign-key checks ignore RLS (invariant 1). A deleted user's sessions go too.
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX refresh_tokens_hash_unique ON refresh_tokens (tenant_id, token_hash);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (tenant_id, family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (tenant_id, user_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON refresh_tokens TO rowguard_app, rowguard_platform;

-- Every instance caches (tenant, user) → role, status, sessions_valid_after for the auth
-- layer; a change is announced, after commit, so every cache drops that entry at once.
CREATE FUNCTION notify_user_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rowguard_user_changed', OLD.tenant_id::text || ':' || OLD.id::text);
    RETURN NULL;
END $$;

CREATE TRIGGER users_changed AFTER UPDATE ON users
    FOR EACH ROW
    WHEN (OLD.role IS DISTINCT FROM NEW.role
          OR OLD.status IS DISTINCT FROM NEW.status
          OR OLD.sessions_valid_after IS DISTINCT FROM NEW.sessions_valid_after)
    EXECUTE FUNCTION notify_user_change();
CREATE TRIGGER users_deleted AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION notify_user_change();
