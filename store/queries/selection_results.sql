-- The primary metric of every run of one selection-quality measurement, or of the newest measurement of a pool
-- (of any pool when $pool is NULL) when $config_hash is NULL.
WITH chosen AS (
    SELECT coalesce(
        $config_hash,
        (SELECT config_hash FROM selection_results
         WHERE $pool IS NULL OR pool = $pool
         ORDER BY created_at DESC LIMIT 1)
    ) AS config_hash
)
SELECT r.config_hash, r.pool, r.arm, r.method, r.budget, r.seed, r.target, r.subset_id, r.n_train, r.train_seconds,
       r.value
FROM selection_results r JOIN chosen USING (config_hash)
WHERE r.metric = 'primary'
ORDER BY r.arm, r.budget, r.seed, r.target;
