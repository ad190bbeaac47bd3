-- Each source's mean gain on every other measured target (leave-one-target-out prior).
SELECT source, avg(mean_gain) AS prior, count(DISTINCT target) AS n_targets
FROM transfer_gains
WHERE target <> $target
GROUP BY source;
