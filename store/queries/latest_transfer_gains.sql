-- One target's per-pair gains under its current measurement config (`current_measurements`).
SELECT g.source, g.baseline_mean, g.source_mean, g.mean_gain, g.std_gain, g.positive_share, g.p_value, g.n_seeds,
       g.config_hash
FROM transfer_gains g JOIN current_measurements USING (target, config_hash)
WHERE g.target = $target
ORDER BY g.source;
