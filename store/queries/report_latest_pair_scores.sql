-- The report: per target, each method's newest ranking.
WITH latest AS (
    SELECT target, method, arg_max(run_id, created_at) AS run_id FROM pair_scores GROUP BY target, method
)
SELECT p.target, p.method, p.source, p.score, p.rank, p.higher_is_better
FROM pair_scores p JOIN latest USING (target, method, run_id)
ORDER BY p.target, p.method, p.rank;
