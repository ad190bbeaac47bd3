INSERT INTO ranking_quality (run_id, target, method, ranking_run_id, measured_config, n_sources, metric, value,
                             created_at)
VALUES ($run_id, $target, $method, $ranking_run_id, $measured_config, $n_sources, $metric, $value, now());
