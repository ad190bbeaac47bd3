-- Every stored ranking row of one target made by a rank_sources run, with that run's parameters (its recipe and
-- encoder: store.advice.recipe_rankings keeps the runs made under the advisor's).
SELECT p.source, p.method, p.score, p.rank, p.higher_is_better, p.run_id, p.created_at, r.params_json
FROM pair_scores p JOIN runs r USING (run_id)
WHERE p.target = $target AND r.flow = 'rank_sources'
ORDER BY p.method, p.created_at, p.rank;
