-- Anomaly detections (issue 8): every value an anomaly rule's detector found
-- anomalous, at the sample's source time (microseconds since the Unix epoch).
-- Written only by the tenant's alert stream; removed with the history they judge.

CREATE TABLE anomalies (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    tag_id      BIGINT NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    rule_id     BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    method      TEXT NOT NULL CHECK (method IN ('zscore', 'iqr', 'moving_average')),
    value       DOUBLE PRECISION NOT NULL,
    score       DOUBLE PRECISION NOT NULL,
    confidence  DOUBLE PRECISION NOT NULL,
    expected    DOUBLE PRECISION NOT NULL,
    lower       DOUBLE PRECISION NOT NULL,
    upper       DOUBLE PRECISION NOT NULL
);
CREATE INDEX anomalies_tag_at ON anomalies (tenant_id, tag_id, at);
