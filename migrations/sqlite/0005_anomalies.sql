-- Anomaly detections (issue 8): every value an anomaly rule's detector found
-- anomalous, at the sample's source time (microseconds since the Unix epoch).
-- Written only by the tenant's alert stream; removed with the history they judge.

CREATE TABLE anomalies (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    tag_id      INTEGER NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    rule_id     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    method      TEXT NOT NULL CHECK (method IN ('zscore', 'iqr', 'moving_average')),
    value       REAL NOT NULL,
    score       REAL NOT NULL,
    confidence  REAL NOT NULL,
    expected    REAL NOT NULL,
    lower       REAL NOT NULL,
    upper       REAL NOT NULL
);
CREATE INDEX anomalies_tag_at ON anomalies (tenant_id, tag_id, at);
