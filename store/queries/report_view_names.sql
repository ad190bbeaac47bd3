-- The report: the names of the workspace's views (catalog tables and the artefact kinds present).
SELECT table_name FROM information_schema.tables;
