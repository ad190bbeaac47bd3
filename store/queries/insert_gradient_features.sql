INSERT OR REPLACE INTO gradient_features (cache_key, task, split, checkpoint_key, params_json, path, n, dim, checksum,
                                          run_id, seconds, created_at)
VALUES ($cache_key, $task, $split, $checkpoint_key, $params_json, $path, $n, $dim, $checksum, $run_id, $seconds, now());
