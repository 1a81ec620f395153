-- ThermaCore schema, SQLite flavour. Timestamps of samples are INTEGER microseconds
-- since the Unix epoch; a sample's `value` has no declared type, so it keeps the
-- storage class it was bound with (INTEGER for bool and i64, REAL, TEXT).

CREATE TABLE tenants (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    tenant_id      INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    username       TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (tenant_id, username)
);

CREATE TABLE units (
    id           INTEGER PRIMARY KEY,
    tenant_id    INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    lat          REAL,
    lon          REAL,
    description  TEXT,
    UNIQUE (tenant_id, name),
    CHECK ((lat IS NULL) = (lon IS NULL))
);

CREATE TABLE devices (
    id             INTEGER PRIMARY KEY,
    tenant_id      INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    unit_id        INTEGER REFERENCES units (id) ON DELETE SET NULL,
    name           TEXT NOT NULL,
    enabled        BOOLEAN NOT NULL,
    poll_ms        INTEGER NOT NULL CHECK (poll_ms >= 0),
    protocol       TEXT NOT NULL,
    driver_config  TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX devices_unit ON devices (unit_id);

CREATE TABLE tags (
    id         INTEGER PRIMARY KEY,
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    device_id  INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    unit_id    INTEGER REFERENCES units (id) ON DELETE SET NULL,
    name       TEXT NOT NULL,
    address    TEXT NOT NULL,
    data_type  TEXT NOT NULL,
    scale      REAL NOT NULL,
    "offset"   REAL NOT NULL,
    eng_unit   TEXT,
    deadband   REAL NOT NULL,
    writable   BOOLEAN NOT NULL,
    UNIQUE (device_id, name)
);
CREATE INDEX tags_tenant ON tags (tenant_id);
CREATE INDEX tags_unit ON tags (unit_id);

-- No foreign keys on samples: they would cost a lookup per inserted row.
CREATE TABLE samples (
    tenant_id  INTEGER NOT NULL,
    tag_id     INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    server_ts  INTEGER NOT NULL,
    value,
    code       INTEGER NOT NULL
);
CREATE INDEX samples_tenant_tag_ts ON samples (tenant_id, tag_id, ts);
