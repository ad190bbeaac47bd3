-- The newest recommendation for one target (every arm, the answer first, then by posterior gain).
WITH latest AS (
    SELECT run_id
    FROM recommendations
    WHERE target = $target
    ORDER BY created_at DESC
    LIMIT 1
)
SELECT r.source, r.prior_gain, r.prior_sd, r.pulls, r.gain, r.gain_sd, r.p_best, r.chosen, r.confidence, r.stopped,
       r.noise_sd, r.correlation, r.seconds, r.run_id, r.config_hash, r.created_at
FROM recommendations r JOIN latest USING (run_id)
WHERE r.target = $target
ORDER BY r.chosen DESC, r.gain DESC, r.source;
