-- The newest measurement config's per-pair gains for one target.
WITH latest AS (
    SELECT config_hash FROM transfer_gains WHERE target = $target ORDER BY created_at DESC LIMIT 1
)
SELECT g.source, g.baseline_mean, g.source_mean, g.mean_gain, g.std_gain, g.positive_share, g.p_value, g.n_seeds,
       g.config_hash
FROM transfer_gains g JOIN latest USING (config_hash)
WHERE g.target = $target
ORDER BY g.source;
