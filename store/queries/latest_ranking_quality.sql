-- The newest evaluation of each target.
WITH latest AS (
    SELECT target, arg_max(run_id, created_at) AS run_id FROM ranking_quality GROUP BY target
)
SELECT q.target, q.method, q.metric, q.value, q.n_sources, q.ranking_run_id, q.measured_config, q.run_id
FROM ranking_quality q JOIN latest USING (target, run_id)
ORDER BY q.target, q.method, q.metric;
