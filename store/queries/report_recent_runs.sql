-- The report: metadata of the $limit most recent runs.
SELECT run_id, flow, params_json, config_hash, versions_json, device, started_at, finished_at, status, timings_json,
       error
FROM runs
ORDER BY started_at DESC
LIMIT $limit;
