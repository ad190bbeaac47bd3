SELECT name, kind, input, label_names, content_hash, source_uri, license, warnings, derived_splits_json, path, checksum
FROM tasks
WHERE name = $name;
