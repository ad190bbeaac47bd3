-- For one target, every method's newest run.
WITH latest AS (
    SELECT method, arg_max(run_id, created_at) AS run_id
    FROM pair_scores
    WHERE target = $target
    GROUP BY method
)
SELECT p.source, p.method, p.score, p.rank, p.higher_is_better, p.run_id
FROM pair_scores p JOIN latest USING (method, run_id)
WHERE p.target = $target
ORDER BY p.method, p.rank NULLS LAST;
