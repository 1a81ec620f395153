-- Security and tenancy: tenant state and quotas, token revocation, development
-- credentials, refresh tokens and the append-only audit log. Times are INTEGER
-- microseconds since the Unix epoch, except `tokens_valid_after` (milliseconds).

ALTER TABLE tenants ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE;
-- Only the quotas this tenant sets apart from the configured defaults, as JSON.
ALTER TABLE tenants ADD COLUMN quotas TEXT NOT NULL DEFAULT '{}';

ALTER TABLE users ADD COLUMN tokens_valid_after INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN dev_credential BOOLEAN NOT NULL DEFAULT FALSE;

-- Refresh tokens are stored as SHA-256 hashes; the token itself is only ever sent.
CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    family      TEXT NOT NULL,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id   INTEGER NOT NULL,
    issued_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_revoked ON refresh_tokens (revoked_at);

-- No foreign keys: records outlive the users and tenants they name.
CREATE TABLE audit_log (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at             INTEGER NOT NULL,
    tenant_id      INTEGER,
    tenant_name    TEXT,
    user_id        INTEGER,
    username       TEXT,
    action         TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    resource_id    TEXT,
    outcome        TEXT NOT NULL CHECK (outcome IN ('success', 'denied', 'failed')),
    reason         TEXT,
    request_id     TEXT,
    client_addr    TEXT,
    summary        TEXT NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
