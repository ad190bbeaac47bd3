DELETE FROM checkpoints WHERE cache_key = $cache_key;
