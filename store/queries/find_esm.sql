SELECT cache_key, path, checksum, dim, data_hash, params_json
FROM esms
WHERE cache_key = $cache_key;
