-- Alarms (issue 8): rules per tag, the current state of each rule's one alarm
-- instance, and the history of every transition. Times are microseconds since the
-- Unix epoch, like samples.

CREATE TABLE alarm_rules (
    id         BIGSERIAL PRIMARY KEY,
    tenant_id  BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    tag_id     BIGINT NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    -- The rule (kind and settings, severity, message, enabled, delays) as JSON.
    spec       TEXT NOT NULL,
    UNIQUE (tag_id, name)
);
CREATE INDEX alarm_rules_tenant ON alarm_rules (tenant_id);

-- Written only by the tenant's alert stream, after each transition.
CREATE TABLE alarms (
    rule_id        BIGINT PRIMARY KEY REFERENCES alarm_rules (id) ON DELETE CASCADE,
    tenant_id      BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    state          TEXT NOT NULL CHECK (state IN
                   ('normal', 'unacked', 'acked', 'rtn_unacked', 'shelved', 'suppressed')),
    -- Shelving or suppression reason.
    reason         TEXT,
    shelved_until  BIGINT,
    active         BOOLEAN NOT NULL,
    since          BIGINT NOT NULL,
    active_since   BIGINT,
    value          DOUBLE PRECISION,
    message        TEXT NOT NULL,
    acked_by       TEXT
);
CREATE INDEX alarms_tenant ON alarms (tenant_id);

-- Append-only. No foreign key on the rule: the history outlives a deleted rule.
CREATE TABLE alarm_events (
    id             BIGSERIAL PRIMARY KEY,
    tenant_id      BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    rule_id        BIGINT NOT NULL,
    tag_id         BIGINT NOT NULL,
    severity       TEXT NOT NULL,
    at             BIGINT NOT NULL,
    from_state     TEXT NOT NULL,
    to_state       TEXT NOT NULL,
    reason         TEXT,
    shelved_until  BIGINT,
    active         BOOLEAN NOT NULL,
    value          DOUBLE PRECISION,
    message        TEXT NOT NULL,
    user_name      TEXT,
    comment        TEXT
);
CREATE INDEX alarm_events_tenant_at ON alarm_events (tenant_id, at);
CREATE INDEX alarm_events_rule_at ON alarm_events (tenant_id, rule_id, at);
