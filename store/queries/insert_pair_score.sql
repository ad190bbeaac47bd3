INSERT INTO pair_scores (run_id, config_hash, target, source, method, score, rank, higher_is_better, created_at)
VALUES ($run_id, $config_hash, $target, $source, $method, $score, $rank, $higher_is_better, now());
