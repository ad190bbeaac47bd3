UPDATE runs
SET finished_at = now(), status = $status, timings_json = $timings_json, error = $error
WHERE run_id = $run_id;
