SELECT path, checksum, n, dim
FROM embeddings
WHERE cache_key = $cache_key;
