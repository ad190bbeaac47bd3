-- Every stored task's catalog row (as get_task.sql, for all tasks at once).
SELECT name, kind, input, label_names, content_hash, source_uri, license, warnings, derived_splits_json, path, checksum
FROM tasks
ORDER BY name;
