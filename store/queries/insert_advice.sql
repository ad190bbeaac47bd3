INSERT INTO advice (run_id, config_hash, target, source, method, rank, expected_gain, lower, upper, measured_gain,
                    top_features, basis, learner, dont_transfer, training_targets, level, created_at)
VALUES ($run_id, $config_hash, $target, $source, $method, $rank, $expected_gain, $lower, $upper, $measured_gain,
        $top_features, $basis, $learner, $dont_transfer, $training_targets, $level, now());
