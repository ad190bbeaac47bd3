SELECT example_id, score, method, run_id FROM example_scores WHERE config_hash = $config_hash AND pool = $pool;
