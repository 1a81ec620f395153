-- History rollups (issue 8): per tag and minute (samples_1m) or hour (samples_1h),
-- the aggregates of the numeric samples that are not Bad (count, sum, min, max, first
-- and last by source time) and the number of Bad samples. Every insert of samples
-- merges its own aggregates into both, in its transaction, so they always equal a
-- recomputation from the samples. Times are microseconds since the Unix epoch;
-- `bucket` is the start of the minute or hour.

CREATE TABLE samples_1m (
    tenant_id  BIGINT NOT NULL,
    tag_id     BIGINT NOT NULL,
    bucket     BIGINT NOT NULL,
    count      BIGINT NOT NULL,
    sum        DOUBLE PRECISION NOT NULL,
    min        DOUBLE PRECISION,
    max        DOUBLE PRECISION,
    first_ts   BIGINT,
    first      DOUBLE PRECISION,
    last_ts    BIGINT,
    last       DOUBLE PRECISION,
    bad        BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, tag_id, bucket)
);

CREATE TABLE samples_1h (LIKE samples_1m INCLUDING ALL);
