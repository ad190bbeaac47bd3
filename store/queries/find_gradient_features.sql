SELECT path, checksum, n, dim FROM gradient_features WHERE cache_key = $cache_key;
