DELETE FROM embeddings WHERE cache_key = $cache_key;
