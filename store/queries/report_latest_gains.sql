-- The report: per target, the newest measurement config's gains (one row per target and source).
WITH latest AS (
    SELECT target, arg_max(config_hash, created_at) AS config_hash FROM transfer_gains GROUP BY target
)
SELECT g.target, g.source, g.mean_gain, g.std_gain, g.n_seeds, g.baseline_mean, g.source_mean, g.p_value,
       g.config_hash
FROM transfer_gains g JOIN latest USING (target, config_hash)
ORDER BY g.target, g.source;
