-- ThermaCore schema, PostgreSQL flavour. Samples are range-partitioned by day on `ts`;
-- `samples_default` catches rows outside the partitions `maintain` creates ahead of time.

CREATE TABLE tenants (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id             BIGSERIAL PRIMARY KEY,
    tenant_id      BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    username       TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, username)
);

CREATE TABLE units (
    id           BIGSERIAL PRIMARY KEY,
    tenant_id    BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    lat          DOUBLE PRECISION,
    lon          DOUBLE PRECISION,
    description  TEXT,
    UNIQUE (tenant_id, name),
    CHECK ((lat IS NULL) = (lon IS NULL))
);

CREATE TABLE devices (
    id             BIGSERIAL PRIMARY KEY,
    tenant_id      BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    unit_id        BIGINT REFERENCES units (id) ON DELETE SET NULL,
    name           TEXT NOT NULL,
    enabled        BOOLEAN NOT NULL,
    poll_ms        BIGINT NOT NULL CHECK (poll_ms >= 0),
    protocol       TEXT NOT NULL,
    driver_config  TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX devices_unit ON devices (unit_id);

CREATE TABLE tags (
    id         BIGSERIAL PRIMARY KEY,
    tenant_id  BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    device_id  BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    unit_id    BIGINT REFERENCES units (id) ON DELETE SET NULL,
    name       TEXT NOT NULL,
    address    TEXT NOT NULL,
    data_type  TEXT NOT NULL,
    scale      DOUBLE PRECISION NOT NULL,
    "offset"   DOUBLE PRECISION NOT NULL,
    eng_unit   TEXT,
    deadband   DOUBLE PRECISION NOT NULL,
    writable   BOOLEAN NOT NULL,
    UNIQUE (device_id, name)
);
CREATE INDEX tags_tenant ON tags (tenant_id);
CREATE INDEX tags_unit ON tags (unit_id);

-- No foreign keys on samples: they would cost a lookup per inserted row.
-- bool and i64 values go to value_int, f64 to value_num, strings to value_text.
CREATE TABLE samples (
    tenant_id   BIGINT NOT NULL,
    tag_id      BIGINT NOT NULL,
    ts          TIMESTAMPTZ NOT NULL,
    server_ts   TIMESTAMPTZ NOT NULL,
    value_num   DOUBLE PRECISION,
    value_int   BIGINT,
    value_text  TEXT,
    code        INTEGER NOT NULL
) PARTITION BY RANGE (ts);

CREATE TABLE samples_default PARTITION OF samples DEFAULT;

CREATE INDEX samples_tenant_tag_ts ON samples (tenant_id, tag_id, ts);
