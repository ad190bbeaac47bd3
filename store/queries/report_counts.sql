-- The report: how many tasks, runs and results (measured gains and pair scores) the workspace holds.
SELECT (SELECT count(*) FROM tasks) AS tasks, (SELECT count(*) FROM runs) AS runs,
       (SELECT count(*) FROM transfer_gains) + (SELECT count(*) FROM pair_scores) AS results;
