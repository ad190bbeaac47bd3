INSERT OR REPLACE INTO selection_results (config_hash, pool, arm, method, budget, seed, target, subset_id, n_train,
                                          train_seconds, metric, value, run_id, created_at)
VALUES ($config_hash, $pool, $arm, $method, $budget, $seed, $target, $subset_id, $n_train, $train_seconds, $metric,
        $value, $run_id, now());
