-- Versions of packed hours (issue 8): every compaction that writes packed minutes of
-- a tenant's hour gives that hour a new version from the sequence, in the same
-- transaction, and retention deletes the version with the hour. The server caches
-- decoded packed hours by version (src/storage/postgres/minute_cache.rs): a reader
-- checks a day's 24 versions instead of reading the packed rows again.

CREATE SEQUENCE samples_1m_packed_version;

CREATE TABLE samples_1m_packed_hours (
    tenant_id  BIGINT NOT NULL,
    hour       BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, hour)
);

-- Hours packed before this migration.
INSERT INTO samples_1m_packed_hours (tenant_id, hour, version)
SELECT tenant_id, hour, nextval('samples_1m_packed_version')
FROM (SELECT DISTINCT tenant_id, hour FROM samples_1m_packed ORDER BY 1, 2) AS h;
