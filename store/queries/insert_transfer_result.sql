INSERT OR REPLACE INTO transfer_results (config_hash, target, source, seed, metric, value, run_id, start_key, created_at)
VALUES ($config_hash, $target, $source, $seed, $metric, $value, $run_id, $start_key, now());
