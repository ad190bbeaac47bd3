-- Each source's mean gain on every other measured target (leave-one-target-out prior), each target under its
-- current measurement config (`current_measurements`: a target measured under two recipes counts once).
SELECT g.source, avg(g.mean_gain) AS prior, count(DISTINCT g.target) AS n_targets
FROM transfer_gains g JOIN current_measurements USING (target, config_hash)
WHERE g.target <> $target
GROUP BY g.source;
