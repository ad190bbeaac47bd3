INSERT INTO recommendations (run_id, config_hash, target, source, prior_gain, prior_sd, pulls, gain, gain_sd, p_best,
                             chosen, confidence, stopped, noise_sd, correlation, seconds, created_at)
VALUES ($run_id, $config_hash, $target, $source, $prior_gain, $prior_sd, $pulls, $gain, $gain_sd, $p_best, $chosen,
        $confidence, $stopped, $noise_sd, $correlation, $seconds, now());
