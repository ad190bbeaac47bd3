SELECT DISTINCT arm, budget, seed, target, subset_id
FROM selection_results
WHERE config_hash = $config_hash;
