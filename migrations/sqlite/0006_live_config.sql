-- Live configuration (issue 10): units, devices, tags and alarm rules are created and
-- deleted while the server runs.
--
-- SQLite gives a new row the largest id in the table plus one, so deleting the row
-- with the largest id would hand its id to the next row, and the history, alarm
-- transitions and audit records of the deleted object would seem to belong to the new
-- one. `id_floors` remembers the largest id ever deleted per table; inserts take the
-- next id above both (PostgreSQL's sequences never reuse an id).
CREATE TABLE id_floors (
    tbl      TEXT PRIMARY KEY,
    last_id  INTEGER NOT NULL
);
INSERT INTO id_floors (tbl, last_id) SELECT 'units', coalesce(max(id), 0) FROM units;
INSERT INTO id_floors (tbl, last_id) SELECT 'devices', coalesce(max(id), 0) FROM devices;
INSERT INTO id_floors (tbl, last_id) SELECT 'tags', coalesce(max(id), 0) FROM tags;
INSERT INTO id_floors (tbl, last_id) SELECT 'alarm_rules', coalesce(max(id), 0) FROM alarm_rules;

CREATE TRIGGER units_id_floor AFTER DELETE ON units
BEGIN
    UPDATE id_floors SET last_id = max(last_id, OLD.id) WHERE tbl = 'units';
END;
CREATE TRIGGER devices_id_floor AFTER DELETE ON devices
BEGIN
    UPDATE id_floors SET last_id = max(last_id, OLD.id) WHERE tbl = 'devices';
END;
CREATE TRIGGER tags_id_floor AFTER DELETE ON tags
BEGIN
    UPDATE id_floors SET last_id = max(last_id, OLD.id) WHERE tbl = 'tags';
END;
CREATE TRIGGER alarm_rules_id_floor AFTER DELETE ON alarm_rules
BEGIN
    UPDATE id_floors SET last_id = max(last_id, OLD.id) WHERE tbl = 'alarm_rules';
END;

-- A configuration change's objects before and after (secrets redacted), as JSON.
ALTER TABLE audit_log ADD COLUMN changes TEXT;
