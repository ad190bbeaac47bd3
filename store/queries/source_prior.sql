-- Each source's mean gain on every other measured target (leave-one-target-out prior), each target's newest
-- measurement config only (a target measured under two recipes counts once).
WITH latest AS (
    SELECT target, arg_max(config_hash, created_at) AS config_hash
    FROM transfer_gains
    WHERE target <> $target
    GROUP BY target
)
SELECT g.source, avg(g.mean_gain) AS prior, count(DISTINCT g.target) AS n_targets
FROM transfer_gains g JOIN latest USING (target, config_hash)
GROUP BY g.source;
