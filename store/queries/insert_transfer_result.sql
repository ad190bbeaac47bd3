INSERT OR REPLACE INTO transfer_results (config_hash, target, source, seed, metric, value, run_id, created_at)
VALUES ($config_hash, $target, $source, $seed, $metric, $value, $run_id, now());
