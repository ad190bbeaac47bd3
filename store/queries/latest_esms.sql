-- The newest ESM of each source for one base model.
SELECT source, cache_key, path, checksum, dim, base_model, data_hash, params_json, heldout_mse, identity_mse, created_at
FROM esms
WHERE base_fp = $base_fp
QUALIFY row_number() OVER (PARTITION BY source ORDER BY created_at DESC) = 1
ORDER BY source;
