-- The report: the stored training subsets, newest first, with how many per-example scores back each.
SELECT s.subset_id, s.pool, s.targets, s.method, s.budget, s.budget_kind, s.n_selected, s.n_pool, s.created_at,
       count(e.example_id) AS n_scores
FROM selections s LEFT JOIN example_scores e
    ON e.config_hash = json_extract_string(s.params_json, '$.score_config') AND e.pool = s.pool
GROUP BY ALL
ORDER BY s.created_at DESC;
