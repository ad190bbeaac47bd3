SELECT path, checksum, n_examples, steps, seconds
FROM checkpoints
WHERE cache_key = $cache_key;
