DELETE FROM esms WHERE cache_key = $cache_key;
