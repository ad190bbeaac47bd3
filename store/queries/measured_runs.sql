-- Every measured target's per-seed primary metric under its newest measurement config (source '' = no transfer).
WITH newest AS (
    SELECT target, arg_max(config_hash, created_at) AS config_hash
    FROM transfer_results
    GROUP BY target
)
SELECT r.target, r.source, r.seed, r.value
FROM transfer_results r JOIN newest USING (target, config_hash)
WHERE r.metric = 'primary'
ORDER BY r.target, r.source, r.seed;
