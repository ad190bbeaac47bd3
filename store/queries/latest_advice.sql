-- The newest run's advice of one method ('advisor' or 'advisor+verify') for one target, best first.
WITH latest AS (
    SELECT run_id
    FROM advice
    WHERE target = $target AND method = $method
    ORDER BY created_at DESC
    LIMIT 1
)
SELECT a.source, a.rank, a.expected_gain, a.lower, a.upper, a.measured_gain, a.top_features, a.basis, a.learner,
       a.dont_transfer, a.training_targets, a.level, a.method, a.run_id, a.config_hash
FROM advice a JOIN latest USING (run_id)
WHERE a.target = $target AND a.method = $method
ORDER BY a.rank, a.source;
