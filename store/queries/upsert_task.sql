INSERT INTO tasks (name, kind, input, label_names, content_hash, source_uri, license, n_train, n_validation, n_test,
                   warnings, derived_splits_json, path, checksum, added_at, updated_at)
VALUES ($name, $kind, $input, $label_names, $content_hash, $source_uri, $license, $n_train, $n_validation, $n_test,
        $warnings, $derived_splits_json, $path, $checksum, now(), now())
ON CONFLICT (name) DO UPDATE SET
    kind = excluded.kind, input = excluded.input, label_names = excluded.label_names,
    content_hash = excluded.content_hash, source_uri = excluded.source_uri, license = excluded.license,
    n_train = excluded.n_train, n_validation = excluded.n_validation, n_test = excluded.n_test,
    warnings = excluded.warnings, derived_splits_json = excluded.derived_splits_json, path = excluded.path,
    checksum = excluded.checksum, updated_at = now();
