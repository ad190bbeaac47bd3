-- The report: per target, the gains of its current measurement config (`current_measurements`; one row per target
-- and source).
SELECT g.target, g.source, g.mean_gain, g.std_gain, g.n_seeds, g.baseline_mean, g.source_mean, g.p_value,
       g.config_hash
FROM transfer_gains g JOIN current_measurements USING (target, config_hash)
ORDER BY g.target, g.source;
