-- Device link security (TLS files, credentials, require_tls) as JSON text (like
-- driver_config), secret fields sealed (`enc:v1:…`). NULL when the device declares none.
ALTER TABLE devices ADD COLUMN security TEXT;
