-- Packed history (issue 8). Packed minute rollups: the minutes of an hour of one
-- tag in one row, as src/storage/postgres/packed.rs lays them out. Store maintenance
-- moves the minutes of closed hours here from samples_1m; late samples for a packed
-- hour land in samples_1m again and readers add both. PLAIN storage keeps the value
-- (at most ~4 KB) inline, uncompressed: reading it is a copy.

CREATE TABLE samples_1m_packed (
    tenant_id  BIGINT NOT NULL,
    tag_id     BIGINT NOT NULL,
    hour       BIGINT NOT NULL,
    minutes    BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, tag_id, hour)
);
ALTER TABLE samples_1m_packed ALTER COLUMN minutes SET STORAGE PLAIN;

-- Packed samples: a copy of one tag's samples of a closed hour (layout in
-- src/storage/postgres/packed_samples.rs), rebuilt by the same compaction for every
-- hour it moves minutes of; current unless samples_1m holds a minute of that hour
-- again. Exports and statistics read whole hours from here. EXTERNAL: out of line and
-- uncompressed (the values are dense already; reading is a copy).
CREATE TABLE samples_packed (
    tenant_id  BIGINT NOT NULL,
    tag_id     BIGINT NOT NULL,
    hour       BIGINT NOT NULL,
    data       BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, tag_id, hour)
);
ALTER TABLE samples_packed ALTER COLUMN data SET STORAGE EXTERNAL;
