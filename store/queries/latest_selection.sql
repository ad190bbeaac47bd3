-- The newest stored subset of one pool for one target set, method and budget (any other parameters).
SELECT subset_id, pool, pool_split, pool_hash, targets, method, budget, budget_kind, n_pool, n_selected, params_json,
       run_id, created_at
FROM selections
WHERE pool = $pool AND list_sort(targets) = list_sort($targets::VARCHAR[]) AND method = $method
  AND budget_kind = $budget_kind AND budget IS NOT DISTINCT FROM $budget
ORDER BY created_at DESC
LIMIT 1;
