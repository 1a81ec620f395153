-- Live configuration (issue 10): a configuration change's objects before and after
-- (secrets redacted), as JSON, in its audit record.
ALTER TABLE audit_log ADD COLUMN changes TEXT;
