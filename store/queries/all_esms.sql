-- Every stored ESM; one written before ESMs named their checkpoint shows 'rows:<data_hash>' (what it was keyed by).
SELECT source, base_model, base_fp, fit, dim, heldout_mse, identity_mse, path, checksum, cache_key, data_hash,
       coalesce(checkpoint_key, 'rows:' || data_hash) AS checkpoint_key, params_json, created_at
FROM esms
ORDER BY source, created_at;
