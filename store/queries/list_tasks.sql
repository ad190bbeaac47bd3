SELECT name, kind, input, len(label_names) AS n_labels, n_train, n_validation, n_test, content_hash, license,
       source_uri, updated_at
FROM tasks
ORDER BY name;
