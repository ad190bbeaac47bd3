-- The newest run's ranking of one method for one target (rankings never mix runs or configurations).
WITH latest AS (
    SELECT run_id
    FROM pair_scores
    WHERE target = $target AND method = $method
    ORDER BY created_at DESC
    LIMIT 1
)
SELECT p.source, p.score, p.rank, p.method, p.higher_is_better, p.run_id, p.config_hash
FROM pair_scores p JOIN latest USING (run_id)
WHERE p.target = $target AND p.method = $method
ORDER BY p.rank NULLS LAST, p.source;
