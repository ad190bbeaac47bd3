SELECT source, base_model, base_fp, fit, dim, heldout_mse, identity_mse, path, checksum, cache_key, data_hash,
       params_json, created_at
FROM esms
ORDER BY source, created_at;
