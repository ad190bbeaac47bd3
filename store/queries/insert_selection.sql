INSERT INTO selections (subset_id, pool, pool_split, pool_hash, targets, method, budget, budget_kind, n_pool,
                        n_selected, params_json, run_id, created_at)
VALUES ($subset_id, $pool, $pool_split, $pool_hash, $targets, $method, $budget, $budget_kind, $n_pool, $n_selected,
        $params_json, $run_id, now());
