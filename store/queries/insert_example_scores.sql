-- `example_scores_batch` is a DataFrame registered on the connection (example_id, score).
INSERT OR REPLACE INTO example_scores (config_hash, pool, example_id, method, score, run_id, created_at)
SELECT $config_hash, $pool, example_id, $method, score, $run_id, now() FROM example_scores_batch;
